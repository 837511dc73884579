"""bench/gpu_check.py in its CPU dry mode, without textual or gguf (as on the GPU machine)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "gpu_check.py"

RUNNER = """
import runpy, sys
sys.modules["textual"] = None   # not installed on the GPU machine
sys.modules["gguf"] = None
sys.argv = [sys.argv[1], "--cpu", "--seconds", "2", "--out", sys.argv[2]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_dry_run_reports_every_claim(tmp_path, monkeypatch):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    result = subprocess.run([sys.executable, "-c", RUNNER, str(SCRIPT), str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    for claim in ("modeled vs measured bandwidth within 15% at batch 1", "verdict memory-bound at batch 1",
                  "compute-bound (or near the ridge)", "NVML per-process memory ≥ torch reserved", "no probe raised"):
        assert claim in out
    assert "PASS  verdict memory-bound at batch 1" in out
    assert "PASS  no probe raised" in out
    assert "RESULT:" in out and "0 failed" in out
    data = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert [r["batch"] for r in data["results"]] == [1, 4]
    assert all(r["tokens_per_s"] > 0 for r in data["results"])
    assert (tmp_path / "out" / "gpu_check.log").read_text().count("batch") >= 2
