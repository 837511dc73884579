"""vLLM: what its process tree looks like, where its figures are in ``/metrics``, and its KV rule.

Checked against a real ``vllm serve`` (vLLM's CPU build, 0.32.0): the API server
(``vllm serve …``, the only process on the HTTP port) starts ``VLLM::EngineCore``,
which starts ``VLLM::Worker`` (the process holding the model); both children
rename themselves with setproctitle. The Worker also listens on a dozen
ephemeral loopback ports (gloo, ZMQ): the API server's port is the one to scrape.

Its ``process_*`` families describe the API server process only, not the engine
core or the workers, so infermon takes per-process CPU and memory from /proc.
"""

from __future__ import annotations

import re

from infermon.probes.engines.prometheus import Exposition, replica_key
from infermon.probes.snapshot import EngineSample, evolve

NAME = "vllm"
TITLE = "vLLM"
METRIC_PREFIX = "vllm:"
METRICS_PATH = "/metrics"
DEFAULT_PORTS = (8000,)
# `vllm serve`, `python -m vllm.entrypoints.openai.api_server`, and the children's titles.
PROCESS_PATTERN = re.compile(r"^(vllm(\s|$|\.)|VLLM::)", re.IGNORECASE)
ROLES = (
    (re.compile(r"^(vllm(\s|$)|vllm\.entrypoints)"), "API server"),
)
MISSING_METRICS_HINT = "is this vLLM's API port? (--port)"

METRICS = {
    "generation_tokens_total": ("vllm:generation_tokens_total",),
    "prompt_tokens_total": ("vllm:prompt_tokens_total",),
    "requests_running": ("vllm:num_requests_running",),
    "requests_waiting": ("vllm:num_requests_waiting",),
    # A 0–1 fraction; gpu_cache_usage_perc is the name before vLLM v1.
    "kv_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "preemptions_total": ("vllm:num_preemptions_total",),
    "ttft": ("vllm:time_to_first_token_seconds",),
    # time_per_output_token_seconds is the older name of the same histogram.
    "inter_token": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "queue_time": ("vllm:request_queue_time_seconds",),
    # A histogram observed once per engine step: its _count counts steps, its _sum the tokens they scheduled.
    "steps_total": ("vllm:iteration_tokens_total_count",),
    "step_tokens_total": ("vllm:iteration_tokens_total_sum",),
    "prefix_cache_hits_total": ("vllm:prefix_cache_hits_total",),
    "prefix_cache_queries_total": ("vllm:prefix_cache_queries_total",),
    # One series per finished_reason (stop, length, abort, …): they add up.
    "requests_finished_total": ("vllm:request_success_total",),
    # vLLM's own analytic estimate of the work done (--enable-mfu-metrics), per GPU of each engine.
    "estimated_flops_total": ("vllm:estimated_flops_per_gpu_total",),
    "estimated_read_bytes_total": ("vllm:estimated_read_bytes_per_gpu_total",),
    "estimated_write_bytes_total": ("vllm:estimated_write_bytes_per_gpu_total",),
    # Speculative decoding (only while a draft method is configured): drafts, their tokens, and the
    # tokens the target accepted.
    "spec_drafts_total": ("vllm:spec_decode_num_drafts_total",),
    "spec_draft_tokens_total": ("vllm:spec_decode_num_draft_tokens_total",),
    "spec_accepted_tokens_total": ("vllm:spec_decode_num_accepted_tokens_total",),
}
NEVER: dict[str, str] = {}
KV_CAPACITY_FAMILY = "vllm:cache_config_info"

INFO_PATH = "/version"
INFO_KEYS = {"version": "version"}
EXTRA_READS: tuple[str, ...] = ()

PARALLELISM = {
    "tensor_parallel": ("--tensor-parallel-size", "-tp"),
    "pipeline_parallel": ("--pipeline-parallel-size", "-pp"),
    "data_parallel": ("--data-parallel-size", "-dp"),
}
PARALLELISM_DEFAULT = "not on the command line: vLLM's default is 1"

_ESTIMATES = ("estimated_flops_total", "estimated_read_bytes_total", "estimated_write_bytes_total")
NO_MFU_METRICS = "vLLM was started without --enable-mfu-metrics (its estimated_* counters never moved)"


def kv_capacity(expo: Exposition) -> tuple[int | None, str | None]:
    """Σ over engines of the KV cache in tokens, from ``vllm:cache_config_info`` labels: its
    ``kv_cache_size_tokens`` where it has one (vLLM ≥ 0.3x), else ``num_gpu_blocks`` × ``block_size``
    (present on CPU too, where the "GPU" blocks are the CPU KV cache)."""
    samples = expo.get(KV_CAPACITY_FAMILY)
    if not samples:
        return None, f"vllm exposes no {KV_CAPACITY_FAMILY}"
    per_engine: dict[tuple, int] = {}
    for labels, _ in samples:
        tokens = _whole(labels.get("kv_cache_size_tokens"))
        if tokens is None:
            blocks, size = _whole(labels.get("num_gpu_blocks")), _whole(labels.get("block_size"))
            tokens = blocks * size if blocks is not None and size is not None else None
        if tokens:  # "None" before the engine has profiled memory
            per_engine[replica_key(labels)] = tokens
    if not per_engine:
        return None, f"{KV_CAPACITY_FAMILY} has no KV cache size yet (num_gpu_blocks None)"
    return sum(per_engine.values()), None


def _whole(text: str | None) -> int | None:
    try:
        value = int(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def apply_extra_reads(sample: EngineSample, answers: dict) -> EngineSample:
    """vLLM needs nothing beyond ``/metrics`` (and ``/version`` once)."""
    return sample


_SPECULATIVE = ("spec_drafts_total", "spec_draft_tokens_total", "spec_accepted_tokens_total")
NO_SPECULATION = "no speculative decoding configured (vLLM publishes spec_decode_* only with a draft method)"


def refine(sample: EngineSample) -> EngineSample:
    """The estimated_* counters exist without --enable-mfu-metrics but stay 0: once tokens have
    been generated and they are still 0, they are no figure but the flag's absence. The
    spec_decode_* families exist only with speculative decoding on: their absence says so."""
    if all(getattr(sample, name) is None for name in _SPECULATIVE):
        sample = evolve(sample, why={**sample.why, **{name: NO_SPECULATION for name in _SPECULATIVE}})
    if not sample.generation_tokens_total:
        return sample
    present = [getattr(sample, name) for name in _ESTIMATES]
    if any(value is None for value in present) or any(present):
        return sample
    why = dict(sample.why)
    for name in _ESTIMATES:
        why[name] = NO_MFU_METRICS
    return evolve(sample, why=why, **{name: None for name in _ESTIMATES})
