"""Text Generation Inference (TGI): process tree, ``/metrics`` names and its KV rule.

Verified against a synthesized exposition only (no CPU build of TGI on PyPI):
names follow TGI's router. Its token counters are histogram sums over finished
requests (``tgi_request_generated_tokens_sum``), so they move when a request ends.
"""

from __future__ import annotations

import re

from infermon.probes.engines.prometheus import Exposition, checked_sum
from infermon.probes.snapshot import EngineSample

NAME = "tgi"
TITLE = "TGI"
METRIC_PREFIX = "tgi_"
METRICS_PATH = "/metrics"
DEFAULT_PORTS = (3000, 9000)  # TGI's HTTP port, and its separate --prometheus-port
PROCESS_PATTERN = re.compile(r"^text-generation-(launcher|server|router)")
ROLES = (
    (re.compile(r"^text-generation-launcher"), "launcher"),
    (re.compile(r"^text-generation-router"), "router"),
    (re.compile(r"^text-generation-server"), "shard"),
)
MISSING_METRICS_HINT = "is this TGI's HTTP port (--port) or its --prometheus-port?"

METRICS = {
    "generation_tokens_total": ("tgi_request_generated_tokens_sum",),
    "prompt_tokens_total": ("tgi_request_input_length_sum",),
    "requests_running": ("tgi_batch_current_size",),
    "requests_waiting": ("tgi_queue_size",),
    "inter_token": ("tgi_request_mean_time_per_token_duration",),
    "queue_time": ("tgi_request_queue_duration",),
    "requests_finished_total": ("tgi_request_success",),
}
NEVER = {
    "spec_drafts_total": "TGI reports no speculative-decoding counters",
    "spec_draft_tokens_total": "TGI reports no speculative-decoding counters",
    "spec_accepted_tokens_total": "TGI reports no speculative-decoding counters",
    "kv_usage": "TGI reports no KV-cache usage",
    "preemptions_total": "TGI reports no preemptions",
    "ttft": "TGI reports no time-to-first-token histogram",
    "steps_total": "TGI times its forward passes but does not count the tokens they scheduled",
    "step_tokens_total": "TGI times its forward passes but does not count the tokens they scheduled",
    "prefix_cache_hits_total": "TGI reports no prefix-cache counters",
    "prefix_cache_queries_total": "TGI reports no prefix-cache counters",
    "estimated_flops_total": "TGI publishes no estimate of its own FLOPs",
    "estimated_read_bytes_total": "TGI publishes no estimate of its own memory traffic",
    "estimated_write_bytes_total": "TGI publishes no estimate of its own memory traffic",
}
KV_CAPACITY_FAMILY = "tgi_batch_max_total_tokens"

INFO_PATH = "/info"
INFO_KEYS = {"model_name": "model_id", "version": "version"}
EXTRA_READS: tuple[str, ...] = ()

# TGI shards a model over --num-shard GPUs (tensor parallel); it has no pipeline or data parallelism.
PARALLELISM = {
    "tensor_parallel": ("--num-shard",),
}
PARALLELISM_DEFAULT = "not on the command line: TGI uses every visible GPU unless --num-shard says otherwise"


def kv_capacity(expo: Exposition) -> tuple[int | None, str | None]:
    """``tgi_batch_max_total_tokens``: the tokens one batch may hold (the KV pool)."""
    total, why = checked_sum(expo, (KV_CAPACITY_FAMILY,))
    if why:
        return None, why
    if not total:
        return None, f"tgi exposes no {KV_CAPACITY_FAMILY}"
    return int(total), None


def apply_extra_reads(sample: EngineSample, answers: dict) -> EngineSample:
    """TGI needs nothing beyond ``/metrics`` (and ``/info`` once)."""
    return sample


def refine(sample: EngineSample) -> EngineSample:
    return sample
