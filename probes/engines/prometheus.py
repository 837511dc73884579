"""Prometheus text handling shared by every engine: filtering, parsing, label aggregation, histograms.

The text is parsed with prometheus_client's parser; every series is then looked
up by its *sample* name, so a histogram's ``_sum`` and a counter's ``_total``
are addressed as the engine writes them.

Several label sets: engines run one series per data-parallel replica (vLLM's
``engine`` label, SGLang's ``dp_rank``) and may repeat a replica's figure once
per tensor/pipeline/expert rank (``tp_rank``, ``pp_rank``, ``moe_ep_rank``;
``pid`` in prometheus_client's multiprocess mode). Series differing only in
those shard labels are one figure (the largest is kept); distinct replicas add
up (counters, requests, capacity) except fractions (KV usage), which are
averaged over replicas.

Values that no counter or gauge of ours can take (negative, NaN, ±Inf) never
pass: the figure is skipped and the reason names the series and its value.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from infermon.probes.snapshot import Histogram

Labels = dict[str, str]
Sample = tuple[Labels, float]

# Labels that name a shard of one replica rather than a replica: series differing only in
# these repeat one figure.
SHARD_LABELS = frozenset({"tp_rank", "pp_rank", "moe_ep_rank", "attn_tp_rank", "attn_cp_rank", "pid"})


@dataclass(frozen=True)
class Exposition:
    """A parsed ``/metrics`` text: sample name → [(labels, value)], or a reason it could not be had."""

    series: dict[str, list[Sample]] = field(default_factory=dict)
    why: str | None = None

    def get(self, name: str) -> list[Sample]:
        """Samples of ``name``; a counter written without ``_total`` is found either way
        (prometheus_client's parser appends ``_total`` to counter-typed samples lacking it)."""
        return self.series.get(name) or self.series.get(name + "_total") or []

    def first(self, names: Iterable[str]) -> tuple[str | None, list[Sample]]:
        """The first of ``names`` that has samples, and its samples."""
        for name in names:
            found = self.get(name)
            if found:
                return name, found
        return None, []


_SAMPLE_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum")


def family_of(sample_name: str) -> str:
    """``vllm:generation_tokens_total`` → ``vllm:generation_tokens``; ``x_bucket`` → ``x``."""
    for suffix in _SAMPLE_SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name[: -len(suffix)]
    return sample_name


# ---------------------------------------------------------------- filtering (before the parser)


@functools.lru_cache(maxsize=32)
def _family_filter(families: frozenset[str]) -> re.Pattern[str]:
    """One multiline regex keeping the TYPE lines and samples of ``families`` (and ``*_info`` series).

    HELP lines and ``*_created`` samples are dropped: nothing here reads them and
    the parser costs ~15 µs a line; a single regex pass over the text is far
    cheaper than a Python loop over its lines.
    """
    names = "|".join(re.escape(f) for f in sorted(families, key=len, reverse=True))
    sample = rf"(?:{names})(?:_total|_bucket|_count|_sum)?|[^\s{{#]+_info"
    return re.compile(rf"^(?:# TYPE (?:{names}|[^\s]+_info) .*|(?:{sample})(?:\{{.*|\s.*))\n", re.MULTILINE)


_CREATED_LINE = re.compile(r"^[^\s{#]+_created[\s{].*\n", re.MULTILINE)
_BUCKET_LINE = re.compile(r"^[^\s{#]+_bucket[\s{].*\n", re.MULTILINE)


def _block(text: str, family: str) -> str | None:
    """The lines of ``family`` from its ``# TYPE`` line to the next comment line, or None."""
    for typed in (family, family + "_total"):
        start = text.find(f"# TYPE {typed} ")
        if start < 0 or (start > 0 and text[start - 1] != "\n"):
            continue
        end = text.find("\n#", start + 1)
        block = text[start:] if end < 0 else text[start:end + 1]
        return block if block.endswith("\n") else block + "\n"
    return None


def only_families(text: str, families: frozenset[str], totals_only: frozenset[str] = frozenset()) -> str:
    """The lines of ``families`` only; of ``totals_only`` (histograms) only ``_sum`` and ``_count``.

    The format keeps each family in one block that starts at its ``# TYPE``
    line, so a few ``str.find`` calls cut the blocks out; a text without TYPE
    lines for them (untyped metrics) goes through the regex filter instead.
    """
    blocks = []
    for family in families:
        block = _block(text, family)
        if block is not None:
            blocks.append(block)
    summaries = []
    for family in totals_only - families:
        block = _block(text, family)
        if block is not None:
            summaries.append(block)
    if not blocks and not summaries:
        return "".join(m.group(0) for m in _family_filter(families | totals_only).finditer(text))
    joined = "".join(blocks) + _BUCKET_LINE.sub("", "".join(summaries))
    return _CREATED_LINE.sub("", joined)


def parse_exposition(text: str, families: Iterable[str] | None = None,
                     totals_only: Iterable[str] = ()) -> Exposition:
    """Parse Prometheus text format with prometheus_client. Never raises: garbage, a body
    cut off mid-line, or an empty answer gives an ``Exposition`` with ``why`` set and no series.

    ``families`` (metric family names) restricts parsing to those families and
    ``*_info`` series, and ``totals_only`` adds histograms of which only ``_sum``
    and ``_count`` are kept: the parser costs ~15 µs a line and an exposition has
    hundreds of bucket lines nobody reads on every scrape.

    A partially parsed text is discarded on purpose: a number cut in half still parses
    and would turn into a wildly wrong counter.
    """
    if not text.strip():
        return Exposition(why="empty metrics text")
    if not text.endswith("\n"):
        # The format requires every line, the last too, to end in a line feed.
        return Exposition(why="metrics text ends mid-line (truncated?)")
    if families is not None:
        text = only_families(text, frozenset(families), frozenset(totals_only))
    skeleton, words = _cut_values(text)
    series = _series_from_shape(skeleton, words)
    if series is not None:
        return Exposition(series=series)
    # Imported here: prometheus_client's package import (its HTTP exposition included) is 55 ms,
    # which commands that never scrape (attach, calc) should not pay.
    from prometheus_client.parser import text_string_to_metric_families

    parsed: list[tuple[str, Labels, float, object]] = []
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                parsed.append((s.name, dict(s.labels), float(s.value), s.timestamp))
    except Exception as exc:  # the parser raises ValueError, IndexError, … on garbage
        detail = str(exc).strip().replace("\n", " ")
        detail = detail[:60] + "…" if len(detail) > 60 else detail
        return Exposition(why=f"not valid Prometheus text ({detail or type(exc).__name__})")
    series = {}
    for name, labels, value, _ in parsed:
        series.setdefault(name, []).append((labels, value))
    _keep_shape(skeleton, words, parsed)
    return Exposition(series=series)


# The shapes of recent expositions: the text with each sample line's value cut off → the name
# and labels prometheus_client parsed from each sample line, in order. From one scrape to the
# next an engine's label sets repeat and only the values change, and the parser's label scanning
# is most of a scrape's cost (15–70 µs a line), so a known shape needs only the values read.
_SHAPES: dict[str, tuple[tuple[str, Labels], ...]] = {}
_SHAPES_KEPT = 8  # a few engines, each with its every-tick and its every-5th-scrape families


def _cut_values(text: str) -> tuple[str, list[str]]:
    """(the text with the last word of every sample line cut off, those words in order)."""
    skeleton, words = [], []
    for line in text.split("\n"):
        if not line or line[0] == "#":
            skeleton.append(line)
            continue
        head, _, word = line.rpartition(" ")
        skeleton.append(head)
        words.append(word)
    return "\n".join(skeleton), words


def _value(word: str) -> float | None:
    """A sample value as prometheus_client reads it (no ``_``, no surrounding space), else None."""
    if "_" in word or word != word.strip():
        return None
    try:
        return float(word)
    except ValueError:
        return None


def _series_from_shape(skeleton: str, words: list[str]) -> dict[str, list[Sample]] | None:
    shape = _SHAPES.get(skeleton)
    if shape is None:
        return None
    values = [_value(word) for word in words]
    if None in values:
        return None  # let the parser say what is wrong with it
    series: dict[str, list[Sample]] = {}
    for (name, labels), value in zip(shape, values):
        series.setdefault(name, []).append((dict(labels), value))
    return series


def _keep_shape(skeleton: str, words: list[str], parsed: list[tuple[str, Labels, float, object]]) -> None:
    """Keep the shape only where each sample line's last word is exactly its value: not with
    timestamps, blank-looking lines or anything else the parser reads differently."""
    if len(parsed) != len(words):
        return
    for word, (_name, _labels, value, timestamp) in zip(words, parsed):
        seen = _value(word)
        if timestamp is not None or seen is None or not (seen == value or (math.isnan(seen) and math.isnan(value))):
            return
    if len(_SHAPES) >= _SHAPES_KEPT:
        _SHAPES.clear()
    _SHAPES[skeleton] = tuple((name, dict(labels)) for name, labels, _value_, _ts in parsed)


def count_prefixed_lines(text: str, prefix: str) -> int:
    """Lines of raw exposition text starting with ``prefix`` (cheap: no parsing)."""
    return text.count("\n" + prefix) + text.startswith(prefix)


def count_prefixed_samples(series: Mapping[str, object], prefix: str) -> int:
    """Samples of a parsed exposition whose names start with ``prefix``."""
    return sum(len(samples) if isinstance(samples, list) else 1
               for name, samples in series.items() if name.startswith(prefix))


# ---------------------------------------------------------------- aggregation over label sets


def replica_key(labels: Labels, drop: frozenset[str] = frozenset()) -> tuple:
    """The labels that tell replicas apart (shard labels, and ``drop``, left out)."""
    return tuple(sorted((k, v) for k, v in labels.items() if k not in SHARD_LABELS and k not in drop))


def bad_value(name: str, samples: list[Sample]) -> str | None:
    """Why ``samples`` cannot be a count or a level: a negative, NaN or infinite value."""
    for labels, value in samples:
        if math.isnan(value):
            return f"{name} is NaN: skipped"
        if math.isinf(value):
            return f"{name} is {'+' if value > 0 else '-'}Inf: skipped"
        if value < 0:
            return f"{name} is negative ({value:g}): skipped"
    return None


def _per_replica(samples: list[Sample]) -> list[float]:
    """One value per replica: shard duplicates collapse to their largest value."""
    replicas: dict[tuple, float] = {}
    for labels, value in samples:
        key = replica_key(labels)
        replicas[key] = max(replicas.get(key, value), value)
    return list(replicas.values())


def combine_sum(samples: list[Sample]) -> float | None:
    """Σ over replicas (counters, request counts, capacities)."""
    values = _per_replica(samples)
    return sum(values) if values else None


def combine_mean(samples: list[Sample]) -> float | None:
    """Mean over replicas (fractions such as KV usage; replicas hold equal-sized caches)."""
    values = _per_replica(samples)
    return sum(values) / len(values) if values else None


def checked_sum(expo: Exposition, names: Iterable[str]) -> tuple[float | None, str | None]:
    """Σ over replicas of the first of ``names`` present, or (None, why) when absent or bad."""
    name, samples = expo.first(names)
    if name is None:
        return None, None
    problem = bad_value(name, samples)
    return (None, problem) if problem else (combine_sum(samples), None)


def checked_mean(expo: Exposition, names: Iterable[str]) -> tuple[float | None, str | None]:
    """Mean over replicas of the first of ``names`` present, or (None, why) when absent or bad."""
    name, samples = expo.first(names)
    if name is None:
        return None, None
    problem = bad_value(name, samples)
    return (None, problem) if problem else (combine_mean(samples), None)


def histogram_of(expo: Exposition, base: str, with_buckets: bool = True) -> tuple[Histogram | None, str | None]:
    """Cumulative buckets Σ over replicas, without the +Inf bucket (it equals ``count``, and
    infinity is not JSON); (None, why) when a bucket, sum or count is negative, NaN or infinite.
    ``with_buckets`` False: only sum and count (the buckets were filtered out before parsing)."""
    counts = expo.get(base + "_count")
    if not counts:
        return None, None
    buckets = expo.get(base + "_bucket") if with_buckets else []
    sums = expo.get(base + "_sum")
    for suffix, samples in (("_count", counts), ("_sum", sums)):
        problem = bad_value(base + suffix, samples)
        if problem:
            return None, problem
    problem = bad_value(base + "_bucket", [(labels, v) for labels, v in buckets if labels.get("le") != "+Inf"])
    if problem:
        return None, problem
    # Pick one label set per replica (the one with the largest count), then add replicas up.
    chosen: dict[tuple, tuple[Labels, float]] = {}
    for labels, value in counts:
        key = replica_key(labels)
        if key not in chosen or value > chosen[key][1]:
            chosen[key] = (labels, value)
    wanted = {tuple(sorted(labels.items())) for labels, _ in chosen.values()}

    def picked(labels: Labels, drop: frozenset[str] = frozenset()) -> bool:
        return tuple(sorted((k, v) for k, v in labels.items() if k not in drop)) in wanted

    by_bound: dict[float, float] = {}
    for labels, value in buckets:
        if not picked(labels, frozenset({"le"})):
            continue
        try:
            bound = float(labels.get("le", "nan"))
        except ValueError:
            continue
        if math.isfinite(bound):
            by_bound[bound] = by_bound.get(bound, 0.0) + value
    total_sum = sum(v for labels, v in sums if picked(labels))
    total_count = sum(v for _, v in chosen.values())
    return Histogram(buckets=tuple(sorted(by_bound.items())), sum=total_sum, count=total_count), None


def first_histogram(expo: Exposition, bases: Iterable[str],
                    with_buckets: bool = True) -> tuple[Histogram | None, str | None]:
    """The histogram of the first of ``bases`` present (see ``histogram_of``)."""
    for base in bases:
        found, why = histogram_of(expo, base, with_buckets)
        if found is not None or why is not None:
            return found, why
    return None, None


# ---------------------------------------------------------------- labels


def label(samples: list[Sample], *names: str) -> str | None:
    """The first non-empty value of any of the label ``names`` among ``samples``."""
    for labels, _ in samples:
        for name in names:
            if labels.get(name):
                return labels[name]
    return None


def version_label(expo: Exposition, prefix: str) -> str | None:
    """A ``version`` label on any ``<prefix>…_info`` series."""
    for name, samples in expo.series.items():
        if name.startswith(prefix) and name.endswith("_info"):
            found = label(samples, "version")
            if found:
                return found
    return None
