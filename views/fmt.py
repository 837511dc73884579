"""Human-readable figures: SI bytes, rates, times and counts (GB = 1e9 B, TFLOP/s = 1e12)."""

from __future__ import annotations

import math
import re

from infermon.model.digits import sig3

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


def figure_table(title: str, figure_width: int = 25, value_width: int = 17, source_width: int = 9):
    """A Rich table of figure / value / source / note rows, fixed widths so tables line up."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                  show_header=False, pad_edge=False, expand=True)
    table.add_column("figure", style="cyan", no_wrap=True, width=figure_width)
    table.add_column("value", justify="right", no_wrap=True, width=value_width)
    table.add_column("source", style="dim", no_wrap=True, width=source_width)
    table.add_column("note", style="dim", ratio=1)
    return table


# How each unit of :data:`infermon.live.view.FIGURE_INFO` is written, everywhere it is shown.
_BY_UNIT = {
    "tokens/s": lambda v: f"{sig3(v)} tok/s",
    "steps/s": lambda v: f"{sig3(v)} steps/s",
    "preemptions/s": lambda v: f"{sig3(v)}/s",
    "B/s": lambda v: si(v, "B/s"),
    "FLOP/s": lambda v: si(v, "FLOP/s"),
    "B": lambda v: si(v, "B"),
    "B/token": lambda v: f"{v:,.0f} B",
    "FLOP/B": lambda v: f"{sig3(v)} FLOP/B",
    "fraction": lambda v: f"{v * 100:.1f}%",
    "s": seconds,
    "sequences": sig3,
    "tokens": lambda v: f"{int(round(v)):,}",
    "requests": lambda v: f"{int(round(v)):,}",
    "preemptions": lambda v: f"{int(round(v)):,}",
    "retries": lambda v: f"{int(round(v)):,}",
    "OOMs": lambda v: f"{int(round(v)):,}",
}


def value_text(fig) -> str:
    """A :class:`~infermon.live.figure.Figure`'s value as every view writes it (``n/a`` when missing)."""
    if fig.value is None:
        return "n/a"
    write = _BY_UNIT.get(fig.unit)
    return write(fig.value) if write else f"{sig3(fig.value)} {fig.unit}"


def source_text(fig) -> str:
    """The source word a view prints beside the value (``stale`` appended when it is)."""
    return f"{fig.source}, stale" if fig.stale else fig.source


def note_text(fig) -> str:
    """What a view prints after the source: the reason when missing, else the note."""
    return (fig.why or "") if fig.value is None else (fig.note or "")


def ports_text(ports, shown: int = 2) -> str:
    """Listening ports, the first ``shown`` and how many more (a vLLM worker listens on a dozen
    ephemeral loopback ports; the API server's one port is what matters)."""
    ports = list(ports)
    text = ",".join(map(str, ports[:shown]))
    return f"{text} +{len(ports) - shown}" if len(ports) > shown else text


# C0 controls, DEL and C1 controls: a terminal acts on them (ESC starts a sequence that can clear
# the screen, retitle the window or write the clipboard). Text from the watched process, its files
# and its endpoints may carry them; what infermon shows of it shows them as U+FFFD instead. So do
# lone surrogates: the bytes of a command line or a path that are not UTF-8 arrive as U+DC80–U+DCFF
# (Python's surrogateescape), which no terminal can be sent; the output's encoder wrote each as six
# characters ("\\udcff") in a cell the row had measured as one, pushing the row's end off screen.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with every control character replaced by U+FFFD (one cell for one character, so
    styles laid over the text keep their places)."""
    return CONTROL_CHARACTERS.sub("\ufffd", text) if CONTROL_CHARACTERS.search(text) else text

