"""Cost of one sampler tick: process tree + NVML + engine scrape (+ host), as the monitor runs it.

Conditions: 8 simulated H100s (the scripted NVML in infermon.testing.fake_nvml, GPM on, the tree on all
eight), a real 64-process tree (one parent, 63 sleeping children), and a loopback stand-in serving
a real vLLM /metrics text (tests/data/vllm-cpu-0.32.0-metrics.under-load.prom: vLLM 0.32.0 under
load with --enable-mfu-metrics, 614 lines, 92 families of which 72 vllm:*, 15 histograms), or a
live server with ``--metrics-url``. Prints median and p95 over N ticks, and the engine scrape's
own cost (fetch, parse, map) against the same text.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = """
import sys, time
from infermon.testing.metrics_server import MetricsServer
# HTTP/1.1 with keep-alive, as vLLM's server (uvicorn) answers.
with MetricsServer(open(sys.argv[1]).read(), advance={"vllm:generation_tokens_total": 100.0}, max_lifetime_s=600,
                   keep_alive=True) as s:
    print(s.port, flush=True)
    time.sleep(600)
"""

TREE = """
import subprocess, sys, time
children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(int(sys.argv[1]))]
print("ready", flush=True)
time.sleep(600)
"""


FIXTURE = ROOT / "tests" / "data" / "vllm-cpu-0.32.0-metrics.under-load.prom"


def engine_cost(url: str, scrapes: int = 200) -> dict:
    """Median and p95 (ms) of one EngineProbe.sample() against ``url`` (fetch + parse + map)."""
    from infermon.probes.engines import EngineProbe

    probe = EngineProbe(url, kind="vllm")
    probe.sample()
    costs = []
    for _ in range(scrapes):
        began = time.perf_counter()
        sample = probe.sample()
        costs.append((time.perf_counter() - began) * 1e3)
    assert sample.generation_tokens_total is not None, sample.why
    costs.sort()
    return {"scrape_ms_median": statistics.median(costs), "scrape_ms_p95": costs[int(0.95 * len(costs)) - 1]}


def measure(ticks: int = 200, processes: int = 64, gpus: int = 8, metrics_url: str | None = None) -> dict:
    from infermon.testing.fake_nvml import FakeGpu, FakeNvml

    from infermon.probes.sampler import Sampler, SamplerConfig

    # The stand-in engine is its own process, as a real server is: its CPU is not the monitor's.
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(FIXTURE)],
                              stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    url = metrics_url or f"http://127.0.0.1:{port}/metrics"
    parent = subprocess.Popen([sys.executable, "-c", TREE, str(processes - 1)], stdout=subprocess.PIPE, text=True)
    try:
        parent.stdout.readline()
        import psutil

        pids = [parent.pid] + [c.pid for c in psutil.Process(parent.pid).children(recursive=True)]
        fake_gpus = [FakeGpu() for _ in range(gpus)]
        for index, gpu in enumerate(fake_gpus):
            gpu.compute_processes = {pids[index % len(pids)]: 10 * 2**30}
        sampler = Sampler(SamplerConfig(pid=parent.pid, interval_s=1.0, metrics_url=url),
                          nvml=FakeNvml(fake_gpus, clock=time.monotonic))
        for _ in range(3):  # warm: psutil objects, NVML handles, the engine's info endpoint
            sampler.tick()
        costs, cpu = [], []
        for _ in range(ticks):
            began, began_cpu = time.perf_counter(), time.process_time()
            snapshot = sampler.tick()
            costs.append((time.perf_counter() - began) * 1e3)
            cpu.append((time.process_time() - began_cpu) * 1e3)
        sampler.close()
        scrape = engine_cost(url, ticks)
        assert snapshot.engine is not None and snapshot.engine.generation_tokens_total is not None
        assert len(snapshot.tree.processes) == processes, len(snapshot.tree.processes)
        assert len(snapshot.devices) == gpus
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()
        server.kill()
        server.wait()
    costs.sort()
    return {"tick_ms_median": statistics.median(costs), "tick_ms_p95": costs[int(0.95 * len(costs)) - 1],
            "tick_cpu_ms_median": statistics.median(cpu),
            "ticks": ticks, "processes": processes, "gpus": gpus, "metrics": "live" if metrics_url else "real capture",
            **scrape}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--metrics-url", help="a live engine's /metrics instead of the real capture")
    args = parser.parse_args()
    result = measure(args.ticks, metrics_url=args.metrics_url)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"tick cost: median {result['tick_ms_median']:.2f} ms, p95 {result['tick_ms_p95']:.2f} ms, "
              f"CPU {result['tick_cpu_ms_median']:.2f} ms "
              f"({result['ticks']} ticks; {result['gpus']} simulated GPUs, {result['processes']}-process tree, "
              f"loopback vLLM /metrics, {result['metrics']}; {os.cpu_count()} CPUs); engine scrape alone: median "
              f"{result['scrape_ms_median']:.2f} ms, p95 {result['scrape_ms_p95']:.2f} ms")


if __name__ == "__main__":
    main()
