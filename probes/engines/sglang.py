"""SGLang: process tree, ``/metrics`` names (with ``--enable-metrics``) and its KV rule.

Verified against a synthesized exposition only (no CPU build of SGLang runs here):
names, types and labels follow SGLang's metrics collector. SGLang runs
prometheus_client in multiprocess mode, so a replica's figure may repeat once per
tensor/pipeline/expert rank (collapsed by the shard labels), and data-parallel
replicas (``dp_rank``) add up.
"""

from __future__ import annotations

import re

from infermon.probes.engines.prometheus import Exposition, checked_sum
from infermon.probes.snapshot import EngineSample

NAME = "sglang"
TITLE = "SGLang"
METRIC_PREFIX = "sglang:"
METRICS_PATH = "/metrics"
DEFAULT_PORTS = (30000,)
# `python -m sglang.launch_server`, `sglang serve`, and the children's titles (sglang::scheduler_TP0).
PROCESS_PATTERN = re.compile(r"^(sglang(\s|$|\.|::))", re.IGNORECASE)
ROLES = (
    (re.compile(r"^sglang(\.launch_server|\s+serve|$)"), "API server"),
)
MISSING_METRICS_HINT = "start SGLang with --enable-metrics"

METRICS = {
    "generation_tokens_total": ("sglang:generation_tokens_total",),
    "prompt_tokens_total": ("sglang:prompt_tokens_total",),
    "requests_running": ("sglang:num_running_reqs",),
    "requests_waiting": ("sglang:num_queue_reqs",),
    "kv_usage": ("sglang:token_usage",),
    # num_retracted_reqs is a per-interval gauge, not a total: only the newer counter counts preemptions.
    "preemptions_total": ("sglang:num_retracted_requests_total",),
    "ttft": ("sglang:time_to_first_token_seconds",),
    "inter_token": ("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
    "queue_time": ("sglang:queue_time_seconds",),
    # Prompt tokens served from the radix cache, out of all prompt tokens (what its cache_hit_rate divides).
    "prefix_cache_hits_total": ("sglang:cached_tokens_total",),
    "prefix_cache_queries_total": ("sglang:prompt_tokens_total",),
    "requests_finished_total": ("sglang:num_requests_total",),
}
NEVER = {
    "spec_drafts_total": "SGLang's speculative-decoding gauges are averages, not counters: not read",
    "spec_draft_tokens_total": "SGLang's speculative-decoding gauges are averages, not counters: not read",
    "spec_accepted_tokens_total": "SGLang's speculative-decoding gauges are averages, not counters: not read",
    "version": "SGLang does not report its version in /metrics",
    "steps_total": "SGLang does not count engine steps in /metrics",
    "step_tokens_total": "SGLang does not count engine steps in /metrics",
    "estimated_flops_total": "SGLang publishes no estimate of its own FLOPs",
    "estimated_read_bytes_total": "SGLang publishes no estimate of its own memory traffic",
    "estimated_write_bytes_total": "SGLang publishes no estimate of its own memory traffic",
}
KV_CAPACITY_FAMILY = "sglang:max_total_num_tokens"

INFO_PATH = None
INFO_KEYS: dict[str, str] = {}
EXTRA_READS: tuple[str, ...] = ()

PARALLELISM = {
    "tensor_parallel": ("--tp-size", "--tensor-parallel-size", "--tp"),
    "pipeline_parallel": ("--pp-size", "--pipeline-parallel-size", "--pp"),
    "data_parallel": ("--dp-size", "--data-parallel-size", "--dp"),
}
PARALLELISM_DEFAULT = "not on the command line: SGLang's default is 1"


def kv_capacity(expo: Exposition) -> tuple[int | None, str | None]:
    """Σ over data-parallel replicas of ``max_total_num_tokens`` (the KV pool, in tokens)."""
    total, why = checked_sum(expo, (KV_CAPACITY_FAMILY,))
    if why:
        return None, why
    if not total:
        return None, f"sglang exposes no {KV_CAPACITY_FAMILY}"
    return int(total), None


def apply_extra_reads(sample: EngineSample, answers: dict) -> EngineSample:
    """SGLang needs nothing beyond ``/metrics``."""
    return sample


def refine(sample: EngineSample) -> EngineSample:
    return sample
