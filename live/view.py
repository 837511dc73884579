"""The one object every view renders: :class:`LiveView`, and the pieces it is made of.

A view never computes a figure: the dashboard, ``--once`` (text and JSON), recordings, replay,
diff, the Prometheus exporter and the exit summary all read these fields. ``to_plain(view)`` is the
documented JSON object (``schema`` 2) and ``from_plain(LiveView, …)`` reads it back exactly, which
is how a recording replays.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from infermon.live.figure import Figure
from infermon.live.summary import RunSummary
from infermon.model.levers import Levers
from infermon.probes.snapshot import AgentSample, DeviceSample, EngineSample, HostCeilings, ProcessTree

SCHEMA = 2

# name: (unit, what it is). The table is the documentation of the ``figures`` object and of the
# exporter's metrics; a test checks it matches :class:`Figures` field for field.
FIGURE_INFO: dict[str, tuple[str, str]] = {
    # throughput
    "generation_tokens_per_s": ("tokens/s", "generated tokens per second (counter delta over the source's clock)"),
    "prompt_tokens_per_s": ("tokens/s", "prompt (prefill) tokens per second"),
    "requests_running": ("requests", "requests in the running batch"),
    "requests_waiting": ("requests", "requests waiting to be scheduled"),
    "batch": ("sequences", "mean sequences per decode step over the interval"),
    "steps_per_s": ("steps/s", "engine steps (forward passes) per second"),
    "tokens_per_step": ("tokens", "tokens scheduled per engine step (prompt and generated)"),
    "ttft_p50_s": ("s", "time to first token, median"),
    "ttft_p95_s": ("s", "time to first token, 95th percentile"),
    "inter_token_p50_s": ("s", "inter-token latency, median"),
    "inter_token_p95_s": ("s", "inter-token latency, 95th percentile"),
    "queue_time_p50_s": ("s", "time requests wait in the queue, median"),
    "queue_time_p95_s": ("s", "time requests wait in the queue, 95th percentile"),
    "prefix_cache_hit_rate": ("fraction", "share of prompt tokens served from the prefix cache"),
    "spec_acceptance_rate": ("fraction", "speculative decoding: draft tokens the target accepted ÷ draft tokens"),
    "preemptions_total": ("preemptions", "requests preempted since the engine started"),
    "preemptions_per_s": ("preemptions/s", "preemptions per second"),
    # roofline
    "peak_bandwidth_bytes_per_s": ("B/s", "peak memory bandwidth of the devices the process uses"),
    "peak_flops": ("FLOP/s", "dense peak FLOP/s in the dtype the matmuls run in"),
    "ops_per_byte": ("FLOP/B", "ridge point: peak FLOP/s ÷ peak bandwidth"),
    "bytes_per_step": ("B", "bytes one decode step reads: weights read + KV of every sequence"),
    "bandwidth_modeled_bytes_per_s": ("B/s", "achieved bandwidth: steps/s × bytes per step"),
    "bandwidth_measured_bytes_per_s": ("B/s", "achieved bandwidth from the GPU's DRAM counter (GPM)"),
    "bandwidth_engine_bytes_per_s": ("B/s", "the engine's own estimate of bytes read per second"),
    "bandwidth_vs_engine": ("fraction", "(modeled − engine's estimate) ÷ engine's estimate"),
    "bandwidth_disagreement": ("fraction", "|modeled − measured| ÷ measured bandwidth"),
    "flops_modeled_per_s": ("FLOP/s", "achieved FLOP/s: tokens/s × FLOPs per token, attention included"),
    "flops_engine_per_s": ("FLOP/s", "the engine's own estimate of FLOP/s"),
    "flops_vs_engine": ("fraction", "(modeled − engine's estimate) ÷ engine's estimate"),
    "mbu": ("fraction", "modeled bandwidth ÷ peak bandwidth"),
    "mbu_measured": ("fraction", "measured bandwidth ÷ peak bandwidth"),
    "mfu": ("fraction", "modeled FLOP/s ÷ peak FLOP/s"),
    "operating_intensity": ("FLOP/B", "achieved FLOP/s ÷ achieved bytes/s, against the ridge"),
    "decode_ceiling_tokens_per_s": ("tokens/s", "modeled decode tokens/s at this batch and context"),
    "critical_batch": ("sequences", "batch where decode turns compute-bound at this context"),
    # KV cache
    "kv_bytes_per_token": ("B/token", "KV-cache bytes per token"),
    "kv_capacity_tokens": ("tokens", "tokens the KV cache holds"),
    "kv_pool_bytes": ("B", "bytes of the KV pool: capacity × KV bytes per token"),
    "kv_usage": ("fraction", "share of the KV cache in use"),
    "kv_resident_tokens": ("tokens", "tokens resident in the KV cache"),
    "context_tokens": ("tokens", "mean context per running sequence: resident tokens ÷ batch"),
    "kv_headroom_tokens": ("tokens", "KV tokens still free: capacity − resident"),
    "sequences_fit": ("sequences", "more sequences of the current mean context that fit"),
    # memory
    "weight_bytes": ("B", "bytes of the model's weights"),
    "tree_rss_bytes": ("B", "resident host memory of the process tree"),
    "tree_gpu_memory_bytes": ("B", "GPU memory of the process tree (NVML)"),
    "torch_allocated_bytes": ("B", "torch allocator: allocated"),
    "torch_reserved_bytes": ("B", "torch allocator: reserved"),
    "torch_cache_free": ("fraction", "torch allocator: share of reserved memory not allocated"),
    "alloc_retries": ("retries", "torch allocator: cudaMalloc retries after freeing the cache"),
    "ooms": ("OOMs", "torch allocator: out-of-memory errors"),
}


@dataclass(frozen=True)
class Figures:
    """Every scalar figure of a tick (units and meanings in :data:`FIGURE_INFO`)."""

    generation_tokens_per_s: Figure
    prompt_tokens_per_s: Figure
    requests_running: Figure
    requests_waiting: Figure
    batch: Figure
    steps_per_s: Figure
    tokens_per_step: Figure
    ttft_p50_s: Figure
    ttft_p95_s: Figure
    inter_token_p50_s: Figure
    inter_token_p95_s: Figure
    queue_time_p50_s: Figure
    queue_time_p95_s: Figure
    prefix_cache_hit_rate: Figure
    spec_acceptance_rate: Figure
    preemptions_total: Figure
    preemptions_per_s: Figure
    peak_bandwidth_bytes_per_s: Figure
    peak_flops: Figure
    ops_per_byte: Figure
    bytes_per_step: Figure
    bandwidth_modeled_bytes_per_s: Figure
    bandwidth_measured_bytes_per_s: Figure
    bandwidth_engine_bytes_per_s: Figure
    bandwidth_vs_engine: Figure
    bandwidth_disagreement: Figure
    flops_modeled_per_s: Figure
    flops_engine_per_s: Figure
    flops_vs_engine: Figure
    mbu: Figure
    mbu_measured: Figure
    mfu: Figure
    operating_intensity: Figure
    decode_ceiling_tokens_per_s: Figure
    critical_batch: Figure
    kv_bytes_per_token: Figure
    kv_capacity_tokens: Figure
    kv_pool_bytes: Figure
    kv_usage: Figure
    kv_resident_tokens: Figure
    context_tokens: Figure
    kv_headroom_tokens: Figure
    sequences_fit: Figure
    weight_bytes: Figure
    tree_rss_bytes: Figure
    tree_gpu_memory_bytes: Figure
    torch_allocated_bytes: Figure
    torch_reserved_bytes: Figure
    torch_cache_free: Figure
    alloc_retries: Figure
    ooms: Figure

    def items(self):
        """(name, figure) in the order of :data:`FIGURE_INFO`."""
        return ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))


@dataclass(frozen=True)
class Verdict:
    """Where the process sits, in words: ``finding`` (its numbers move) and ``advice`` (it rarely does).

    ``phase``: idle, prefill, decode, mixed or unknown; ``bound``: memory, compute or None;
    ``tone``: how a view may colour the finding (memory, compute, idle, warning or neutral).
    """

    phase: str
    bound: str | None
    finding: str
    advice: str
    tone: str

    @property
    def text(self) -> str:
        return f"{self.finding}; {self.advice}" if self.advice else self.finding


@dataclass(frozen=True)
class ModelInfo:
    """The model the arithmetic uses, and where it was found."""

    name: str
    source: str
    params_total: int
    params_active: int
    weight_bytes: float
    weight_bytes_source: str
    weight_dtype: str
    kv_dtype: str
    kv_bytes_per_token: float
    flops_per_token: float
    attention: str
    layers: int


@dataclass(frozen=True)
class HardwareInfo:
    """The devices the ceilings are taken from: ``count`` × ``name``; totals over all of them.

    ``sources`` maps ``memory``, ``bandwidth`` and ``peak_flops`` to the figure's source word
    (:mod:`infermon.live.figure`); ``source`` says in words where the row came from.
    """

    name: str
    kind: str
    count: int
    memory_bytes: float | None
    bandwidth_bytes_per_s: float | None
    peak_flops: float | None
    compute_dtype: str
    source: str
    sources: dict[str, str] = field(default_factory=dict)
    split: str | None = None


@dataclass(frozen=True)
class Trend:
    """What the sparklines and peaks need: means of complete groups of ``bucket`` samples."""

    generation: tuple[float, ...] = ()
    prompt: tuple[float, ...] = ()
    bucket: int = 5
    peak_generation_tokens_per_s: float | None = None
    peak_mbu: float | None = None
    latency_window: str | None = None


@dataclass(frozen=True)
class LiveView:
    """One tick as every view draws it.

    ``tree``, ``devices``, ``engine``, ``agents`` and ``host`` are what the probes saw (per-process
    GPU memory filled in, latency histograms and model configs left out: their figures are in
    ``figures``). ``why`` holds reasons for whole sections (engine, devices, model, hardware,
    levers). ``levers``: what each lever would give at this operating point (modeled, and with the
    measured efficiency applied; :mod:`infermon.model.levers`).
    """

    time: float
    monotonic: float
    interval_s: float
    figures: Figures
    verdict: Verdict
    tree: ProcessTree | None = None
    devices: tuple[DeviceSample, ...] = ()
    engine: EngineSample | None = None
    agents: tuple[AgentSample, ...] = ()
    host: HostCeilings | None = None
    model: ModelInfo | None = None
    hardware: HardwareInfo | None = None
    trend: Trend = field(default_factory=Trend)
    summary: RunSummary | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    why: dict[str, str] = field(default_factory=dict)
    levers: Levers | None = None
    schema: int = SCHEMA

    @property
    def alive(self) -> bool:
        return self.tree is None or self.tree.alive
