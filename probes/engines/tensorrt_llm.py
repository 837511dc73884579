"""TensorRT-LLM (``trtllm-serve``): process tree, Prometheus names and its KV rule.

Verified against TensorRT-LLM's documentation only (it needs an NVIDIA GPU; no CPU
build exists). ``trtllm-serve`` serves Prometheus text at ``/prometheus/metrics``
(its ``/metrics`` is JSON iteration statistics), with the ``trtllm_`` prefix.
"""

from __future__ import annotations

import re

from infermon.probes.engines.prometheus import Exposition, bad_value, combine_sum
from infermon.probes.snapshot import EngineSample

NAME = "tensorrt-llm"
TITLE = "TensorRT-LLM"
METRIC_PREFIX = "trtllm_"
METRICS_PATH = "/prometheus/metrics"
DEFAULT_PORTS = (8000,)
PROCESS_PATTERN = re.compile(r"^(trtllm-serve|tensorrt_llm|tritonserver)", re.IGNORECASE)
ROLES = (
    (re.compile(r"^trtllm-serve"), "API server"),
    (re.compile(r"^tritonserver"), "Triton server"),
)
MISSING_METRICS_HINT = "trtllm-serve serves Prometheus text at /prometheus/metrics (give --metrics-url)"

METRICS = {
    "generation_tokens_total": ("trtllm_generation_tokens_total",),
    "prompt_tokens_total": ("trtllm_prompt_tokens_total",),
    "requests_running": ("trtllm_num_requests_running",),
    "requests_waiting": ("trtllm_num_requests_waiting",),
    "kv_usage": ("trtllm_kv_cache_utilization",),
    "ttft": ("trtllm_time_to_first_token_seconds",),
    "inter_token": ("trtllm_time_per_output_token_seconds",),
    "queue_time": ("trtllm_request_queue_time_seconds",),
    "requests_finished_total": ("trtllm_request_success_total",),
}
NEVER = {
    "spec_drafts_total": "TensorRT-LLM reports no speculative-decoding counters",
    "spec_draft_tokens_total": "TensorRT-LLM reports no speculative-decoding counters",
    "spec_accepted_tokens_total": "TensorRT-LLM reports no speculative-decoding counters",
    "preemptions_total": "TensorRT-LLM reports no preemption counter",
    "steps_total": "TensorRT-LLM reports iteration latency, not a step counter",
    "step_tokens_total": "TensorRT-LLM reports iteration latency, not a step counter",
    "prefix_cache_hits_total": "TensorRT-LLM counts reused KV blocks, not prefix-cache tokens",
    "prefix_cache_queries_total": "TensorRT-LLM counts reused KV blocks, not prefix-cache tokens",
    "estimated_flops_total": "TensorRT-LLM publishes no estimate of its own FLOPs",
    "estimated_read_bytes_total": "TensorRT-LLM publishes no estimate of its own memory traffic",
    "estimated_write_bytes_total": "TensorRT-LLM publishes no estimate of its own memory traffic",
}
KV_CAPACITY_FAMILY = "trtllm_kv_cache_max_blocks"
_TOKENS_PER_BLOCK = "trtllm_kv_cache_tokens_per_block"

INFO_PATH = "/version"
INFO_KEYS = {"version": "version"}
EXTRA_READS: tuple[str, ...] = ()

# trtllm-serve's options use underscores; attention data parallelism is set in its YAML options.
PARALLELISM = {
    "tensor_parallel": ("--tp_size",),
    "pipeline_parallel": ("--pp_size",),
}
PARALLELISM_DEFAULT = "not on the command line: trtllm-serve's default is 1"


def kv_capacity(expo: Exposition) -> tuple[int | None, str | None]:
    """``kv_cache_max_blocks`` × ``kv_cache_tokens_per_block`` (tokens)."""
    blocks, per_block = expo.get(KV_CAPACITY_FAMILY), expo.get(_TOKENS_PER_BLOCK)
    if not blocks or not per_block:
        return None, f"tensorrt-llm exposes no {KV_CAPACITY_FAMILY} and {_TOKENS_PER_BLOCK}"
    problem = bad_value(KV_CAPACITY_FAMILY, blocks) or bad_value(_TOKENS_PER_BLOCK, per_block)
    if problem:
        return None, problem
    total_blocks, tokens = combine_sum(blocks), max(v for _, v in per_block)
    if not total_blocks or not tokens:
        return None, "TensorRT-LLM's KV cache has no blocks yet"
    return int(total_blocks * tokens), None


def apply_extra_reads(sample: EngineSample, answers: dict) -> EngineSample:
    """TensorRT-LLM needs nothing beyond its Prometheus text."""
    return sample


def refine(sample: EngineSample) -> EngineSample:
    return sample
