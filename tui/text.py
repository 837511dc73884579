"""Small text pieces the panels share: bars, sparklines, figure rows with their source tag.

Values are written by :mod:`infermon.views.fmt`, the same functions every other view uses, so a
figure reads the same on the dashboard, in ``--once`` and in the JSON. Colours come from the
theme: a row is built from plain text plus the component styles its widget passes in.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from infermon.live.figure import Figure
from infermon.views.fmt import note_text, source_text, value_text

BLOCKS = " ▏▎▍▌▋▊▉█"
SOURCE_WIDTH = 15  # "engine-reported"


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


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values, width: int, style: Style | str = "bold") -> Text:
    """The last ``width`` values as block characters scaled to their maximum (all zero: a flat line)."""
    points = list(values)[-width:] if width > 0 else []
    if not points:
        return Text("", style="dim")
    top = max(points)
    if top <= 0:
        return Text("▁" * len(points), style="dim")
    return Text("".join(SPARKS[min(7, int(v / top * 7.999))] if v > 0 else " " for v in points), style=style)


def figure_row(label: str, fig: Figure, styles: dict[str, Style] | None = None, label_width: int = 16,
               value_width: int = 13, note: str | None = None, value: str | None = None) -> Text:
    """``label ······ value  source  note`` on one line; the note (or the reason for n/a) dims.

    ``styles`` maps ``label``, ``note`` and each source word to a Rich style (the panel's component
    classes, so themes colour them). ``value`` replaces the written value (two figures on one row).
    """
    styles = styles or {}
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f"{label:<{label_width}}"[:label_width], style=styles.get("label", "bold"))
    text.append(f"{value if value is not None and fig.value is not None else value_text(fig):>{value_width}} ")
    word = source_text(fig)
    text.append(f"{word:<{SOURCE_WIDTH}}", style=styles.get(fig.source, "dim"))
    detail = note if note is not None else note_text(fig)
    if detail:
        text.append(" " + detail, style=styles.get("note", "dim"))
    return text
