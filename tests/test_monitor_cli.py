"""`infermon --pid PID --once / --record` end to end against stand-in engine processes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from infermon.testing.fake_engine import VLLM_FIXTURE, fixture_path, start_fake_engine
from infermon.testing.fake_nvml import FakeGpu, FakeNvml

HOST = ["--host-bandwidth", "25GB/s", "--host-flops", "100GFLOPS"]
GEN_STEP = 500.0  # generation tokens added per scrape


def infermon(*args, timeout=60, env=None):
    return subprocess.run([sys.executable, "-m", "infermon.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "120", **(env or {})})


@pytest.fixture
def fake_vllm(tmp_path):
    process, port = start_fake_engine(
        tmp_path, "vllm.entrypoints.openai.api_server", VLLM_FIXTURE,
        {"vllm:generation_tokens_total": GEN_STEP, "vllm:prompt_tokens_total": 100.0},
        args=("--model", "llama-3.1-8b", "--port", "0"))
    yield process, port
    process.kill()
    process.wait()


def test_once_json_against_a_vllm_stand_in(fake_vllm):
    process, port = fake_vllm
    result = infermon("--pid", str(process.pid), "--once", "--json", "--interval", "1", *HOST)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema"] == 2
    assert data["tree"]["root_pid"] == process.pid
    assert data["tree"]["framework"] == "vllm"
    root = next(p for p in data["tree"]["processes"] if p["pid"] == process.pid)
    assert port in root["listening_ports"]
    engine, f = data["engine"], data["figures"]
    assert engine["kind"] == "vllm" and engine["url"] == f"http://127.0.0.1:{port}/metrics"
    # one scrape per tick, 500 tokens per scrape, ticks ~1 s apart
    assert GEN_STEP / 1.6 < f["generation_tokens_per_s"]["value"] <= GEN_STEP / 0.95
    assert f["generation_tokens_per_s"]["source"] == "engine-reported"
    assert f["kv_usage"]["value"] == pytest.approx(0.4219) and f["kv_usage"]["source"] == "engine-reported"
    assert f["requests_running"]["value"] == 8
    assert f["kv_capacity_tokens"]["value"] > 0
    assert data["model"]["name"] == "Llama 3.1 8B" and data["model"]["params_total"] == 8_030_261_248
    assert f["bandwidth_modeled_bytes_per_s"]["value"] > 0
    assert f["bandwidth_modeled_bytes_per_s"]["source"] == "modeled"
    assert f["bandwidth_measured_bytes_per_s"]["value"] is None
    assert f["bandwidth_measured_bytes_per_s"]["source"] == "n/a"
    assert "counter" in f["bandwidth_measured_bytes_per_s"]["why"]
    assert f["mbu"]["value"] > 0 and f["ops_per_byte"]["value"] == pytest.approx(4.0)
    assert f["peak_bandwidth_bytes_per_s"]["source"] == "given"
    assert data["verdict"]["finding"] and data["verdict"]["phase"] in ("decode", "mixed")
    assert f["kv_headroom_tokens"]["value"] >= 0
    assert data["devices"][-1]["kind"] == "host"
    assert "NVML" in data["why"]["devices"] or "driver" in data["why"]["devices"]
    # Every figure says where it came from, and why when it is missing.
    for name, figure in f.items():
        assert figure["source"] in ("measured", "engine-reported", "modeled", "datasheet", "given", "n/a"), name
        assert (figure["value"] is None) == (figure["source"] == "n/a") == bool(figure["why"]), name


def test_once_report_is_readable(fake_vllm):
    process, _ = fake_vllm
    result = infermon("--pid", str(process.pid), "--once", "--interval", "0.5", *HOST)
    assert result.returncode == 0, result.stderr
    for text in ("vllm", "Llama 3.1 8B", "generation tokens/s", "MBU", "KV cache", "Processes"):
        assert text in result.stdout, text


def test_record_writes_lines_and_ends_when_the_process_exits(fake_vllm, tmp_path):
    process, _ = fake_vllm
    path = tmp_path / "run.jsonl"
    recorder = subprocess.Popen([sys.executable, "-m", "infermon.cli.main", "--pid", str(process.pid), "--record",
                                 str(path), "--interval", "0.3", *HOST], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not path.exists() or path.read_text().count("\n") < 3):
        time.sleep(0.1)
    process.kill()
    process.wait()
    assert recorder.wait(timeout=20) == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) >= 3
    assert lines[0]["schema"] == 2 and "figures" in lines[0]  # a keyframe: the whole --once --json object
    assert all("delta" in line for line in lines[1:-1])
    assert lines[-1]["event"] == "exited"
    assert "exited" in recorder.stderr.read()


def test_record_stops_cleanly_on_sigint(fake_vllm, tmp_path):
    process, _ = fake_vllm
    path = tmp_path / "run.jsonl"
    recorder = subprocess.Popen([sys.executable, "-m", "infermon.cli.main", "--pid", str(process.pid), "--record",
                                 str(path), "--interval", "0.3", *HOST], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not path.exists() or path.read_text().count("\n") < 2):
        time.sleep(0.1)
    recorder.send_signal(signal.SIGINT)
    assert recorder.wait(timeout=20) == 0
    assert "Traceback" not in recorder.stderr.read()
    assert process.poll() is None  # the target was never touched


@pytest.mark.parametrize("args, message", [
    (["--pid", "4194000", "--once"], "no process with pid"),
    (["--pid", "1", "--once", "--model", "/no/such/config.json"], "no such file"),
    (["--pid", "1", "--once", "--interval", "-1"], "--interval"),
    (["--pid", "1", "--json"], "--json goes with --once"),
])
def test_bad_input_one_line_exit_2(args, message):
    result = infermon(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_process_exiting_mid_once_is_one_line_exit_1():
    # The target outlives infermon's start (slow on a loaded machine) and dies during the interval.
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(4)"])
    result = infermon("--pid", str(target.pid), "--once", "--interval", "8", *HOST)
    target.wait()
    assert result.returncode == 1
    assert "exited" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.parametrize("mode, reason", [("html", "HTML"), ("500", "500"), ("garbage", "Prometheus")])
def test_misbehaving_endpoint_is_reported_not_fatal(tmp_path, mode, reason):
    process, port = start_fake_engine(tmp_path, "vllm.entrypoints.openai.api_server", VLLM_FIXTURE, {},
                                      args=("--model", "llama-3.1-8b"), mode=mode)
    try:
        result = infermon("--pid", str(process.pid), "--once", "--json", "--interval", "0.3", "--metrics-url",
                          f"http://127.0.0.1:{port}/metrics", *HOST)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert reason.lower() in json.dumps(data["engine"]["why"]).lower()
    finally:
        process.kill()
        process.wait()


def test_endpoint_down(tmp_path):
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--model", "gpt2"])
    try:
        result = infermon("--pid", str(target.pid), "--once", "--json", "--interval", "0.3",
                          "--metrics-url", "http://127.0.0.1:9/metrics", *HOST)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert "refused" in json.dumps(data["engine"]["why"])
        assert data["model"]["name"] == "GPT-2" or data["model"]["params_total"] == 124_439_808
    finally:
        target.kill()
        target.wait()


@pytest.mark.parametrize("module, fixture, args, kind", [
    ("sglang.launch_server", "sglang-metrics.sample.prom", ("--model-path", "qwen2.5-7b"), "sglang"),
])
def test_other_engines(tmp_path, module, fixture, args, kind):
    process, port = start_fake_engine(tmp_path, module, fixture_path(fixture), {}, args=args)
    try:
        result = infermon("--pid", str(process.pid), "--once", "--json", "--interval", "0.3", *HOST)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["tree"]["framework"] == kind
        assert data["engine"]["kind"] == kind
        assert data["model"] is not None
    finally:
        process.kill()
        process.wait()


def test_fake_gpus_plugged_in_at_the_probe_boundary(monkeypatch, cli, fake_vllm):
    """8 scripted H100s; the watched tree holds memory on two of them; GPM gives measured bandwidth."""
    process, _ = fake_vllm
    gpus = [FakeGpu() for _ in range(8)]
    gpus[0].compute_processes = {process.pid: 70 * 2**30}
    gpus[1].compute_processes = {process.pid: 70 * 2**30}
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(gpus, clock=time.monotonic))
    result = cli("--pid", str(process.pid), "--once", "--json", "--interval", "0.3")
    assert result.status == 0, result.err
    data = result.json()
    used = [d for d in data["devices"] if d["used_by_tree"]]
    assert len(used) == 2 and len(data["devices"]) == 8
    assert data["hardware"]["name"] == "NVIDIA H100 80GB HBM3" and data["hardware"]["count"] == 2
    f = data["figures"]
    assert f["ops_per_byte"]["value"] == pytest.approx(989.5e12 / 3.35e12, rel=0.01)
    assert f["peak_bandwidth_bytes_per_s"]["source"] == "datasheet"
    # GPM DRAM_BW_UTIL 62% of 2 × 3.35 TB/s
    measured = f["bandwidth_measured_bytes_per_s"]
    assert measured["value"] == pytest.approx(0.62 * 2 * 3.35e12, rel=0.01) and measured["source"] == "measured"
    root = next(p for p in data["tree"]["processes"] if p["pid"] == process.pid)
    assert root["gpu_memory_bytes"] == 2 * 70 * 2**30
    assert f["tree_gpu_memory_bytes"]["value"] == 2 * 70 * 2**30


def test_dashboard_needs_a_terminal():
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        result = infermon("--pid", str(target.pid))
        assert result.returncode == 2
        assert "needs a terminal" in result.stderr and result.stderr.count("\n") == 1
    finally:
        target.kill()
        target.wait()


def test_unknown_theme_and_bad_theme_file(tmp_path):
    result = infermon("--pid", "1", "--theme", "neon")
    assert result.returncode == 2 and "unknown theme 'neon'" in result.stderr
    config = tmp_path / "infermon"
    config.mkdir()
    (config / "theme.toml").write_text("[theme\nprimary = 3")
    result = infermon("--pid", "1", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert result.returncode == 2 and "theme.toml" in result.stderr and result.stderr.count("\n") == 1


def test_record_exits_zero_after_the_process_exits(fake_vllm, tmp_path):
    process, _ = fake_vllm
    path = tmp_path / "r.jsonl"
    recorder = subprocess.Popen([sys.executable, "-m", "infermon.cli.main", "--pid", str(process.pid), "--record",
                                 str(path), "--interval", "0.2", *HOST], stderr=subprocess.PIPE, text=True)
    time.sleep(2)
    process.kill()
    process.wait()
    _, err = recorder.communicate(timeout=20)
    assert recorder.returncode == 0, err
    assert "Traceback" not in err


def test_version_is_printed_on_stdout(capsys):
    from importlib import metadata

    from infermon.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code in (0, None)
    captured = capsys.readouterr()
    assert captured.out == f"infermon {metadata.version('infermon')}\n" and captured.err == ""
