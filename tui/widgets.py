"""The dashboard's building blocks: panels whose rows repaint only the cells that changed, tables.

Over SSH every repainted cell costs bytes, and every widget under a frame's changes costs the
compositor work. So a panel's rows are one :class:`Body` widget; when a row changes, only its
changed cells are marked dirty, and Textual writes only those to the terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.cells import cell_len, get_character_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.containers import Container, Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.css.query import NoMatches
from textual.geometry import Region
from textual.widget import Widget

from infermon.live.figure import DATASHEET, ENGINE, GIVEN, MEASURED, MODELED, NA
from infermon.live.view import LiveView
from infermon.tui.text import fit
from infermon.views.fmt import CONTROL_CHARACTERS, printable

SOURCE_CLASSES = {MEASURED: "source--measured", ENGINE: "source--engine", MODELED: "source--modeled",
                  DATASHEET: "source--datasheet", GIVEN: "source--given", NA: "source--na"}


def strip_of(text: Text, width: int, base: Style, console) -> Strip:
    """One row of text as the compositor takes it: the widget's style under the text's, cut or
    padded to ``width``.

    Rows are made here, once per change, instead of by Textual's content pipeline, which renders
    every row of a widget again whenever any cell of it changes. A row of one-cell characters
    (nearly every row) is cut into runs of one style directly, a third of the time rich's
    renderer takes; wider characters go through rich, which knows where their cells end.
    """
    plain = text.plain
    if CONTROL_CHARACTERS.search(plain):  # the watched process's text must not drive our terminal
        text = text.copy()
        text.plain = plain = printable(plain)
    if not plain.isascii() and any(get_character_cell_size(character) != 1 for character in set(plain)):
        return strip_of_rich(text, width, base, console)

    def resolve(style) -> Style:
        return style if isinstance(style, Style) else console.get_style(style, default=Style.null())

    plain = plain[:width]
    length = len(plain)
    row_style = base + resolve(text.style) if text.style else base
    spans = [(max(0, span.start), min(length, span.end), resolve(span.style))
             for span in text.spans if max(0, span.start) < min(length, span.end)]
    cuts = sorted({0, length, *(edge for start, end, _ in spans for edge in (start, end))})
    segments = []
    for start, end in zip(cuts, cuts[1:]):
        style = row_style
        for span_start, span_end, span_style in spans:  # in order: a later span's style wins
            if span_start <= start and end <= span_end:
                style = style + span_style
        segments.append(Segment(plain[start:end], style))
    if length < width:
        segments.append(Segment(" " * (width - length), base))
    return Strip(segments, width)


class SafeStatic(Static):
    """A Static whose text never reaches the terminal with control characters in it (they show as
    U+FFFD): its content carries the watched process's command lines, names and notes."""

    def render_lines(self, crop: Region) -> list[Strip]:
        return [safe_strip(strip) for strip in super().render_lines(crop)]


def safe_strip(strip: Strip) -> Strip:
    """``strip`` with control characters in its text shown as U+FFFD (escape sequences a segment
    carries on purpose, Textual's own, are kept)."""
    if not any(segment.control is None and CONTROL_CHARACTERS.search(segment.text) for segment in strip):
        return strip
    return Strip([segment if segment.control is not None else
                  Segment(printable(segment.text), segment.style) for segment in strip], strip.cell_length)


def strip_of_rich(text: Text, width: int, base: Style, console) -> Strip:
    """:func:`strip_of` by rich's own renderer (any text).

    ``Text.render`` leaves the text's own style out when it has no spans (rich's console applies
    it elsewhere), so it goes under the segments here: a heading or a table's header row keeps
    its colour or weight either way."""
    own = text.style if isinstance(text.style, Style) else console.get_style(text.style, default=Style.null())
    segments = Segment.apply_style(text.render(console, end=""), base + own)
    return Strip(list(segments)).crop_extend(0, width, base)


def _cell_styles(text: Text) -> list:
    """The style stack of every character (equal lists: equal look)."""
    styles: list = [(text.style,)] * len(text.plain)
    for span in text.spans:
        for index in range(max(0, span.start), min(len(styles), span.end)):
            styles[index] = styles[index] + (span.style,)
    return styles


def changed_span(old: Text, new: Text) -> tuple[int, int] | None:
    """(first, end) columns where ``new`` looks different from ``old`` on screen; None when it does not.

    Compared column by column (a shorter text is padded): text that moved is text that changed.
    Characters wider than one cell make columns and indices differ: then the whole width.
    """
    a, b = old.plain, new.plain
    if cell_len(a) != len(a) or cell_len(b) != len(b):
        return 0, max(cell_len(a), cell_len(b)) or 1
    length = max(len(a), len(b))
    if old.spans == new.spans and old.style == new.style:
        # The usual case (a value changed in place): the characters alone say where.
        shortest = min(len(a), len(b))
        first = 0
        while first < shortest and a[first] == b[first]:
            first += 1
        if first == length:
            return None
        if len(a) != len(b):
            return first, length
        end = length
        while end > first and a[end - 1] == b[end - 1]:
            end -= 1
        return first, end
    sa, sb = _cell_styles(old), _cell_styles(new)

    def cell(text: str, styles: list, index: int):
        return (text[index], styles[index]) if index < len(text) else None

    first = 0
    while first < length and cell(a, sa, first) == cell(b, sb, first):
        first += 1
    if first == length:
        return None
    end = length
    while end > first and cell(a, sa, end - 1) == cell(b, sb, end - 1):
        end -= 1
    return first, end


class KeptLines:
    """Mixin for a widget: the lines it gave the compositor last time are given again, as they
    are, while nothing asked it to repaint.

    The compositor renders every widget inside the bounding box of a frame's changes, and at 1 Hz
    figures change from the top of the screen to the bottom. Textual then recomputes each unchanged
    widget's background, filters and border for every line. Here an unchanged widget costs a
    comparison. "Nothing asked" is Textual's own record of lines to repaint (``refresh()`` fills it,
    a new size, theme or style empties the kept lines too); where a Textual release keeps no such
    record, every frame renders as before.
    """

    _kept: tuple | None = None

    def render_lines(self, crop: Region) -> list[Strip]:
        dirty = getattr(getattr(self, "_styles_cache", None), "_dirty_lines", None)
        key = (crop, self.size, tuple(self.app.get_line_filters()))
        kept = self._kept
        if kept is not None and dirty is not None and not dirty and kept[0] == key:
            return kept[1]
        strips = super().render_lines(crop)
        self._kept = (key, strips) if dirty is not None else None
        return strips

    def notify_style_update(self) -> None:
        self._kept = None
        super().notify_style_update()


# Layout boxes that draw nothing of their own (no border, no content: their children cover them).
# ``BLANK`` lets the compositor fill them with their background instead of running each through
# Textual's line renderer every frame: a frame whose changes span the screen visits every widget.

class PanelRow(Container):
    """The panels' row (``#panels``)."""

    BLANK = True


class Column(Vertical):
    """One column of panels."""

    BLANK = True


class Side(Horizontal):
    """Two boxes side by side (the roofline's figures and plot)."""

    BLANK = True


class KeyBar(Footer):
    """The key line at the bottom: its keys cover it."""

    BLANK = True


class Backdrop(Screen):
    """The dashboard's screen: its widgets cover it."""

    BLANK = True


class Panel(KeptLines, Vertical):
    """A bordered panel with a number key and a title; may be maximised.

    Subclasses compose a :class:`Body` (and a chart or a plot) and draw their rows in :meth:`show`.
    A panel redraws its last view when its size changes (rows are fitted to widths).
    """

    ALLOW_MAXIMIZE = True
    COMPONENT_CLASSES = {*SOURCE_CLASSES.values(), "figure--label", "figure--note", "figure--warning",
                         "figure--heading", "bar--bandwidth", "bar--compute", "bar--usage", "bar--full",
                         "bar--empty", "spark"}

    def __init__(self, number: int, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.number = number
        self.title = title
        self.border_title = f"{number} {title}"
        self.add_class("panel")
        self.stale = False
        self.last: LiveView | None = None
        self._figure_styles: dict[str, Style] | None = None
        self._rich_component_styles: dict[str, Style] = {}
        self.rows: dict[str, Text] = {}
        self._body: Body | None = None
        self._built: dict[str, tuple[tuple, Text]] = {}

    def line(self, key: str) -> "_RowSetter":
        """``line(key).set(text)``: the row ``key`` of this draw, in the order rows are set (an
        empty row takes no place)."""
        return _RowSetter(self.rows, key)

    def kept_line(self, key: str, inputs: tuple, build: Callable[[], Text]) -> None:
        """``line(key).set(build())``, unless ``inputs`` are what the row was last built from: the
        same objects (a figure that reads as it did last tick is last tick's object), or equal
        numbers and words. Then the row built then is set again, for an identity check instead of
        formatting and fitting it anew. ``inputs`` must hold everything the row is built from;
        styles are not needed (a new theme forgets every kept row)."""
        kept = self._built.get(key)
        if kept is not None and len(kept[0]) == len(inputs) and all(
                a is b or (a.__class__ in _PLAIN and a.__class__ is b.__class__ and a == b)
                for a, b in zip(kept[0], inputs)):
            text = kept[1]
        else:
            text = build()
            self._built[key] = (inputs, text)
        self.rows[key] = text

    @property
    def body(self) -> "Body":
        if self._body is None:
            self._body = self.query(Body).first()
        return self._body

    @property
    def text_width(self) -> int:
        """Columns a line of this panel has (a guess before the first layout)."""
        return self.content_size.width or 76

    def style(self, component: str) -> Style:
        found = self._rich_component_styles.get(component)
        if found is None:
            found = self._rich_component_styles[component] = self.get_component_rich_style(component, partial=True)
        return found

    def figure_styles(self) -> dict[str, Style]:
        if self._figure_styles is None:
            styles = {source: self.style(cls) for source, cls in SOURCE_CLASSES.items()}
            styles["label"] = self.style("figure--label")
            styles["note"] = self.style("figure--note")
            styles["heading"] = self.style("figure--heading")
            self._figure_styles = styles
        return self._figure_styles

    def notify_style_update(self) -> None:
        super().notify_style_update()
        # The theme changed: colours are read again at the next draw.
        self._figure_styles = None
        self._rich_component_styles = {}
        self._built = {}

    def draw(self, view: LiveView) -> None:
        """Show ``view``; a panel whose children are not mounted yet draws it when they are."""
        self.last = view
        self.rows = {}
        try:
            self.show(view)
            self.body.set_rows([(key, text) for key, text in self.rows.items() if text.plain])
        except NoMatches:
            self.stale = True
            self.call_after_refresh(self._draw_last)

    def _draw_last(self) -> None:
        if self.stale and self.last is not None and self.display:
            self.stale = False
            self.draw(self.last)

    def on_resize(self) -> None:
        if self.last is not None and self.display:
            self.draw(self.last)

    def show(self, view: LiveView) -> None:  # pragma: no cover - each panel overrides
        raise NotImplementedError


# Inputs of a kept line compared by value: immutable, and equal values build equal rows.
_PLAIN = (int, float, str, bool, type(None))


class _RowSetter:
    __slots__ = ("rows", "key")

    def __init__(self, rows: dict[str, Text], key: str) -> None:
        self.rows = rows
        self.key = key

    def set(self, text: Text | str) -> None:
        self.rows[self.key] = Text(text, end="") if isinstance(text, str) else text


class Body(KeptLines, Widget):
    """The rows of a panel (or a chart, a plot) as one widget: each row is made into a strip once
    when it changes, and only the cells that changed are marked for repainting.

    One widget per panel instead of one per row: the compositor visits every widget under a
    frame's changes, so fewer widgets is less work per frame. Rows have keys (``rows[key]``);
    the height follows the number of rows unless the CSS sets it.
    """

    DEFAULT_CSS = "Body { height: auto; width: 1fr; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.keys: list[str] = []
        self._rows: list[Text] = []
        self._strips: dict[int, Strip] = {}
        self._strips_width = -1
        self._base_style: Style | None = None

    def text(self, key: str) -> Text | None:
        """The row shown under ``key`` (None when there is none)."""
        try:
            return self._rows[self.keys.index(key)]
        except ValueError:
            return None

    def plain(self, key: str) -> str:
        row = self.text(key)
        return row.plain if row is not None else ""

    def render(self) -> Text:
        text = Text("\n").join(self._rows)
        text.no_wrap = True
        return text

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._rows)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if width != self._strips_width:
            self._strips.clear()
            self._strips_width = width
        strip = self._strips.get(y)
        if strip is None:
            if self._base_style is None:
                self._base_style = self.rich_style  # computed from the CSS each time it is asked for
            text = self._rows[y] if y < len(self._rows) else Text()
            strip = self._strips[y] = strip_of(text, width, self._base_style, self.app.console)
        return strip

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()
        self._base_style = None

    def set_rows(self, rows: list[tuple[str, Text]]) -> None:
        """Show ``rows`` ((key, text) in order); repaint only what changed."""
        keys = [key for key, _ in rows]
        texts = [text for _, text in rows]
        old = self._rows
        if keys == self.keys and len(texts) == len(old) and all(
                a is b or (a.plain == b.plain and a.spans == b.spans and a.style == b.style)
                for a, b in zip(old, texts)):
            return
        self.keys = keys
        self._rows = texts
        width = self.size.width
        if len(texts) != len(old):
            self._strips.clear()
            self.refresh(layout=True)
            return
        if not self.is_mounted or not width:
            self._strips.clear()
            self.refresh()
            return
        changed = []
        for y, (before, after) in enumerate(zip(old, texts)):
            if before is after or (before.plain == after.plain and before.spans == after.spans
                                   and before.style == after.style):
                continue
            if before.cell_len > width:
                self._strips.pop(y, None)
                changed.append(Region(0, y, width, 1))
                continue
            span = changed_span(before, after)
            if span is not None and span[0] < width:
                self._strips.pop(y, None)
                changed.append(Region(span[0], y, min(span[1], width) - span[0], 1))
        if changed:
            # One call for every changed cell: each refresh() clears the widget's caches and asks
            # for an idle check again, whatever the number of regions it is given.
            self.refresh(*changed)


def find_row(root, key: str) -> str:
    """The plain text of the row ``key`` in any :class:`Body` under ``root`` ("" when none)."""
    for body in root.query(Body):
        if key in body.keys:
            return body.plain(key)
    return ""


class TableFormat:
    """Rows of a table as text: column widths only grow, so rows never shift; columns that do not
    fit the width are left out from the right (``keep`` columns stay; the last of them, e.g. a
    command, ends at a word, or anywhere with ``words=False``)."""

    def __init__(self, columns: tuple[str, ...], right: frozenset[str] = frozenset(),
                 keep: frozenset[str] = frozenset(), words: bool = True) -> None:
        self.columns = columns
        self.right = right
        self.keep = keep
        self.words = words
        self.widths = [len(c) for c in columns]

    def _shown_columns(self, width: int) -> list[int]:
        shown = list(range(len(self.columns)))
        # The last column, when left-aligned (a command line), takes what is left: 12 cells at least.
        widths = list(self.widths)
        if self.columns[-1] not in self.right:
            widths[-1] = min(widths[-1], 12)
        while len(shown) > 1 and sum(widths[i] for i in shown) + 2 * (len(shown) - 1) > width:
            droppable = [i for i in shown if self.columns[i] not in self.keep]
            if not droppable:
                break
            shown.remove(droppable[-1])
        return shown

    def _format(self, cells: tuple[str, ...], shown: list[int], width: int) -> str:
        out: list[str] = []
        for position, index in enumerate(shown):
            cell, column, cell_width = cells[index], self.columns[index], self.widths[index]
            if position == len(shown) - 1 and column not in self.right:
                used = sum(len(part) + 2 for part in out)
                out.append(fit(cell, max(1, width - used), words=self.words))
            else:
                out.append(cell.rjust(cell_width) if column in self.right else cell.ljust(cell_width))
        return fit("  ".join(out).rstrip(), width)

    def rows(self, rows: list[tuple[str, ...]], width: int, styles: list | None = None,
             max_rows: int | None = None, more_style: Style | str = "dim") -> list[Text]:
        """The header and the rows (at most ``max_rows``, the last saying how many more there are)."""
        for cells in rows:
            self.widths = [max(w, len(c)) for w, c in zip(self.widths, cells)]
        shown = self._shown_columns(width)
        out = [Text(self._format(self.columns, shown, width), style="bold")]
        hidden = 0
        if max_rows is not None and len(rows) > max_rows:
            hidden = len(rows) - (max_rows - 1)
            rows = rows[: max_rows - 1]
        for index, cells in enumerate(rows):
            out.append(Text(self._format(cells, shown, width), style=(styles[index] if styles else "") or ""))
        if hidden:
            out.append(Text(f"… {hidden} more", style=more_style))
        return out


def wrapped(text: Text, width: int, console) -> list[Text]:
    """``text`` wrapped to ``width`` cells, as rich wraps it. A line that already fits (the verdict,
    nearly every tick) is its own single row: rich's word splitting costs more than the rest of the
    verdict's redraw."""
    plain = text.plain
    if not plain:
        return []
    if plain.isprintable() and cell_len(plain) <= width:
        return [text]
    return list(text.wrap(console, width))


class Paragraph(Body):
    """Text wrapped to its width (the verdict): rows like a :class:`Body`, so a changed word
    repaints only its cells; the height follows the wrapped rows.

    The height grows at once and shrinks only once the text has needed fewer rows for
    :data:`SHRINK_AFTER_S` (or the terminal is resized): a verdict that flips between one row and
    two would move everything below it, a whole screen repainted each time, and one long message
    at start-up must not leave a blank row for good. ``blank_above``: the rows kept meanwhile go
    above the text (the verdict: a blank line under the header reads as a gap, one between the
    verdict and its advice as a fault), else below."""

    SHRINK_AFTER_S = 30.0

    def __init__(self, *, id: str | None = None, classes: str | None = None, blank_above: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(id=id, classes=classes)
        self.blank_above = blank_above
        self._clock = clock
        self._shown = Text()
        self._sticky_rows = 0
        self._short_since: float | None = None
        self._wrapped_width = -1

    @property
    def text_plain(self) -> str:
        return self._shown.plain

    def set(self, text: Text | str) -> None:
        text = Text(text) if isinstance(text, str) else text
        if text.plain == self._shown.plain and text.spans == self._shown.spans and text.style == self._shown.style:
            if self._short_since is not None and self._clock() - self._short_since >= self.SHRINK_AFTER_S:
                self._wrap()  # the same words for long enough in fewer rows: give the spare ones back
            return
        self._shown = text
        self._wrap()

    def _wrap(self) -> None:
        width = self.content_size.width
        if not width or not self.is_mounted:
            rows = [self._shown] if self._shown.plain else []
        else:
            rows = wrapped(self._shown, width, self.app.console)
        if len(rows) >= self._sticky_rows:
            self._sticky_rows, self._short_since = len(rows), None
        elif self._short_since is None:
            self._short_since = self._clock()
        elif self._clock() - self._short_since >= self.SHRINK_AFTER_S:
            self._sticky_rows, self._short_since = len(rows), None
        blank = [Text("")] * (self._sticky_rows - len(rows))
        rows = blank + rows if self.blank_above else rows + blank
        self.set_rows([(str(y), row) for y, row in enumerate(rows)])

    def on_resize(self) -> None:
        if self.size.width != self._wrapped_width:
            self._wrapped_width = self.size.width
            self._sticky_rows, self._short_since = 0, None
        self._wrap()
