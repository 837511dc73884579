"""One parsed exposition → one canonical ``EngineSample``, by the engine module's declarations (pure: no I/O).

Counters and gauges add up over replicas; fractions (KV usage) are averaged;
latency histograms keep their buckets; the per-step histogram (vLLM's
``iteration_tokens_total``) gives only its ``_count`` (steps) and ``_sum``
(tokens they scheduled). Every figure left None has a reason in ``why``: the
engine's own (``NEVER``), a bad value (negative, NaN, ±Inf), or the names it
looked for.
"""

from __future__ import annotations

from types import ModuleType

from infermon.probes.engines.prometheus import (
    Exposition,
    checked_mean,
    checked_sum,
    family_of,
    first_histogram,
    label,
    parse_exposition,
    version_label,
)
from infermon.probes.engines.registry import ENGINES, detect_engine, engine_of_text
from infermon.probes.snapshot import EngineSample, evolve

# Counters and gauges summed over replicas.
SUM_FIELDS = ("generation_tokens_total", "prompt_tokens_total", "requests_running", "requests_waiting",
              "preemptions_total", "steps_total", "step_tokens_total", "prefix_cache_hits_total",
              "prefix_cache_queries_total", "requests_finished_total", "estimated_flops_total",
              "estimated_read_bytes_total", "estimated_write_bytes_total", "spec_drafts_total",
              "spec_draft_tokens_total", "spec_accepted_tokens_total")
# Fractions 0–1, averaged over replicas.
MEAN_FIELDS = ("kv_usage",)
# Latency histograms: parsed every few scrapes (most of a scrape's lines), carried in between.
LATENCY_FIELDS = ("ttft", "inter_token", "queue_time")
CANONICAL_FIELDS = SUM_FIELDS + MEAN_FIELDS + LATENCY_FIELDS
# Parsed every few scrapes and carried in between: the histograms, and the KV capacity, which is
# fixed while the engine runs and sits on a long label set (vLLM's cache_config_info).
SLOW_FIELDS = LATENCY_FIELDS + ("kv_capacity_tokens",)


def families_for(module: ModuleType, histograms: bool = True) -> tuple[frozenset[str], frozenset[str]]:
    """(families to parse whole, histogram families of which only ``_sum`` / ``_count`` are needed)
    for ``module``; without the latency histograms when ``histograms`` is False."""
    whole: set[str] = set()
    totals: set[str] = set()
    for field_name, names in module.METRICS.items():
        if field_name in LATENCY_FIELDS:
            if histograms:
                whole.update(names)
            continue
        for name in names:
            if name.endswith(("_sum", "_count")):
                totals.add(family_of(name))
            else:
                whole.add(family_of(name))
    if module.KV_CAPACITY_FAMILY and histograms:
        whole.add(module.KV_CAPACITY_FAMILY)  # fixed while the engine runs: read with the histograms
    return frozenset(whole), frozenset(totals - whole)


def parse_engine_text(text: str, histograms: bool = True) -> Exposition:
    """Parse only the families the engine named by the text's prefixes is mapped from
    (everything, when no engine prefix shows, so garbage is still reported as such)."""
    guess = engine_of_text(text)
    if guess is None:
        return parse_exposition(text)
    whole, totals = families_for(ENGINES[guess], histograms)
    return parse_exposition(text, whole, totals)


def sample_from_exposition(expo: Exposition, kind: str | None = None, url: str | None = None,
                           histograms: bool = True) -> EngineSample:
    """Map one parsed exposition to an ``EngineSample`` (pure: no I/O).

    ``kind`` is detected from the metric names when not given (the names win
    when they name an engine). ``histograms`` False: the latency histograms and
    the KV-capacity family were not parsed this time and are left None without a
    reason (the probe carries the previous ones: SLOW_FIELDS). Every other figure
    left None has a reason in ``why``.
    """
    if expo.why:
        return EngineSample(kind=kind or "unknown", url=url, why={"engine": expo.why})
    detected = detect_engine(expo)
    module = ENGINES.get(detected or kind or "")
    if detected is None or module is None:
        hint = module.MISSING_METRICS_HINT if module is not None else None
        return EngineSample(kind=kind or "unknown", url=url,
                            why={"engine": "no inference-engine metrics in this /metrics"},
                            hints=(hint,) if hint else ())
    kind = module.NAME
    why: dict[str, str] = {}
    values: dict[str, object] = {}

    def missing(field_name: str) -> None:
        wanted = module.METRICS.get(field_name, ())
        why[field_name] = module.NEVER.get(field_name) or f"{kind} exposes no {' or '.join(wanted)}"

    for fields, combine in ((SUM_FIELDS, checked_sum), (MEAN_FIELDS, checked_mean)):
        for field_name in fields:
            value, problem = combine(expo, module.METRICS.get(field_name, ()))
            if problem:
                why[field_name] = problem
            elif value is None:
                missing(field_name)
            elif field_name == "kv_usage" and value > 1.0 + 1e-6:
                why[field_name] = f"KV usage {value:g} is outside 0–1"
            else:
                values[field_name] = value

    if histograms or not module.KV_CAPACITY_FAMILY:
        capacity, capacity_why = module.kv_capacity(expo)
        if capacity:
            values["kv_capacity_tokens"] = capacity
        else:
            why["kv_capacity_tokens"] = capacity_why or f"{kind} reports no KV capacity"

    for field_name in LATENCY_FIELDS:
        if not histograms and field_name in module.METRICS:
            continue
        hist, problem = first_histogram(expo, module.METRICS.get(field_name, ()))
        if problem:
            why[field_name] = problem
        elif hist is None:
            missing(field_name)
        else:
            values[field_name] = hist

    labelled = [s for field_name in ("generation_tokens_total", "requests_running", "prompt_tokens_total")
                for s in expo.first(module.METRICS.get(field_name, ()))[1]]
    model_name = label(labelled, "model_name", "model")
    if model_name:
        values["model_name"] = model_name
    else:
        why["model_name"] = f"{kind} metrics carry no model_name label"
    version = version_label(expo, module.METRIC_PREFIX)
    if version:
        values["version"] = version
    else:
        why["version"] = module.NEVER.get("version", f"{kind} metrics carry no version")

    if "requests_running" in values:
        values["batch"] = values["requests_running"]
    else:
        why["batch"] = "no running-requests figure"
    # A copy of an empty sample with these fields: thirty-odd fields set one by one through a frozen
    # dataclass's __init__ cost several times that, every scrape.
    return module.refine(evolve(_EMPTY, kind=kind, url=url, why=why, **values))


_EMPTY = EngineSample(kind="unknown")


def apply_info(sample: EngineSample, info: object) -> EngineSample:
    """Model name and version from an engine's info endpoint (vLLM /version, TGI /info,
    llama.cpp /props), where the metrics lacked them."""
    module = ENGINES.get(sample.kind)
    if not isinstance(info, dict) or module is None:
        return sample
    why = dict(sample.why)
    changes: dict[str, object] = {}
    for field_name in ("model_name", "version"):
        key = module.INFO_KEYS.get(field_name)
        if getattr(sample, field_name) is not None or key is None:
            continue
        value = info.get(key)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value):
            changes[field_name] = str(value)
            why.pop(field_name, None)
    return evolve(sample, why=why, **changes) if changes else sample
