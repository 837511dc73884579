"""The dashboard over SSH: time to first frame and bytes written to the terminal per second.

Runs ``infermon --pid`` in a detached tmux pane against a stand-in vLLM process (a real process
tree and a loopback /metrics whose counters advance), as a user would over SSH:

- first frame: seconds from launch until the header shows the watched pid (the first drawn data);
- bytes/s: what the pane received per second at 1 Hz in steady state (after a settle time),
  at the given terminal size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The stand-in serves an 8B model's counters; H100-like ceilings keep the figures plausible.
HOST = ["--host-bandwidth", "3.35TB/s", "--host-flops", "989TFLOPS"]


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def _launch(session: str, cols: int, rows: int, command: list[str], log: str | None = None) -> None:
    from side_by_side import new_session  # bench/ is the script's folder, first on sys.path

    quoted = " ".join(subprocess.list2cmdline([c]) for c in command)
    new_session(session, cols, rows, f"TERM=xterm-256color COLORTERM=truecolor {quoted}; sleep 600")
    if log:
        _tmux("pipe-pane", "-t", session, "-o", f"cat >> {log}")


def _monitor_process(engine_pid: int):
    """The infermon process tmux started (a python running infermon.cli.main --pid ENGINE)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "infermon.cli.main" in cmdline and str(engine_pid) in cmdline:
            return proc
    return None


def measure(cols: int = 120, rows: int = 40, settle_s: float = 8.0, window_s: float = 30.0,
            interval_s: float = 1.0, soak: bool = False) -> dict:
    from infermon.testing.fake_engine import VLLM_FIXTURE, start_fake_engine

    if shutil.which("tmux") is None:
        raise SystemExit("bench/terminal.py needs tmux")
    folder = Path(tempfile.mkdtemp())
    engine, _ = start_fake_engine(folder, "vllm.entrypoints.openai.api_server", VLLM_FIXTURE,
                                  {"vllm:generation_tokens_total": 1000.0, "vllm:prompt_tokens_total": 200.0},
                                  args=("--model", "llama-3.1-8b"), lifetime=int(settle_s + window_s + 60))
    rss_start = rss_end = cpu_percent = None
    screen = ""
    infermon = [sys.executable, "-m", "infermon.cli.main", "--pid", str(engine.pid), "--interval", f"{interval_s:g}", *HOST]
    session = f"infermon-bench-{os.getpid()}"
    log = str(folder / "pane.log")
    try:
        began = time.monotonic()
        _launch(session, cols, rows, infermon, log)
        first_frame = None
        while time.monotonic() - began < 20:
            screen = _tmux("capture-pane", "-p", "-t", session)
            if f"pid {engine.pid}" in screen:
                first_frame = time.monotonic() - began
                break
            time.sleep(0.01)
        time.sleep(max(0.0, settle_s - (time.monotonic() - began)))
        monitor = _monitor_process(engine.pid)
        start_bytes = os.path.getsize(log)
        if monitor is not None:
            cpu_start, rss_start, wall_start = sum(monitor.cpu_times()[:2]), monitor.memory_info().rss, time.monotonic()
        time.sleep(window_s)
        end_bytes = os.path.getsize(log)
        if monitor is not None and monitor.is_running():
            cpu_percent = (sum(monitor.cpu_times()[:2]) - cpu_start) / (time.monotonic() - wall_start) * 100
            rss_end = monitor.memory_info().rss
        screen = _tmux("capture-pane", "-p", "-t", session)
    finally:
        _tmux("kill-session", "-t", session)
        engine.kill()
        engine.wait()
    return {"first_frame_s": first_frame, "terminal_bytes_per_s": (end_bytes - start_bytes) / window_s,
            "size": f"{cols}x{rows}", "window_s": window_s, "monitor_cpu_percent": cpu_percent,
            "rss_start_bytes": rss_start, "rss_end_bytes": rss_end, "alive": rss_end is not None,
            "traceback_on_screen": "Traceback" in screen, "interval_s": interval_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="120x40")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cols, rows = (int(v) for v in args.size.split("x"))
    result = measure(cols, rows, window_s=args.window)
    if args.json:
        print(json.dumps(result))
        return
    ff = result["first_frame_s"]
    print(f"time to first frame: {ff:.2f} s" if ff is not None else "time to first frame: not seen in 20 s")
    print(f"terminal bytes/s at 1 Hz: {result['terminal_bytes_per_s']:.0f} B/s "
          f"({result['size']}, steady state over {result['window_s']:.0f} s, stand-in vLLM on a loopback port, "
          f"{os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
