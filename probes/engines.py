"""Inference engines' Prometheus ``/metrics``, mapped to one canonical ``EngineSample``.

One tick = one GET of ``/metrics`` (plus, for llama.cpp, one GET of ``/slots``;
plus, once per probe, an info endpoint for the model name and version), all
within one ``timeout_s`` budget. The text is parsed with prometheus_client's
parser; every series is then looked up by its *sample* name, so a histogram's
``_sum`` and a counter's ``_total`` are addressed as the engine writes them.

Where the canonical fields come from (first name present wins):

================  ============================  ============================  ==================================  ===========================
field             vLLM                          SGLang                        TGI                                 llama.cpp
================  ============================  ============================  ==================================  ===========================
generation (ctr)  vllm:generation_tokens_total  sglang:generation_tokens_     tgi_request_generated_tokens_sum    llamacpp:tokens_predicted_
                                                total                         (histogram sum, per finished req.)  total (per finished req.)
prompt (ctr)      vllm:prompt_tokens_total      sglang:prompt_tokens_total    tgi_request_input_length_sum        llamacpp:prompt_tokens_total
running           vllm:num_requests_running     sglang:num_running_reqs       tgi_batch_current_size              llamacpp:requests_processing
waiting           vllm:num_requests_waiting     sglang:num_queue_reqs         tgi_queue_size                      llamacpp:requests_deferred
kv_usage (0–1)    vllm:kv_cache_usage_perc,     sglang:token_usage            —                                   llamacpp:kv_cache_usage_ratio
                  vllm:gpu_cache_usage_perc                                                                       (older builds only)
kv capacity       vllm:cache_config_info        sglang:max_total_num_tokens   tgi_batch_max_total_tokens          Σ slot n_ctx from /slots
                  num_gpu_blocks × block_size
preemptions       vllm:num_preemptions_total    sglang:num_retracted_         —                                   —
                                                requests_total
ttft              vllm:time_to_first_token_     sglang:time_to_first_token_   —                                   —
                  seconds                       seconds
inter_token       vllm:inter_token_latency_     sglang:inter_token_latency_   tgi_request_mean_time_per_token_    —
                  seconds (older: vllm:time_    seconds (older: sglang:time_  duration (per-request means)
                  per_output_token_seconds)     per_output_token_seconds)
================  ============================  ============================  ==================================  ===========================

Averaged gauges (vLLM v0's ``avg_generation_throughput_toks_per_s``, SGLang's
``gen_throughput``, llama.cpp's ``predicted_tokens_seconds`` — which every
scrape resets) are never read: rates come from counter deltas over wall time.
SGLang's ``num_retracted_reqs`` is a per-interval gauge, not a total, so only
its counter ``num_retracted_requests_total`` (newer SGLang) gives preemptions.

Several label sets: engines run one series per data-parallel replica (vLLM's
``engine`` label, SGLang's ``dp_rank``) and SGLang may repeat a replica's figure
once per tensor/pipeline/expert rank (``tp_rank``, ``pp_rank``, ``moe_ep_rank``;
``pid`` in multiprocess mode). Series differing only in those shard labels are
one figure (the largest is kept); distinct replicas add up — counters, requests,
capacity — except fractions (KV usage), which are averaged over replicas.
"""

from __future__ import annotations

import functools
import re

import json
import math
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from prometheus_client.parser import text_string_to_metric_families

from infermon.probes.http import DEFAULT_MAX_BYTES, fetch
from infermon.probes.llamacpp import NO_SLOTS_HINT, read_slots
from infermon.probes.snapshot import EngineSample, Histogram

Labels = dict[str, str]
Sample = tuple[Labels, float]

ENGINE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("vllm", "vllm:"),
    ("sglang", "sglang:"),
    ("tgi", "tgi_"),
    ("llamacpp", "llamacpp:"),
)
DEFAULT_PORTS: dict[str, tuple[int, ...]] = {
    "vllm": (8000,),
    "sglang": (30000,),
    "tgi": (3000, 9000),  # TGI's HTTP port, and its separate --prometheus-port
    "llamacpp": (8080,),
}
# Labels that name a shard of one replica rather than a replica: series differing only in
# these repeat one figure.
SHARD_LABELS = frozenset({"tp_rank", "pp_rank", "moe_ep_rank", "attn_tp_rank", "attn_cp_rank", "pid"})

HINT_SGLANG_METRICS = "start SGLang with --enable-metrics"
HINT_LLAMACPP_METRICS = "start llama-server with --metrics"
HINT_VLLM_PORT = "is this vLLM's API port? (--port)"
HINT_TGI_PORT = "is this TGI's HTTP port (--port) or its --prometheus-port?"
_MISSING_METRICS_HINTS = {
    "sglang": HINT_SGLANG_METRICS,
    "llamacpp": HINT_LLAMACPP_METRICS,
    "vllm": HINT_VLLM_PORT,
    "tgi": HINT_TGI_PORT,
}


# ---------------------------------------------------------------- parsing


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


def _line_metric_name(line: str) -> str | None:
    if line.startswith("#"):
        parts = line.split(None, 3)
        return parts[2] if len(parts) >= 3 and parts[1] in ("HELP", "TYPE") else None
    name = line.split("{", 1)[0].split(None, 1)
    return name[0] if name else None


@functools.lru_cache(maxsize=16)
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


def _only_families(text: str, families: frozenset[str]) -> str:
    """The lines of ``families`` only.

    The format keeps each family in one block that starts at its ``# TYPE``
    line, so a few ``str.find`` calls cut the blocks out; a text without TYPE
    lines for them (untyped metrics) goes through the regex filter instead.
    """
    blocks = []
    for family in families:
        for typed in (family, family + "_total"):
            start = text.find(f"# TYPE {typed} ")
            if start < 0 or (start > 0 and text[start - 1] != "\n"):
                continue
            end = text.find("\n#", start + 1)
            blocks.append(text[start:] if end < 0 else text[start:end + 1])
            break
    if not blocks:
        return "".join(m.group(0) for m in _family_filter(families).finditer(text))
    joined = "".join(block if block.endswith("\n") else block + "\n" for block in blocks)
    return _CREATED_LINE.sub("", joined)


def parse_exposition(text: str, families: Iterable[str] | None = None) -> Exposition:
    """Parse Prometheus text format with prometheus_client. Never raises: garbage, a body
    cut off mid-line, or an empty answer gives an ``Exposition`` with ``why`` set and no series.

    ``families`` (metric family names, e.g. from ``families_for``) restricts parsing to
    those families and ``*_info`` series: the parser costs ~15 µs a line and a vLLM
    exposition has hundreds of bucket lines nobody here reads.

    A partially parsed text is discarded on purpose: a number cut in half still parses
    and would turn into a wildly wrong counter.
    """
    if not text.strip():
        return Exposition(why="empty metrics text")
    if not text.endswith("\n"):
        # The format requires every line, the last too, to end in a line feed.
        return Exposition(why="metrics text ends mid-line (truncated?)")
    if families is not None:
        text = _only_families(text, frozenset(families))
    series: dict[str, list[Sample]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                value = float(s.value)
                series.setdefault(s.name, []).append((dict(s.labels), value))
    except Exception as exc:  # the parser raises ValueError, IndexError, … on garbage
        detail = str(exc).strip().replace("\n", " ")
        detail = detail[:60] + "…" if len(detail) > 60 else detail
        return Exposition(why=f"not valid Prometheus text ({detail or type(exc).__name__})")
    return Exposition(series=series)


def engine_of_text(text: str) -> str | None:
    """The engine whose prefix starts the most lines of raw exposition text (cheap: no parsing)."""
    counts = {kind: text.count("\n" + prefix) + text.startswith(prefix) for kind, prefix in ENGINE_PREFIXES}
    best = max(counts, key=counts.get)
    return best if counts[best] else None


def detect_engine(metrics: Exposition | Mapping[str, object]) -> str | None:
    """The engine whose prefix the most samples carry: vllm, sglang, tgi, llamacpp, or None."""
    names = metrics.series if isinstance(metrics, Exposition) else metrics
    counts = {kind: 0 for kind, _ in ENGINE_PREFIXES}
    for name, samples in names.items():
        for kind, prefix in ENGINE_PREFIXES:
            if name.startswith(prefix):
                counts[kind] += len(samples) if isinstance(samples, list) else 1
    best = max(counts, key=counts.get)
    return best if counts[best] else None


# ---------------------------------------------------------------- aggregation over label sets


def _replica_key(labels: Labels, drop: frozenset[str] = frozenset()) -> tuple:
    return tuple(sorted((k, v) for k, v in labels.items() if k not in SHARD_LABELS and k not in drop))


def _per_replica(samples: list[Sample]) -> list[float]:
    """One value per replica: shard duplicates collapse to their largest value."""
    replicas: dict[tuple, float] = {}
    for labels, value in samples:
        if math.isnan(value):
            continue
        key = _replica_key(labels)
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


def histogram_of(expo: Exposition, base: str) -> Histogram | None:
    """Cumulative buckets Σ over replicas, without the +Inf bucket (it equals ``count``,
    and infinity is not JSON)."""
    buckets = expo.get(base + "_bucket")
    sums = expo.get(base + "_sum")
    counts = expo.get(base + "_count")
    if not counts:
        return None
    # Pick one label set per replica (the one with the largest count), then add replicas up.
    chosen: dict[tuple, tuple[Labels, float]] = {}
    for labels, value in counts:
        key = _replica_key(labels)
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
    return Histogram(buckets=tuple(sorted(by_bound.items())), sum=total_sum, count=total_count)


# ---------------------------------------------------------------- per-engine mapping


@dataclass(frozen=True)
class EngineNames:
    """Where each canonical figure comes from in one engine's exposition (first name present
    wins) and, in ``never``, why figures this engine does not report at all are missing."""

    generation_tokens_total: tuple[str, ...]
    prompt_tokens_total: tuple[str, ...]
    requests_running: tuple[str, ...]
    requests_waiting: tuple[str, ...]
    kv_usage: tuple[str, ...] = ()
    kv_capacity_tokens: tuple[str, ...] = ()
    preemptions_total: tuple[str, ...] = ()
    ttft: tuple[str, ...] = ()
    inter_token: tuple[str, ...] = ()
    never: Mapping[str, str] = field(default_factory=dict)
    info_path: str | None = None  # fetched once per probe for model name / version

    def families(self, histograms: bool = True) -> frozenset[str]:
        """The metric families these names belong to (what ``parse_exposition`` must keep);
        without the latency histograms when ``histograms`` is False."""
        names = (*self.generation_tokens_total, *self.prompt_tokens_total, *self.requests_running,
                 *self.requests_waiting, *self.kv_usage, *self.kv_capacity_tokens,
                 *self.preemptions_total)
        if histograms:
            names += (*self.ttft, *self.inter_token)
        return frozenset(family_of(name) for name in names)


ENGINE_NAMES: dict[str, EngineNames] = {
    "vllm": EngineNames(
        generation_tokens_total=("vllm:generation_tokens_total",),
        prompt_tokens_total=("vllm:prompt_tokens_total",),
        requests_running=("vllm:num_requests_running",),
        requests_waiting=("vllm:num_requests_waiting",),
        kv_usage=("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        kv_capacity_tokens=("vllm:cache_config_info",),  # labels num_gpu_blocks × block_size
        preemptions_total=("vllm:num_preemptions_total",),
        ttft=("vllm:time_to_first_token_seconds",),
        inter_token=("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
        info_path="/version",
    ),
    "sglang": EngineNames(
        generation_tokens_total=("sglang:generation_tokens_total",),
        prompt_tokens_total=("sglang:prompt_tokens_total",),
        requests_running=("sglang:num_running_reqs",),
        requests_waiting=("sglang:num_queue_reqs",),
        kv_usage=("sglang:token_usage",),
        kv_capacity_tokens=("sglang:max_total_num_tokens",),
        preemptions_total=("sglang:num_retracted_requests_total",),
        ttft=("sglang:time_to_first_token_seconds",),
        inter_token=("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
        never={"version": "SGLang does not report its version in /metrics"},
    ),
    "tgi": EngineNames(
        generation_tokens_total=("tgi_request_generated_tokens_sum",),
        prompt_tokens_total=("tgi_request_input_length_sum",),
        requests_running=("tgi_batch_current_size",),
        requests_waiting=("tgi_queue_size",),
        kv_capacity_tokens=("tgi_batch_max_total_tokens",),
        inter_token=("tgi_request_mean_time_per_token_duration",),
        never={
            "kv_usage": "TGI reports no KV-cache usage",
            "preemptions_total": "TGI reports no preemptions",
            "ttft": "TGI reports no time-to-first-token histogram",
        },
        info_path="/info",
    ),
    "llamacpp": EngineNames(
        generation_tokens_total=("llamacpp:tokens_predicted_total",),
        prompt_tokens_total=("llamacpp:prompt_tokens_total",),
        requests_running=("llamacpp:requests_processing",),
        requests_waiting=("llamacpp:requests_deferred",),
        kv_usage=("llamacpp:kv_cache_usage_ratio",),
        never={
            "kv_usage": "this llama-server reports no KV-cache usage (older builds had llamacpp:kv_cache_usage_ratio)",
            "preemptions_total": "llama-server reports no preemptions",
            "ttft": "llama-server reports no latency histograms",
            "inter_token": "llama-server reports no latency histograms",
        },
        info_path="/props",
    ),
}


def _vllm_kv_capacity(samples: list[Sample]) -> int | None:
    """Σ over engines of num_gpu_blocks × block_size (tokens), from ``vllm:cache_config_info`` labels."""
    per_engine: dict[tuple, int] = {}
    for labels, _ in samples:
        try:
            tokens = int(labels["num_gpu_blocks"]) * int(labels["block_size"])
        except (KeyError, ValueError):  # "None" before the engine has profiled memory
            continue
        per_engine[_replica_key(labels)] = tokens
    return sum(per_engine.values()) if per_engine else None


def _label(samples: list[Sample], *names: str) -> str | None:
    for labels, _ in samples:
        for name in names:
            if labels.get(name):
                return labels[name]
    return None


def _version_label(expo: Exposition, prefix: str) -> str | None:
    for name, samples in expo.series.items():
        if name.startswith(prefix) and name.endswith("_info"):
            found = _label(samples, "version")
            if found:
                return found
    return None


def sample_from_exposition(expo: Exposition, kind: str | None = None, url: str | None = None) -> EngineSample:
    """Map one parsed exposition to an ``EngineSample`` (pure: no I/O).

    ``kind`` is detected from the metric names when not given. Every figure left None
    has a reason in ``why``.
    """
    if expo.why:
        return EngineSample(kind=kind or "unknown", url=url, why={"engine": expo.why})
    detected = detect_engine(expo)
    kind = detected or kind
    if detected is None:
        hint = _MISSING_METRICS_HINTS.get(kind or "")
        return EngineSample(kind=kind or "unknown", url=url,
                            why={"engine": "no inference-engine metrics in this /metrics"},
                            hints=(hint,) if hint else ())
    names = ENGINE_NAMES[kind]
    prefix = dict(ENGINE_PREFIXES)[kind]
    why: dict[str, str] = {}
    values: dict[str, object] = {}

    def missing(field_name: str, wanted: tuple[str, ...]) -> None:
        why[field_name] = names.never.get(field_name) or f"{kind} exposes no {' or '.join(wanted)}"

    for field_name, combine in (
        ("generation_tokens_total", combine_sum),
        ("prompt_tokens_total", combine_sum),
        ("requests_running", combine_sum),
        ("requests_waiting", combine_sum),
        ("preemptions_total", combine_sum),
        ("kv_usage", combine_mean),
    ):
        wanted = getattr(names, field_name)
        _, samples = expo.first(wanted)
        value = combine(samples) if samples else None
        if value is None:
            missing(field_name, wanted)
        elif field_name == "kv_usage" and not -1e-6 <= value <= 1.0 + 1e-6:
            why[field_name] = f"KV usage {value:g} is outside 0–1"
        else:
            values[field_name] = value

    _, capacity_samples = expo.first(names.kv_capacity_tokens)
    if kind == "vllm":
        capacity = _vllm_kv_capacity(capacity_samples)
    else:
        total = combine_sum(capacity_samples) if capacity_samples else None
        capacity = int(total) if total else None
    if capacity:
        values["kv_capacity_tokens"] = capacity
    elif kind == "llamacpp":  # EngineProbe fills these from /slots
        for field_name in ("kv_capacity_tokens", "slots_decoded", "slots_processing"):
            why[field_name] = "comes from llama-server's /slots, not /metrics"
    else:
        if kind == "vllm" and capacity_samples:
            why["kv_capacity_tokens"] = "vllm:cache_config_info has no num_gpu_blocks yet"
        else:
            missing("kv_capacity_tokens", names.kv_capacity_tokens)

    for field_name in ("ttft", "inter_token"):
        wanted = getattr(names, field_name)
        hist = next((h for h in (histogram_of(expo, base) for base in wanted) if h is not None), None)
        if hist is None:
            missing(field_name, wanted)
        else:
            values[field_name] = hist

    labelled = [s for group in (names.generation_tokens_total, names.requests_running, names.prompt_tokens_total)
                for s in expo.first(group)[1]]
    model_name = _label(labelled, "model_name", "model")
    if model_name:
        values["model_name"] = model_name
    else:
        why["model_name"] = f"{kind} metrics carry no model_name label"
    version = _version_label(expo, prefix)
    if version:
        values["version"] = version
    else:
        why["version"] = names.never.get("version", f"{kind} metrics carry no version")

    if "requests_running" in values:
        values["batch"] = values["requests_running"]
    else:
        why["batch"] = "no running-requests figure"
    return EngineSample(kind=kind, url=url, why=why, **values)


def parse_engine_text(text: str, histograms: bool = True) -> Exposition:
    """Parse only the families the engine named by the text's prefixes is mapped from
    (everything, when no engine prefix shows, so garbage is still reported as such)."""
    guess = engine_of_text(text)
    return parse_exposition(text, ENGINE_NAMES[guess].families(histograms) if guess else None)


def _apply_info(sample: EngineSample, kind: str, info: object) -> EngineSample:
    """Model name and version from an engine's info endpoint (vLLM /version, TGI /info,
    llama.cpp /props), where the metrics lacked them."""
    if not isinstance(info, dict):
        return sample
    pairs = {
        "vllm": (None, "version"),
        "tgi": ("model_id", "version"),
        "llamacpp": ("model_path", "build_info"),
    }.get(kind, (None, None))
    why = dict(sample.why)
    changes: dict[str, object] = {}
    for field_name, key in zip(("model_name", "version"), pairs):
        if getattr(sample, field_name) is not None:
            continue
        value = info.get(key) if key else None
        if isinstance(value, (str, int, float)) and str(value):
            changes[field_name] = str(value)
            why.pop(field_name, None)
    return replace(sample, why=why, **changes) if changes else sample


# ---------------------------------------------------------------- the probe


def _metrics_url(url: str) -> str:
    """``http://host:port`` alone means its ``/metrics``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url  # fetch() will say what is wrong with it, on the first sample
    if parts.path in ("", "/"):
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/metrics", parts.query, ""))
    return url


def _base_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _failure_hints(kind: str | None, status: int | None) -> tuple[str, ...]:
    if status in (404, 501) and kind in _MISSING_METRICS_HINTS:
        return (_MISSING_METRICS_HINTS[kind],)
    return ()


HISTOGRAM_EVERY = 5


class EngineProbe:
    """Scrapes one engine's ``/metrics`` per ``sample()``; never raises.

    ``kind`` (vllm, sglang, tgi, llamacpp) is what the process tree suggests; the metric
    names decide when they name an engine. All requests of one tick share ``timeout_s``.
    """

    def __init__(self, url: str, kind: str | None = None, timeout_s: float = 1.0,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.url = _metrics_url(url)
        self.kind = kind
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._info: dict | None = None
        self._info_tries = 0
        self._scrapes = 0
        self._latency: dict[str, object] = {}
        self._latency_why: dict[str, str] = {}

    def sample(self) -> EngineSample:
        try:
            return self._sample()
        except Exception as exc:  # belt and braces: a probe never raises to its caller
            return EngineSample(kind=self.kind or "unknown", url=self.url,
                                why={"engine": f"internal error: {type(exc).__name__}: {exc}"})

    def _sample(self) -> EngineSample:
        deadline = time.monotonic() + self.timeout_s
        got = fetch(self.url, self.timeout_s, self.max_bytes, expect="prometheus")
        if not got.ok:
            return EngineSample(kind=self.kind or "unknown", url=self.url, why={"engine": got.why or "failed"},
                                hints=_failure_hints(self.kind, got.status))
        # Latency histograms are most of a scrape's lines and the parser costs ~15 µs a line:
        # they are parsed every HISTOGRAM_EVERY scrapes (percentiles want a longer window anyway).
        with_histograms = self._scrapes % HISTOGRAM_EVERY == 0
        self._scrapes += 1
        expo = parse_engine_text(got.body.decode("utf-8", errors="replace"), histograms=with_histograms)
        sample = sample_from_exposition(expo, kind=self.kind, url=self.url)
        if "engine" in sample.why:
            return sample
        sample = self._carry_latency(sample, with_histograms)
        if sample.kind == "llamacpp":
            sample = self._add_slots(sample, deadline)
        info_path = ENGINE_NAMES[sample.kind].info_path
        if info_path and (sample.model_name is None or sample.version is None):
            sample = self._add_info(sample, info_path, deadline)
        return sample

    def _carry_latency(self, sample: EngineSample, parsed: bool) -> EngineSample:
        if parsed:
            self._latency = {"ttft": sample.ttft, "inter_token": sample.inter_token}
            self._latency_why = {k: v for k, v in sample.why.items() if k in ("ttft", "inter_token")}
            return sample
        why = {k: v for k, v in sample.why.items() if k not in ("ttft", "inter_token")}
        why.update(self._latency_why)
        return replace(sample, why=why, **self._latency)

    def _add_slots(self, sample: EngineSample, deadline: float) -> EngineSample:
        why = dict(sample.why)
        remaining = deadline - time.monotonic()
        if remaining <= 0.01:
            reading_why, reading = "no time left in this tick for /slots", None
        else:
            reading = read_slots(_base_url(self.url), remaining)
            reading_why = reading.why
        changes: dict[str, object] = {}
        if reading is not None and reading.decoded is not None:
            changes["slots_decoded"] = reading.decoded
        else:
            why["slots_decoded"] = reading_why or "no /slots figure"
        if reading is not None and reading.processing is not None:
            changes["slots_processing"] = reading.processing
            # llama.cpp's requests_processing gauge resets on every scrape (by anyone);
            # the slots being processed right now are the live batch.
            changes["batch"] = float(reading.processing)
        else:
            why["slots_processing"] = reading_why or "no /slots figure"
        if reading is not None and reading.n_ctx_total:
            changes["kv_capacity_tokens"] = reading.n_ctx_total
        else:
            why["kv_capacity_tokens"] = f"needs the slots' n_ctx from /slots: {reading_why}"
        for field_name in changes:
            why.pop(field_name, None)
        hints = sample.hints + ((NO_SLOTS_HINT,) if reading_why == NO_SLOTS_HINT else ())
        return replace(sample, why=why, hints=hints, **changes)

    def _add_info(self, sample: EngineSample, path: str, deadline: float) -> EngineSample:
        # Fetched until one definite answer (at most 3 tries), then kept: model and version do not change.
        if self._info is None and self._info_tries < 3 and deadline - time.monotonic() > 0.01:
            self._info_tries += 1
            got = fetch(_base_url(self.url) + path, deadline - time.monotonic(), 1_000_000, expect="json")
            if got.ok:
                try:
                    loaded = json.loads(got.body)
                except ValueError:
                    loaded = None
                self._info = loaded if isinstance(loaded, dict) else {}
            elif got.status is not None:
                self._info = {}
        if self._info:
            sample = _apply_info(sample, sample.kind, self._info)
        why = dict(sample.why)
        if sample.model_name is None:
            why["model_name"] = f"neither the metrics nor {path} name the model"
        if sample.version is None:
            why["version"] = f"neither the metrics nor {path} give a version"
        return replace(sample, why=why)


# ---------------------------------------------------------------- discovery


def candidate_urls(ports: Iterable[int], framework: str) -> list[str]:
    """``/metrics`` URLs to try, in order: the framework's default ports among the listening
    ones, then the other listening ports ascending. With no ports known, the default ports
    (all engines' when the framework names none)."""
    listening = list(dict.fromkeys(int(p) for p in ports))
    preferred = DEFAULT_PORTS.get(framework) or tuple(p for ps in DEFAULT_PORTS.values() for p in ps)
    if listening:
        ordered = [p for p in preferred if p in listening] + sorted(p for p in listening if p not in preferred)
    else:
        ordered = list(preferred)
    return [f"http://127.0.0.1:{port}/metrics" for port in ordered]


def discover(ports: Iterable[int], framework: str, timeout_s: float = 1.0,
             budget_s: float | None = None) -> tuple[str | None, str]:
    """Find the engine's metrics endpoint: the first candidate that answers Prometheus text
    with a known engine prefix. Returns (url, what was found) or (None, why nothing was).

    Candidates are tried one at a time (one request each, ``timeout_s`` each) and the
    search stops after ``budget_s`` (default 5 × ``timeout_s``) so a tree with many
    silent ports (NCCL, ZMQ) cannot stall the start.
    """
    urls = candidate_urls(ports, framework)
    budget = 5 * timeout_s if budget_s is None else budget_s
    stop_at = time.monotonic() + budget
    failures: list[str] = []
    for index, url in enumerate(urls):
        remaining = stop_at - time.monotonic()
        if remaining <= 0:
            left = ", ".join(urllib.parse.urlsplit(u).netloc.rsplit(":", 1)[-1] for u in urls[index:])
            failures.append(f"stopped after {budget:.1f} s (not tried: {left})")
            break
        port = urllib.parse.urlsplit(url).port
        got = fetch(url, min(timeout_s, remaining), DEFAULT_MAX_BYTES, expect="prometheus")
        if not got.ok:
            failures.append(f"{port} {got.why}")
            continue
        expo = parse_engine_text(got.body.decode("utf-8", errors="replace"))
        if expo.why:
            failures.append(f"{port} {expo.why}")
            continue
        kind = detect_engine(expo)
        if kind is None:
            failures.append(f"{port} Prometheus text without engine metrics")
            continue
        return url, f"{kind} metrics at {url}"
    if not urls:
        return None, "no ports to try"
    return None, "no engine /metrics found: " + "; ".join(failures)
