"""Cost of one sampler tick: process tree + NVML + engine scrape (+ host), as the monitor runs it.

Conditions: 8 simulated H100s (the scripted NVML in tests/fake_nvml.py, GPM on, the tree on all
eight), a real 64-process tree (one parent, 63 sleeping children), and a loopback stand-in vLLM
serving the vLLM fixture's /metrics. Prints median and p95 over N ticks.
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
sys.path.insert(0, str(ROOT / "tests"))

SERVER = """
import sys, time
sys.path.insert(0, sys.argv[2])
from metrics_server import MetricsServer
with MetricsServer(open(sys.argv[1]).read(), advance={"vllm:generation_tokens_total": 100.0}, max_lifetime_s=600) as s:
    print(s.port, flush=True)
    time.sleep(600)
"""

TREE = """
import subprocess, sys, time
children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(int(sys.argv[1]))]
print("ready", flush=True)
time.sleep(600)
"""


def measure(ticks: int = 200, processes: int = 64, gpus: int = 8) -> dict:
    from fake_nvml import FakeGpu, FakeNvml

    from infermon.probes.sampler import Sampler, SamplerConfig

    fixture = ROOT / "tests" / "data" / "vllm-0.33.0-metrics.sample.prom"
    # The stand-in engine is its own process, as a real server is: its CPU is not the monitor's.
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(fixture), str(ROOT / "tests")],
                              stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    parent = subprocess.Popen([sys.executable, "-c", TREE, str(processes - 1)], stdout=subprocess.PIPE, text=True)
    try:
        parent.stdout.readline()
        import psutil

        pids = [parent.pid] + [c.pid for c in psutil.Process(parent.pid).children(recursive=True)]
        fake_gpus = [FakeGpu() for _ in range(gpus)]
        for index, gpu in enumerate(fake_gpus):
            gpu.compute_processes = {pids[index % len(pids)]: 10 * 2**30}
        sampler = Sampler(SamplerConfig(pid=parent.pid, interval_s=1.0, metrics_url=f"http://127.0.0.1:{port}/metrics"),
                          nvml=FakeNvml(fake_gpus, clock=time.monotonic))
        for _ in range(3):  # warm: psutil objects, NVML handles, the engine's info endpoint
            sampler.tick()
        costs = []
        for _ in range(ticks):
            began = time.perf_counter()
            snapshot = sampler.tick()
            costs.append((time.perf_counter() - began) * 1e3)
        sampler.close()
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
            "ticks": ticks, "processes": processes, "gpus": gpus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.ticks)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"tick cost: median {result['tick_ms_median']:.2f} ms, p95 {result['tick_ms_p95']:.2f} ms "
              f"({result['ticks']} ticks; {result['gpus']} simulated GPUs, {result['processes']}-process tree, "
              f"loopback vLLM /metrics; {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
