"""Recordings: reading them back (corrupt lines skipped), replaying them in the dashboard, diff."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from infermon.views.recording import RecordingError, read_recording
from infermon.tui.app import InfermonApp
from infermon.tui.sources import ReplaySource

RECORDING = Path(__file__).parent / "data" / "vllm-recording.jsonl"


def infermon(*args):
    return subprocess.run([sys.executable, "-m", "infermon.cli.main", *args], capture_output=True, text=True,
                          timeout=60)


def test_recording_reads_back_into_views():
    recording = read_recording(str(RECORDING))
    assert len(recording.views) == 16 and not recording.notices
    assert recording.exit_note.endswith("has exited")
    view = recording.views[-1]
    assert view.model.name == "Llama 3.1 8B"  # carried over lines that left the model out
    assert view.snapshot.engine.kind == "vllm"


def test_corrupt_and_truncated_lines_are_skipped_with_a_notice(tmp_path):
    lines = RECORDING.read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0], "{garbage", lines[1][: len(lines[1]) // 2], *lines[2:]]) + "\n")
    recording = read_recording(str(broken))
    assert len(recording.views) == 15
    assert any("line 2" in n for n in recording.notices) and any("line 3" in n for n in recording.notices)


@pytest.mark.parametrize("content", ["", "not json at all\n", '{"a": 1}\n'])
def test_files_without_samples_are_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(RecordingError, match="no usable samples"):
        read_recording(str(path))
    result = infermon("replay", str(path), "--once")
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_missing_file_is_one_clear_error():
    result = infermon("replay", "/no/such/recording.jsonl", "--once")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_replay_once_json_summarises():
    result = infermon("replay", str(RECORDING), "--once", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["samples"] == 16 and data["engine"] == "vllm"
    assert data["generation_tokens_per_s"]["median"] == pytest.approx(300, rel=0.05)
    assert 0 < data["mbu"]["median"] < 1


def test_diff_compares_two_recordings(tmp_path):
    faster = tmp_path / "faster.jsonl"
    lines = RECORDING.read_text().splitlines()
    doubled = []
    for line in lines:
        record = json.loads(line)
        if "replay" in record:
            rates = record["replay"]["rates"]
            if rates["generation_tokens_per_s"]:
                rates["generation_tokens_per_s"] *= 2
        doubled.append(json.dumps(record))
    faster.write_text("\n".join(doubled) + "\n")
    result = infermon("diff", str(RECORDING), str(faster), "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["figure"]: row for row in json.loads(result.stdout)["rows"]}
    assert rows["generation tokens/s (median)"]["change"] == pytest.approx(1.0, rel=0.01)
    table = infermon("diff", str(RECORDING), str(faster))
    assert "+100.0%" in table.stdout


async def settle_replay(pilot, source):
    for _ in range(400):
        if source.at_end:
            break
        await asyncio.sleep(0.01)
    for _ in range(5):
        await pilot.pause()


async def test_replay_drives_the_dashboard_with_pause_speed_and_seek():
    source = ReplaySource(read_recording(str(RECORDING)).views, speed=8.0)
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


def test_replay_snapshot(snap_compare):
    source = ReplaySource(read_recording(str(RECORDING)).views, speed=8.0)
    app = InfermonApp(source, target="recording")

    async def run_before(pilot):
        await settle_replay(pilot, source)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
