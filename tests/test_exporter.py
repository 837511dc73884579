"""The Prometheus exporter: its text parses with prometheus_client and carries the figures."""

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from infermon.testing import scripted
from infermon.testing.fake_engine import VLLM_FIXTURE, start_fake_engine
from infermon.views.exporter import ViewCollector


def parsed(text: str) -> dict:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_collector_serves_a_scripted_views_figures():
    view = scripted.views(6)[-1]
    registry = CollectorRegistry(auto_describe=False)
    collector = ViewCollector()
    registry.register(collector)
    collector.update(view)
    samples = parsed(generate_latest(registry).decode())
    labels, value = samples["infermon_mbu"][0]
    f = view.figures
    assert value == pytest.approx(f.mbu.value)
    assert labels == {"pid": "4242", "model": "Llama 3.1 8B", "device": "NVIDIA H100 80GB HBM3", "engine": "vllm",
                      "source": "modeled"}
    generation = samples["infermon_generation_tokens_per_second"][0]
    assert generation[1] == pytest.approx(f.generation_tokens_per_s.value)
    assert generation[0]["source"] == "engine-reported"
    bandwidth = {l["source"]: v for l, v in samples["infermon_achieved_bandwidth_bytes_per_second"]}
    assert bandwidth["modeled"] == pytest.approx(f.bandwidth_modeled_bytes_per_s.value)
    assert bandwidth["measured"] == pytest.approx(f.bandwidth_measured_bytes_per_s.value)
    assert samples["infermon_ops_per_byte_ridge"][0][1] == pytest.approx(f.ops_per_byte.value)
    assert samples["infermon_kv_cache_headroom_tokens"][0][1] == pytest.approx(f.kv_headroom_tokens.value)
    assert samples["infermon_peak_bandwidth_bytes_per_second"][0][0]["source"] == "datasheet"
    # A figure that is n/a has no sample at all (not a zero).
    assert f.torch_allocated_bytes.value is None and not samples.get("infermon_torch_allocated_bytes")
    bound = {l["bound"]: v for l, v in samples["infermon_bound"]}
    assert bound == {"memory": 1.0, "compute": 0.0}
    assert samples["infermon_up"][0][1] == 1.0
    memory = {(l["gpu"], l["scope"]) for l, _ in samples["infermon_gpu_memory_used_bytes"]}
    assert ("0", "process_tree") in memory and ("1", "device") in memory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_export_command_end_to_end(tmp_path):
    engine, _ = start_fake_engine(tmp_path, "vllm.entrypoints.openai.api_server", VLLM_FIXTURE,
                                  {"vllm:generation_tokens_total": 300.0}, args=("--model", "llama-3.1-8b"))
    port = free_port()
    exporter = subprocess.Popen([sys.executable, "-m", "infermon.cli.main", "export", "--pid", str(engine.pid),
                                 "--port", str(port), "--interval", "0.3", "--host-bandwidth", "3.35TB/s",
                                 "--host-flops", "989TFLOPS"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        samples = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    samples = parsed(response.read().decode())
                if samples.get("infermon_generation_tokens_per_second"):
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert samples["infermon_generation_tokens_per_second"][0][1] > 0
        assert samples["infermon_generation_tokens_per_second"][0][0]["engine"] == "vllm"
    finally:
        exporter.terminate()
        exporter.wait(timeout=10)
        engine.kill()
        engine.wait()
    assert "Traceback" not in exporter.stderr.read()


def test_export_binds_loopback_by_default_and_busy_port_is_one_line(tmp_path):
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        result = subprocess.run([sys.executable, "-m", "infermon.cli.main", "export", "--pid", str(target.pid),
                                 "--port", str(port)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        assert "already in use" in result.stderr and result.stderr.count("\n") == 1
        from infermon.cli import export_cmd
        import argparse
        parser = argparse.ArgumentParser()
        export_cmd.add_parser(parser.add_subparsers())
        assert parser.parse_args(["export", "--pid", "1"]).host == "127.0.0.1"
    finally:
        busy.close()
        target.kill()
        target.wait()
