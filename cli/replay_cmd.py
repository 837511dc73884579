"""``infermon replay FILE`` and ``infermon diff A B``: recordings made with ``--record``."""

from __future__ import annotations

import argparse
import sys

from infermon.cli.errors import UserError
from infermon.views.live_json import dumps
from infermon.views.recording import RecordingError, iter_ticks, read_recording, summarize


def add_parsers(sub: argparse._SubParsersAction) -> None:
    replay = sub.add_parser("replay", help="play a --record file back in the dashboard (or summarise it)",
                            description="Play a recording in the dashboard: p pause, +/- speed (0.5×–8×), "
                            "←/→ seek 10 samples (shift: 60), Home/End. --once summarises it instead.")
    replay.add_argument("file")
    replay.add_argument("--speed", type=float, default=1.0, choices=(0.5, 1.0, 2.0, 4.0, 8.0))
    replay.add_argument("--once", action="store_true", help="print a summary of the recording and exit")
    replay.add_argument("--json", action="store_true",
                        help="with --once: the summary as one JSON object; alone: every tick whole, one JSON object a line")
    replay.add_argument("--theme", metavar="T")
    replay.add_argument("--no-mouse", action="store_true")
    replay.set_defaults(handler=replay_command)

    diff = sub.add_parser("diff", help="compare two recordings: throughput, MBU and KV figures side by side")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(handler=diff_command)


def _load(path: str):
    try:
        recording = read_recording(path)
    except RecordingError as exc:
        raise UserError(str(exc)) from None
    for notice in recording.notices[:5]:
        print(f"infermon: {path}: {notice}", file=sys.stderr)
    if len(recording.notices) > 5:
        print(f"infermon: {path}: {len(recording.notices) - 5} more lines skipped", file=sys.stderr)
    return recording


def _stream(path: str) -> int:
    """Every tick whole, one JSON object a line (deltas applied): for jq and other tools."""
    notices: list[str] = []
    try:
        for record in iter_ticks(path, notices):
            print(dumps(record))
    except RecordingError as exc:
        raise UserError(str(exc)) from None
    for notice in notices[:5]:
        print(f"infermon: {path}: {notice}", file=sys.stderr)
    return 0


def replay_command(args: argparse.Namespace) -> int:
    if args.json and not args.once:
        return _stream(args.file)
    if not args.once:
        from infermon.cli.monitor import check_terminal, dashboard_themes

        themes = dashboard_themes(args)
        check_terminal()
    recording = _load(args.file)
    if args.once:
        summary = summarize(recording)
        if args.json:
            print(dumps(summary, indent=2))
        else:
            _print_summary(summary)
        return 0
    from infermon.tui.app import InfermonApp
    from infermon.tui.sources import ReplaySource

    app = InfermonApp(ReplaySource(recording.views, speed=args.speed), theme=args.theme, themes=themes,
                      target=args.file, notices=recording.notices)
    app.run(mouse=not args.no_mouse)
    return 0


def _fmt(value, unit="", scale=1.0, digits=1) -> str:
    if value is None:
        return "n/a"
    return f"{value * scale:,.{digits}f}{unit}"


def _print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{s['file']}: {s['samples']} samples over {s['span_s']:.0f} s", show_header=False,
                  title_justify="left")
    table.add_column(style="cyan")
    table.add_column(justify="right")
    rows = [
        ("process", f"pid {s['pid']} ({s['engine'] or 'no engine'})"),
        ("model on device", f"{s['model'] or '?'} on {s['hardware'] or '?'}"),
        ("generation tokens/s", f"median {_fmt(s['generation_tokens_per_s']['median'])}, max {_fmt(s['generation_tokens_per_s']['max'])}"),
        ("prompt tokens/s", f"median {_fmt(s['prompt_tokens_per_s']['median'])}, max {_fmt(s['prompt_tokens_per_s']['max'])}"),
        ("tokens generated", _fmt(s["generation_tokens"], digits=0)),
        ("batch", f"median {_fmt(s['batch']['median'])}, max {_fmt(s['batch']['max'])}"),
        ("MBU", f"median {_fmt(s['mbu']['median'], '%', 100)}, max {_fmt(s['mbu']['max'], '%', 100)}"),
        ("MFU", f"median {_fmt(s['mfu']['median'], '%', 100)}, max {_fmt(s['mfu']['max'], '%', 100)}"),
        ("KV usage", f"median {_fmt(s['kv_usage']['median'], '%', 100)}, max {_fmt(s['kv_usage']['max'], '%', 100)}"),
        ("KV headroom (min)", _fmt(s["kv_headroom_tokens_min"], " tokens", digits=0)),
        ("memory-bound share", _fmt(s["memory_bound_share"], "%", 100)),
    ]
    if s["exit"]:
        rows.append(("ended", s["exit"]))
    for label, value in rows:
        table.add_row(label, value)
    Console().print(table)


DIFF_ROWS = (
    ("generation tokens/s (median)", lambda s: s["generation_tokens_per_s"]["median"], 1.0, ""),
    ("generation tokens/s (max)", lambda s: s["generation_tokens_per_s"]["max"], 1.0, ""),
    ("prompt tokens/s (median)", lambda s: s["prompt_tokens_per_s"]["median"], 1.0, ""),
    ("batch (median)", lambda s: s["batch"]["median"], 1.0, ""),
    ("MBU (median)", lambda s: s["mbu"]["median"], 100.0, "%"),
    ("MFU (median)", lambda s: s["mfu"]["median"], 100.0, "%"),
    ("KV usage (max)", lambda s: s["kv_usage"]["max"], 100.0, "%"),
    ("KV headroom (min, tokens)", lambda s: s["kv_headroom_tokens_min"], 1.0, ""),
)


def comparability(a: dict, b: dict) -> list[str]:
    """Why two recordings may not compare like for like (different models, engines or devices)."""
    warnings = []
    for key, what in (("models", "models"), ("engines", "engines")):
        if a[key] and b[key] and a[key] != b[key]:
            warnings.append(f"the recordings are of different {what}: A {', '.join(a[key])}, B {', '.join(b[key])}")
    if a["hardware"] and b["hardware"] and a["hardware"] != b["hardware"]:
        warnings.append(f"the recordings ran on different devices: A {a['hardware']}, B {b['hardware']}")
    return warnings


def diff_command(args: argparse.Namespace) -> int:
    a, b = summarize(_load(args.a)), summarize(_load(args.b))
    warnings = comparability(a, b)
    rows = []
    for label, get, scale, unit in DIFF_ROWS:
        va, vb = get(a), get(b)
        change = (vb - va) / va if va not in (None, 0) and vb is not None else None
        rows.append({"figure": label, "a": va, "b": vb, "change": change})
    if args.json:
        print(dumps({"a": a, "b": b, "rows": rows, "warnings": warnings}, indent=2))
        return 0
    for warning in warnings:
        print(f"infermon: warning: {warning}", file=sys.stderr)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"A = {args.a} ({a['samples']} samples)   B = {args.b} ({b['samples']} samples)",
                  title_justify="left")
    table.add_column("figure", style="cyan")
    table.add_column("A", justify="right")
    table.add_column("B", justify="right")
    table.add_column("B vs A", justify="right")
    for (label, get, scale, unit), row in zip(DIFF_ROWS, rows):
        change = "n/a" if row["change"] is None else f"{row['change']:+.1%}"
        table.add_row(label, _fmt(row["a"], unit, scale), _fmt(row["b"], unit, scale), change)
    Console().print(table)
    return 0
