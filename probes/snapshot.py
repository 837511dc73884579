"""What one tick of the probes saw: frozen, plain, JSON-serialisable data.

Every view (the TUI, ``--once``, ``--record``, replay, the exporter) reads
these objects and nothing else. A figure that could not be had is ``None``
and its field name maps to the reason in the object's ``why``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Re-exported for the engine modules, which may import this module and the Prometheus text handling alone.
from infermon.model.frozen import evolve  # noqa: F401


@dataclass(frozen=True)
class ProcessInfo:
    """One process of the watched tree. ``role`` is its process title where the engine sets one
    (``VLLM::EngineCore``, ``VLLM::Worker_TP1``, ``sglang::scheduler_TP0``), else what its launcher
    makes it in the engine's tree (``API server``). ``cmdline`` never carries the empty strings a
    renamed process pads its title with."""

    pid: int
    ppid: int | None
    name: str
    cmdline: tuple[str, ...]
    role: str | None = None
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    threads: int | None = None
    create_time: float | None = None
    listening_ports: tuple[int, ...] = ()
    gpu_memory_bytes: int | None = None


@dataclass(frozen=True)
class ProcessTree:
    """The target and its descendants. ``framework`` is one of vllm, sglang, tgi, llamacpp,
    tensorrt-llm, torch, python or unknown; ``model_argument`` what the cmdline names as the model.
    ``tensor_parallel`` / ``pipeline_parallel`` / ``data_parallel`` are the degrees the engine's
    command line gives (None, with the reason in ``why``, when not given: engines default to 1)."""

    root_pid: int
    processes: tuple[ProcessInfo, ...]
    framework: str = "unknown"
    framework_evidence: str | None = None
    model_argument: str | None = None
    alive: bool = True
    why: dict[str, str] = field(default_factory=dict)
    tensor_parallel: int | None = None
    pipeline_parallel: int | None = None
    data_parallel: int | None = None

    @property
    def pids(self) -> frozenset[int]:
        return frozenset(p.pid for p in self.processes)

    @property
    def root(self) -> ProcessInfo | None:
        for proc in self.processes:
            if proc.pid == self.root_pid:
                return proc
        return None


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None


@dataclass(frozen=True)
class DeviceSample:
    """One accelerator (``kind="gpu"``) or the host CPU (``kind="host"``).

    Units: bytes, bytes/s, MHz, W, °C; utilisations are fractions 0–1.
    ``derived_bandwidth_bytes_per_s`` = bus width (bits) × max memory clock
    (MHz) × 1e6 × 2 / 8, a cross-check of the datasheet table. GPM figures
    (Hopper and newer) are ``None`` with a reason elsewhere.
    """

    index: int
    kind: str = "gpu"
    name: str | None = None
    uuid: str | None = None
    memory_total_bytes: int | None = None
    memory_used_bytes: int | None = None
    memory_tree_bytes: int | None = None
    utilization_gpu: float | None = None
    utilization_memory: float | None = None
    sm_clock_mhz: float | None = None
    sm_clock_max_mhz: float | None = None
    memory_clock_mhz: float | None = None
    memory_clock_max_mhz: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    temperature_c: float | None = None
    throttle_reasons: tuple[str, ...] = ()
    pcie_tx_bytes_per_s: float | None = None
    pcie_rx_bytes_per_s: float | None = None
    nvlink_tx_bytes_per_s: float | None = None
    nvlink_rx_bytes_per_s: float | None = None
    bus_width_bits: int | None = None
    derived_bandwidth_bytes_per_s: float | None = None
    gpm_supported: bool | None = None
    dram_bandwidth_util: float | None = None
    tensor_util: float | None = None
    sm_util: float | None = None
    sm_occupancy: float | None = None
    processes: tuple[GpuProcess, ...] = ()
    used_by_tree: bool = False
    why: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Histogram:
    """A Prometheus histogram: cumulative ``buckets`` as (upper bound, count), plus sum and count."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float


@dataclass(frozen=True)
class EngineSample:
    """An inference engine's counters and gauges, mapped to one canonical set.

    Counters are cumulative (tokens, preemptions); rates are computed from two
    samples over wall-clock time, never taken from an engine's averaged gauges.
    ``kv_usage`` is a fraction 0–1. ``slots_decoded`` is llama.cpp's live
    per-slot ``n_decoded`` sum, which moves during a request while its counters
    move only when a request finishes.

    ``source_time`` is ``time.monotonic()`` when the figures were read from the source (rates are
    counter deltas over this clock, not the monitor's). ``steps_total`` / ``step_tokens_total``:
    engine steps and the tokens they scheduled (vLLM ``iteration_tokens_total``);
    ``estimated_*_total``: the engine's own estimate of its work (vLLM ``--enable-mfu-metrics``, per
    GPU); ``kv_tokens_resident``: tokens in the KV cache where a source counts them directly.
    """

    kind: str
    url: str | None = None
    version: str | None = None
    model_name: str | None = None
    generation_tokens_total: float | None = None
    prompt_tokens_total: float | None = None
    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_usage: float | None = None
    kv_capacity_tokens: int | None = None
    preemptions_total: float | None = None
    ttft: Histogram | None = None
    inter_token: Histogram | None = None
    slots_decoded: float | None = None
    slots_processing: int | None = None
    batch: float | None = None
    kv_tokens_resident: float | None = None
    hints: tuple[str, ...] = ()
    why: dict[str, str] = field(default_factory=dict)
    source_time: float | None = None
    steps_total: float | None = None
    step_tokens_total: float | None = None
    estimated_flops_total: float | None = None
    estimated_read_bytes_total: float | None = None
    estimated_write_bytes_total: float | None = None
    prefix_cache_hits_total: float | None = None
    prefix_cache_queries_total: float | None = None
    queue_time: Histogram | None = None
    requests_finished_total: float | None = None
    kv_tokens_resident: float | None = None
    spec_drafts_total: float | None = None
    spec_draft_tokens_total: float | None = None
    spec_accepted_tokens_total: float | None = None


@dataclass(frozen=True)
class AgentModel:
    """One torch module an agent watches: its size, its share of the counts, and the KV tokens
    (and bytes) of the cache its last forward call returned, while that cache is alive."""

    name: str
    alive: bool = True
    weights_bytes: int | None = None
    params: int | None = None
    batch: int = 0
    kv_tokens_resident: int | None = None
    kv_bytes_resident: int | None = None
    generation_tokens_total: float = 0.0
    prompt_tokens_total: float = 0.0


@dataclass(frozen=True)
class AgentSample:
    """One process's in-process agent record (counters are cumulative; bytes; s).

    ``time`` (wall clock) and ``monotonic`` (the host's monotonic clock, comparable with the
    monitor's) were taken when the agent read its counters: rates go over these. ``seq`` counts the
    agent's records; ``final`` marks the one it left at exit. ``kv_tokens_resident`` is what the
    watched models' caches hold now (``kv_source`` ``cache``) or what the script reported
    (``reported``); ``ttft`` and ``inter_token`` are cumulative histograms since the agent started."""

    pid: int
    time: float
    interval_s: float
    generation_tokens_total: float
    prompt_tokens_total: float
    decode_steps_total: float
    batch: int
    max_batch: int
    weights_bytes: int | None = None
    torch_allocated_bytes: int | None = None
    torch_reserved_bytes: int | None = None
    torch_active_bytes: int | None = None
    torch_peak_allocated_bytes: int | None = None
    torch_peak_reserved_bytes: int | None = None
    alloc_retries: int | None = None
    ooms: int | None = None
    device_free_bytes: int | None = None
    device_total_bytes: int | None = None
    hf_generate_hooked: bool = False
    errors: int = 0
    params: int | None = None
    model_config: dict | None = None
    why: dict[str, str] = field(default_factory=dict)
    monotonic: float | None = None
    seq: int | None = None
    final: bool = False
    requests_total: float | None = None
    counting: str | None = None
    kv_tokens_resident: int | None = None
    kv_bytes_resident: int | None = None
    kv_source: str | None = None
    models: tuple[AgentModel, ...] = ()
    ttft: Histogram | None = None
    inter_token: Histogram | None = None
    rss_bytes: int | None = None


@dataclass(frozen=True)
class HostCeilings:
    """Peaks of the host CPU: memory bandwidth (B/s) and FLOP/s, with their source."""

    bandwidth_bytes_per_s: float | None
    peak_flops: float | None
    source: str
    memory_total_bytes: int | None = None
    cpu_count: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """One tick. ``time`` is wall-clock (s since the epoch), ``monotonic`` for differencing."""

    time: float
    monotonic: float
    interval_s: float
    tree: ProcessTree | None
    devices: tuple[DeviceSample, ...] = ()
    engine: EngineSample | None = None
    host: HostCeilings | None = None
    why: dict[str, str] = field(default_factory=dict)
    agents: tuple[AgentSample, ...] = ()


def to_plain(obj: Any) -> Any:
    """Dataclasses → dicts, tuples → lists, recursively (for JSON)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj
