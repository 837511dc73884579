"""One figure as every view shows it: value, unit, where it came from, and why it is missing.

Sources (the same words in the dashboard, ``--once``, the JSON, recordings and the exporter):

- ``measured``: counted by infermon or the hardware (NVML, GPM, psutil, the in-process agent, a host
  calibration run);
- ``engine-reported``: read from the inference engine's own ``/metrics`` (counters, gauges, its
  capacity and its own estimates);
- ``modeled``: infermon's arithmetic on measured or reported inputs (DESIGN §4);
- ``datasheet``: the GPU table's published figures;
- ``given``: a figure the user passed on the command line;
- ``n/a``: not available; ``why`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MEASURED = "measured"
ENGINE = "engine-reported"
MODELED = "modeled"
DATASHEET = "datasheet"
GIVEN = "given"
NA = "n/a"
SOURCES = (MEASURED, ENGINE, MODELED, DATASHEET, GIVEN, NA)


@dataclass(frozen=True)
class Figure:
    """``value`` in ``unit`` (SI base units: B, B/s, FLOP/s, s, tokens, tokens/s; ``fraction`` is 0–1).

    ``why`` is set exactly when the value is missing; ``note`` says what the value rests on when that
    matters for reading it ("ctx 512", "last 60 s", "KV reads not included"). ``stale``: the source
    has not published for a few intervals and this is its last value.
    """

    value: float | None
    unit: str
    source: str
    why: str | None = None
    note: str | None = None
    stale: bool = False

    @property
    def known(self) -> bool:
        return self.value is not None


def figure(value: float | None, unit: str, source: str, why: str | None = None, note: str | None = None,
           stale: bool = False) -> Figure:
    """A figure, or ``n/a`` with ``why`` when ``value`` is missing or not a finite number.

    Non-finite values never leave this layer: JSON has no NaN or infinity, and a view that showed
    one would show nonsense.
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        return Figure(None, unit, NA, why=f"not a finite number ({value!r})")
    if value is None:
        return Figure(None, unit, NA, why=why or "not available", note=note)
    return Figure(float(value), unit, source, None, note, stale)


def na(unit: str, why: str) -> Figure:
    return Figure(None, unit, NA, why=why)
