"""Inference engines: one module per engine (``vllm``, ``sglang``, ``tgi``, ``llamacpp``,
``tensorrt_llm``), the Prometheus text handling they share (``prometheus``), and the machinery
that turns an engine's declarations into one canonical ``EngineSample`` per tick.

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
queue_time        vllm:request_queue_time_      sglang:queue_time_seconds     tgi_request_queue_duration          —
                  seconds
steps, step       vllm:iteration_tokens_total   —                             —                                   —
tokens            _count, _sum
prefix cache      vllm:prefix_cache_hits_       sglang:cached_tokens_total /  —                                   —
hits / queries    total / _queries_total        prompt_tokens_total
finished reqs     vllm:request_success_total    sglang:num_requests_total     tgi_request_success                 —
estimated FLOPs,  vllm:estimated_{flops,read_   —                             —                                   —
bytes r/w         bytes,write_bytes}_per_gpu_
                  total (--enable-mfu-metrics)
================  ============================  ============================  ==================================  ===========================

TensorRT-LLM (``tensorrt_llm``) is mapped from its documented ``trtllm_*`` names at
``/prometheus/metrics``. Averaged gauges (vLLM v0's ``avg_generation_throughput_toks_per_s``,
SGLang's ``gen_throughput``, llama.cpp's ``predicted_tokens_seconds``, which every scrape resets)
are never read: rates come from counter deltas over the scrape's own time.
"""

from infermon.probes.engines.prometheus import Exposition, histogram_of, parse_exposition
from infermon.probes.engines.registry import ENGINES, detect_engine, engine, engine_for_launcher, engine_of_text
from infermon.probes.engines.mapping import CANONICAL_FIELDS, parse_engine_text, sample_from_exposition
from infermon.probes.engines.probe import HISTOGRAM_EVERY, EngineProbe
from infermon.probes.engines.discovery import candidate_urls, discover

__all__ = [
    "CANONICAL_FIELDS", "ENGINES", "EngineProbe", "Exposition", "HISTOGRAM_EVERY", "candidate_urls", "detect_engine",
    "discover", "engine", "engine_for_launcher", "engine_of_text", "histogram_of", "parse_engine_text",
    "parse_exposition", "sample_from_exposition",
]
