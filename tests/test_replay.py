"""Recordings: one encoding per tick that replays exactly, stays small, and survives damage; diff."""

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
from hypothesis import given, settings, strategies as st

from infermon.testing import scripted
from infermon.live.derive import Deriver
from infermon.probes.snapshot import ProcessInfo
from infermon.tui.app import InfermonApp
from infermon.tui.sources import ReplaySource
from infermon.views.recording import (
    KEYFRAME_EVERY, RecordingError, RecordingWriter, _SAME, diff, patch, read_recording, summarize,
)


def infermon(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "infermon.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def write_recording(path, views, exit_note="pid 4242 has exited"):
    with open(path, "w", encoding="utf-8") as handle:
        writer = RecordingWriter(handle)
        for view in views:
            writer.write(view)
        if exit_note:
            writer.write_event({"event": "exited", "time": 0, "pid": 4242, "why": exit_note})
    return path


@pytest.fixture
def recording(tmp_path):
    return write_recording(tmp_path / "vllm.jsonl", scripted.views(16))


def test_a_recording_replays_into_exactly_the_views_that_were_recorded(tmp_path):
    views = scripted.views(KEYFRAME_EVERY + 10)
    path = write_recording(tmp_path / "run.jsonl", views)
    back = read_recording(str(path))
    assert back.views == tuple(views)  # every field of every tick, figures and sources included
    assert back.exit_note == "pid 4242 has exited" and not back.notices
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    keyframes = [i for i, line in enumerate(lines[:-1]) if "delta" not in line]
    assert keyframes == [0, KEYFRAME_EVERY]
    assert lines[KEYFRAME_EVERY]["figures"]["generation_tokens_per_s"]["source"] == "engine-reported"


def test_a_sample_of_a_64_process_tree_stays_under_10_kb(tmp_path):
    def big_tree(i):
        snap = scripted.snapshot(i)
        children = tuple(ProcessInfo(pid=5000 + k, ppid=scripted.ROOT_PID, name="python",
                                     cmdline=("python", "-m", "worker", "--rank", str(k), "--port", str(30000 + k)),
                                     role=f"VLLM::Worker_TP{k}", cpu_percent=50.0 + (i * k) % 7,
                                     rss_bytes=1_900_000_000 + i * 4096 * k, threads=40, create_time=scripted.T0)
                         for k in range(62))
        return replace(snap, tree=replace(snap.tree, processes=snap.tree.processes + children))

    deriver = Deriver()
    views = [deriver.update(big_tree(i)) for i in range(120)]
    path = write_recording(tmp_path / "big.jsonl", views, exit_note=None)
    per_sample = path.stat().st_size / len(views)
    assert len(views[0].tree.processes) == 64
    assert per_sample <= 10_000, per_sample
    assert read_recording(str(path)).views == tuple(views)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("abcpid"), inner, max_size=4)
    | st.lists(st.fixed_dictionaries({"pid": st.integers(0, 4), "v": inner}), max_size=4, unique_by=lambda d: d["pid"]),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(JSONISH, JSONISH)
def test_patch_of_diff_gives_the_new_object_back(old, new):
    change = diff(old, new)
    assert (old if change is _SAME else patch(old, change)) == new


def test_damaged_lines_cost_only_the_ticks_up_to_the_next_keyframe(tmp_path, recording):
    lines = recording.read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0], lines[1], "{garbage", lines[3][: len(lines[3]) // 2], *lines[4:]]) + "\n")
    back = read_recording(str(broken))
    assert len(back.views) == 2  # the rest are changes against the damaged line: skipped, and said so
    assert any("line 3" in n for n in back.notices) and any("line 4" in n for n in back.notices)
    assert any("skipped" in n for n in back.notices[2:])


@pytest.mark.parametrize("content", ["", "not json at all\n", '{"a": 1}\n', "[" * 100_000 + "\n",
                                     '{"schema": 2, "delta": {}}\n'])
def test_files_without_samples_are_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(RecordingError, match="no usable samples"):
        read_recording(str(path))
    result = infermon("replay", str(path), "--once")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("path, words", [("/dev/zero", "not a regular file"), ("/dev/urandom", "not a regular file"),
                                         ("/tmp", "directory"), ("/no/such/recording.jsonl", "no such file")])
def test_devices_directories_and_missing_files_are_refused_at_once(path, words):
    result = infermon("replay", path, "--once", timeout=20)
    assert result.returncode == 2 and words in result.stderr and result.stderr.count("\n") == 1


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = infermon("replay", str(fifo), "--once", timeout=20)
    assert result.returncode == 2 and "not a regular file" in result.stderr


def test_absurd_numbers_and_time_going_backwards_do_not_crash_the_reader(tmp_path, recording):
    lines = recording.read_text().splitlines()
    first = json.loads(lines[0])
    first["figures"]["generation_tokens_per_s"]["value"] = 1e308
    first["figures"]["prompt_tokens_per_s"]["value"] = 1e999  # JSON text for infinity: read as n/a
    first["monotonic"] = 1e12
    path = tmp_path / "absurd.jsonl"
    path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    back = read_recording(str(path))
    assert back.views[0].figures.prompt_tokens_per_s.value is None
    summary = summarize(back)
    assert summary["span_s"] >= 0
    for args in (("--once",), ("--once", "--json"), ("--json",)):
        result = infermon("replay", str(path), *args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert "NaN" not in result.stdout and "Infinity" not in result.stdout


def test_replay_json_prints_every_tick_whole(recording):
    result = infermon("replay", str(recording), "--json")
    assert result.returncode == 0, result.stderr
    ticks = [json.loads(line) for line in result.stdout.splitlines() if "event" not in line]
    assert len(ticks) == 16 and all("figures" in t and "delta" not in t for t in ticks)


def test_replay_once_json_summarises(recording):
    result = infermon("replay", str(recording), "--once", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["samples"] == 16 and data["engine"] == "vllm"
    assert data["generation_tokens_per_s"]["median"] == pytest.approx(620, rel=0.05)
    assert 0 < data["mbu"]["median"] < 1
    last = read_recording(str(recording)).views[-1]
    assert data["generation_tokens"] == last.summary.generation_tokens


def test_diff_compares_two_recordings_and_warns_when_they_differ_in_kind(tmp_path, recording):
    faster = tmp_path / "faster.jsonl"
    views = read_recording(str(recording)).views
    doubled = [replace(v, figures=replace(v.figures, generation_tokens_per_s=replace(
        v.figures.generation_tokens_per_s, value=v.figures.generation_tokens_per_s.value * 2)))
        if v.figures.generation_tokens_per_s.value else v for v in views]
    write_recording(faster, doubled)
    result = infermon("diff", str(recording), str(faster), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows = {row["figure"]: row for row in data["rows"]}
    assert rows["generation tokens/s (median)"]["change"] == pytest.approx(1.0, rel=0.01)
    assert data["warnings"] == []
    table = infermon("diff", str(recording), str(faster))
    assert "+100.0%" in table.stdout
    other = tmp_path / "other.jsonl"
    write_recording(other, [replace(v, model=replace(v.model, name="Qwen2.5 7B")) for v in views])
    result = infermon("diff", str(recording), str(other))
    assert result.returncode == 0 and "different models" in result.stderr


def test_a_planted_symlink_is_not_followed(tmp_path):
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "run.jsonl"
    link.symlink_to(victim)
    try:
        result = infermon("--pid", str(target.pid), "--record", str(link), "--interval", "0.2",
                          "--host-bandwidth", "25GB/s", "--host-flops", "100GFLOPS")
        assert result.returncode == 2 and "symbolic link" in result.stderr
        assert victim.read_text() == "precious\n"
    finally:
        target.kill()
        target.wait()


async def settle_replay(pilot, source):
    for _ in range(400):
        if source.at_end:
            break
        await asyncio.sleep(0.01)
    for _ in range(5):
        await pilot.pause()


async def test_replay_drives_the_dashboard_with_pause_speed_and_seek(recording):
    source = ReplaySource(read_recording(str(recording)).views, speed=8.0)
    app = InfermonApp(source, target="recording")
    async with app.run_test(size=(160, 45)) as pilot:
        await settle_replay(pilot, source)
        header = str(app.query_one("#header").render())
        assert "end of recording 16/16 at 8×" in header and "vllm" in header
        await pilot.press("home")
        await pilot.press("p")
        assert source.paused and "❚❚ replay" in str(app.query_one("#header").render())
        await pilot.press("minus")
        assert source.speed == 4.0
        await pilot.press("plus")
        await pilot.press("plus")
        assert source.speed == 8.0
        await pilot.press("p")
        await settle_replay(pilot, source)
        assert source.at_end


def test_replay_snapshot(snap_compare, recording):
    source = ReplaySource(read_recording(str(recording)).views, speed=8.0)
    app = InfermonApp(source, target="recording")

    async def run_before(pilot):
        await settle_replay(pilot, source)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
