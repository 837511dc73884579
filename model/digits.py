"""How many digits a figure is written with, in every view and in the verdict's sentence."""

from __future__ import annotations


def sig3(value: float) -> str:
    """Three significant digits with thousands separators (1,234 / 123 / 12.3 / 1.23): jitter in the
    fourth digit does not change the text, so a dashboard does not repaint for it."""
    magnitude = abs(value)
    if magnitude >= 1000:
        digits = len(str(int(magnitude)))
        return f"{round(value, -(digits - 3)):,.0f}"
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"
