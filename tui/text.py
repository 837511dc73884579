"""Small text pieces the panels share: rows that fit their width, bars, sparklines, charts.

Values are written by :mod:`infermon.views.fmt`, the same functions every other view uses, so a
figure reads the same on the dashboard, in ``--once`` and in the JSON. Colours come from the
theme: a row is built from plain text plus the component styles its widget passes in.

Nothing is ever cut in the middle of a word: a row that does not fit drops its least important
parts first, and a note that still does not fit ends at a word with ``…`` (the whole note is on
the "why" screen, key ``w``, and in ``--once``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.control import STRIP_CONTROL_CODES
from rich.style import Style
from rich.text import Span, Text

from infermon.live.figure import Figure
from infermon.views.fmt import note_text, source_text, value_text

BLOCKS = " ▏▎▍▌▋▊▉█"
SPARKS = "▁▂▃▄▅▆▇█"
ELLIPSIS = "…"
SOURCE_WIDTH = 15  # "engine-reported"
# A note shorter than this is not worth showing: the part is dropped instead.
MIN_NOTE = 8


# The control codes rich's Text removes from every string it is given.
STRIPPED_BY_RICH = re.compile("[" + "".join(re.escape(chr(code)) for code in STRIP_CONTROL_CODES) + "]")


def rich_text(plain: str, style: Style | str = "", spans: list[Span] | None = None, **options) -> Text:
    """``Text(plain, style=style, spans=spans, **options)``, without rich's pass over the characters.

    rich removes a few control codes from every string a Text is given with ``str.translate``,
    which is slow past ASCII: 5 µs for an 80-column row with a sparkline or a rule, against 0.5 µs
    for a regular-expression search, and the overview paid it twice for each of its twenty rows
    every second (a sixth of its drawing). Where the search finds none of those codes the string is
    set as it is; otherwise rich builds the Text. Where this rich keeps its characters differently
    (checked once, :func:`_direct_text_works`), rich always builds it."""
    if _DIRECT and not STRIPPED_BY_RICH.search(plain):
        text = Text(style=style, spans=spans, **options)
        text._text = [plain]
        text._length = len(plain)
        return text
    return Text(plain, style=style, spans=spans, **options)


def _direct_text_works() -> bool:
    """Whether a Text given its characters directly equals the one rich builds (rich keeps them in
    ``_text``, a list of strings, and their number in ``_length``): every attribute compared."""
    plain, spans = "ab ▂▃ ─", [Span(0, 2, "bold"), Span(3, 5, "red")]
    try:
        built = Text(plain, style="dim", spans=spans, no_wrap=True, end="")
        direct = Text(style="dim", spans=list(spans), no_wrap=True, end="")
        if not isinstance(getattr(direct, "_text", None), list) or not isinstance(getattr(direct, "_length", None), int):
            return False
        direct._text = [plain]
        direct._length = len(plain)
        names = [name for cls in type(built).__mro__ for name in getattr(cls, "__slots__", ())]
        names += list(getattr(built, "__dict__", {}))
        copy = direct.copy()
        copy.append("x")
        return (all(getattr(direct, name, None) == getattr(built, name, None) for name in names)
                and direct == built and len(direct) == len(built) and direct.plain == plain
                and copy.plain == plain + "x" and direct.cell_len == built.cell_len)
    except Exception:  # any change in rich's Text: build it the ordinary way
        return False


_DIRECT = _direct_text_works()


def fit(text: str, width: int, words: bool = True) -> str:
    """``text`` if it fits in ``width`` cells, else its longest prefix that ends at a word, with ``…``.

    A single word longer than ``width`` (a path, a URL) is the one case cut inside a word; so is a
    command line (``words=False``: its arguments are not words, and more of it is more useful).
    """
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    room = text[: width - 1]
    cut = room.rfind(" ")
    if cut > 0 and words:
        room = room[:cut]
    return room.rstrip(" ,;:·—-(/") + ELLIPSIS


@dataclass
class Part:
    text: str
    style: Style | str | None = None
    drop: int = 0  # 0: never dropped; parts with the highest number go first
    note: bool = False  # shortened at a word (down to MIN_NOTE) before anything is dropped
    rich: Text | None = None  # a pre-styled piece (a bar): kept or dropped whole


class Row:
    """One line built from parts, fitted to a width by dropping the least important parts.

    ``add`` parts in reading order; a part with ``drop`` > 0 is optional (the highest number is
    dropped first, and parts sharing a number go together); ``note`` parts shrink at a word first.
    """

    def __init__(self) -> None:
        self.parts: list[Part] = []

    def add(self, text: str, style: Style | str | None = None, drop: int = 0, note: bool = False) -> "Row":
        if text:
            self.parts.append(Part(text, style, drop, note))
        return self

    def add_text(self, text: Text, drop: int = 0) -> "Row":
        """A pre-styled piece (a bar), kept or dropped whole."""
        if text.plain:
            self.parts.append(Part(text.plain, None, drop, False, text))
        return self

    def text(self, width: int) -> Text:
        parts = list(self.parts)
        while True:
            length = sum(len(p.text) for p in parts)
            if length <= width:
                break
            notes = [p for p in parts if p.note]
            if notes:
                note = notes[-1]
                room = width - (length - len(note.text))
                lead = len(note.text) - len(note.text.lstrip())
                if room - lead >= MIN_NOTE:
                    parts[parts.index(note)] = Part(" " * lead + fit(note.text.lstrip(), room - lead), note.style,
                                                    note.drop, note.note)
                    continue
            droppable = [p.drop for p in parts if p.drop > 0]
            if droppable:
                worst = max(droppable)
                parts = [p for p in parts if p.drop != worst]
                continue
            if notes:
                parts.remove(notes[-1])
                continue
            # Only essential parts left and still too wide: the last one ends at a word (or goes,
            # when the ones before it already fill the row).
            last = parts[-1]
            room = width - (length - len(last.text))
            if room >= 2 or len(parts) == 1:
                parts[-1] = Part(fit(last.text, max(1, room)), last.style)
                break
            parts.pop()
        return joined(parts)


def joined(parts: list[Part]) -> Text:
    """The parts as one Text: what appending them one by one gives, built in one step (a row is
    a dozen parts, redrawn every second)."""
    pieces: list[str] = []
    spans: list[Span] = []
    offset = 0
    for part in parts:
        rich = part.rich
        if rich is not None:
            size = len(rich.plain)
            if rich.style:
                spans.append(Span(offset, offset + size, rich.style))
            spans.extend(Span(start + offset, end + offset, style) for start, end, style in rich.spans)
            pieces.append(rich.plain)
        else:
            size = len(part.text)
            if part.style and size:
                spans.append(Span(offset, offset + size, part.style))
            pieces.append(part.text)
        offset += size
    plain = "".join(pieces)
    if STRIPPED_BY_RICH.search(plain):  # rich drops control codes piece by piece: as it does
        return appended(parts)
    return rich_text(plain, no_wrap=True, overflow="crop", end="", spans=spans)


def appended(parts: list[Part]) -> Text:
    """The parts appended one by one, as rich does it."""
    out = Text(no_wrap=True, overflow="crop", end="")
    for part in parts:
        if part.rich is not None:
            out.append_text(part.rich)
        else:
            out.append(part.text, style=part.style)
    return out


def bar(fraction: float | None, width: int, style: Style | str = "bold", empty_style: Style | str = "dim",
        eighths: bool = True) -> Text:
    """A horizontal bar of ``width`` cells filled to ``fraction`` (clipped to 0–1), eighth-cell precise
    unless ``eighths`` is False (whole cells repaint less often)."""
    text = Text()
    if fraction is None:
        return Text("─" * width, style=empty_style)
    cells = max(0.0, min(1.0, fraction)) * width
    if not eighths:
        cells = float(round(cells))
    full = int(cells)
    text.append("█" * full, style=style)
    if full < width:
        partial = BLOCKS[int((cells - full) * 8)]
        text.append(partial if partial != " " else "", style=style)
        text.append("░" * (width - full - (1 if partial != " " else 0)), style=empty_style)
    return text


def sparkline(values, width: int, style: Style | str = "bold") -> Text:
    """The last ``width`` values as block characters scaled to their maximum (all zero: a flat line)."""
    points = list(values)[-width:] if width > 0 else []
    if not points:
        return Text("", style="dim")
    top = max(points)
    if top <= 0:
        return Text("▁" * len(points), style="dim")
    return rich_text("".join(SPARKS[min(7, int(v / top * 7.999))] if v > 0 else " " for v in points), style=style)


def chart(values, width: int, height: int, full_scale: float | None = None) -> list[str]:
    """The last ``width`` values as a bar chart ``height`` rows tall, scaled to ``full_scale`` (default:
    their maximum); rows top first. Each column's top cell is eighth-precise."""
    points = list(values)[-width:] if width > 0 else []
    top = full_scale if full_scale is not None else max(points, default=0.0)
    rows = [[" "] * len(points) for _ in range(height)]
    if top > 0:
        for column, value in enumerate(points):
            eighths = round(min(1.0, max(0.0, value) / top) * height * 8)
            for row in range(height):
                filled = eighths - row * 8
                if filled <= 0:
                    break
                rows[height - 1 - row][column] = "█" if filled >= 8 else SPARKS[filled - 1]
    return ["".join(r) for r in rows]


def figure_row(label: str, fig: Figure, styles: dict[str, Style] | None = None, label_width: int = 16,
               value_width: int = 13, note: str | None = None, value: str | None = None, width: int | None = None,
               source_width: int = SOURCE_WIDTH) -> Text:
    """``label ······ value  source  note`` on one line, fitted to ``width``; the note (or the reason
    for n/a) dims and ends at a word when it does not fit.

    ``styles`` maps ``label``, ``note`` and each source word to a Rich style (the panel's component
    classes, so themes colour them). ``value`` replaces the written value (two figures on one row).
    An n/a figure shows its reason where the source word would be.
    """
    styles = styles or {}
    row = Row()
    row.add(f"{fit(label, label_width):<{label_width}}", styles.get("label", "bold"))
    shown = value if value is not None and fig.value is not None else value_text(fig)
    row.add(f"{shown:>{value_width}} ")
    detail = note if note is not None else note_text(fig)
    if fig.value is None:
        row.add(detail or "n/a", styles.get("note", "dim"), note=True)
    else:
        word = source_text(fig)
        row.add(f"{word:<{source_width}}" if detail else word, styles.get(fig.source, "dim"))
        if detail:
            row.add(" " + detail, styles.get("note", "dim"), note=True)
    return row.text(width if width is not None else 10_000)


# Formatted figure rows, by what they are made of (a few frames of every panel's rows).
_ROWS: dict[tuple, Text] = {}
_ROWS_KEPT = 2048


@dataclass
class Columns:
    """Column widths shared by a panel's figure rows: label, value and source as wide as the widest
    entry, so rows line up and the note gets every cell that is left."""

    label: int
    value: int
    source: int
    width: int
    styles: dict

    @classmethod
    def of(cls, entries, width: int, styles: dict) -> "Columns":
        """``entries``: (label, figure, written value or None) of every row of the panel."""
        entries = list(entries)
        label = min(16, max((len(e[0]) for e in entries), default=8) + 1)
        value = max((len(e[2] if e[2] is not None and e[1].value is not None else value_text(e[1]))
                     for e in entries), default=8)
        source = max((len(source_text(e[1])) for e in entries if e[1].value is not None), default=7)
        return cls(label, value, source, width, styles)

    def row(self, label: str, fig: Figure, note: str | None = None, value: str | None = None) -> Text:
        # Most rows show the same figure as the frame before: formatting them again is most of a
        # panel's drawing, so rows are kept by everything they are made of (figures are frozen).
        key = (label, fig, note, value, self.label, self.value, self.width, self.source, tuple(self.styles.items()))
        found = _ROWS.get(key)
        if found is None:
            if len(_ROWS) >= _ROWS_KEPT:
                _ROWS.clear()
            found = _ROWS[key] = figure_row(label, fig, self.styles, self.label, self.value, note=note, value=value,
                                            width=self.width, source_width=self.source)
        return found.copy()

    def bar_row(self, label: str, fig: Figure, bar_of) -> Text:
        """``label value source`` and a bar in the cells left (``bar_of(width)`` → Text; at most 24)."""
        if fig.value is None:
            return self.row(label, fig)
        row = Row().add(f"{fit(label, self.label):<{self.label}}", self.styles.get("label"))
        row.add(f"{value_text(fig):>{self.value}} ")
        row.add(f"{source_text(fig):<{self.source}} ", self.styles.get(fig.source))
        room = self.width - self.label - self.value - self.source - 2
        if room >= 6:
            row.add_text(bar_of(min(24, room)), drop=3)
        return row.text(self.width)
