"""From snapshots to what every view shows: rates, the model and device ceilings, the analysis.

``LiveModel`` resolves the model (cmdline or ``--model``) and the hardware
(the GPUs the tree uses, or the host CPU) once, then turns each pair of
consecutive snapshots into a :class:`LiveView`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infermon.live.inside import InsideKv, InsideMemory, agent_kv, agent_memory
from infermon.model.analysis import Analysis, LiveRates, analyze
from infermon.model.calc import pick_compute_dtype
from infermon.model.figures import ModelFigures, model_figures
from infermon.model.gpu import Hardware, combine, find_gpu, lookup_gpu, GpuLookupError
from infermon.model.loaders import ModelLoadError, load_model
from infermon.model.roofline import Ceilings, ceilings
from infermon.probes.snapshot import DeviceSample, EngineSample, Snapshot


@dataclass(frozen=True)
class EngineRates:
    """Per-second rates from two engine samples over wall-clock time (tokens/s).

    ``generation`` uses counters, plus llama.cpp's live per-slot decoded
    tokens so long requests show a rate before they finish. A counter that
    went backwards (engine restart) gives ``None`` and a note.
    """

    generation_tokens_per_s: float | None
    prompt_tokens_per_s: float | None
    preemptions_per_s: float | None = None
    notes: tuple[str, ...] = ()


def _generated(engine: EngineSample) -> float | None:
    if engine.generation_tokens_total is None:
        return None
    return engine.generation_tokens_total + (engine.slots_decoded or 0.0)


def _rate(before: float | None, after: float | None, seconds: float, what: str, notes: list[str]) -> float | None:
    if before is None or after is None or seconds <= 0:
        return None
    if after < before:
        notes.append(f"{what} counter went backwards (engine restarted?): rate skipped this tick")
        return None
    return (after - before) / seconds


def engine_rates(previous: Snapshot | None, current: Snapshot) -> EngineRates:
    """Counter deltas ÷ Δt between two snapshots; never the engines' averaged gauges."""
    if previous is None or previous.engine is None or current.engine is None:
        return EngineRates(None, None)
    if previous.engine.url != current.engine.url:
        return EngineRates(None, None, notes=("metrics endpoint changed",))
    if previous.engine.kind != current.engine.kind:
        return EngineRates(None, None, notes=(f"engine changed from {previous.engine.kind} to {current.engine.kind}",))
    seconds = current.monotonic - previous.monotonic
    notes: list[str] = []
    generation = _rate(_generated(previous.engine), _generated(current.engine), seconds, "generation tokens", notes)
    prompt = _rate(previous.engine.prompt_tokens_total, current.engine.prompt_tokens_total, seconds, "prompt tokens", notes)
    preempt = _rate(previous.engine.preemptions_total, current.engine.preemptions_total, seconds, "preemptions", notes)
    return EngineRates(generation, prompt, preempt, tuple(notes))


@dataclass(frozen=True)
class LiveView:
    """One tick as every view draws it."""

    snapshot: Snapshot
    rates: EngineRates
    model: ModelFigures | None
    model_source: str | None
    hardware: Hardware | None
    hardware_source: str | None
    ceilings: Ceilings | None
    analysis: Analysis
    why: dict[str, str] = field(default_factory=dict)
    inside_kv: InsideKv | None = None
    inside_memory: InsideMemory | None = None


class LiveModel:
    """Resolves the model and hardware once, then analyses each tick."""

    def __init__(self, model_argument: str | None = None, gpu_name: str | None = None) -> None:
        self.model_override = model_argument
        self.gpu_name = gpu_name
        self.figures: ModelFigures | None = None
        self.model_source: str | None = None
        self.model_why: str | None = None
        self.warnings: tuple[str, ...] = ()
        self._tried_model: str | None = None
        self._previous: Snapshot | None = None

    def _resolve_model(self, snapshot: Snapshot) -> None:
        argument = self.model_override
        if argument is None and snapshot.tree is not None:
            argument = snapshot.tree.model_argument
        if argument is None and snapshot.engine is not None:
            argument = snapshot.engine.model_name
        if argument is None and self._from_agent(snapshot):
            return
        if argument is None:
            self.model_why = "model unknown: not on the command line and not reported by the engine (give --model)"
            return
        if argument == self._tried_model:
            return
        self._tried_model = argument
        try:
            loaded = load_model(argument)
        except ModelLoadError as exc:
            self.figures = None
            self.model_why = f"model {argument!r} not resolved: {exc} (give --model)"
            return
        self.figures = model_figures(loaded.spec, exact_weight_bytes=loaded.exact_weight_bytes)
        self.model_source = loaded.source
        self.model_why = None
        self.warnings = loaded.warnings

    def _from_agent(self, snapshot: Snapshot) -> bool:
        """A Hugging Face model's config, as the agent read it from the watched module."""
        for agent in snapshot.agents:
            if agent.model_config:
                from infermon.model.config import ConfigError, spec_from_config

                try:
                    spec = spec_from_config(agent.model_config, name=str(agent.model_config.get("_name_or_path") or ""))
                except ConfigError as exc:
                    self.model_why = f"the agent's model config is unusable: {exc} (give --model)"
                    return True
                self.figures = model_figures(spec)
                self.model_source = f"agent: config of the watched model in pid {agent.pid}"
                self.model_why = None
                self.warnings = spec.warnings
                return True
        return False

    def hardware(self, snapshot: Snapshot) -> tuple[Hardware | None, str | None, str | None]:
        """(hardware, source, why): the tree's GPUs from the table (or NVML-derived), else the host CPU."""
        available = set()
        gpus = [d for d in snapshot.devices if d.kind == "gpu" and d.used_by_tree]
        dtype = "bf16"
        if self.figures is not None:
            dtype = None
        if gpus:
            spec = None
            if self.gpu_name:
                try:
                    spec = lookup_gpu(self.gpu_name)
                except GpuLookupError as exc:
                    return None, None, str(exc)
            else:
                spec = find_gpu(gpus[0].name or "")
            if spec is not None:
                available = set(spec.peak_flops)
                compute = pick_compute_dtype(self.figures, available) if self.figures else "bf16"
                hw = combine(spec, len(gpus), compute)
                return hw, f"{len(gpus)} × {spec.name} (datasheet)", None
            derived = gpus[0].derived_bandwidth_bytes_per_s
            memory = gpus[0].memory_total_bytes
            hw = combine(None, len(gpus), dtype or "bf16", memory_bytes=float(memory) if memory else None,
                         bandwidth_bytes_per_s=derived)
            hw = Hardware(name=gpus[0].name or "unknown GPU", count=hw.count, memory_bytes=hw.memory_bytes,
                          bandwidth_bytes_per_s=hw.bandwidth_bytes_per_s, peak_flops=None, compute_dtype=hw.compute_dtype,
                          sources={"bandwidth": "NVML: bus width × max memory clock", "peak_flops": "unknown GPU"})
            why = f"{gpus[0].name} is not in the GPU table: FLOP peak unknown (give --gpu)"
            return (hw if derived else None), "NVML-derived bandwidth", why
        host = snapshot.host
        if host is None or not host.bandwidth_bytes_per_s:
            return None, None, (host.source if host else "no device used by the process tree")
        name = next((d.name for d in snapshot.devices if d.kind == "host" and d.name), None) or "host CPU"
        hw = Hardware(name=name, count=1, memory_bytes=float(host.memory_total_bytes or 0),
                      bandwidth_bytes_per_s=host.bandwidth_bytes_per_s, peak_flops=host.peak_flops,
                      compute_dtype="fp32", sources={"bandwidth": host.source, "peak_flops": host.source})
        return hw, f"host CPU ({host.source})", None

    def update(self, snapshot: Snapshot) -> LiveView:
        """Analyse ``snapshot`` against the previous one."""
        previous, self._previous = self._previous, snapshot
        if self.figures is None:
            self._resolve_model(snapshot)
        why: dict[str, str] = dict(snapshot.why)
        if self.model_why:
            why["model"] = self.model_why
        hw, hw_source, hw_why = self.hardware(snapshot)
        if hw_why:
            why["hardware"] = hw_why
        rates = engine_rates(previous, snapshot)
        engine = snapshot.engine
        batch = _interval_batch(previous, snapshot)
        if batch is not None and batch < 1 and (rates.generation_tokens_per_s or 0) > 0:
            # Tokens came out, so at least one sequence ran between the two sampling instants.
            why["batch"] = "no request running at the sampling instants; batch taken as 1"
            batch = 1.0
        kv_capacity = engine.kv_capacity_tokens if engine is not None else None
        resident = None
        if engine is not None and engine.kv_usage is not None and kv_capacity:
            resident = engine.kv_usage * kv_capacity
        inside_kv = None
        if engine is not None and engine.kind == "agent":
            # No KV pool to read: the agent's resident tokens, and a capacity modeled from free memory.
            inside_kv = agent_kv(snapshot.agents, snapshot.devices,
                                 self.figures.kv_bytes_per_token if self.figures is not None else None)
            resident, kv_capacity = inside_kv.resident_tokens, inside_kv.capacity_tokens
        ceil = None
        if self.figures is not None and hw is not None and hw.bandwidth_bytes_per_s:
            context = round(resident / batch) if resident and batch else None
            ceil, _ = ceilings(self.figures, hw, batch=max(1, round(batch or 1)), context=context)
            if kv_capacity is None and inside_kv is None:
                kv_capacity = ceil.kv_capacity_tokens
        measured, measured_why = measured_bandwidth(snapshot.devices, hw)
        live = LiveRates(
            interval_s=(snapshot.monotonic - previous.monotonic) if previous else snapshot.interval_s,
            generation_tokens_per_s=rates.generation_tokens_per_s,
            prompt_tokens_per_s=rates.prompt_tokens_per_s,
            batch=batch,
            kv_tokens_resident=resident,
            kv_capacity_tokens=kv_capacity,
            measured_bandwidth_bytes_per_s=measured,
            measured_bandwidth_source=measured_why,
        )
        analysis = analyze(live, self.figures, hw)
        if inside_kv is not None and analysis.kv_headroom_tokens is None:
            analysis.why["kv_headroom_tokens"] = inside_kv.why.get("kv_capacity_tokens", "KV capacity unknown")
        if inside_kv is not None and resident is None and "context_tokens" not in analysis.why:
            analysis.why["context_tokens"] = inside_kv.why.get("kv_tokens_resident", "resident KV tokens unknown")
        return LiveView(snapshot=snapshot, rates=rates, model=self.figures, model_source=self.model_source,
                        hardware=hw, hardware_source=hw_source, ceilings=ceil, analysis=analysis, why=why,
                        inside_kv=inside_kv, inside_memory=agent_memory(snapshot.agents) if snapshot.agents else None)


def _interval_batch(previous: Snapshot | None, current: Snapshot) -> float | None:
    """Sequences per decode step over the interval: the mean of the batch seen at its two ends."""
    values = [s.engine.batch if s.engine.batch is not None else s.engine.requests_running
              for s in (previous, current) if s is not None and s.engine is not None]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def measured_bandwidth(devices: tuple[DeviceSample, ...], hw: Hardware | None) -> tuple[float | None, str | None]:
    """Σ over the tree's GPUs of GPM DRAM-bandwidth utilisation × that GPU's peak bandwidth (B/s)."""
    gpus = [d for d in devices if d.kind == "gpu" and d.used_by_tree]
    if not gpus:
        return None, "host CPU: no DRAM bandwidth counter"
    if hw is None or not hw.bandwidth_bytes_per_s:
        return None, "device peak bandwidth unknown"
    per_gpu = hw.bandwidth_bytes_per_s / hw.count
    total = 0.0
    for device in gpus:
        if device.dram_bandwidth_util is None:
            reason = device.why.get("dram_bandwidth_util") or device.why.get("gpm") or "GPM DRAM bandwidth unavailable"
            return None, reason
        total += device.dram_bandwidth_util * per_gpu
    return total, None
