"""Small text pieces the panels share: bars, labelled figures, source tags."""

from __future__ import annotations

from rich.text import Text

from infermon.views.fmt import percent

BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float | None, width: int, style: str = "bold", empty_style: str = "dim", eighths: bool = True) -> Text:
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


def sparkline(values, width: int, style: str = "bold") -> Text:
    """The last ``width`` values as block characters scaled to their maximum (all zero: a flat line)."""
    points = list(values)[-width:] if width > 0 else []
    if not points:
        return Text("", style="dim")
    top = max(points)
    if top <= 0:
        return Text("▁" * len(points), style="dim")
    return Text("".join(SPARKS[min(7, int(v / top * 7.999))] if v > 0 else " " for v in points), style=style)


def source_tag(source: str | None) -> Text:
    """``measured`` / ``modeled`` / ``datasheet`` in a fixed 9-cell column (blank when n/a)."""
    if source is None:
        return Text(" " * 9)
    label = source
    style = {"measured": "green", "modeled": "cyan", "datasheet": "blue", "calibrated": "green"}.get(label, "dim")
    return Text(f"{label:<9}", style=style)


def figure_row(label: str, value: str, source: str | None, note: str = "", label_width: int = 16,
               value_width: int = 14) -> Text:
    """``label ······ value  source  note`` on one line (the note dims)."""
    text = Text()
    text.append(f"{label:<{label_width}}"[:label_width], style="bold")
    text.append(f"{value:>{value_width}} ")
    text.append_text(source_tag(source))
    if note:
        text.append(" " + note, style="dim")
    return text


def share(fraction: float | None) -> str:
    return percent(fraction)
