"""``infermon calibrate``: measure this host's memory bandwidth and FLOP/s for CPU inference."""

from __future__ import annotations

import argparse
import json

from infermon.cli.errors import RuntimeFailure, UserError
from infermon.views.fmt import si


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="measure the host's memory bandwidth and FLOP/s (the ceilings of CPU inference)",
        description="A short numpy copy and float32 matmul give this host's ceilings; the result is cached "
        "per host and used whenever the watched process runs on the CPU.",
    )
    p.add_argument("--seconds", type=float, default=2.0, metavar="S", help="time to spend measuring (default 2)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--show", action="store_true", help="print the cached figures without measuring")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from infermon.probes.host import cache_path, calibrate, load_cached, save

    if args.show:
        ceilings = load_cached()
        if ceilings is None:
            raise RuntimeFailure(f"no calibration cached for this host in {cache_path()} (run `infermon calibrate`)")
    else:
        if not 0.1 <= args.seconds <= 600:
            raise UserError(f"--seconds must be between 0.1 and 600, not {args.seconds}")
        ceilings = calibrate(args.seconds)
        if ceilings.bandwidth_bytes_per_s is None or ceilings.peak_flops is None:
            raise RuntimeFailure(f"calibration failed: {ceilings.source}")
        problem = save(ceilings)
        if problem:
            print(f"infermon: not cached: {problem}")
    if args.json:
        print(json.dumps({"bandwidth_bytes_per_s": ceilings.bandwidth_bytes_per_s, "peak_flops": ceilings.peak_flops,
                          "source": ceilings.source, "cache": str(cache_path())}))
        return 0
    ridge = ceilings.peak_flops / ceilings.bandwidth_bytes_per_s
    print(f"memory bandwidth  {si(ceilings.bandwidth_bytes_per_s, 'B/s')}")
    print(f"peak FLOP/s       {si(ceilings.peak_flops, 'FLOP/s')}")
    print(f"ops:byte ridge    {ridge:.1f} FLOP/B")
    print(f"source            {ceilings.source}")
    print(f"cached in         {cache_path()}")
    return 0
