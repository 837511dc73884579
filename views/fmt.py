"""Human-readable figures: SI bytes, rates, times and counts (GB = 1e9 B, TFLOP/s = 1e12)."""

from __future__ import annotations

import math

_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: float | None, unit: str, digits: int = 3) -> str:
    """``si(13.5e9, "B") == "13.5 GB"``; ``n/a`` for None; keeps ``digits`` significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    for scale, prefix in _PREFIXES:
        if magnitude >= scale:
            return f"{sign}{_sig(magnitude / scale, digits)} {prefix}{unit}"
    return f"{sign}{_sig(magnitude, digits)} {unit}"


def _sig(value: float, digits: int) -> str:
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(value))))
    return f"{value:.{decimals}f}"


def seconds(value: float | None) -> str:
    """``0.0233 → "23.3 ms"``, ``2.5 → "2.50 s"``, µs below a millisecond."""
    if value is None:
        return "n/a"
    if value >= 1:
        return f"{_sig(value, 3)} s"
    if value >= 1e-3:
        return f"{_sig(value * 1e3, 3)} ms"
    return f"{_sig(value * 1e6, 3)} µs"


def count(value: float | int | None) -> str:
    """Integer with thousands separators; ``n/a`` for None."""
    if value is None:
        return "n/a"
    return f"{int(value):,}"


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def figure_table(title: str, figure_width: int = 25, value_width: int = 17):
    """A Rich table of figure / value / source / note rows, fixed widths so tables line up."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                  show_header=False, pad_edge=False, expand=True)
    table.add_column("figure", style="cyan", no_wrap=True, width=figure_width)
    table.add_column("value", justify="right", no_wrap=True, width=value_width)
    table.add_column("source", style="dim", no_wrap=True, width=9)
    table.add_column("note", style="dim", ratio=1)
    return table
