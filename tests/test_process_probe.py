"""The process tree probe against real processes: roles, framework, model, ports, exit."""

import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from infermon.probes.listeners import Listeners, _from_tables
from infermon.probes.process import (ProcessProbe, TargetError, _listening_ports, descendants, detect_framework, launcher,
                                     model_from_cmdline)

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


# ------------------------------------------------------------------ listening ports and descendants

SOCKETS = textwrap.dedent("""
    import socket, time
    v4 = socket.socket(); v4.bind(("127.0.0.1", 0)); v4.listen()
    ports = [v4.getsockname()[1]]
    try:
        v6 = socket.socket(socket.AF_INET6); v6.bind(("::1", 0)); v6.listen(); ports.append(v6.getsockname()[1])
    except OSError:
        pass  # no IPv6 here
    # A connection of its own: its local port is not a listening one.
    client = socket.create_connection(("127.0.0.1", ports[0])); peer, _ = v4.accept()
    print(" ".join(map(str, ports)), client.getsockname()[1], flush=True)
    time.sleep(60)
""")


@pytest.fixture
def listening_process():
    proc = subprocess.Popen([sys.executable, "-c", SOCKETS], stdout=subprocess.PIPE, text=True)
    *listening, connected = (int(v) for v in proc.stdout.readline().split())
    yield proc, set(listening), connected
    proc.kill()
    proc.wait()


def test_listening_ports_are_the_processs_listeners_not_its_connections(listening_process):
    from infermon.probes.process import _listening_ports_psutil

    proc, listening, connected = listening_process
    ports = set(_listening_ports(psutil.Process(proc.pid)))
    assert ports == listening and connected not in ports
    assert ports == set(_listening_ports_psutil(psutil.Process(proc.pid)))  # psutil's own reading agrees
    assert _listening_ports(psutil.Process(os.getpid())) == ()  # this process listens on nothing


def test_the_kernels_socket_dump_and_the_proc_tables_agree(listening_process):
    proc, listening, _ = listening_process
    netlink = Listeners()
    from_netlink = netlink.sockets(proc.pid)
    assert netlink._netlink_ok, "the sock_diag dump was refused on this machine"
    assert from_netlink == _from_tables(proc.pid)
    assert listening <= set(from_netlink.values())


def test_refused_netlink_falls_back_to_the_proc_tables(listening_process, monkeypatch):
    import infermon.probes.listeners as listeners_module

    def refused(family):
        raise PermissionError("netlink refused")

    monkeypatch.setattr(listeners_module, "_dump", refused)
    proc, listening, connected = listening_process
    listeners = Listeners()
    assert set(listeners.ports_of(proc.pid)) == listening
    assert not listeners._netlink_ok


def test_a_gone_process_listens_on_nothing():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert Listeners().ports_of(proc.pid) == ()


def test_descendants_both_ways_match_psutils_walk(tmp_path):
    script = tmp_path / "tree.py"
    script.write_text("import subprocess, sys, time\n"
                      "depth = int(sys.argv[1])\n"
                      "kids = [subprocess.Popen([sys.executable, __file__, str(depth - 1)]) for _ in range(2 if depth else 0)]\n"
                      "time.sleep(60)\n")
    root = subprocess.Popen([sys.executable, str(script), "2"])  # 2 children, 4 grandchildren
    try:
        deadline = time.monotonic() + 20
        while len(psutil.Process(root.pid).children(recursive=True)) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        want = sorted(p.pid for p in psutil.Process(root.pid).children(recursive=True))
        assert len(want) == 6
        assert sorted(descendants(root.pid, tree_threads=1)) == want           # each task's children file
        assert sorted(descendants(root.pid, tree_threads=10**9)) == want       # every process's parent
    finally:
        for proc in psutil.Process(root.pid).children(recursive=True):
            proc.kill()
        root.kill()
        root.wait()


SPAWNER = textwrap.dedent("""
    import subprocess, sys, time
    kids = []
    for line in sys.stdin:
        if line.strip() == "spawn":
            kids.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        else:
            kid = kids.pop()
            kid.kill()
            kid.wait()
        print(kids[-1].pid if kids else 0, flush=True)
""")


def test_a_stable_tree_is_rescanned_less_often_and_a_change_is_still_found(monkeypatch):
    import infermon.probes.process as process_module

    scans = []
    real = process_module.descendants
    monkeypatch.setattr(process_module, "descendants", lambda *a: scans.append(now[0]) or real(*a))
    parent = subprocess.Popen([sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    now = [0.0]
    try:
        probe = ProcessProbe(parent.pid, clock=lambda: now[0])
        for second in range(0, 31):
            now[0] = float(second)
            assert [p.pid for p in probe.sample().processes] == [parent.pid]
        # Rescanned at 0 (the first tree) and 2; the same tree again: the wait doubles (4, 8), then stays
        # at its cap.
        assert scans == [0, 2, 6, 14, 22, 30]
        assert process_module.CHILD_SCAN_MAX_S == 8

        parent.stdin.write("spawn\n")
        parent.stdin.flush()
        child = int(parent.stdout.readline())
        now[0] = 37.0
        assert child not in probe.sample().pids  # not due yet: the next rescan is at 38
        now[0] = 38.0
        assert child in probe.sample().pids      # found within CHILD_SCAN_MAX_S of starting
        now[0] = 39.0
        probe.sample()
        assert scans[-1] == 38                   # a changed tree: back to every CHILD_SCAN_S
        now[0] = 40.0
        probe.sample()
        assert scans[-1] == 40

        parent.stdin.write("kill\n")
        parent.stdin.flush()
        parent.stdout.readline()
        now[0] = 41.0
        probe.sample()          # the member has exited and been reaped …
        now[0] = 41.5
        probe.sample()
        assert scans[-1] >= 41  # … and the tree is looked at again at once, not CHILD_SCAN_MAX_S later
    finally:
        parent.kill()
        parent.wait()


def test_command_lines_names_and_parents_read_directly_are_psutils(tmp_path):
    """The tree's command lines, names and parents are read from /proc directly (psutil's reading
    cost several times as much, every few seconds for each process): the same as psutil gives,
    for a name longer than the kernel keeps, arguments with spaces and empty ones, and bytes that
    are not UTF-8."""
    from infermon.probes.process import _full_name, _read_cmdline, _read_stat, clean_cmdline

    long_name = tmp_path / "a-long-program-name-beyond-fifteen"
    long_name.symlink_to(sys.executable)
    argv = [os.fsencode(long_name), b"-c", b"import time; time.sleep(60)", b"two words", b"", b"caf\xe9-\xff", b""]
    child = subprocess.Popen(argv, executable=os.fsencode(long_name))
    try:
        deadline = time.monotonic() + 10
        proc = psutil.Process(child.pid)
        while proc.cmdline()[:1] != [os.fsdecode(argv[0])] and time.monotonic() < deadline:
            time.sleep(0.02)  # until the exec has happened
        stat = _read_stat(child.pid)
        cmdline = _read_cmdline(child.pid)
        assert cmdline == clean_cmdline(proc.cmdline())
        assert cmdline[-1] == "caf\udce9-\udcff" and "two words" in cmdline and cmdline[4] == ""
        assert _full_name(stat.name, cmdline) == proc.name() == "a-long-program-name-beyond-fifteen"
        assert stat.ppid == proc.ppid() == os.getpid()
        probe = ProcessProbe(child.pid)
        shown = probe.sample().processes[0]
        assert (shown.cmdline, shown.name, shown.ppid) == (cmdline, proc.name(), os.getpid())
    finally:
        child.kill()
        child.wait()
    with pytest.raises(ProcessLookupError):
        _read_cmdline(child.pid)


def test_an_unreaped_child_is_left_out_without_rescanning_the_tree_every_tick():
    """A child that exited and is not reaped yet (a zombie) is not shown (no command line, no CPU,
    no memory left), as when psutil read the command lines; it stays known, so the tree is not
    walked again every tick while its parent leaves it unreaped."""
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        print(child.pid, flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while psutil.Process(child).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.02)
        probe = ProcessProbe(parent.pid)
        for _ in range(3):
            tree = probe.sample()
        assert [p.pid for p in tree.processes] == [parent.pid]
        assert child in probe._members and probe._scanned_at > 0  # known, and no rescan is due now
    finally:
        parent.kill()
        parent.wait()
