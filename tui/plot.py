"""A small log-log roofline drawn in text: the two roofs, the ridge, and the operating point."""

from __future__ import annotations

import math

from rich.text import Text


def roofline_text(width: int, height: int, bandwidth: float | None, peak: float | None,
                  intensity: float | None, achieved: float | None,
                  roof_style: str = "bold", point_style: str = "bold red", ridge_style: str = "dim") -> Text:
    """Rows of text: attainable FLOP/s = min(peak, bandwidth × intensity) on log axes.

    x spans three decades below the ridge to two above it; y spans four decades
    below the peak. The point sits at (operating intensity, achieved FLOP/s).
    """
    width, height = max(12, width), max(4, height)
    if not bandwidth or not peak:
        return Text("roofline: device peaks unknown", style="dim")
    ridge = peak / bandwidth
    x_lo, x_hi = math.log10(ridge) - 3, math.log10(ridge) + 2
    y_hi = math.log10(peak) + 0.15
    y_lo = y_hi - 4.3
    plot_h = height - 1  # the last row holds the axis labels
    grid = [[" "] * width for _ in range(plot_h)]
    styles = [[""] * width for _ in range(plot_h)]

    def column(x: float) -> int:
        return round((math.log10(x) - x_lo) / (x_hi - x_lo) * (width - 1))

    def row(y: float) -> int | None:
        if y <= 0:
            return None
        r = round((y_hi - math.log10(y)) / (y_hi - y_lo) * (plot_h - 1))
        return r if 0 <= r < plot_h else None

    ridge_col = column(ridge)
    for r in range(plot_h):
        if 0 <= ridge_col < width:
            grid[r][ridge_col], styles[r][ridge_col] = "┊", ridge_style
    for c in range(width):
        x = 10 ** (x_lo + c / (width - 1) * (x_hi - x_lo))
        y = min(peak, bandwidth * x)
        r = row(y)
        if r is not None:
            grid[r][c] = "─" if y >= peak else "╱"
            styles[r][c] = roof_style
    if intensity and achieved and intensity > 0 and achieved > 0:
        c = min(width - 1, max(0, column(intensity)))
        r = row(achieved)
        if r is None:
            r = plot_h - 1
        grid[r][c], styles[r][c] = "●", point_style

    text = Text()
    for r in range(plot_h):
        # One span per run of a style: a span per cell would cost escape codes per cell on the wire.
        start = 0
        for c in range(1, width + 1):
            if c == width or styles[r][c] != styles[r][start]:
                text.append("".join(grid[r][start:c]), style=styles[r][start] or None)
                start = c
        text.append("\n")
    left = f"{10 ** x_lo:.2g}"
    mid = f"ridge {ridge:.3g}"
    right = f"{10 ** x_hi:.3g} FLOP/B"
    gap = width - len(left) - len(mid) - len(right)
    if gap >= 2:
        axis = left + " " * (gap // 2) + mid + " " * (gap - gap // 2) + right
    else:
        axis = f"ridge {ridge:.3g} FLOP/B".center(width)
    text.append(axis[:width], style="dim")
    return text
