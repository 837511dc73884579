"""Quantiles of Prometheus histograms, as ``histogram_quantile`` computes them."""

from __future__ import annotations

import math
from typing import Sequence

Buckets = Sequence[tuple[float, float]]


def bucket_delta(before: Buckets, after: Buckets) -> list[tuple[float, float]] | None:
    """Per-bucket increase between two scrapes of one cumulative histogram (None if they differ in
    shape or a count went backwards, i.e. the engine restarted)."""
    if len(before) != len(after):
        return None
    out = []
    for (le_a, count_a), (le_b, count_b) in zip(before, after):
        if le_a != le_b or count_b < count_a:
            return None
        out.append((le_b, count_b - count_a))
    return out


def quantile(buckets: Buckets, q: float) -> float | None:
    """The q-quantile (0–1) of a cumulative histogram, interpolating linearly inside a bucket.

    rank = q × total; find the first bucket whose cumulative count ≥ rank and
    interpolate between its lower and upper bound. The +Inf bucket returns the
    largest finite bound. None when the histogram is empty.
    """
    ordered = sorted(buckets, key=lambda b: b[0])
    if not ordered or not 0 <= q <= 1:
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound
