"""``infermon demo``: a real workload to watch on any machine, GPU or not.

It starts a small Llama-style decoder with random weights generating continuously in a child
process (on the GPU when there is one, else the CPU), with the agent inside, and opens the
dashboard on it: real tokens/s against the host's calibrated (or the GPU's datasheet) ceilings.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys

from infermon.cli.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from infermon.cli.monitor import add_arguments

    demo = sub.add_parser("demo", help="watch a real demo workload (a small random-weight decoder) generating",
                          description=__doc__.splitlines()[0])
    add_arguments(demo, with_pid=False)
    demo.add_argument("--size", choices=("small", "tiny"), default="small",
                      help="small: ~107M parameters, memory-bound on a CPU (default); tiny: for quick checks")
    demo.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    demo.add_argument("--seconds", type=float, default=None, help="stop the workload after this long")
    demo.add_argument("--log", metavar="FILE", help="the workload's output (default: a temp file)")
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import math

    from infermon.cli.agent_cmds import run_command
    from infermon.cli.monitor import check_arguments, check_terminal, dashboard_themes

    if importlib.util.find_spec("torch") is None:
        raise UserError("the demo needs torch in this environment: pip install torch (e.g. torch==2.13.0)")
    if args.seconds is not None and not (0 < args.seconds and math.isfinite(args.seconds)):
        raise UserError(f"--seconds must be a positive number of seconds, not {args.seconds}")
    if args.json and not args.once:
        raise UserError("--json goes with --once")
    if args.once and args.record:
        raise UserError("choose one of --once and --record")
    # All checked before the host is calibrated or the workload starts.
    check_arguments(args)
    if not args.once and not args.record:
        dashboard_themes(args)
        check_terminal()
    if not args.no_calibrate and not (args.host_bandwidth and args.host_flops):
        _calibrate_first()
    command = [sys.executable, "-m", "infermon.cli.demo_workload", "--size", args.size]
    if args.device != "auto":
        command += ["--device", args.device]
    if args.seconds is not None:
        command += ["--seconds", f"{args.seconds:g}"]
    args.command = command
    return run_command(args)


def _calibrate_first() -> None:
    """Measure the host before the workload competes for its memory bus (once per host, cached)."""
    from infermon.probes.host import load_cached

    if load_cached() is not None:
        return
    print("infermon: measuring this host's memory bandwidth and FLOP/s (once, about 2 s)…", file=sys.stderr)
    from infermon.probes.host import host_ceilings

    host_ceilings()
