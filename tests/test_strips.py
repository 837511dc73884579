"""A panel row becomes the same cells by the quick path of ``strip_of`` as by rich's renderer."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from rich.console import Console
from rich.style import Style
from rich.text import Text

from infermon.tui.widgets import strip_of, strip_of_rich

CONSOLE = Console(color_system="truecolor", width=200)
STYLES = st.sampled_from([Style(bold=True), Style(color="#ff0000"), Style(bgcolor="#001020", italic=True),
                          Style(dim=True, color="#00ff00"), "bold", "dim", "", "reverse bold", Style.null()])
CHARS = st.sampled_from(list("abc xyz0123,.%/·—…█▁▂▃▏▌") + ["漢", "é", "\u200b"])  # wide and zero-width too


def cells(strip) -> list[tuple[str, Style]]:
    """(character, its style) for every cell: how a strip looks, whatever its runs."""
    out = []
    for segment in strip:
        out.extend((character, segment.style) for character in segment.text)
    return out


@settings(max_examples=300, deadline=None)
@given(chars=st.lists(CHARS, max_size=60), row_style=STYLES,
       spans=st.lists(st.tuples(st.integers(-3, 70), st.integers(0, 70), STYLES), max_size=6),
       width=st.integers(1, 80))
def test_the_quick_path_makes_the_same_cells_as_rich(chars, row_style, spans, width):
    text = Text("".join(chars), style=row_style, end="")
    for start, end, style in spans:
        text.stylize(style, start, end)
    base = Style(color="#c0c0c0", bgcolor="#101010")
    quick, rich = strip_of(text, width, base, CONSOLE), strip_of_rich(text, width, base, CONSOLE)
    assert quick.cell_length == rich.cell_length == width
    assert cells(quick) == cells(rich)


PIECES = st.lists(st.tuples(st.text(st.sampled_from(list("ab █…漢") + ["\x1b", "\r", "\x07"]), max_size=6),
                            STYLES, st.booleans()), max_size=8)


@settings(max_examples=300, deadline=None)
@given(pieces=PIECES)
def test_a_row_is_joined_in_one_step_as_appending_its_parts_would(pieces):
    """``Row.text`` builds its Text in one step; appending each part, as rich does, gives the same
    text and spans (control characters included: rich drops them piece by piece)."""
    from infermon.tui.text import Part, appended, joined

    parts = []
    for text, style, pre_styled in pieces:
        if pre_styled:
            rich = Text(text, style=style)
            rich.stylize("bold", 0, 1)
            parts.append(Part(rich.plain, None, 0, False, rich))
        else:
            parts.append(Part(text, style))
    one, other = joined(parts), appended(parts)
    assert one.plain == other.plain
    assert one.spans == other.spans
    assert (one.no_wrap, one.overflow, one.end) == (other.no_wrap, other.overflow, other.end)


@settings(max_examples=300, deadline=None)
@given(chars=st.lists(st.sampled_from(list("ab █─▂…漢") + ["\x1b", "\r", "\x07", "\x08", "\x0b", "\x0c", "\n", "\t"]),
                      max_size=30),
       style=STYLES, spans=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30), STYLES), max_size=4))
def test_rich_text_is_the_text_rich_builds(chars, style, spans):
    """``rich_text`` skips rich's pass over the characters where it would change nothing: the Text
    must be rich's in every respect (control codes rich removes included), render the same cells,
    and stay a working Text (copied, appended to, cut)."""
    from rich.text import Span

    from infermon.tui.text import _DIRECT, rich_text

    assert _DIRECT  # this rich keeps its characters as rich_text expects: the quick path is taken
    plain = "".join(chars)
    size = len(Text(plain))  # spans inside what rich keeps of it (rich itself fails on others)
    span_list = [Span(min(a, b, size), min(max(a, b), size), s) for a, b, s in spans]
    quick = rich_text(plain, style=style, spans=list(span_list), no_wrap=True, end="")
    built = Text(plain, style=style, spans=list(span_list), no_wrap=True, end="")
    assert quick == built and quick.plain == built.plain and len(quick) == len(built)
    assert (quick.style, quick.no_wrap, quick.end, quick.overflow) == (built.style, built.no_wrap, built.end, built.overflow)
    assert list(quick.render(CONSOLE)) == list(built.render(CONSOLE))
    grown, grown_built = quick.copy(), built.copy()
    grown.append("z▂", "bold")
    grown_built.append("z▂", "bold")
    assert grown == grown_built and quick == built
    if len(built) > 1:
        assert quick[1:] == built[1:]


@settings(max_examples=300, deadline=None)
@given(chars=st.lists(st.sampled_from(list("ab xy 12,.—…漢é") + ["\t", "\n", "\x1b", "  "]), max_size=70),
       spans=st.lists(st.tuples(st.integers(0, 70), st.integers(0, 70), STYLES), max_size=4),
       width=st.integers(1, 80))
def test_a_paragraph_wraps_as_rich_does(chars, spans, width):
    """The verdict's quick path (a printable line that fits is its own row) gives rich's rows."""
    from infermon.tui.widgets import wrapped

    text = Text("".join(chars), style="bold")
    for start, end, style in spans:
        text.stylize(style, start, end)
    ours = [(row.plain, row.spans, row.style) for row in wrapped(text, width, CONSOLE)]
    expected = [(row.plain, row.spans, row.style) for row in text.wrap(CONSOLE, width)] if text.plain else []
    assert ours == expected
