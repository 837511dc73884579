"""Histogram quantiles (Prometheus histogram_quantile semantics)."""

import math

from hypothesis import given, strategies as st

from infermon.model.histogram import bucket_delta, quantile

BUCKETS = [(0.1, 10.0), (0.5, 60.0), (1.0, 90.0), (math.inf, 100.0)]


def test_median_interpolates_inside_the_bucket():
    # rank 50 lies in (0.1, 0.5], which holds counts 10..60
    assert quantile(BUCKETS, 0.5) == 0.1 + 0.4 * (50 - 10) / 50


def test_top_quantile_in_inf_bucket_returns_largest_finite_bound():
    assert quantile(BUCKETS, 0.99) == 1.0


def test_empty_histogram():
    assert quantile([(0.1, 0.0), (math.inf, 0.0)], 0.5) is None
    assert quantile([], 0.5) is None


def test_delta_and_reset():
    later = [(0.1, 15.0), (0.5, 70.0), (1.0, 95.0), (math.inf, 110.0)]
    assert bucket_delta(BUCKETS, later) == [(0.1, 5.0), (0.5, 10.0), (1.0, 5.0), (math.inf, 10.0)]
    assert bucket_delta(later, BUCKETS) is None


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=10), st.floats(0, 1))
def test_quantile_stays_within_the_bounds(increments, q):
    counts, total = [], 0
    for inc in increments:
        total += inc
        counts.append(total)
    buckets = [(float(i + 1), float(c)) for i, c in enumerate(counts)] + [(math.inf, float(total))]
    value = quantile(buckets, q)
    assert value is None or 0.0 <= value <= len(increments)
