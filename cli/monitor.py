"""``infermon --pid PID`` headless: ``--once`` (report or JSON) and ``--record FILE`` (JSON lines)."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from infermon.cli.errors import RuntimeFailure, UserError


MIN_INTERVAL_S = 0.05


def add_arguments(parser: argparse.ArgumentParser, with_pid: bool = True) -> None:
    watch = parser.add_argument_group("watch a process")
    if with_pid:
        watch.add_argument("--pid", "-p", type=int, metavar="PID", help="the inference server (or script) to watch; its children are found")
    watch.add_argument("--interval", "-i", type=float, default=1.0, metavar="S", help="seconds between samples (default 1)")
    watch.add_argument("--model", "-m", metavar="M", help="the model, when the command line does not name it (as for calc)")
    watch.add_argument("--gpu", metavar="NAME", help="look up this GPU in the table instead of the name NVML reports")
    watch.add_argument("--metrics-url", metavar="URL", help="the engine's Prometheus endpoint (default: found from listening ports)")
    watch.add_argument("--once", action="store_true", help="take two samples one interval apart, print one report, exit")
    watch.add_argument("--json", action="store_true", help="with --once: print one JSON object")
    watch.add_argument("--record", metavar="FILE", help="append one JSON line per sample to FILE until interrupted or the process exits")
    watch.add_argument("--host-bandwidth", metavar="B/S", help="host memory bandwidth for CPU inference (skips calibration)")
    watch.add_argument("--host-flops", metavar="FLOP/S", help="host peak FLOP/s for CPU inference (skips calibration)")
    watch.add_argument("--no-calibrate", action="store_true", help="never run the short host calibration")
    watch.add_argument("--theme", metavar="T", help="dashboard theme: dark, light, high-contrast, ansi, or user (see README)")
    watch.add_argument("--no-mouse", action="store_true", help="do not capture the mouse (select text in the terminal freely)")


def check_arguments(args: argparse.Namespace) -> None:
    """Every check of the watch options that needs no process, so that commands which start one
    (``run``, ``demo``) fail with one line before anything starts."""
    from infermon.model.loaders import ModelLoadError, load_model

    _config(args)
    if args.model:
        try:
            load_model(args.model)
        except ModelLoadError as exc:
            raise UserError(str(exc)) from None
    if args.gpu:
        from infermon.model.gpu import find_gpu, suggest_gpus

        if find_gpu(args.gpu) is None:
            hint = suggest_gpus(args.gpu)
            more = f"; did you mean {', '.join(hint)}?" if hint else ""
            raise UserError(f"--gpu: unknown GPU {args.gpu!r}{more} (see infermon calc --list-gpus)")
    if getattr(args, "record", None):
        check_record_path(args.record)


def check_record_path(path: str) -> None:
    """``--record FILE`` must be a regular file we can append to (created if missing), no symlink:
    checked before sampling, or a child, starts."""
    from infermon.views.recording import RecordingError, open_for_append

    try:
        open_for_append(path).close()
    except RecordingError as exc:
        raise UserError(str(exc)) from None


def _config(args: argparse.Namespace):
    from infermon.model.units import QuantityError, parse_bandwidth, parse_flops
    from infermon.probes.sampler import SamplerConfig

    # Also refuses nan. Below 50 ms every tick would scrape the engine and walk /proc of the whole
    # tree hundreds of times a second: a monitor must not load the server it watches.
    if not MIN_INTERVAL_S <= args.interval <= 3600:
        raise UserError(f"--interval must be between {MIN_INTERVAL_S:g} and 3600 seconds, not {args.interval}")
    overrides = {}
    try:
        if args.host_bandwidth:
            overrides["bandwidth_bytes_per_s"] = parse_bandwidth(args.host_bandwidth)
        if args.host_flops:
            overrides["peak_flops"] = parse_flops(args.host_flops)
    except QuantityError as exc:
        raise UserError(str(exc)) from None
    if args.metrics_url and not args.metrics_url.startswith(("http://", "https://")):
        raise UserError(f"--metrics-url must start with http:// or https://, not {args.metrics_url!r}")
    return SamplerConfig(pid=args.pid, interval_s=args.interval, metrics_url=args.metrics_url,
                         host_overrides=overrides, allow_calibration=not args.no_calibrate)


def open_sampler(args: argparse.Namespace, own_child: bool = False):
    """A sampler on ``args.pid`` and the live model, or a one-line :class:`UserError`.
    ``own_child``: the pid is a command we started (``run``), so no init-like check, and its counters
    started at zero with it (the run's totals include what it made before the first sample)."""
    from infermon.live.derive import Deriver
    from infermon.probes.process import TargetError, init_like, open_target
    from infermon.probes.sampler import Sampler

    check_arguments(args)
    config = _config(args)
    if not own_child:
        try:
            open_target(args.pid)
        except TargetError as exc:
            raise UserError(str(exc)) from None
        refused = init_like(args.pid)
        if refused:
            raise UserError(refused)
    try:
        sampler = Sampler(config)
    except TargetError as exc:
        raise UserError(str(exc)) from None
    return sampler, Deriver(args.model, args.gpu, count_from_start=own_child)


def run(args: argparse.Namespace) -> int:
    if args.json and not args.once:
        raise UserError("--json goes with --once (use --record FILE for a stream of JSON lines)")
    if args.once and args.record:
        raise UserError("choose one of --once and --record")
    if not args.once and not args.record:
        return run_dashboard(args)
    sampler, live = open_sampler(args)
    try:
        if args.once:
            return _once(sampler, live, args)
        return _record(sampler, live, args)
    finally:
        sampler.close()


def dashboard_themes(args: argparse.Namespace) -> list:
    """The user's theme file (if any) and a checked ``--theme``; one-line errors for bad ones."""
    from infermon.themes import ThemeFileError, load_user_theme, theme_names

    try:
        user = load_user_theme()
    except ThemeFileError as exc:
        raise UserError(str(exc)) from None
    if args.theme and args.theme not in theme_names(user):
        raise UserError(f"unknown theme {args.theme!r}: choose one of {', '.join(theme_names(user))}")
    return [user] if user else []


def check_terminal() -> None:
    import shutil

    if not sys.stdout.isatty():
        raise UserError("the dashboard needs a terminal (use --once, --json or --record FILE when piping)")
    from infermon.tui.app import MIN_HEIGHT, MIN_WIDTH

    size = shutil.get_terminal_size((0, 0))
    if size.columns < MIN_WIDTH or size.lines < MIN_HEIGHT:
        raise UserError(f"terminal too small ({size.columns}×{size.lines}): the dashboard needs at least "
                        f"{MIN_WIDTH}×{MIN_HEIGHT}")


def run_dashboard(args: argparse.Namespace) -> int:
    """The live TUI; on exit, the run's perf summary is printed to the terminal."""
    themes = dashboard_themes(args)
    check_terminal()
    sampler, live = open_sampler(args)
    from infermon.tui.app import InfermonApp
    from infermon.tui.sources import LiveSource

    app = InfermonApp(LiveSource(sampler, live), theme=args.theme, themes=themes, target=f"pid {args.pid}")
    app.run(mouse=not args.no_mouse)
    print(app.summary_text())
    return 0


def _once(sampler, live, args) -> int:
    from infermon.views.live_json import dumps, live_to_json

    live.update(sampler.tick())
    time.sleep(args.interval)
    snapshot = sampler.tick()
    view = live.update(snapshot)
    if snapshot.tree is not None and not snapshot.tree.alive:
        raise RuntimeFailure(snapshot.tree.why.get("process", f"pid {args.pid} exited"))
    if args.json:
        print(dumps(live_to_json(view), indent=2))
    else:
        from infermon.views.live_report import print_live_report

        print_live_report(view)
    return 0


class _Stop(Exception):
    pass


def _record(sampler, live, args) -> int:
    from infermon.views.recording import RecordingError, RecordingWriter, open_for_append

    def stop(signum, frame):
        raise _Stop()

    try:
        handle = open_for_append(args.record)
    except RecordingError as exc:
        raise UserError(str(exc)) from None
    previous_handler = signal.signal(signal.SIGTERM, stop)
    lines = 0
    writer = RecordingWriter(handle)
    try:
        with handle:
            next_tick = time.monotonic()
            while True:
                snapshot = sampler.tick()
                view = live.update(snapshot)
                exited = snapshot.tree is not None and not snapshot.tree.alive
                if exited and snapshot.agents:
                    # The agents' final records: the counts of the last interval before the exit.
                    writer.write(view)
                    lines += 1
                if exited:
                    reason = snapshot.tree.why.get("process", "the process exited")
                    writer.write_event({"event": "exited", "time": snapshot.time, "pid": args.pid, "why": reason})
                    print(f"infermon: {reason}; {lines} samples in {args.record}", file=sys.stderr)
                    return 0
                writer.write(view)
                lines += 1
                next_tick += args.interval
                time.sleep(max(0.0, next_tick - time.monotonic()))
    except (KeyboardInterrupt, _Stop):
        print(f"infermon: stopped; {lines} samples in {args.record}", file=sys.stderr)
        return 0
    except OSError as exc:
        # A full disk or a vanished file system: the lines already written stay intact.
        raise RuntimeFailure(f"cannot write {args.record} ({exc.strerror or exc}); "
                             f"{lines} samples written before it") from None
    finally:
        # None: the previous handler was not set from Python; the default is what it was.
        signal.signal(signal.SIGTERM, previous_handler if previous_handler is not None else signal.SIG_DFL)
