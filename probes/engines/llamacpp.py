"""llama.cpp's ``llama-server``: its ``/metrics`` names, and ``/slots``, the only live token count it offers.

llama.cpp's Prometheus counters (``llamacpp:tokens_predicted_total``) move only
when a request finishes, so a long generation shows 0 tokens/s until its end.
``/slots`` lists every slot with ``next_token[0].n_decoded``, the tokens decoded
so far by the slot's current (or, when idle, previous) request, which counts
up during the request. Summed over the slots that are processing, its change
between two ticks is the live generation rate (a slot whose request ended in
between drops out of the sum; the counter picks those tokens up).

Shapes handled: ``next_token`` as a list of one object (current llama.cpp) or
as an object (older builds); ``is_processing`` (current) or ``state`` != 0
(older builds, 0 = idle).

KV capacity: each slot reports its ``n_ctx``. With the default per-slot cache
(``-np N -c C``) each slot holds C/N tokens, so the sum over slots is the whole
cache, C. With ``--kv-unified`` (which llama-server also turns on when ``-np``
is left on auto) the slots share one cache and each reports all of it, so the
sum overstates capacity by the number of slots; ``n_ctx_max`` is then the
right figure. ``/slots`` alone cannot tell the two apart.

The averaged gauges (``predicted_tokens_seconds``, …) are reset by every scrape,
by anyone, and are never read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from infermon.probes.engines.prometheus import Exposition
from infermon.probes.snapshot import EngineSample, evolve

NAME = "llamacpp"
TITLE = "llama.cpp"
METRIC_PREFIX = "llamacpp:"
METRICS_PATH = "/metrics"
DEFAULT_PORTS = (8080,)
PROCESS_PATTERN = re.compile(r"^(llama-server|llama-cli|llama_cpp\.server)")
ROLES = (
    (re.compile(r"^(llama-server|llama_cpp\.server)"), "server"),
)
MISSING_METRICS_HINT = "start llama-server with --metrics"
NO_SLOTS_HINT = "start llama-server without --no-slots for live rates"

METRICS = {
    "generation_tokens_total": ("llamacpp:tokens_predicted_total",),
    "prompt_tokens_total": ("llamacpp:prompt_tokens_total",),
    "requests_running": ("llamacpp:requests_processing",),
    "requests_waiting": ("llamacpp:requests_deferred",),
    "kv_usage": ("llamacpp:kv_cache_usage_ratio",),
}
NEVER = {
    "spec_drafts_total": "llama-server reports no speculative-decoding counters",
    "spec_draft_tokens_total": "llama-server reports no speculative-decoding counters",
    "spec_accepted_tokens_total": "llama-server reports no speculative-decoding counters",
    "kv_usage": "this llama-server reports no KV-cache usage (older builds had llamacpp:kv_cache_usage_ratio)",
    "preemptions_total": "llama-server reports no preemptions",
    "ttft": "llama-server reports no latency histograms",
    "inter_token": "llama-server reports no latency histograms",
    "queue_time": "llama-server reports no latency histograms",
    "steps_total": "llama-server's n_decode_total moves only when a request finishes: no live step count",
    "step_tokens_total": "llama-server does not count the tokens its steps scheduled",
    "prefix_cache_hits_total": "llama-server reports no prefix-cache lookups",
    "prefix_cache_queries_total": "llama-server reports no prefix-cache lookups",
    "requests_finished_total": "llama-server reports no finished-request counter",
    "estimated_flops_total": "llama-server publishes no estimate of its own FLOPs",
    "estimated_read_bytes_total": "llama-server publishes no estimate of its own memory traffic",
    "estimated_write_bytes_total": "llama-server publishes no estimate of its own memory traffic",
}
KV_CAPACITY_FAMILY = None  # from /slots

INFO_PATH = "/props"
INFO_KEYS = {"model_name": "model_path", "version": "build_info"}
SLOTS_PATH = "/slots"
EXTRA_READS = (SLOTS_PATH,)

# llama.cpp splits layers (or rows) over devices with --split-mode; it has no parallel degree to read.
PARALLELISM: dict[str, tuple[str, ...]] = {}
PARALLELISM_DEFAULT = "llama.cpp has no tensor/pipeline/data-parallel degree (it splits layers with --split-mode)"


@dataclass(frozen=True)
class SlotsReading:
    """One read of ``/slots``. ``decoded`` = Σ n_decoded over processing slots (tokens);
    ``processing`` = slots busy; ``n_ctx_total`` = Σ n_ctx over all slots (tokens);
    ``n_ctx_max`` = the largest slot's n_ctx; ``slots`` = number of slots."""

    decoded: float | None
    processing: int | None
    n_ctx_total: int | None
    n_ctx_max: int | None = None
    slots: int | None = None
    why: str | None = None


def _n_decoded(slot: dict) -> float | None:
    next_token = slot.get("next_token")
    if isinstance(next_token, list):
        next_token = next_token[0] if next_token else None
    if not isinstance(next_token, dict):
        return None
    value = next_token.get("n_decoded")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        return None  # also NaN, negative, infinite: no count
    return float(value)


def _is_processing(slot: dict) -> bool:
    if "is_processing" in slot:
        return bool(slot["is_processing"])
    return slot.get("state", 0) != 0


def slots_from_json(payload: object) -> SlotsReading:
    """Sum a decoded ``/slots`` payload (a list of slot objects)."""
    if not isinstance(payload, list) or not all(isinstance(s, dict) for s in payload):
        return SlotsReading(None, None, None, why="unexpected /slots answer (not a list of slots)")
    decoded = 0.0
    processing = 0
    missing_counts = 0
    for slot in payload:
        if not _is_processing(slot):
            continue  # an idle slot still shows its previous request's n_decoded
        processing += 1
        n = _n_decoded(slot)
        if n is None:
            missing_counts += 1
        else:
            decoded += n
    contexts = [s["n_ctx"] for s in payload
                if isinstance(s.get("n_ctx"), int) and not isinstance(s.get("n_ctx"), bool) and s["n_ctx"] > 0]
    why = None
    if missing_counts:
        why = f"{missing_counts} processing slot(s) without next_token.n_decoded"
    return SlotsReading(
        decoded=None if missing_counts else decoded,
        processing=processing,
        n_ctx_total=sum(contexts) if contexts else None,
        n_ctx_max=max(contexts) if contexts else None,
        slots=len(payload),
        why=why,
    )


def kv_capacity(expo: Exposition) -> tuple[int | None, str | None]:
    """Not in ``/metrics``: the slots' n_ctx from ``/slots`` (see ``apply_extra_reads``)."""
    return None, "comes from llama-server's /slots, not /metrics"


def _slots_reading(answer: tuple | None) -> SlotsReading:
    """``/slots`` as the probe fetched it: (payload, HTTP status, why it failed)."""
    if answer is None:
        return SlotsReading(None, None, None, why="/slots was not read")
    payload, status, why = answer
    if why is not None:
        # llama-server answers 501 when started with --no-slots; very old builds have no route (404)
        return SlotsReading(None, None, None, why=NO_SLOTS_HINT if status in (404, 501) else f"/slots: {why}")
    return slots_from_json(payload)


def apply_extra_reads(sample: EngineSample, answers: dict) -> EngineSample:
    """The live decoded-token sum, the busy slots (the batch) and the KV capacity, from ``/slots``."""
    reading = _slots_reading(answers.get(SLOTS_PATH))
    why = dict(sample.why)
    changes: dict[str, object] = {}
    if reading.decoded is not None:
        changes["slots_decoded"] = reading.decoded
    else:
        why["slots_decoded"] = reading.why or "no /slots figure"
    if reading.processing is not None:
        changes["slots_processing"] = reading.processing
        # llama.cpp's requests_processing gauge resets on every scrape (by anyone);
        # the slots being processed right now are the live batch.
        changes["batch"] = float(reading.processing)
    else:
        why["slots_processing"] = reading.why or "no /slots figure"
    if reading.n_ctx_total:
        changes["kv_capacity_tokens"] = reading.n_ctx_total
    else:
        why["kv_capacity_tokens"] = f"needs the slots' n_ctx from /slots: {reading.why}"
    for field_name in changes:
        why.pop(field_name, None)
    hints = sample.hints + ((NO_SLOTS_HINT,) if reading.why == NO_SLOTS_HINT else ())
    return evolve(sample, why=why, hints=hints, **changes)


def refine(sample: EngineSample) -> EngineSample:
    return sample
