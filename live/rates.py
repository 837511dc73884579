"""Rates on the source's clock: counter deltas over the timestamps the source itself gave.

The monitor samples on its own clock, but a source publishes on its own: the agent writes a record
once a second, an engine updates its counters when its steps finish. Dividing by the monitor's
interval turns a record that slipped behind into a whole second of "idle" and then a doubled rate.
Here a rate is ``(counter now − counter then) ÷ (source time now − source time then)``; a source
that has not published since the last tick keeps its last rate (never zero), marked stale once it
has been silent for :data:`STALE_INTERVALS` intervals.

A counter that moves in steps coarser than the interval (an agent's decode steps on a slow
device, a server counting a request's tokens when it finishes) reads zero between its increases.
While such a pause is shorter than :data:`GAP_SLACK` × the time between its last two increases, the
last rate is held ("between increases"), and the next increase is spread over the whole time since
the previous one; a longer pause is a real zero.
"""

from __future__ import annotations

from dataclasses import dataclass

# A source silent for this many intervals has its last rates marked stale.
STALE_INTERVALS = 3.0
# A pause in a counter's increases shorter than this many of its usual gaps is not idleness.
GAP_SLACK = 1.5


# Why a rate is n/a after the first reading of its counter (a rate is the difference of two).
NEEDS_TWO_READINGS = "needs two readings of the counter"


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
    # Per counter: (source time, value) of its last increase, and the time between its last two.
    increases: dict[str, tuple[float, float, float | None]] | None = None


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
            why = NEEDS_TWO_READINGS if last is None else "the source's clock went backwards"
            self._last = _Last(source_time, dict(counters), {}, now,
                               {name: (source_time, value, None) for name, value in counters.items() if value is not None})
            return {name: Rate(None, why=why) for name in counters}
        if source_time == last.time:
            # Nothing new published: keep the last rates; they are not an idle source.
            silent = now - last.seen_at
            stale = silent > STALE_INTERVALS * max(self.interval_s, 0.05)
            held = {}
            for name in counters:
                rate = last.rates.get(name) or Rate(None, why=NEEDS_TWO_READINGS)
                note = f"no new reading for {silent:.0f} s" if stale else (silent_why or rate.why)
                held[name] = Rate(rate.per_s, 0.0 if rate.per_s is not None else None, held=True, stale=stale, why=note)
            return held
        seconds = source_time - last.time
        rates: dict[str, Rate] = {}
        increases = dict(last.increases or {})
        for name, value in counters.items():
            before = last.counters.get(name)
            previous = last.rates.get(name)
            if value is None:
                rates[name] = Rate(None, why="the source does not report it")
            elif before is None:
                rates[name] = Rate(None, why=NEEDS_TWO_READINGS)
                increases[name] = (source_time, value, None)
            elif value < before:
                rates[name] = Rate(None, why="the counter went backwards (restarted?): rate skipped this tick")
                increases.pop(name, None)
            elif value > before:
                since = increases.get(name)
                if previous is not None and previous.held and previous.delta == 0 and since is not None:
                    # The end of a pause between increases: spread it over the whole time since the last one.
                    rate = (value - since[1]) / (source_time - since[0])
                else:
                    rate = (value - before) / seconds
                increases[name] = (source_time, value, source_time - since[0] if since is not None else None)
                rates[name] = Rate(rate, value - before)
            else:
                since = increases.get(name)
                gap = since[2] if since is not None else None
                if (previous is not None and previous.per_s and gap
                        and source_time - since[0] < GAP_SLACK * gap):
                    rates[name] = Rate(previous.per_s, 0.0, held=True,
                                       why=f"between increases: the counter moves every {gap:.1f} s")
                else:
                    rates[name] = Rate(0.0, 0.0)
        self._last = _Last(source_time, dict(counters), rates, now, increases)
        return rates
