"""Rates on the source's clock: counter deltas over the timestamps the source itself gave.

The monitor samples on its own clock, but a source publishes on its own: the agent writes a record
once a second, an engine updates its counters when its steps finish. Dividing by the monitor's
interval turns a record that slipped behind into a whole second of "idle" and then a doubled rate.
Here a rate is ``(counter now − counter then) ÷ (source time now − source time then)``; a source
that has not published since the last tick keeps its last rate (never zero), marked stale once it
has been silent for :data:`STALE_INTERVALS` intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

# A source silent for this many intervals has its last rates marked stale.
STALE_INTERVALS = 3.0


@dataclass(frozen=True)
class Rate:
    """One counter's rate (per second) and, for totals, its increase over the interval."""

    per_s: float | None
    delta: float | None = None
    held: bool = False
    stale: bool = False
    why: str | None = None


@dataclass
class _Last:
    time: float
    counters: dict[str, float | None]
    rates: dict[str, Rate]
    seen_at: float


class SourceRates:
    """Rates of one source's counters (an engine endpoint, or one agent's process).

    ``update(source_time, counters, now)``: ``source_time`` is the source's own timestamp of the
    counters (any clock, seconds), ``now`` the monitor's monotonic clock (only to tell how long the
    source has been silent).
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: _Last | None = None

    def reset(self) -> None:
        self._last = None

    def hold(self, names, now: float, why: str) -> dict[str, Rate]:
        """No reading this tick (the endpoint did not answer): the last rates, held, with ``why``."""
        if self._last is None:
            return {name: Rate(None, why=why) for name in names}
        return self.update(self._last.time, {name: None for name in names}, now, why)

    def update(self, source_time: float | None, counters: dict[str, float | None], now: float,
               silent_why: str | None = None) -> dict[str, Rate]:
        last = self._last
        if source_time is None:
            return {name: Rate(None, why="the source gave no time for its counters") for name in counters}
        if last is None or source_time < last.time:
            why = "needs two readings of the counter" if last is None else "the source's clock went backwards"
            self._last = _Last(source_time, dict(counters), {}, now)
            return {name: Rate(None, why=why) for name in counters}
        if source_time == last.time:
            # Nothing new published: keep the last rates; they are not an idle source.
            silent = now - last.seen_at
            stale = silent > STALE_INTERVALS * max(self.interval_s, 0.05)
            held = {}
            for name in counters:
                rate = last.rates.get(name) or Rate(None, why="needs two readings of the counter")
                note = f"no new reading for {silent:.0f} s" if stale else (silent_why or rate.why)
                held[name] = Rate(rate.per_s, 0.0 if rate.per_s is not None else None, held=True, stale=stale, why=note)
            return held
        seconds = source_time - last.time
        rates: dict[str, Rate] = {}
        for name, value in counters.items():
            before = last.counters.get(name)
            if value is None:
                rates[name] = Rate(None, why="the source does not report it")
            elif before is None:
                rates[name] = Rate(None, why="needs two readings of the counter")
            elif value < before:
                rates[name] = Rate(None, why="the counter went backwards (restarted?): rate skipped this tick")
            else:
                rates[name] = Rate((value - before) / seconds, value - before)
        self._last = _Last(source_time, dict(counters), rates, now)
        return rates
