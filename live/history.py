"""What the dashboard remembers across views: recent rates for sparklines, peaks, latency windows."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from infermon.model.histogram import bucket_delta, quantile
from infermon.live.derive import LiveView
from infermon.probes.snapshot import Histogram

# Samples kept: 20 minutes at 1 Hz (a 48-cell sparkline of 5-sample cells covers 4 minutes).
SPARK_POINTS = 1200
LATENCY_WINDOW_S = 60.0
# Samples per sparkline cell.
SPARK_BUCKET = 5


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


class History:
    def __init__(self, points: int = SPARK_POINTS) -> None:
        self.generation: deque[float] = deque(maxlen=points)
        self.prompt: deque[float] = deque(maxlen=points)
        # (monotonic s, ttft, inter_token) whenever a histogram changed, for the last minute or so:
        # keeping whole views would hold megabytes at 10 Hz.
        self.latency_points: deque[tuple[float, Histogram | None, Histogram | None]] = deque()
        self.peak_generation: float | None = None
        self.peak_mbu: float | None = None
        self.samples = 0

    def add(self, view: LiveView) -> None:
        self.samples += 1
        gen = view.rates.generation_tokens_per_s
        prompt = view.rates.prompt_tokens_per_s
        if gen is not None:
            self.generation.append(gen)
            self.peak_generation = max(self.peak_generation or 0.0, gen)
        if prompt is not None:
            self.prompt.append(prompt)
        if view.analysis.mbu is not None:
            self.peak_mbu = max(self.peak_mbu or 0.0, view.analysis.mbu)
        engine = view.snapshot.engine
        if engine is not None and (engine.ttft is not None or engine.inter_token is not None):
            last = self.latency_points[-1] if self.latency_points else None
            if last is None or last[1] is not engine.ttft or last[2] is not engine.inter_token:
                self.latency_points.append((view.snapshot.monotonic, engine.ttft, engine.inter_token))
            cutoff = view.snapshot.monotonic - 2 * LATENCY_WINDOW_S
            while len(self.latency_points) > 2 and self.latency_points[0][0] < cutoff:
                self.latency_points.popleft()

    def buckets(self, values, size: int = SPARK_BUCKET) -> list[float]:
        """Means of complete groups of ``size`` samples: a sparkline cell per 5 samples changes once
        per 5 samples instead of shifting every tick."""
        points = list(values)
        whole = len(points) // size * size
        return [sum(points[i:i + size]) / size for i in range(0, whole, size)]

    def reset_peaks(self) -> None:
        self.peak_generation = None
        self.peak_mbu = None

    def latency(self, which: str) -> Latency | None:
        """Percentiles of ``ttft`` or ``inter_token`` over the last minute, else since the engine started."""
        slot = 1 if which == "ttft" else 2
        points = [(entry[0], entry[slot]) for entry in self.latency_points if entry[slot] is not None]
        if not points:
            return None
        newest_time, current = points[-1]
        cutoff = newest_time - LATENCY_WINDOW_S
        for when, old in points:
            if when < cutoff or old is current:
                continue
            delta = bucket_delta(_with_inf(old), _with_inf(current))
            if delta and delta[-1][1] > 0:
                return Latency(quantile(delta, 0.5), quantile(delta, 0.95), f"last {LATENCY_WINDOW_S:.0f} s")
            break
        buckets = _with_inf(current)
        return Latency(quantile(buckets, 0.5), quantile(buckets, 0.95), "since start")
