"""The process tree probe against real processes: roles, framework, model, ports, exit."""

import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from infermon.probes.process import ProcessProbe, TargetError, detect_framework, launcher, model_from_cmdline

CHILD = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
    print(s.getsockname()[1], flush=True)
    time.sleep(60)
""")

PARENT = textwrap.dedent("""
    import subprocess, sys, time
    child = subprocess.Popen(["VLLM::EngineCore", "-c", sys.argv[1]], executable=sys.executable,
                             stdout=sys.stdout)
    time.sleep(60)
""")


@pytest.fixture
def server_tree():
    """A parent with `--model` on its command line and a child titled like vLLM's engine core, listening."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, "--model", "llama-2-7b"],
                              stdout=subprocess.PIPE, text=True)
    port = int(parent.stdout.readline())
    yield parent, port
    for proc in psutil.Process(parent.pid).children(recursive=True):
        proc.kill()
    parent.kill()
    parent.wait()


def test_tree_roles_framework_model_and_ports(server_tree):
    parent, port = server_tree
    probe = ProcessProbe(parent.pid)
    deadline = time.monotonic() + 5
    tree = probe.sample()
    while len(tree.processes) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        tree = probe.sample()
    assert tree.alive
    assert len(tree.processes) == 2
    child = next(p for p in tree.processes if p.pid != parent.pid)
    assert child.role == "VLLM::EngineCore"
    assert tree.framework == "vllm"
    assert tree.model_argument == "llama-2-7b"
    assert port in child.listening_ports
    assert all(p.rss_bytes and p.rss_bytes > 0 for p in tree.processes)


def test_exit_is_reported_not_raised():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    probe = ProcessProbe(proc.pid)
    assert probe.sample().alive
    proc.kill()
    proc.wait()
    tree = probe.sample()
    assert not tree.alive
    assert "exited" in tree.why["process"]


def test_missing_pid_is_a_clear_error():
    with pytest.raises(TargetError, match="no process with pid"):
        ProcessProbe(2**22 + 12345)


def test_other_users_process_is_refused(monkeypatch):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        monkeypatch.setattr(os, "geteuid", lambda: 4242)
        with pytest.raises(TargetError, match="infermon watches your own processes"):
            ProcessProbe(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_probe_never_signals_the_target():
    proc = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                             "signal.signal(signal.SIGINT, lambda *a: sys.exit(3))\n"
                             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(4))\n"
                             "time.sleep(2)"])
    probe = ProcessProbe(proc.pid)
    for _ in range(5):
        probe.sample()
    assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize("cmdline, framework", [
    (("VLLM::EngineCore",), "vllm"),
    (("/usr/bin/python3", "/opt/venv/bin/vllm", "serve", "m"), "vllm"),
    (("python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "m"), "vllm"),
    (("python", "-m", "sglang.launch_server", "--model-path", "m"), "sglang"),
    (("sglang::scheduler_TP0",), "sglang"),
    (("text-generation-launcher", "--model-id", "m"), "tgi"),
    (("/opt/bin/llama-server", "-m", "m.gguf"), "llamacpp"),
    (("trtllm-serve", "m"), "tensorrt-llm"),
    (("python", "generate.py"), "python"),
    (("bash",), "unknown"),
])
def test_framework_detection(cmdline, framework):
    assert detect_framework([cmdline])[0] == framework


def test_a_script_mentioning_vllm_is_not_vllm():
    assert detect_framework([("python", "-c", "print('vllm serve')")])[0] == "python"
    assert launcher(("python", "-c", "x")) == "python -c"


@pytest.mark.parametrize("cmdline, framework, model", [
    (("vllm", "serve", "meta-llama/Llama-3.1-8B", "--port", "8000"), "vllm", "meta-llama/Llama-3.1-8B"),
    (("python", "-m", "vllm.entrypoints.openai.api_server", "--model=/m"), "vllm", "/m"),
    (("python", "-m", "sglang.launch_server", "--model-path", "Qwen/Qwen2.5-7B"), "sglang", "Qwen/Qwen2.5-7B"),
    (("text-generation-launcher", "--model-id", "gpt2"), "tgi", "gpt2"),
    (("llama-server", "-m", "models/x.gguf", "--port", "8080"), "llamacpp", "models/x.gguf"),
    (("python", "-m", "mymodule"), "python", None),
    (("python", "run.py", "-m", "weights.gguf"), "python", "weights.gguf"),
])
def test_model_from_cmdline(cmdline, framework, model):
    assert model_from_cmdline(cmdline, framework) == model
