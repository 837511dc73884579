"""Scripted snapshots of a vLLM server on H100s, turned into LiveViews by the real Deriver.

Deterministic (no clock, no processes): what the dashboard tests and snapshots draw.
"""

from __future__ import annotations

from dataclasses import replace

from infermon.live.derive import Deriver
from infermon.live.view import LiveView
from infermon.probes.snapshot import (
    DeviceSample, EngineSample, GpuProcess, Histogram, ProcessInfo, ProcessTree, Snapshot,
)

T0 = 1_796_000_000.0
ROOT_PID, CORE_PID = 4242, 4250
GiB = 2**30
TTFT_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def tree(alive: bool = True) -> ProcessTree:
    if not alive:
        return ProcessTree(root_pid=ROOT_PID, processes=(), alive=False, why={"process": f"pid {ROOT_PID} has exited"})
    root = ProcessInfo(pid=ROOT_PID, ppid=1, name="python",
                       cmdline=("python", "-m", "vllm.entrypoints.openai.api_server", "--model", "llama-3.1-8b"),
                       cpu_percent=12.0, rss_bytes=2_100_000_000, threads=41, create_time=T0 - 3723,
                       listening_ports=(8000,))
    core = ProcessInfo(pid=CORE_PID, ppid=ROOT_PID, name="VLLM::EngineCor", cmdline=("VLLM::EngineCore",),
                       role="VLLM::EngineCore", cpu_percent=99.0, rss_bytes=4_200_000_000, threads=88,
                       create_time=T0 - 3700)
    return ProcessTree(root_pid=ROOT_PID, processes=(root, core), framework="vllm",
                       framework_evidence="vllm.entrypoints.openai.api_server", model_argument="llama-3.1-8b")


def devices(i: int, gpm: bool = True) -> tuple[DeviceSample, ...]:
    used = DeviceSample(
        index=0, name="NVIDIA H100 80GB HBM3", uuid="GPU-0", memory_total_bytes=80 * GiB,
        memory_used_bytes=72 * GiB, memory_tree_bytes=70 * GiB, utilization_gpu=0.87, utilization_memory=0.64,
        sm_clock_mhz=1755, sm_clock_max_mhz=1980, memory_clock_mhz=2619, memory_clock_max_mhz=2619,
        power_w=512.0 + i, power_limit_w=700.0, temperature_c=54, pcie_tx_bytes_per_s=2.5e9,
        pcie_rx_bytes_per_s=1.0e9, bus_width_bits=5120, derived_bandwidth_bytes_per_s=3.352e12,
        gpm_supported=gpm, dram_bandwidth_util=0.45 if gpm else None, tensor_util=0.3 if gpm else None,
        processes=(GpuProcess(CORE_PID, 70 * GiB),), used_by_tree=True,
        why={} if gpm else {"dram_bandwidth_util": "GPM not supported on this GPU (needs Hopper or newer)"})
    idle = replace(used, index=1, uuid="GPU-1", memory_used_bytes=1 * GiB, memory_tree_bytes=None,
                   utilization_gpu=0.0, power_w=70.0, temperature_c=31, processes=(), used_by_tree=False,
                   throttle_reasons=("idle",), dram_bandwidth_util=0.0 if gpm else None)
    return used, idle


def engine(i: int) -> EngineSample:
    ttft = Histogram(buckets=tuple((b, float(min(40 * i, int(40 * i * (k + 1) / 6)))) for k, b in enumerate(TTFT_BOUNDS)),
                     sum=0.2 * 40 * i, count=40.0 * i)
    return EngineSample(
        kind="vllm", url="http://127.0.0.1:8000/metrics", version="0.33.0",
        model_name="meta-llama/Llama-3.1-8B-Instruct",
        generation_tokens_total=1_000_000 + 600.0 * i + (i % 3) * 20, prompt_tokens_total=400_000 + 120.0 * i,
        requests_running=8.0, requests_waiting=2.0 if i > 5 else 0.0, batch=8.0, kv_usage=0.05 + 0.001 * i,
        kv_capacity_tokens=456_720, preemptions_total=3.0, ttft=ttft, inter_token=None,
        why={"inter_token": "no inter-token histogram in this scrape"})


def snapshot(i: int, alive: bool = True, gpm: bool = True, with_engine: bool = True, with_gpus: bool = True) -> Snapshot:
    why = {}
    if not with_engine:
        why["engine"] = "no engine /metrics found: 8000: connection refused"
    if not with_gpus:
        why["devices"] = "no NVIDIA driver (NVML library not found)"
    return Snapshot(time=T0 + i, monotonic=1000.0 + i, interval_s=1.0, tree=tree(alive),
                    devices=devices(i, gpm) if with_gpus else (), engine=engine(i) if with_engine and alive else None,
                    host=None, why=why)


def snapshots(count: int = 12, **kwargs) -> list[Snapshot]:
    return [snapshot(i, **kwargs) for i in range(count)]


def views(count: int = 12, **kwargs) -> list[LiveView]:
    """``count`` views of a steady memory-bound decode on one of two H100s."""
    deriver = Deriver()
    return [deriver.update(s) for s in snapshots(count, **kwargs)]


def snapshots_then_exit(count: int = 6) -> list[Snapshot]:
    return [snapshot(i) for i in range(count)] + [snapshot(count, alive=False)]


def views_then_exit(count: int = 6) -> list[LiveView]:
    deriver = Deriver()
    return [deriver.update(s) for s in snapshots_then_exit(count)]


class ScriptedSampler:
    """Hands out scripted snapshots like a Sampler's ticks; after the last, waits until closed (the
    screen then stays as a live one would between samples). ``exhausted`` is set at the end."""

    def __init__(self, items, interval_s: float = 0.0) -> None:
        import threading
        from types import SimpleNamespace

        self._items = iter(items)
        self.config = SimpleNamespace(interval_s=interval_s)
        self.exhausted = threading.Event()
        self._closed = threading.Event()
        self._last = None

    def tick(self) -> Snapshot:
        item = next(self._items, None)
        if item is None:
            self.exhausted.set()
            self._closed.wait()
            return self._last
        self._last = item
        return item

    def close(self) -> None:
        self._closed.set()
