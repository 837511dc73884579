"""What Textual alone costs for the dashboard's kind of frame, beside the dashboard itself.

The "floor" is a bare Textual app with nothing of infermon's but its row widget (``Body``) and its
quiet terminal driver: a thread posts 22 rows once a second, 8 of which change (a figure and a
sparkline-like run of blocks, as the overview's rows do). No probes, no derivation, no panels.
It runs in a tmux pane beside ``infermon --pid`` on the same loaded ``llama-server`` as
``bench/side_by_side.py``, both at once, and each one's CPU is read from the kernel's per-thread
counters (schedstat) over the same window. What the dashboard costs above the floor is what its
sampling and its own drawing add.

    python bench/textual_floor.py [--size 80x24] [--pairs 3] [--window 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

CHANGING_ROWS = range(0, 22, 3)  # 8 of the 22 rows change every second


def floor_app():
    """The bare app (not yet running): run in the pane until killed."""
    import random
    import threading

    from rich.text import Text
    from textual.app import App
    from textual.message import Message

    from infermon.tui.driver import driver_class
    from infermon.tui.widgets import Body

    class Rows(Message):
        def __init__(self, rows: list) -> None:
            super().__init__()
            self.rows = rows

    class Floor(App):
        CSS = "Body { height: 1fr; }"

        def compose(self):
            self.body = Body()
            yield self.body

        def on_mount(self) -> None:
            self.stopped = threading.Event()
            self.poster = threading.Thread(target=self.post_rows, daemon=True)
            self.poster.start()

        def on_unmount(self) -> None:
            self.stopped.set()
            self.poster.join(timeout=5)

        def post_rows(self) -> None:
            draw = random.Random(0)  # its own generator: the process's random state is not touched
            while not self.stopped.is_set():
                rows = []
                for index in range(22):
                    if index in CHANGING_ROWS:
                        blocks = "".join("▁▂▃▄▅▆▇█"[draw.randrange(8)] for _ in range(14))
                        text = f" figure {index:<3} {draw.uniform(10, 200):8.3g} tok/s measured  {blocks}"
                    else:
                        text = f" row {index:<3} 9.69 GB/s modeled  MBU 42.6% modeled  of 22.8 GB/s measured"
                    rows.append((str(index), Text(text, end="")))
                self.post_message(Rows(rows))
                self.stopped.wait(1.0)

        def on_rows(self, message: Rows) -> None:
            self.body.set_rows(message.rows)

    from textual.drivers.linux_driver import LinuxDriver

    return Floor(driver_class=driver_class(LinuxDriver))


def run(size: tuple[int, int], pairs: int, window_s: float, settle_s: float) -> dict:
    from ab_dashboard import at_once

    def commands(server_pid: int) -> dict[str, list[str]]:
        return {"floor": [sys.executable, str(Path(__file__).resolve()), "--inside"],
                "infermon": [sys.executable, "-m", "infermon.cli.main", "--pid", str(server_pid), "--interval", "1"]}

    folder = Path(tempfile.mkdtemp(prefix="infermon-floor-"))
    windows = at_once("bench/textual_floor.py", commands, size, pairs, window_s, settle_s, folder)
    cols, rows = size
    both = [w["ms_per_s"] for w in windows if w["ms_per_s"].get("floor") and w["ms_per_s"].get("infermon")]
    return {"size": f"{cols}x{rows}", "window_s": window_s, "machine": f"{os.cpu_count()} CPUs", "windows": windows,
            "floor_ms_per_s_median": round(statistics.median(m["floor"] for m in both), 3) if both else None,
            "infermon_ms_per_s_median": round(statistics.median(m["infermon"] for m in both), 3) if both else None,
            "infermon_over_floor_median": (round(statistics.median(m["infermon"] / m["floor"] for m in both), 2)
                                           if both else None)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="80x24")
    parser.add_argument("--pairs", type=int, default=3, help="windows measured, both at once (default 3)")
    parser.add_argument("--window", type=float, default=40.0, help="seconds per window (default 40)")
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        floor_app().run()
        return 0
    cols, rows = (int(v) for v in args.size.split("x"))
    result = run((cols, rows), args.pairs, args.window, args.settle)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"Textual's floor beside the dashboard, {result['size']}, 1 Hz, one loaded llama.cpp server "
          f"({result['machine']}; {len(result['windows'])} windows of {args.window:.0f} s, both at once)")
    for index, window in enumerate(result["windows"], 1):
        ms = window["ms_per_s"]
        shown = ", ".join(f"{name} {value:.3f}" if value is not None else f"{name} n/a" for name, value in ms.items())
        print(f"  window {index}: {shown} ms of CPU per s (load average {window['load_average']})")
    if result["floor_ms_per_s_median"] is not None:
        print(f"  median: the bare Textual app {result['floor_ms_per_s_median']:.3f} ms/s, infermon "
              f"{result['infermon_ms_per_s_median']:.3f} ms/s; infermon ÷ floor {result['infermon_over_floor_median']}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
