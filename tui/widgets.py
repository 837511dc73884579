"""The dashboard's building blocks: lines that repaint only the cells that changed, panels, tables.

Over SSH every repainted cell costs bytes, and every full-screen repaint costs the compositor a
frame's work. So a :class:`Line` is one row that never needs a layout pass; when its text changes
it marks only the changed cells dirty, and Textual writes only those to the terminal.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.geometry import Region
from textual.widget import Widget

from infermon.live.figure import DATASHEET, ENGINE, GIVEN, MEASURED, MODELED, NA
from infermon.live.view import LiveView
from infermon.tui.text import fit

SOURCE_CLASSES = {MEASURED: "source--measured", ENGINE: "source--engine", MODELED: "source--modeled",
                  DATASHEET: "source--datasheet", GIVEN: "source--given", NA: "source--na"}


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
    sa, sb = _cell_styles(old), _cell_styles(new)
    length = max(len(a), len(b))

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


class Line(Widget):
    """A one-row figure that repaints only the cells that changed, and only when they changed.

    ``collapse``: an empty line takes no row (used in panels sized to their content; showing or
    hiding it is a layout change, which is rare).
    """

    DEFAULT_CSS = "Line { height: 1; width: 1fr; text-wrap: nowrap; text-overflow: clip; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None, collapse: bool = False) -> None:
        super().__init__(id=id, classes=classes)
        self._shown: Text = Text()
        self.collapse = collapse
        if collapse:
            self.display = False

    @property
    def plain(self) -> str:
        return self._shown.plain

    def render(self) -> Text:
        return self._shown

    def set(self, text: Text | str) -> None:
        text = Text(text, no_wrap=True, end="") if isinstance(text, str) else text
        text.no_wrap = True
        old = self._shown
        span = changed_span(old, text)
        if span is None:
            return
        self._shown = text
        if self.collapse and bool(text.plain) != bool(old.plain):
            self.display = bool(text.plain)
            return
        width = self.size.width
        if not self.is_mounted or not width or old.cell_len > width:
            self.refresh()
            return
        first, end = span
        end = min(end, width)
        if first >= end:
            return
        self.refresh(Region(first, 0, end - first, 1))


class Paragraph(Widget):
    """Text whose height follows it (the verdict); relayout only when its row count changes."""

    DEFAULT_CSS = "Paragraph { height: auto; width: 1fr; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._shown: Text = Text()
        self._rows = 1

    @property
    def plain(self) -> str:
        return self._shown.plain

    def render(self) -> Text:
        return self._shown

    def _rows_for(self, text: Text) -> int:
        width = self.content_size.width
        if not width:
            return 1
        return max(1, len(text.wrap(self.app.console, width)))

    def set(self, text: Text | str) -> None:
        text = Text(text) if isinstance(text, str) else text
        if text.plain == self._shown.plain and text.spans == self._shown.spans and text.style == self._shown.style:
            return
        self._shown = text
        rows = self._rows_for(text)
        relayout = rows != self._rows
        self._rows = rows
        self.refresh(layout=relayout)

    def on_resize(self) -> None:
        self._rows = self._rows_for(self._shown)


class Panel(Vertical):
    """A bordered panel with a number key and a title; may be maximised.

    Subclasses list their lines in ``compose`` and draw them in :meth:`show`; ``line(id)`` gives the
    cached widget. A panel redraws its last view when its size changes (rows are fitted to widths).
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
        self._lines: dict[str, Line] = {}
        self._styles: dict[str, Style] | None = None

    def on_mount(self) -> None:
        self._lines = {line.id: line for line in self.query(Line) if line.id}

    def line(self, line_id: str) -> Line:
        found = self._lines.get(line_id)
        if found is None:
            found = self._lines[line_id] = self.query_one(f"#{line_id}", Line)
        return found

    @property
    def text_width(self) -> int:
        """Columns a line of this panel has (a guess before the first layout)."""
        return self.content_size.width or 76

    def style(self, component: str) -> Style:
        return self.get_component_rich_style(component, partial=True)

    def figure_styles(self) -> dict[str, Style]:
        if self._styles is None:
            styles = {source: self.style(cls) for source, cls in SOURCE_CLASSES.items()}
            styles["label"] = self.style("figure--label")
            styles["note"] = self.style("figure--note")
            styles["heading"] = self.style("figure--heading")
            self._styles = styles
        return self._styles

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None  # the theme changed: colours are read again at the next draw

    def draw(self, view: LiveView) -> None:
        self.last = view
        self.show(view)

    def on_resize(self) -> None:
        if self.last is not None and self.display:
            self.show(self.last)

    def show(self, view: LiveView) -> None:  # pragma: no cover - each panel overrides
        raise NotImplementedError


class RowTable(Vertical):
    """A table drawn as one :class:`Line` per row: a changed cell repaints only those cells.

    (A DataTable repaints the whole table for one changed cell, which at 1 Hz is most of an SSH
    link's budget.) Column widths only grow, so rows never shift. Columns that do not fit the width
    are left out from the right (``keep`` columns stay; the last of them, e.g. a command, ends at a
    word, or anywhere with ``words=False``). At most ``max_rows`` rows are drawn, with a line saying how many more there are.
    """

    DEFAULT_CSS = "RowTable { height: auto; }"

    def __init__(self, columns: tuple[str, ...], right: frozenset[str] = frozenset(),
                 keep: frozenset[str] = frozenset(), words: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.words = words
        self.columns = columns
        self.right = right
        self.keep = keep
        self.widths = [len(c) for c in columns]
        self.rows: list[Line] = []
        self._header: Line | None = None

    def compose(self) -> ComposeResult:
        self._header = Line(classes="table-header")
        yield self._header

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
        out = []
        for position, index in enumerate(shown):
            cell, column, cell_width = cells[index], self.columns[index], self.widths[index]
            if position == len(shown) - 1 and column not in self.right:
                used = sum(len(part) + 2 for part in out)
                out.append(fit(cell, max(1, width - used), words=self.words))
            else:
                out.append(cell.rjust(cell_width) if column in self.right else cell.ljust(cell_width))
        return "  ".join(out).rstrip()

    def set_rows(self, rows: list[tuple[str, ...]], styles: list[Style | str] | None = None,
                 max_rows: int | None = None, more_style: Style | str = "dim") -> None:
        for cells in rows:
            self.widths = [max(w, len(c)) for w, c in zip(self.widths, cells)]
        width = self.content_size.width or 200
        shown = self._shown_columns(width)
        if self._header is not None:
            self._header.set(Text(self._format(self.columns, shown, width), style="bold"))
        hidden = 0
        if max_rows is not None and len(rows) > max_rows:
            hidden = len(rows) - (max_rows - 1)
            rows = rows[: max_rows - 1]
        count = len(rows) + (1 if hidden else 0)
        while len(self.rows) < count:
            line = Line()
            self.rows.append(line)
            self.mount(line)
        while len(self.rows) > count:
            self.rows.pop().remove()
        for index, cells in enumerate(rows):
            style = styles[index] if styles else ""
            self.rows[index].set(Text(self._format(cells, shown, width), style=style, no_wrap=True, end=""))
        if hidden:
            self.rows[-1].set(Text(f"… {hidden} more", style=more_style))


class Block(Widget):
    """Several rows of text (a chart, a plot) that repaint only the cells that changed, row by row."""

    DEFAULT_CSS = "Block { height: 1fr; width: 1fr; text-wrap: nowrap; text-overflow: clip; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._rows: list[Text] = []
        self._text = Text()

    def render(self) -> Text:
        return self._text

    def set_rows(self, rows: list[Text]) -> None:
        old = self._rows
        if len(rows) == len(old) and all(a.plain == b.plain and a.spans == b.spans for a, b in zip(old, rows)):
            return
        self._rows = rows
        self._text = Text("\n").join(rows)
        self._text.no_wrap = True
        width = self.size.width
        if not self.is_mounted or not width or len(rows) != len(old) or any(r.cell_len > width for r in old):
            self.refresh()
            return
        for y, (before, after) in enumerate(zip(old, rows)):
            span = changed_span(before, after)
            if span is not None and span[0] < width:
                self.refresh(Region(span[0], y, min(span[1], width) - span[0], 1))
