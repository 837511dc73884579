"""The in-process agent: counting, publishing, the owner-only channel, and never hurting the target."""

import ast
import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import infermon.probes.agent as agent  # noqa: E402
from infermon.probes.agent_channel import engine_from_agents, read_agents, request_stop  # noqa: E402

from infermon.testing import tiny_generate  # noqa: E402

STDLIB = set(sys.stdlib_module_names)


@pytest.fixture
def channel(tmp_path, monkeypatch):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    yield Path(agent.channel_dir())
    agent.stop()


def wait_record(pid=None, timeout=5.0, check=lambda r: True):
    path = agent.record_path(pid or os.getpid())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = json.loads(Path(path).read_text())
            if check(record):
                return record
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"no matching record at {path}")


def test_agent_imports_only_the_standard_library():
    tree = ast.parse(Path(agent.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    # torch and transformers are only looked up in sys.modules, when the target has imported them.
    assert imported - STDLIB == set(), imported - STDLIB


def test_watch_counts_prefill_and_decode(channel):
    model = tiny_generate.TinyDecoder().eval()
    assert agent.start(0.05)
    assert agent.watch(model)
    with torch.no_grad():
        tiny_generate.generate(model, batch=3, prompt_len=10, new_tokens=5)
    record = wait_record(check=lambda r: r["generation_tokens_total"] == 15)
    assert record["prompt_tokens_total"] == 30          # one prefill of 3 × 10
    assert record["decode_steps_total"] == 4            # then 4 decode steps of batch 3
    assert record["batch"] == 3
    assert record["weights_bytes"] == sum(p.numel() * 4 for p in model.parameters())
    assert record["torch"]["why"].startswith("CUDA not initialised")


def test_count_tokens_by_hand(channel):
    agent.start(0.05)
    agent.count_tokens(100, batch=4)
    agent.count_tokens(40, prompt=True)
    record = wait_record(check=lambda r: r["generation_tokens_total"] == 100)
    assert record["prompt_tokens_total"] == 40 and record["batch"] == 4


def test_a_detached_agent_stays_stopped_while_the_loop_counts(channel):
    """`infermon detach` stops the agent through its marker file: the loop's next count_tokens()
    must not start a fresh agent (it once did, and detach waited for a record that kept coming back)."""
    agent.start(0.05)
    agent.count_tokens(4, batch=4)
    wait_record(check=lambda r: r["generation_tokens_total"] == 4)
    Path(agent.stop_path(os.getpid())).touch()
    deadline = time.monotonic() + 5
    while os.path.exists(agent.record_path(os.getpid())) and time.monotonic() < deadline:
        agent.count_tokens(4, batch=4)
        time.sleep(0.01)
    for _ in range(20):
        agent.count_tokens(4, batch=4)
        time.sleep(0.02)
    assert not os.path.exists(agent.record_path(os.getpid())) and not os.path.exists(agent.stop_path(os.getpid()))
    assert agent.start(0.05)  # an explicit start() still starts it again
    wait_record(check=lambda r: r["seq"] >= 1)


def test_plain_torch_loop_is_found_without_watch(channel, monkeypatch):
    monkeypatch.setattr(agent, "DISCOVERY_S", 10.0)
    agent.start(0.05)
    model = tiny_generate.TinyDecoder().eval()
    deadline = time.monotonic() + 5
    with torch.no_grad():
        while time.monotonic() < deadline:
            tiny_generate.generate(model, 2, 8, 4)
            try:
                if json.loads(Path(agent.record_path(os.getpid())).read_text())["watched_modules"] == 1:
                    break
            except (OSError, ValueError):
                pass
    record = wait_record(check=lambda r: r["generation_tokens_total"] > 0)
    assert record["watched_modules"] == 1


def test_no_search_for_a_model_where_a_serving_engine_is_loaded(channel, monkeypatch):
    """vLLM (and SGLang, TGI, TensorRT-LLM) call their model with flattened token ids: the search
    could not find it, and its global forward hooks would slow every module call meanwhile."""
    import types

    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    monkeypatch.setattr(agent, "DISCOVERY_S", 10.0)
    agent.start(0.05)
    record = wait_record(check=lambda r: r["seq"] >= 2)
    assert "vllm is loaded" in record["discovery_skipped"]
    assert not torch.nn.modules.module._global_forward_pre_hooks  # no hook on every module call
    model = tiny_generate.TinyDecoder().eval()
    with torch.no_grad():
        tiny_generate.generate(model, 2, 8, 4)
    record = wait_record(check=lambda r: r["seq"] >= 4)
    assert record["watched_modules"] == 0 and record["generation_tokens_total"] == 0


def test_channel_and_record_are_owner_only(channel):
    agent.start(0.05)
    wait_record()
    assert stat.S_IMODE(os.lstat(channel).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(agent.record_path(os.getpid())).st_mode) == 0o600


def test_stop_leaves_a_final_record_and_removes_hooks(channel):
    model = tiny_generate.TinyDecoder().eval()
    agent.start(60.0)  # one record at start, then none until stop: the final one must carry the count
    agent.watch(model)
    wait_record()
    with torch.no_grad():
        tiny_generate.generate(model, batch=2, prompt_len=4, new_tokens=3)
    agent.stop()
    assert not model._forward_hooks
    record = json.loads(Path(agent.record_path(os.getpid())).read_text())
    assert record["final"] is True and record["generation_tokens_total"] == 6
    # The monitor reads it once and removes it.
    reading = read_agents({os.getpid()}, consume_final=True)
    assert [a.final for a in reading.agents] == [True] and reading.agents[0].generation_tokens_total == 6
    assert not os.path.exists(agent.record_path(os.getpid()))


def test_stop_request_file_stops_the_agent(channel):
    agent.start(0.05)
    wait_record()
    request_stop(os.getpid())
    deadline = time.monotonic() + 5
    while agent.running() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(agent.record_path(os.getpid()))


def test_a_bad_input_inside_the_hook_never_reaches_the_target(channel):
    class Odd(torch.nn.Module):
        def forward(self, x):
            return x

    odd = Odd()
    agent.start(0.05)
    agent.watch(odd)
    odd(object())  # no shape at all
    odd(torch.zeros(3))  # 1-D
    record = wait_record(check=lambda r: r["generation_tokens_total"] == 0)
    assert record["errors"] == 0


def test_a_refused_channel_means_a_private_one_not_a_crash_nor_a_word(tmp_path, monkeypatch, capsys):
    import tempfile

    runtime, temp = tmp_path / "run", tmp_path / "tmp"
    runtime.mkdir(mode=0o700)
    temp.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    for shared in (runtime / "infermon", temp / f"infermon-{os.getuid()}"):
        shared.mkdir(mode=0o777)
        os.chmod(shared, 0o777)
    assert agent.start(0.05) is True
    channel = agent._agent.channel
    agent.stop()
    assert channel.startswith(str(temp / f"infermon-{os.getuid()}-"))
    assert stat.S_IMODE(os.lstat(channel).st_mode) == 0o700
    assert capsys.readouterr().err == ""


def test_reader_skips_garbage_symlinks_foreign_and_stale_records(channel):
    agent.ensure_channel()
    good = {"protocol": 1, "pid": 11, "time": time.time(), "interval_s": 1.0, "generation_tokens_total": 5,
            "prompt_tokens_total": 2, "decode_steps_total": 1, "batch": 1, "max_batch": 1}
    Path(agent.record_path(11)).write_text(json.dumps(good))
    Path(agent.record_path(12)).write_text("{not json")
    Path(agent.record_path(13)).write_text(json.dumps({**good, "pid": 13, "time": time.time() - 3600}))
    os.symlink(agent.record_path(11), agent.record_path(14))
    Path(agent.record_path(15)).write_text(json.dumps({**good, "pid": 99}))
    Path(agent.record_path(16)).write_text(json.dumps(good)[:20])  # half a record
    if os.geteuid() == 0:
        Path(agent.record_path(17)).write_text(json.dumps({**good, "pid": 17}))
        os.chown(agent.record_path(17), 4242, 4242)
    reading = read_agents({11, 12, 13, 14, 15, 16, 17})
    assert [a.pid for a in reading.agents] == [11]
    assert set(reading.why) >= {12, 13, 14, 15, 16}
    assert "stale" in reading.why[13]
    if os.geteuid() == 0:
        assert "someone else's" in reading.why[17]
    engine = engine_from_agents(reading.agents)
    assert engine.kind == "agent" and engine.generation_tokens_total == 5


def test_reader_refuses_a_channel_open_to_others(tmp_path, monkeypatch):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    (runtime / "infermon").mkdir()
    os.chmod(runtime / "infermon", 0o755)
    reading = read_agents({1})
    assert reading.agents == () and "open to other users" in reading.why[0]


def test_a_channel_with_no_record_is_not_read_again_until_it_changes(channel, monkeypatch):
    """The monitor's AgentWatch: a reading that found no agent stands while the channel directory
    is unchanged (no open, no listing each tick); an agent that starts publishing changes the
    directory and is found at the next read; a directory changed just now is read every time."""
    import infermon.probes.agent_channel as agent_channel

    lookups = []
    original = agent_channel._lookup
    monkeypatch.setattr(agent_channel, "_lookup", lambda *a, **k: lookups.append(1) or original(*a, **k))
    channel.mkdir(mode=0o700, parents=True, exist_ok=True)
    watch = agent_channel.AgentWatch()
    pids = {os.getpid()}

    fresh = watch.read(pids)
    assert watch.read(pids) is not fresh and len(lookups) == 2  # changed just now: read both times

    settled = time.time() - 10
    os.utime(channel, (settled, settled))
    first = watch.read(pids)
    assert first.agents == () and len(lookups) == 3
    assert watch.read(pids) is first and watch.read(pids) is first and len(lookups) == 3
    assert watch.read(pids | {1}) is not first and len(lookups) == 4  # another tree: read

    assert agent.start(0.05)
    wait_record()
    found = watch.read(pids)
    assert [a.pid for a in found.agents] == [os.getpid()] and len(lookups) == 5
    assert watch.read(pids).agents and len(lookups) == 6  # an agent publishes: read every tick
