"""What the derivation layer remembers across ticks: recent rates, peaks, latency windows.

It runs in the sampling thread (never on the dashboard's event loop) and hands views only small,
finished things: sparkline buckets, peaks and percentiles.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from infermon.model.histogram import bucket_delta, quantile
from infermon.probes.snapshot import Histogram

# Samples kept: 20 minutes at 1 Hz; a sparkline of 5-sample cells shows the last few minutes.
SPARK_POINTS = 1200
LATENCY_WINDOW_S = 60.0
# Samples per sparkline cell.
SPARK_BUCKET = 5
# Cells kept in a view: wider than any terminal's sparkline.
SPARK_CELLS = 120


@dataclass(frozen=True)
class Latency:
    """p50 and p95 (s) and the window they cover ("last 60 s" or "since start")."""

    p50: float | None
    p95: float | None
    window: str


def _with_inf(hist: Histogram) -> list[tuple[float, float]]:
    """Buckets with the +Inf bucket (= count) put back: the probe drops it to keep JSON strict."""
    buckets = list(hist.buckets)
    if not buckets or buckets[-1][0] != math.inf:
        buckets.append((math.inf, hist.count))
    return buckets


class LatencyWindow:
    """Percentiles of one cumulative histogram over the last minute (else since the source started)."""

    def __init__(self) -> None:
        # (time s, histogram) whenever it changed, for about two windows.
        self.points: deque[tuple[float, Histogram]] = deque()

    def add(self, when: float, hist: Histogram | None) -> None:
        if hist is None:
            return
        if not self.points or self.points[-1][1] != hist:
            self.points.append((when, hist))
        cutoff = when - 2 * LATENCY_WINDOW_S
        while len(self.points) > 2 and self.points[0][0] < cutoff:
            self.points.popleft()

    def latency(self) -> Latency | None:
        if not self.points:
            return None
        newest_time, current = self.points[-1]
        cutoff = newest_time - LATENCY_WINDOW_S
        for when, old in self.points:
            if when < cutoff or old is current:
                continue
            delta = bucket_delta(_with_inf(old), _with_inf(current))
            if delta and delta[-1][1] > 0:
                return Latency(quantile(delta, 0.5), quantile(delta, 0.95), f"last {LATENCY_WINDOW_S:.0f} s")
            break
        buckets = _with_inf(current)
        if current.count <= 0:
            return None
        return Latency(quantile(buckets, 0.5), quantile(buckets, 0.95), "since start")


class History:
    """Recent generation and prompt rates (for sparklines) and peaks."""

    def __init__(self, points: int = SPARK_POINTS) -> None:
        self.generation: deque[float] = deque(maxlen=points)
        self.prompt: deque[float] = deque(maxlen=points)
        self.peak_generation: float | None = None
        self.peak_mbu: float | None = None
        self.samples = 0

    def add(self, generation: float | None, prompt: float | None, mbu: float | None) -> None:
        self.samples += 1
        if generation is not None:
            self.generation.append(generation)
            self.peak_generation = max(self.peak_generation or 0.0, generation)
        if prompt is not None:
            self.prompt.append(prompt)
        if mbu is not None:
            self.peak_mbu = max(self.peak_mbu or 0.0, mbu)

    def reset_peaks(self) -> None:
        self.peak_generation = None
        self.peak_mbu = None

    @staticmethod
    def buckets(values, size: int = SPARK_BUCKET, cells: int = SPARK_CELLS) -> tuple[float, ...]:
        """Means of complete groups of ``size`` samples, the last ``cells`` of them: a sparkline cell
        changes once per ``size`` samples instead of the whole line shifting every tick."""
        points = list(values)
        whole = len(points) // size * size
        means = [sum(points[i:i + size]) / size for i in range(0, whole, size)]
        return tuple(means[-cells:])
