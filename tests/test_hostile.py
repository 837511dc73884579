"""Hostile and careless input: each gets one line and a non-zero exit, or a stated reason in the
output, within its timeout, with nothing run or written where it should not be and nothing already
recorded lost.

The classes: escalation (attach, the agent channel, as root with a second real user where this
runs as root), bad agent records, hangs (Ctrl-C), tracebacks (arguments, theme files), wrong
answers (init-like roots, --gpu, abbreviations, the exporter's bind).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from infermon.cli.main import build_parser
from infermon.probes import bounded
from infermon.probes.agent_channel import find_agent, read_agents

TESTS = Path(__file__).resolve().parent
HOST = ["--host-bandwidth", "25GB/s", "--host-flops", "100GFLOPS"]
# A Python program that counts tokens through the agent `infermon run` loaded into it.
COUNTING = ("import time, infermon_agent as agent\n"
            "while True:\n"
            "    agent.count_tokens(4, batch=4)\n"
            "    time.sleep(0.01)\n")
IGNORES_SIGINT = ("import signal, time\n"
                  "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                  "time.sleep(120)\n")
# Runs the command line with an audit hook that logs every process it starts (and every exec).
AUDITED = textwrap.dedent("""
    import sys
    log = open(sys.argv[1], "w")
    def hook(event, args):
        if event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system", "os.fork", "os.spawn"):
            log.write(repr((event, args)) + "\\n")
            log.flush()
    sys.addaudithook(hook)
    from infermon.cli.main import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.fixture
def env(tmp_path):
    """A private runtime dir, temp dir and config dir: nothing shared with other runs."""
    runtime, temp, config = tmp_path / "run", tmp_path / "tmp", tmp_path / "config"
    for folder in (runtime, temp, config):
        folder.mkdir(mode=0o700)
    return {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "TMPDIR": str(temp), "XDG_CONFIG_HOME": str(config),
            "COLUMNS": "120", "NO_COLOR": "1"}


def infermon(*args, env, timeout=60, **kwargs):
    return subprocess.run([sys.executable, "-m", "infermon.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, **kwargs)


def audited(tmp_path, *args, env, timeout=60):
    """(result, the processes it started or exec'd)."""
    log = tmp_path / "audit.log"
    script = tmp_path / "audited.py"
    script.write_text(AUDITED)
    result = subprocess.run([sys.executable, str(script), str(log), *args], capture_output=True, text=True,
                            env=env, timeout=timeout)
    return result, [line for line in log.read_text().splitlines() if line]


def one_line(result, status):
    """The command failed with ``status`` and exactly one line on stderr, no traceback."""
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


@pytest.fixture
def sleeper():
    started = []

    def start(argv=None, **kwargs):
        process = subprocess.Popen(argv or [sys.executable, "-c", "import time; time.sleep(60)"], **kwargs)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


# ------------------------------------------------------------------------------- bounded reads


def test_bounded_json_refuses_what_would_poison_or_crash(tmp_path):
    for text, reason in [("[" * 100_000 + "]" * 100_000, "nested"), ('{"a": Infinity}', "non-finite"),
                         ('{"a": NaN}', "non-finite"), ('{"a": -Infinity}', "non-finite"),
                         ('{"a": 1e400}', "out of range"), ('{"a": ' + "9" * 5000 + "}", "digits")]:
        with pytest.raises(ValueError, match=reason):
            bounded.loads(text, max_depth=32)
    assert bounded.loads('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', max_depth=2) == {"a": "[" * 42}
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        bounded.read_regular(str(fifo), 1024)  # would block forever if opened for reading
    (tmp_path / "zero").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="symlink"):
        bounded.read_regular(str(tmp_path / "zero"), 1024)
    big = tmp_path / "big"
    big.write_bytes(b" " * 2048)
    with pytest.raises(ValueError, match="larger than"):
        bounded.read_regular(str(big), 1024)


# ------------------------------------------------------------------------------- attach: nothing of the target runs


def test_attach_never_runs_the_targets_binary(tmp_path, env, sleeper):
    """A fake `python3` (a copy of bash) waits for someone to attach. Running its binary with
    `-c "import sys; …"` would run `import` from PATH: here a script that leaves a marker."""
    fake = tmp_path / "python3"
    shutil.copy("/bin/bash", fake)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "ran"
    (bin_dir / "import").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (bin_dir / "import").chmod(0o755)
    target = sleeper([str(fake), "-c", "while :; do sleep 0.2; done"])
    time.sleep(0.3)
    path_env = {**env, "PATH": f"{bin_dir}:{env['PATH']}"}
    result, started = audited(tmp_path, "attach", str(target.pid), "--yes", env=path_env)
    assert "not a CPython process" in one_line(result, 1)
    assert not marker.exists()
    assert not [line for line in started if str(fake) in line or f"/proc/{target.pid}" in line], started
    assert not started, started  # nothing at all was started for a process that is no Python


PYTHONS = sorted({os.path.realpath(p) for p in (sys.executable, "/usr/bin/python3", "/usr/local/bin/python3")
                  if os.path.isfile(p)})


@pytest.mark.parametrize("binary", PYTHONS)
def test_python_version_of_a_renamed_python_without_running_it(binary, tmp_path, sleeper):
    """Renamed to plain `python`, a build linked against libpython is told by its maps; a static
    one only by the sys.version string in its memory."""
    from infermon.probes.inject import _version_in_memory, python_version

    expected = tuple(int(x) for x in subprocess.run([binary, "-c", "import sys; print(*sys.version_info[:2])"],
                                                    capture_output=True, text=True).stdout.split())
    renamed = tmp_path / "python"
    shutil.copy(binary, renamed)
    target = sleeper([str(renamed), "-c", "import time; time.sleep(60)"])
    time.sleep(0.5)
    assert python_version(target.pid) == expected
    maps = Path(f"/proc/{target.pid}/maps").read_text()
    if "libpython" not in maps:  # a static build: nothing in the maps names the version
        assert _version_in_memory(target.pid, os.readlink(f"/proc/{target.pid}/exe"), maps) == expected


def test_gdb_loads_nothing_the_targets_owner_controls():
    from infermon.probes import inject

    source = Path(inject.__file__).read_text()
    assert '"set auto-load off"' in source and "-nx" in source


# ------------------------------------------------------------------------------- the channel


def _squat(path: Path) -> None:
    """Another user got there first (as root: a real second user; otherwise a directory open to all)."""
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    if os.geteuid() == 0:
        os.chown(path, 4242, 4242)


def test_a_squatted_channel_falls_back_to_a_private_directory_and_the_monitor_finds_it(tmp_path, env):
    env = {**env}
    del env["XDG_RUNTIME_DIR"]
    shared = Path(env["TMPDIR"]) / f"infermon-{os.getuid()}"
    _squat(shared)
    result = infermon("run", "--once", "--json", "--interval", "0.3", *HOST, "--", sys.executable, "-c",
                      COUNTING.replace("while True", "for _ in range(500)"), env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["engine"]["kind"] == "agent" and data["figures"]["generation_tokens_per_s"]["value"] > 0
    assert "refused" in data["why"]["agent_channel"] and str(shared) in data["why"]["agent_channel"]
    assert "infermon agent" not in result.stderr  # the program's own stderr stayed clean
    fallbacks = [p for p in Path(env["TMPDIR"]).iterdir() if p.name.startswith(f"infermon-{os.getuid()}-")]
    assert fallbacks and all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in fallbacks)
    assert list(shared.iterdir()) == []  # nothing written into the squatter's directory


def test_attach_and_detach_with_a_squatted_channel_are_one_line(env, sleeper):
    """attach used to end in a traceback when someone else owned the channel."""
    env = {**env}
    del env["XDG_RUNTIME_DIR"]
    _squat(Path(env["TMPDIR"]) / f"infermon-{os.getuid()}")
    target = sleeper(["sleep", "60"])
    assert "not a CPython process" in one_line(infermon("attach", str(target.pid), "--yes", env=env), 1)
    assert "no running agent" in one_line(infermon("detach", str(target.pid), env=env), 2)


def test_count_tokens_stays_silent_when_no_channel_can_be_made(tmp_path, monkeypatch, capfd):
    import tempfile

    import infermon.probes.agent as agent

    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    _squat(runtime / "infermon")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _squat(tmp_path / f"infermon-{os.getuid()}")
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(1)
        raise PermissionError("no temp dir")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    agent.stop()
    monkeypatch.setattr(agent, "not_started", None)
    for _ in range(2000):
        agent.count_tokens(1)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert len(attempts) == 1  # tried once; again only after START_RETRY_S
    assert "no temp dir" in agent.not_started[2]
    assert not agent.running()


def test_records_and_channel_are_opened_without_following_symlinks(tmp_path, monkeypatch):
    import tempfile

    import infermon.probes.agent as agent

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    good = {"protocol": 1, "pid": os.getpid(), "time": time.time(), "interval_s": 1.0}
    (elsewhere / f"agent-{os.getpid()}.json").write_text(json.dumps(good))
    (runtime / "infermon").symlink_to(elsewhere)
    reading = read_agents({os.getpid()}, channel=str(runtime / "infermon"))
    assert reading.agents == () and "symlink" in reading.why[0] and "refused" in reading.why[0]
    channel = runtime / "real"
    channel.mkdir(mode=0o700)
    (channel / f"agent-{os.getpid()}.json").symlink_to(elsewhere / f"agent-{os.getpid()}.json")
    reading = read_agents({os.getpid()}, channel=str(channel))
    assert reading.agents == () and "symlink" in reading.why[os.getpid()]
    assert agent.ensure_channel(str(runtime / "infermon")) != str(runtime / "infermon")  # falls back


def test_a_stale_record_is_no_agent(tmp_path, env, sleeper, monkeypatch):
    """attach used to say "already has an agent" for a record the monitor calls stale."""
    target = sleeper(["sleep", "60"])
    channel = Path(env["XDG_RUNTIME_DIR"]) / "infermon"
    channel.mkdir(mode=0o700)
    stale = {"protocol": 1, "pid": target.pid, "time": time.time() - 3600, "interval_s": 1.0}
    (channel / f"agent-{target.pid}.json").write_text(json.dumps(stale))
    monkeypatch.setenv("XDG_RUNTIME_DIR", env["XDG_RUNTIME_DIR"])
    sample, _, why = find_agent(target.pid)
    assert sample is None and "stale" in why
    result = infermon("attach", str(target.pid), "--yes", env=env)
    assert "already has an agent" not in result.stdout
    assert "not a CPython process" in one_line(result, 1)
    assert "stale" in one_line(infermon("detach", str(target.pid), env=env), 2)


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb not installed")
def test_attach_leaves_no_folder_behind_and_reports_only_a_running_agent(tmp_path, env, sleeper):
    target = sleeper([sys.executable, "-c", "import time\nwhile True: time.sleep(0.02)\n"], env=env)
    time.sleep(0.5)
    attached = infermon("attach", str(target.pid), "--yes", "--interval", "0.2", env=env)
    assert not [p for p in Path(env["TMPDIR"]).iterdir() if p.name.startswith("infermon-agent-")]
    _skip_if_gdb_cannot_inject(attached)
    assert attached.returncode == 0, attached.stderr
    assert "agent running" in attached.stdout
    assert infermon("detach", str(target.pid), env=env).returncode == 0
    assert target.poll() is None


def _skip_if_gdb_cannot_inject(attached):
    """Where gdb cannot inject (ptrace refused, or a VM whose ptrace cannot restore the register
    state), attach must still fail with one line and claim nothing: checked, then skipped."""
    if attached.returncode != 0 and ("refused ptrace" in attached.stderr or "extended register state" in attached.stderr):
        one_line(attached, 1)
        assert "agent running" not in attached.stdout
        pytest.skip(f"gdb cannot inject here: {attached.stderr.strip()}")


# ------------------------------------------------------------------------------- as root, a second real user

USER = "infermon-hostile"


@pytest.fixture(scope="module")
def user_python(other_user):
    """A Python the second user may run (ours may live in root's home)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", os.path.realpath(sys.executable)):
        if os.path.isfile(candidate) and subprocess.run(["runuser", "-u", USER, "--", candidate, "-c", "pass"],
                                                        capture_output=True).returncode == 0:
            return candidate
    pytest.skip("no Python the second user can run")


@pytest.fixture(scope="module")
def other_user():
    if os.geteuid() != 0 or not (shutil.which("useradd") and shutil.which("runuser") and shutil.which("userdel")):
        pytest.skip("needs root with useradd, runuser and userdel")
    subprocess.run(["userdel", "-f", USER], capture_output=True)
    made = subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", USER], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    import pwd

    entry = pwd.getpwnam(USER)
    try:
        yield entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["pkill", "-KILL", "-u", USER], capture_output=True)
        subprocess.run(["userdel", "-f", USER], capture_output=True)


@pytest.fixture
def shared_tmp(tmp_path):
    """A temp directory everyone can use (as /tmp is), outside pytest's private one."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="infermon-hostile-", dir="/tmp"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _as_user(argv, shared_tmp, **kwargs):
    env = {"PATH": os.environ["PATH"], "TMPDIR": str(shared_tmp), "HOME": str(shared_tmp)}
    return subprocess.Popen(["runuser", "-u", USER, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()],
                             *argv], **kwargs)


def _pid_of_child(runner: subprocess.Popen, timeout=10.0) -> int:
    """runuser forks the command: the pid to watch is runuser's child."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(runner.pid).children(recursive=True)
        python = [c for c in children if "python" in " ".join(c.cmdline())]
        if python:
            return python[-1].pid
        time.sleep(0.05)
    raise AssertionError("the user's process did not start")


def test_as_root_a_squatted_channel_of_roots_falls_back(other_user, shared_tmp, env):
    uid, gid = other_user
    squatted = shared_tmp / f"infermon-{os.getuid()}"
    subprocess.run(["runuser", "-u", USER, "--", "mkdir", "-m", "0777", str(squatted)], check=True)
    env = {**env, "TMPDIR": str(shared_tmp)}
    del env["XDG_RUNTIME_DIR"]
    result = infermon("run", "--once", "--json", "--interval", "0.3", *HOST, "--", sys.executable, "-c",
                      COUNTING.replace("while True", "for _ in range(500)"), env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["engine"]["kind"] == "agent"
    assert "belongs to another user" in data["why"]["agent_channel"]
    assert os.listdir(squatted) == []


def _agent_tokens(record: Path) -> float:
    """The generation count in an agent's record, or -1 where there is none (yet) to read."""
    try:
        return float(json.loads(record.read_text()).get("generation_tokens_total") or 0)
    except (OSError, ValueError, AttributeError):
        return -1.0


def test_as_root_another_users_agent_is_found_read_only_and_stopped(other_user, user_python, shared_tmp, env):
    """The agent loads from a bootstrap folder made by root for that user (as attach makes it),
    publishes in that user's channel, and root's monitor reads it there without writing."""
    from infermon.probes.bootstrap import agent_environment, make_bootstrap

    uid, gid = other_user
    folder = make_bootstrap(parent=str(shared_tmp), owner=(uid, gid), attach_interval_s=0.2)
    assert {p.stat().st_uid for p in [Path(folder), *Path(folder).iterdir()]} == {uid}
    assert stat.S_IMODE(Path(folder).stat().st_mode) == 0o700
    agent_env = agent_environment(folder, 0.2, base={})
    runner = _as_user(["env", f"PYTHONPATH={agent_env['PYTHONPATH']}", "INFERMON_AGENT=1",
                       "INFERMON_AGENT_INTERVAL=0.2", user_python, "-c", COUNTING], shared_tmp)
    try:
        pid = _pid_of_child(runner)
        channel = shared_tmp / f"infermon-{uid}"
        deadline = time.monotonic() + 20
        # Until the script's first count, the agent's records say it counts nothing yet, and a
        # one-shot reading then has a single count to go on: wait for a record with tokens in it.
        while _agent_tokens(channel / f"agent-{pid}.json") <= 0:
            assert time.monotonic() < deadline, "the user's agent never published a count"
            time.sleep(0.05)
        listing = {p.name: p.stat().st_uid for p in channel.iterdir()}
        assert channel.stat().st_uid == uid and stat.S_IMODE(channel.stat().st_mode) == 0o700
        once = infermon("--pid", str(pid), "--once", "--json", "--interval", "0.4", *HOST, env=env)
        assert once.returncode == 0, once.stderr
        data = json.loads(once.stdout)
        assert data["engine"]["kind"] == "agent" and data["figures"]["generation_tokens_per_s"]["value"] > 0
        assert {p.name: p.stat().st_uid for p in channel.iterdir()} == listing  # read only
        already = infermon("attach", str(pid), "--yes", env=env)
        assert already.returncode == 0 and "already has an agent" in already.stdout
        detached = infermon("detach", str(pid), env=env)
        assert detached.returncode == 0, detached.stderr
        assert not (channel / f"agent-{pid}.json").exists()
    finally:
        runner.kill()
        subprocess.run(["pkill", "-KILL", "-u", USER], capture_output=True)
        runner.wait()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb not installed")
def test_as_root_attach_to_another_users_process(other_user, user_python, shared_tmp, env):
    uid, gid = other_user
    runner = _as_user([user_python, "-c", "import time\nwhile True: time.sleep(0.02)\n"], shared_tmp)
    try:
        pid = _pid_of_child(runner)
        time.sleep(0.5)
        attached = infermon("attach", str(pid), "--yes", "--interval", "0.2", env=env)
        assert not [p for p in shared_tmp.iterdir() if p.name.startswith("infermon-agent-")]
        assert not [p for p in Path(env["TMPDIR"]).iterdir() if p.name.startswith("infermon-agent-")]
        _skip_if_gdb_cannot_inject(attached)
        assert attached.returncode == 0, attached.stderr
        assert "agent running" in attached.stdout
        channel = shared_tmp / f"infermon-{uid}"
        assert (channel / f"agent-{pid}.json").stat().st_uid == uid
        assert infermon("detach", str(pid), env=env).returncode == 0
    finally:
        runner.kill()
        subprocess.run(["pkill", "-KILL", "-u", USER], capture_output=True)
        runner.wait()


# ------------------------------------------------------------------------------- bad agent records

GOOD = {"protocol": 1, "time": None, "interval_s": 0.5, "generation_tokens_total": 10, "prompt_tokens_total": 5,
        "decode_steps_total": 3, "batch": 2, "max_batch": 2}


def _record(pid, **changes):
    return json.dumps({**GOOD, "pid": pid, "time": time.time(), **changes})


BAD_RECORDS = {
    "Infinity in a counter": lambda pid: _record(pid).replace('"generation_tokens_total": 10',
                                                             '"generation_tokens_total": Infinity'),
    "1e400": lambda pid: _record(pid).replace('"batch": 2', '"batch": 1e400'),
    "a 5000-digit integer": lambda pid: _record(pid).replace('"batch": 2', '"batch": ' + "7" * 5000),
    "nesting 100k deep": lambda pid: _record(pid).replace('"batch": 2', '"batch": ' + "[" * 100_000 + "]" * 100_000),
    "too large": lambda pid: _record(pid, padding="x" * 100_000),
    "a string for a time": lambda pid: _record(pid, time="now"),
    "a time in the future": lambda pid: _record(pid, time=time.time() + 86400),
    "a counter of 2^70": lambda pid: _record(pid, generation_tokens_total=2**70),
    "model_config a list": lambda pid: _record(pid, model_config=[1, 2]),
    "not an object": lambda pid: "[1, 2, 3]",
    "invalid UTF-8": lambda pid: b"\xff\xfe{}",
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_bad_record_is_skipped_with_a_reason(case, tmp_path, monkeypatch):
    channel = tmp_path / "channel"
    channel.mkdir(mode=0o700)
    data = BAD_RECORDS[case](101)
    (channel / "agent-101.json").write_bytes(data if isinstance(data, bytes) else data.encode())
    (channel / "agent-102.json").write_text(_record(102))
    reading = read_agents({101, 102}, channel=str(channel))
    assert [a.pid for a in reading.agents] == [102]
    assert reading.why[101]


def test_a_non_finite_model_config_is_dropped_and_the_counters_kept(tmp_path):
    channel = tmp_path / "channel"
    channel.mkdir(mode=0o700)
    data = _record(101, model_config={"hidden_size": 1}).replace('"hidden_size": 1', '"hidden_size": NaN')
    (channel / "agent-101.json").write_text(data)
    [sample] = read_agents({101}, channel=str(channel)).agents
    assert sample.model_config is None and "non-finite" in sample.why["model_config"]
    assert sample.generation_tokens_total == 10


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_a_record_that_is_no_file_is_skipped_without_blocking(kind, tmp_path):
    channel = tmp_path / "channel"
    channel.mkdir(mode=0o700)
    path = channel / "agent-101.json"
    {"fifo": lambda: os.mkfifo(path), "dev-zero": lambda: path.symlink_to("/dev/zero"),
     "directory": lambda: path.mkdir()}[kind]()
    began = time.monotonic()
    reading = read_agents({101}, channel=str(channel))
    assert time.monotonic() - began < 1.0
    assert reading.agents == () and reading.why[101]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=25)
FIELDS = ["protocol", "pid", "time", "interval_s", "generation_tokens_total", "prompt_tokens_total",
          "decode_steps_total", "batch", "max_batch", "weights_bytes", "params", "model_config", "torch", "errors"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=14), st.booleans())
def test_no_record_makes_the_reader_raise_or_pass_a_non_finite_figure(tmp_path, record, keep_basics):
    channel = tmp_path / "fuzz"
    channel.mkdir(mode=0o700, exist_ok=True)
    if keep_basics:
        record = {**record, "protocol": 1, "pid": 101, "time": time.time()}
    (channel / "agent-101.json").write_text(json.dumps(record, allow_nan=True))
    reading = read_agents({101}, channel=str(channel))
    for sample in reading.agents:
        for name in ("time", "interval_s", "generation_tokens_total", "prompt_tokens_total", "decode_steps_total"):
            assert math.isfinite(getattr(sample, name)), name
        for name in ("batch", "max_batch", "weights_bytes", "params", "torch_allocated_bytes"):
            value = getattr(sample, name)
            assert value is None or (isinstance(value, int) and 0 <= value < 2**63), name


def _plant_bad_record(env, pid):
    channel = Path(env["XDG_RUNTIME_DIR"]) / "infermon"
    channel.mkdir(mode=0o700, exist_ok=True)
    (channel / f"agent-{pid}.json").write_text(BAD_RECORDS["Infinity in a counter"](pid))


def test_once_and_record_go_on_past_a_bad_record(tmp_path, env, sleeper):
    target = sleeper()
    _plant_bad_record(env, target.pid)
    once = infermon("--pid", str(target.pid), "--once", "--json", "--interval", "0.2", *HOST, env=env)
    assert once.returncode == 0, once.stderr
    assert "agent record skipped" in json.loads(once.stdout)["why"]["agent"]
    path = tmp_path / "rec.jsonl"
    recorder = subprocess.Popen([sys.executable, "-m", "infermon.cli.main", "--pid", str(target.pid), "--record",
                                 str(path), "--interval", "0.2", *HOST], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 4):
            assert recorder.poll() is None, recorder.stderr.read()
            time.sleep(0.1)
    finally:
        recorder.send_signal(signal.SIGINT)
        _, err = recorder.communicate(timeout=10)
    assert recorder.returncode == 0 and "Traceback" not in err
    from infermon.views.recording import iter_ticks

    ticks = list(iter_ticks(str(path), []))
    assert len(ticks) >= 4 and all("agent record skipped" in tick["why"]["agent"] for tick in ticks)


async def test_the_dashboard_keeps_sampling_past_a_bad_record(tmp_path, monkeypatch, sleeper):
    import asyncio

    from infermon.live.derive import LiveModel
    from infermon.probes.sampler import Sampler, SamplerConfig
    from infermon.tui.app import InfermonApp
    from infermon.tui.sources import LiveSource

    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    target = sleeper()
    _plant_bad_record({"XDG_RUNTIME_DIR": str(runtime)}, target.pid)
    sampler = Sampler(SamplerConfig(pid=target.pid, interval_s=0.1, metrics_url="http://127.0.0.1:9/metrics",
                                    host_overrides={"bandwidth_bytes_per_s": 1e10, "peak_flops": 1e11}))
    source = LiveSource(sampler, LiveModel())
    views, enough = [], threading.Event()
    original = source.next_view

    def counting():
        if len(views) >= 5:
            enough.wait(10)  # hold still while the test looks, as a live source between samples
        view = original()
        views.append(view)
        return view

    source.next_view = counting
    app = InfermonApp(source, target=f"pid {target.pid}")
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            for _ in range(200):
                if len(views) >= 5:
                    break
                await asyncio.sleep(0.05)
            await pilot.pause()
            assert len(views) >= 5 and app.ended is None
            assert "agent record skipped" in views[-1].why.get("agent", "")
    finally:
        enough.set()


# ------------------------------------------------------------------------------- hangs: Ctrl-C


def _interrupt_after(argv, env, ready, timeout=5.0):
    """Start ``infermon ARGV`` in its own session (a terminal's process group), wait until
    ``ready()``, send SIGINT to the whole group as a terminal's Ctrl-C does; (seconds it took to
    end, the result)."""
    process = subprocess.Popen([sys.executable, "-m", "infermon.cli.main", *argv], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not ready():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        began = time.monotonic()
        out, err = process.communicate(timeout=timeout + 10)
        return time.monotonic() - began, process.returncode, err
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_ctrl_c_ends_run_record_of_a_command_that_ignores_sigint(tmp_path, env):
    import psutil

    path = tmp_path / "rec.jsonl"
    script = tmp_path / "ignore.py"
    script.write_text(IGNORES_SIGINT)
    seconds, status, err = _interrupt_after(["run", "--record", str(path), "--interval", "0.2", *HOST, "--",
                                             sys.executable, str(script)], env, lambda: _lines(path) >= 3)
    assert seconds < 5.0, seconds
    assert "Traceback" not in err
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) >= 3  # everything recorded before Ctrl-C is there
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(script) in " ".join(p.info["cmdline"] or [])]


@pytest.mark.parametrize("command", ["--pid --record", "--pid --once", "run --once", "export", "calibrate", "demo"])
def test_every_command_ends_within_5_s_of_ctrl_c(command, tmp_path, env, sleeper):
    if command == "demo":
        pytest.importorskip("torch")
    env = {**env, "INFERMON_CACHE_DIR": str(tmp_path / "cache")}
    target = sleeper()
    script = tmp_path / "ignore.py"
    script.write_text(IGNORES_SIGINT)
    path = tmp_path / "rec.jsonl"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv, ready = {
        "--pid --record": (["--pid", str(target.pid), "--record", str(path), "--interval", "0.2", *HOST],
                           lambda: _lines(path) >= 2),
        "--pid --once": (["--pid", str(target.pid), "--once", "--interval", "30", *HOST], lambda: True),
        "run --once": (["run", "--once", "--interval", "0.2", *HOST, "--", sys.executable, str(script)], lambda: True),
        "export": (["export", "--pid", str(target.pid), "--port", str(port), "--interval", "0.2", *HOST],
                   lambda: _serving(port)),
        "calibrate": (["calibrate", "--seconds", "60"], lambda: True),
        "demo": (["demo", "--size", "tiny", "--record", str(path), "--interval", "0.2", *HOST],
                 lambda: _lines(path) >= 2),
    }[command]
    if command in ("--pid --once", "run --once", "calibrate"):
        ready = _after(1.5)
    seconds, status, err = _interrupt_after(argv, env, ready)
    assert seconds < 5.0, (seconds, err)
    assert "Traceback" not in err, err


def _after(seconds):
    when = time.monotonic() + seconds
    return lambda: time.monotonic() >= when


def _serving(port) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------------- tracebacks: arguments first


@pytest.mark.parametrize("program, reason", [
    ("/etc/passwd", "not executable"), ("/tmp", "directory"), ("./no-such-program", "command not found"),
    ("no-such-program-xyz", "command not found"), ("garbage", "cannot start")])
def test_run_of_something_that_is_no_command(program, reason, tmp_path, env):
    if program == "garbage":
        program = str(tmp_path / "garbage")
        Path(program).write_bytes(b"\x00\x01\x02 not a program")
        Path(program).chmod(0o755)
    result, started = audited(tmp_path, "run", "--once", "--", program, env=env)
    assert reason in one_line(result, 2)
    assert not [line for line in started if program in line and reason != "cannot start"]


@pytest.mark.parametrize("options, reason", [
    (["--interval", "nan"], "--interval"), (["--interval", "-1"], "--interval"), (["--interval", "1e-300"], "--interval"),
    (["--record", "/proc/x"], "cannot write /proc/x"), (["--record", "/"], "cannot write /"),
    (["--host-bandwidth", "lots"], "bandwidth"), (["--model", "/no/such/model"], "no/such/model"),
    (["--gpu", "no-such-gpu"], "unknown GPU"), (["--metrics-url", "ftp://x"], "--metrics-url"),
    (["--once", "--record", "x.jsonl"], "choose one"), (["--json"], "--json goes with --once"),
])
@pytest.mark.parametrize("command", ["run", "demo"])
def test_arguments_are_checked_before_any_child_starts(command, options, reason, tmp_path, env):
    mode = [] if {"--once", "--record", "--json"} & set(options) else ["--once"]
    argv = ["run", *mode, *options, "--", sys.executable, "-c", "pass"] if command == "run" else \
        ["demo", "--size", "tiny", *mode, *options]
    result, started = audited(tmp_path, *argv, env=env)
    assert reason in one_line(result, 2)
    assert started == [], started


def test_a_record_path_that_is_a_symlink_or_a_fifo_is_refused_before_sampling(tmp_path, env, sleeper):
    target = sleeper()
    planted = tmp_path / "planted"
    planted.symlink_to(tmp_path / "victim")
    assert "symbolic link" in one_line(infermon("--pid", str(target.pid), "--record", str(planted), *HOST, env=env), 2)
    assert not (tmp_path / "victim").exists()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "cannot write" in one_line(  # a FIFO nobody reads: refused at once, never a hang
        infermon("--pid", str(target.pid), "--record", str(fifo), *HOST, env=env, timeout=10), 2)


def test_the_run_log_is_never_written_through_a_planted_symlink(tmp_path):
    from infermon.cli.agent_cmds import _open_log
    from infermon.cli.errors import UserError

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "run.log").symlink_to(victim)
    with pytest.raises(UserError, match="symbolic link"):
        _open_log(str(tmp_path / "run.log"))
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UserError, match="cannot write the log"):
        _open_log(str(tmp_path / "fifo"))
    assert victim.read_text() == "precious\n"
    with _open_log(str(tmp_path / "fine.log")) as handle:
        handle.write(b"ok\n")
    assert (tmp_path / "fine.log").read_text() == "ok\n"


THEMES = {
    "nested 30k deep": "[theme]\nprimary = " + "[" * 30_000 + "]" * 30_000 + "\n",
    "huge": "[theme]\nprimary = \"#ffffff\"\n" + "# padding\n" * 1_000_000,
    "not UTF-8": b"[theme]\nprimary = \"\xff\xfe\"\n",
    "not TOML": "[theme\nprimary =",
    "no primary": "[theme]\naccent = \"#ffffff\"\n",
}


@pytest.mark.parametrize("case", sorted(THEMES) + ["fifo", "/dev/zero", "directory"])
def test_a_bad_theme_file_is_one_line(case, tmp_path, env, sleeper):
    target = sleeper()
    path = Path(env["XDG_CONFIG_HOME"]) / "infermon" / "theme.toml"
    path.parent.mkdir(parents=True)
    if case == "fifo":
        os.mkfifo(path)
    elif case == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif case == "directory":
        path.mkdir()
    else:
        data = THEMES[case]
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    result = infermon("--pid", str(target.pid), env=env, timeout=20)
    assert str(path) in one_line(result, 2)


# ------------------------------------------------------------------------------- wrong answers


def test_pid_1_is_refused_with_a_clear_line(env):
    from infermon.probes.process import detect_framework

    if detect_framework([tuple(Path("/proc/1/cmdline").read_bytes().decode().split("\0")[:-1])])[0] != "unknown":
        pytest.skip("pid 1 here is a server or a Python program (a container's entry point): fine to watch")
    result = infermon("--pid", "1", "--once", "--json", *HOST, env=env)
    line = one_line(result, 2)
    assert "pid 1" in line and "give the inference server's own pid" in line


def test_an_init_or_supervisor_is_refused_and_names_the_servers_below_it(tmp_path, env):
    init = tmp_path / "dumb-init"
    shutil.copy(sys.executable if os.path.isfile(sys.executable) else os.path.realpath(sys.executable), init)
    server = tmp_path / "llama-server"
    server.symlink_to(shutil.which("sleep"))
    script = f"import subprocess, time; subprocess.Popen([{str(server)!r}, '60']); time.sleep(60)"
    process = subprocess.Popen([str(init), "-c", script])
    try:
        time.sleep(0.8)
        line = one_line(infermon("--pid", str(process.pid), "--once", *HOST, env=env), 2)
        assert "init or supervisor" in line and "llama-server" in line
        # A command we start ourselves is ours to watch, whatever its name.
        ran = infermon("run", "--once", "--interval", "0.2", *HOST, "--", str(init), "-c", "import time; time.sleep(3)",
                       env=env)
        assert ran.returncode == 0, ran.stderr
    finally:
        for child in __import__("psutil").Process(process.pid).children(recursive=True):
            child.kill()
        process.kill()
        process.wait()


def test_a_process_whose_tree_is_most_of_the_machine_is_refused(monkeypatch, sleeper):
    import psutil

    from infermon.probes.process import init_like

    parent = sleeper(["sh", "-c", "for i in $(seq 25); do sleep 60 & done; wait"])
    deadline = time.monotonic() + 20
    while len(psutil.Process(parent.pid).children()) < 25 and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        if len(psutil.pids()) > 60:
            assert init_like(parent.pid) is None  # on this machine, 25 processes are not most of it
        monkeypatch.setattr(psutil, "pids", lambda: list(range(30)))  # a small machine (or container)
        reason = init_like(parent.pid)
        assert reason is not None and "the root of 25 of this machine's 30 processes" in reason
    finally:
        for child in psutil.Process(parent.pid).children():
            child.kill()


def test_an_unknown_gpu_is_an_error_whatever_the_tree_uses(env, sleeper):
    target = sleeper()
    assert "unknown GPU 'h1000'" in one_line(infermon("--pid", str(target.pid), "--once", "--gpu", "h1000", *HOST,
                                                      env=env), 2)
    ok = infermon("--pid", str(target.pid), "--once", "--json", "--interval", "0.2", "--gpu", "h100", *HOST, env=env)
    assert ok.returncode == 0, ok.stderr


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_no_parser_takes_abbreviations():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 8 and all(not p.allow_abbrev for p in parsers)


def test_export_host_is_its_own_option_and_prefixes_are_refused(env, sleeper):
    parser = build_parser()
    args = parser.parse_args(["export", "--pid", "1", "--host", "0.0.0.0"])
    assert args.host == "0.0.0.0"
    target = sleeper()
    assert "--int=1" in one_line(infermon("--pid", str(target.pid), "--int=1", "--once", env=env), 2)


def test_export_warns_once_on_a_non_loopback_bind(env, sleeper):
    from infermon.cli.export_cmd import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("no-such-host.invalid")
    target = sleeper()
    for host, warned in (("0.0.0.0", True), ("127.0.0.1", False)):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = subprocess.Popen([sys.executable, "-m", "infermon.cli.main", "export", "--pid", str(target.pid),
                                    "--host", host, "--port", str(port), "--interval", "0.2", *HOST],
                                   env=env, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not _serving(port) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=10)
        warnings = [line for line in err.splitlines() if "not loopback" in line]
        assert len(warnings) == (1 if warned else 0), err


# ------------------------------------------------------------------------------- recordings (the reader and writer's own
# tests are in test_replay.py; these are the hostile inputs end to end)


def _scripted_recording(path: Path, ticks: int = 8) -> Path:
    from infermon.testing import scripted
    from infermon.views.recording import RecordingWriter

    with open(path, "w", encoding="utf-8") as handle:
        writer = RecordingWriter(handle)
        for view in scripted.views(ticks):
            writer.write(view)
    return path


def test_a_line_of_hundreds_of_megabytes_is_skipped_without_reading_it_whole(tmp_path, env):
    """The recorder never writes such a line; a reader that read it whole would need its size in memory."""
    path = _scripted_recording(tmp_path / "big.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    with open(path, "wb") as out:
        out.write(lines[0])
        out.write(b'{"pad": "' + b"x" * (256 * 2**20) + b'"}\n')
        out.writelines(lines[1:])
    code = ("import resource, subprocess, sys\n"
            "r = subprocess.run([sys.executable, '-m', 'infermon.cli.main', 'replay', sys.argv[1], '--once', '--json'],"
            " capture_output=True, text=True)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, r.returncode)\n"
            "sys.stderr.write(r.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, env=env,
                            timeout=300)
    rss_mb, status = (int(x) for x in result.stdout.split())
    assert status == 0 and "longer than" in result.stderr and "Traceback" not in result.stderr
    assert rss_mb < 200, f"{rss_mb} MB for a 256 MB line"


def test_diff_of_a_deeply_nested_recording_is_one_line(tmp_path, env):
    good = _scripted_recording(tmp_path / "good.jsonl")
    nested = tmp_path / "nested.jsonl"
    nested.write_text('{"schema": 2, "figures": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    assert "no usable samples" in one_line(infermon("diff", str(good), str(nested), env=env), 2)


def test_a_full_disk_while_recording_is_one_line_and_keeps_what_was_written(tmp_path, env, sleeper):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        target = sleeper()
        path = disk / "rec.jsonl"
        result = infermon("--pid", str(target.pid), "--record", str(path), "--interval", "0.05", *HOST, env=env,
                          timeout=120)
        line = one_line(result, 1)
        assert "No space left" in line and "samples written" in line
        from infermon.views.recording import iter_ticks

        notices = []
        ticks = list(iter_ticks(str(path), notices))
        assert len(ticks) >= 2 and len(notices) <= 1  # at most the last, cut line
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_metrics_url_that_times_out_is_not_asked_for_again(env, sleeper):
    from infermon.testing.metrics_server import MetricsServer

    target = sleeper()
    vllm = (TESTS / "data" / "vllm-0.33.0-metrics.sample.prom").read_text()
    with MetricsServer(vllm, mode="slow", delay_s=5) as server:
        result = infermon("--pid", str(target.pid), "--once", "--json", "--interval", "0.3", "--metrics-url",
                          server.metrics_url, *HOST, env=env)
    assert result.returncode == 0, result.stderr
    verdict = json.dumps(json.loads(result.stdout)["verdict"])
    assert "give --metrics-url" not in verdict and "timed out" in verdict
