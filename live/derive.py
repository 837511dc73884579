"""From snapshots to the one :class:`~infermon.live.view.LiveView` every view renders.

:class:`Deriver` resolves the model (command line, ``--model``, the engine, or the agent's config)
and the hardware (the GPUs the tree uses, or the host CPU), keeps what must be remembered across
ticks (rates on each source's clock, latency windows, sparklines, the run summary), and turns each
snapshot into figures with their sources. It runs wherever snapshots are taken (the sampling
thread of the dashboard, ``--once``, ``--record``, the exporter), never on a UI event loop.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace

from infermon.live.figure import DATASHEET, ENGINE, GIVEN, MEASURED, MODELED, NA, Figure, figure
from infermon.live.history import History, LatencyWindow
from infermon.live.inside import agent_kv, agent_memory
from infermon.live.rates import NEEDS_TWO_READINGS, Rate, SourceRates
from infermon.live.summary import SummaryAccumulator
from infermon.live.verdict import IDLE_TOKENS_PER_S, PHASE_WINDOW_S, VerdictInputs, phase_of, verdict as make_verdict
from infermon.live.view import FIGURE_INFO, Figures, HardwareInfo, LiveView, ModelInfo, Trend
from infermon.model.calc import pick_compute_dtype
from infermon.model.figures import ModelFigures, model_figures
from infermon.model.frozen import evolve
from infermon.model.gpu import GpuLookupError, Hardware, combine, find_gpu, lookup_gpu
from infermon.model.levers import (Levers, OperatingPoint, Speculation, acceptance_from_rate, modeled_levers,
                                   with_measured_rate)
from infermon.model.loaders import LoadedModel, ModelLoadError, load_model
from infermon.model.parallel import Parallelism
from infermon.model.plausibility import warnings as plausibility_warnings
from infermon.model.serving import serve
from infermon.model.roofline import DEFAULT_MEMORY_UTILIZATION, ceilings, critical_batch, decode_step, ops_per_byte
from infermon.model.work import modeled_bandwidth, modeled_flops, step_bytes
from infermon.probes.agent_channel import engine_from_agents
from infermon.probes.snapshot import AgentSample, DeviceSample, EngineSample, Snapshot

# Counters read from an engine sample, by the name its rate goes under.
ENGINE_COUNTERS = ("generation", "prompt", "preemptions", "steps", "step_tokens", "est_flops", "est_read_bytes",
                   "prefix_hits", "prefix_queries", "spec_drafts", "spec_draft_tokens", "spec_accepted")
AGENT_COUNTERS = ("generation", "prompt", "steps")
# Engines that pick a checkpoint's serving dtype themselves (vLLM's dtype=auto rule and its kin).
SERVING_ENGINES = frozenset({"vllm", "sglang", "tgi", "tensorrt-llm"})


def _engine_counters(engine: EngineSample) -> dict[str, float | None]:
    generated = engine.generation_tokens_total
    if generated is not None:
        # llama.cpp's counters move when a request finishes; its slots count tokens as they come.
        generated += engine.slots_decoded or 0.0
    return {
        "generation": generated,
        "prompt": engine.prompt_tokens_total,
        "preemptions": engine.preemptions_total,
        "steps": engine.steps_total,
        "step_tokens": engine.step_tokens_total,
        "est_flops": engine.estimated_flops_total,
        "est_read_bytes": engine.estimated_read_bytes_total,
        "prefix_hits": engine.prefix_cache_hits_total,
        "prefix_queries": engine.prefix_cache_queries_total,
        "spec_drafts": engine.spec_drafts_total,
        "spec_draft_tokens": engine.spec_draft_tokens_total,
        "spec_accepted": engine.spec_accepted_tokens_total,
    }


def _agent_counts_tokens(agent: AgentSample) -> bool:
    """An agent is a token source only where it watches something that generates: a model it hooked
    (a wrapped generate() hooks the model it is called on), or tokens the script counted itself.
    (Inside an engine's worker that calls its model with flattened token ids, it sees none of these
    and must not read as idle; such a worker imports transformers, so generate() is wrapped there
    without ever being called.)"""
    return bool(agent.params or agent.weights_bytes or agent.generation_tokens_total or agent.decode_steps_total)


@dataclass(frozen=True)
class _Tokens:
    """This tick's token and step rates, wherever they came from."""

    source: str | None  # "engine" or "agent"
    label: str | None  # the figure source word: engine-reported or measured
    rates: dict[str, Rate]
    why: str | None
    stale_for: float | None = None


class Deriver:
    """Resolves the model and hardware once, then derives one :class:`LiveView` per snapshot.

    ``count_from_start``: the watched process was started by infermon (``infermon run``), so the
    agent's counters started at zero with it and the run's totals include the tokens made before the
    first sample.
    """

    def __init__(self, model_argument: str | None = None, gpu_name: str | None = None,
                 count_from_start: bool = False) -> None:
        self.model_override = model_argument
        self.gpu_name = gpu_name
        self.count_from_start = count_from_start
        self.figures: ModelFigures | None = None
        self.model_source: str | None = None
        self.model_why: str | None = None
        self.warnings: tuple[str, ...] = ()
        self._tried_model: str | None = None
        self._loaded: LoadedModel | None = None
        self._checkpoint_figures: ModelFigures | None = None
        self._served_on: str | None = None
        self.serving_notes: tuple[str, ...] = ()
        self.parallel: Parallelism | None = None
        self._levers_key: tuple | None = None
        self._levers: Levers | None = None
        self._levers_modeled: Levers | None = None
        self._levers_measured: float | None = None
        self._levers_error: str | None = None
        self._ceiling_memo: tuple | None = None
        self._host_hardware: tuple | None = None
        self._engine_rates: SourceRates | None = None
        self._engine_key: tuple | None = None
        self._agent_rates: dict[int, SourceRates] = {}
        self._latency = {"ttft": LatencyWindow(), "inter_token": LatencyWindow(), "queue_time": LatencyWindow()}
        self._latency_key: tuple | None = None
        self._previous_gauges: EngineSample | None = None
        self._last_alive: LiveView | None = None
        self._last_figures: dict[str, tuple[tuple, Figure]] = {}
        self._phase_window: deque[tuple[float, float]] = deque()  # (generation, prompt) tokens/s
        self._shown_phase: str | None = None  # the verdict's phase last tick
        self.history = History()
        self.accumulator = SummaryAccumulator()
        self._reset = threading.Event()

    def request_reset(self) -> None:
        """Reset peaks and the run summary at the next tick (safe from another thread)."""
        self._reset.set()

    # ------------------------------------------------------------------ model and hardware

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
        self.figures = model_figures(loaded.spec, exact_weight_bytes=loaded.exact_weight_bytes, stored=loaded.stored)
        self._loaded, self._checkpoint_figures, self._served_on = loaded, self.figures, None
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

    def hardware(self, snapshot: Snapshot) -> tuple[Hardware | None, HardwareInfo | None, str | None]:
        """(arithmetic hardware, what views show of it, why it is missing): the tree's GPUs (table, or
        NVML-derived bandwidth), else the host CPU (calibrated or given)."""
        gpus = [d for d in snapshot.devices if d.kind == "gpu" and d.used_by_tree]
        self.parallel = None
        if gpus:
            return self._gpu_hardware(gpus, snapshot.tree)
        host = snapshot.host
        if host is None or not host.bandwidth_bytes_per_s:
            return None, None, (host.source if host else "no device used by the process tree")
        name = next((d.name for d in snapshot.devices if d.kind == "host" and d.name), None) or "host CPU"
        kept = self._host_hardware
        if kept is not None and kept[0] is host and kept[1] == name:
            return kept[2]  # the sampler keeps one HostCeilings: the same figures every tick
        word = GIVEN if "given" in host.source else MEASURED
        hw = Hardware(name=name, count=1, memory_bytes=float(host.memory_total_bytes or 0),
                      bandwidth_bytes_per_s=host.bandwidth_bytes_per_s, peak_flops=host.peak_flops,
                      compute_dtype="fp32", sources={"bandwidth": host.source, "peak_flops": host.source})
        info = HardwareInfo(name=name, kind="host", count=1, memory_bytes=hw.memory_bytes or None,
                            bandwidth_bytes_per_s=hw.bandwidth_bytes_per_s, peak_flops=hw.peak_flops,
                            compute_dtype="fp32", source=f"host CPU ({host.source})",
                            sources={"memory": MEASURED, "bandwidth": word, "peak_flops": word if host.peak_flops else NA})
        self._host_hardware = (host, name, (hw, info, None))
        return hw, info, None

    def _serve(self, spec, framework: str) -> str | None:
        """The figures an engine serves the checkpoint with on this GPU (its dtype=auto rule); returns the
        compute dtype, or None where the checkpoint's own dtype stands (a script, llama.cpp, the agent)."""
        if self._loaded is None or framework not in SERVING_ENGINES:
            return None
        if self._served_on != spec.name:
            served = serve(self._loaded, set(spec.peak_flops), gpu_name=spec.name)
            self.figures, self.serving_notes, self._served_on = served.figures, served.notes, spec.name
            self._served_compute = served.compute_dtype
        return self._served_compute

    def _split(self, count: int, tree) -> str | None:
        """The tensor/pipeline split of ``count`` GPUs, from the engine's command line; why when it cannot be."""
        tp = tree.tensor_parallel if tree is not None else None
        pp = tree.pipeline_parallel if tree is not None else None
        try:
            self.parallel = Parallelism.for_gpus(count, tp=tp, pp=pp)
        except ValueError as exc:
            self.parallel = None
            return f"{exc}: the GPUs are taken as one device"
        return None

    def _gpu_hardware(self, gpus: list[DeviceSample], tree=None):
        totals = [d.memory_total_bytes for d in gpus]
        nvml_memory = float(totals[0]) if all(t is not None for t in totals) else None
        if self.gpu_name:
            try:
                spec = lookup_gpu(self.gpu_name)
            except GpuLookupError as exc:
                return None, None, str(exc)
        else:
            spec = find_gpu(gpus[0].name or "")
        if spec is not None:
            compute = self._serve(spec, tree.framework if tree is not None else "unknown")
            if compute is None:
                compute = pick_compute_dtype(self.figures, set(spec.peak_flops)) if self.figures else "bf16"
            # Memory as NVML reports it (what the allocator can use), not the marketing figure.
            hw = combine(spec, len(gpus), compute, memory_bytes=nvml_memory)
            split_why = self._split(len(gpus), tree)
            info = HardwareInfo(name=spec.name, kind="gpu", count=len(gpus), memory_bytes=hw.memory_bytes,
                                bandwidth_bytes_per_s=hw.bandwidth_bytes_per_s, peak_flops=hw.peak_flops,
                                compute_dtype=compute, source=f"{len(gpus)} × {spec.name} (datasheet)",
                                sources={"memory": MEASURED if nvml_memory else DATASHEET, "bandwidth": DATASHEET,
                                         "peak_flops": DATASHEET if hw.peak_flops else NA},
                                split=_split_words(self.parallel))
            return hw, info, split_why
        derived = gpus[0].derived_bandwidth_bytes_per_s
        name = gpus[0].name or "unknown GPU"
        why = f"{name} is not in the GPU table: FLOP peak unknown (give --gpu)"
        if not derived:
            return None, None, why
        hw = Hardware(name=name, count=len(gpus), memory_bytes=(nvml_memory or 0.0) * len(gpus),
                      bandwidth_bytes_per_s=derived * len(gpus), peak_flops=None,
                      compute_dtype=self.figures.activation_dtype if self.figures else "bf16",
                      sources={"bandwidth": "NVML: bus width × max memory clock", "peak_flops": "unknown GPU"})
        info = HardwareInfo(name=name, kind="gpu", count=len(gpus), memory_bytes=hw.memory_bytes or None,
                            bandwidth_bytes_per_s=hw.bandwidth_bytes_per_s, peak_flops=None,
                            compute_dtype=hw.compute_dtype, source="NVML: bus width × max memory clock",
                            sources={"memory": MEASURED, "bandwidth": MODELED, "peak_flops": NA})
        return hw, info, why

    # ------------------------------------------------------------------ rates

    def _engine_tokens(self, engine: EngineSample, now: float, interval: float) -> _Tokens:
        key = (engine.url, engine.kind)
        if self._engine_rates is None or key != self._engine_key:
            self._engine_rates = SourceRates(interval)
            self._engine_key = key
        tracker = self._engine_rates
        if "engine" in engine.why:
            rates = tracker.hold(ENGINE_COUNTERS, now, engine.why["engine"])
            held = rates["generation"]
            stale = held.stale and held.per_s is not None
            return _Tokens("engine", ENGINE, rates, engine.why["engine"], stale_for=interval * 3 if stale else None)
        source_time = engine.source_time
        rates = tracker.update(source_time if source_time is not None else now, _engine_counters(engine), now)
        return _Tokens("engine", ENGINE, rates, None)

    def _agent_tokens(self, agents: tuple[AgentSample, ...], now: float, interval: float) -> _Tokens:
        counting = [a for a in agents if _agent_counts_tokens(a)]
        for pid in [p for p in self._agent_rates if p not in {a.pid for a in counting}]:
            del self._agent_rates[pid]
        if not counting:
            return _Tokens(None, None, {}, "the agent watches no model in this process (nothing it could count)")
        per: list[dict[str, Rate]] = []
        for agent in counting:
            tracker = self._agent_rates.setdefault(agent.pid, SourceRates(max(agent.interval_s, interval)))
            first = tracker._last is None
            counters = {"generation": agent.generation_tokens_total, "prompt": agent.prompt_tokens_total,
                        "steps": agent.decode_steps_total}
            # The agent's monotonic clock when it has one: a wall-clock step (NTP) is not a pause.
            clock = agent.monotonic if agent.monotonic is not None else agent.time
            finished = agent.final and tracker._last is not None and tracker._last.time == clock
            rates = tracker.update(clock, counters, now)
            if finished:
                # The agent's final record, read again: it has counted all there was. Idle, not held.
                rates = {name: Rate(0.0, 0.0, why="the agent has finished (its final record)") for name in rates}
            if first and self.count_from_start:
                # Started by infermon: the counters began at zero with the process.
                rates = {k: Rate(None, delta=v, why=r.why) for (k, r), v in zip(rates.items(), counters.values())}
            per.append(rates)
        combined: dict[str, Rate] = {}
        for name in AGENT_COUNTERS:
            parts = [r[name] for r in per]
            values = [p.per_s for p in parts if p.per_s is not None]
            deltas = [p.delta for p in parts if p.delta is not None]
            combined[name] = Rate(sum(values) if values else None, sum(deltas) if deltas else None,
                                  held=all(p.held for p in parts), stale=all(p.stale for p in parts),
                                  why=next((p.why for p in parts if p.why), None))
        stale = combined["generation"].stale and combined["generation"].per_s is not None
        return _Tokens("agent", MEASURED, combined, None, stale_for=3 * interval if stale else None)

    # ------------------------------------------------------------------ the tick

    def update(self, snapshot: Snapshot) -> LiveView:
        """Derive ``snapshot`` against what came before."""
        if self._reset.is_set():
            self._reset.clear()
            self.history.reset_peaks()
            self.accumulator.reset()
            self._phase_window.clear()
            self._shown_phase = None
        if self.figures is None:
            self._resolve_model(snapshot)
        why: dict[str, str] = dict(snapshot.why)
        if self.model_why:
            why["model"] = self.model_why
        hw, hw_info, hw_why = self.hardware(snapshot)
        if hw_why:
            why["hardware"] = hw_why
        fig = self.figures
        par = self.parallel
        interval = snapshot.interval_s
        now = snapshot.monotonic

        real_engine = snapshot.engine if snapshot.engine is not None and snapshot.engine.kind != "agent" else None
        agent_engine = engine_from_agents(snapshot.agents) if snapshot.agents else None
        tokens = _Tokens(None, None, {}, None)
        notes: list[str] = []
        if real_engine is not None and ("engine" not in real_engine.why or self._engine_rates is not None):
            tokens = self._engine_tokens(real_engine, now, interval)
        if snapshot.agents:
            agent_tokens = self._agent_tokens(snapshot.agents, now, interval)
            if tokens.source is None or (tokens.why and agent_tokens.source and tokens.rates["generation"].per_s is None):
                if real_engine is not None and agent_tokens.source:
                    notes.append("tokens counted by the agent: the engine's /metrics did not answer")
                tokens = agent_tokens if agent_tokens.source else tokens
            elif agent_tokens.why and real_engine is not None and "engine" not in real_engine.why:
                notes.append("the agent counts no tokens here; the engine's counters are the rate")
        gauges = real_engine if real_engine is not None and "engine" not in real_engine.why else agent_engine
        if tokens.source == "agent":
            gauges = agent_engine
        if real_engine is not None and "engine" in real_engine.why and tokens.source != "agent":
            why["engine"] = real_engine.why["engine"]

        rate = tokens.rates.get
        gen = rate("generation").per_s if rate("generation") else None
        prompt = rate("prompt").per_s if rate("prompt") else None
        label = tokens.label or NA
        stale = bool(rate("generation") and rate("generation").stale)

        # ---- batch and steps: the engine's own step counter beats the batch sampled at two instants
        batch = batch_note = steps = None
        steps_rate = rate("steps")
        gen_rate = rate("generation")
        if steps_rate is not None and steps_rate.delta and gen_rate is not None and gen_rate.delta is not None:
            steps = steps_rate.per_s
            batch = gen_rate.delta / steps_rate.delta if gen_rate.delta else None
            batch_note = "generated tokens ÷ engine steps" if tokens.source == "engine" else "generated tokens ÷ decode steps"
        elif steps_rate is not None and steps_rate.held and steps_rate.per_s is not None:
            steps = steps_rate.per_s
        if batch is None:
            sampled = _interval_batch(self._previous_gauges, gauges)
            if sampled is not None:
                batch = sampled
                batch_note = "running requests, mean of the interval's two ends"
                if batch < 1 and (gen or 0) > 0:
                    batch = 1.0
                    batch_note = "no request running at the sampling instants; taken as 1"
            if steps is None and gen is not None and batch:
                steps = gen / batch
        tokens_per_step = None
        step_tokens = rate("step_tokens")
        if step_tokens is not None and step_tokens.delta and steps_rate is not None and steps_rate.delta:
            tokens_per_step = step_tokens.delta / steps_rate.delta

        # ---- KV cache
        running = None
        if gauges is not None:
            running = gauges.batch if gauges.batch is not None else gauges.requests_running
        capacity = capacity_source = capacity_note = None
        if gauges is not None and gauges.kv_capacity_tokens:
            capacity = float(gauges.kv_capacity_tokens)
            capacity_source = ENGINE if gauges.kind != "agent" else MODELED
        if (capacity is None and gauges is None and fig is not None and hw is not None
                and hw.bandwidth_bytes_per_s and hw.memory_bytes):
            ceil, _ = ceilings(fig, hw, parallel=par)
            capacity, capacity_source = float(ceil.kv_capacity_tokens), MODELED
            capacity_note = f"if {DEFAULT_MEMORY_UTILIZATION:.0%} of device memory held weights and KV"
        inside = None
        if gauges is not None and gauges.kind == "agent" and capacity is None:
            # No KV pool to read under the agent: the capacity is modeled from the free memory.
            inside = agent_kv(snapshot.agents, snapshot.devices, fig.kv_bytes_per_token if fig is not None else None)
            if inside.capacity_tokens is not None:
                capacity, capacity_source, capacity_note = inside.capacity_tokens, MODELED, inside.note
        resident = resident_source = usage = usage_source = None
        if gauges is not None and gauges.kv_usage is not None:
            usage, usage_source = gauges.kv_usage, ENGINE if gauges.kind != "agent" else MEASURED
            if capacity is not None:
                resident, resident_source = gauges.kv_usage * capacity, usage_source
        kv_tokens_resident = gauges.kv_tokens_resident if gauges is not None else None
        if resident is None and kv_tokens_resident is not None:
            resident, resident_source = float(kv_tokens_resident), MEASURED
            if usage is None and capacity:
                usage, usage_source = resident / capacity, MODELED
        context = resident / running if resident is not None and running else None
        if context is None and resident is not None and batch:
            context = resident / batch

        # ---- modeled work
        bytes_step = bandwidth = flops = ceiling = crit = None
        bandwidth_note = None
        if fig is not None and batch and batch > 0:
            bytes_step = step_bytes(fig, batch, context or 0.0, parallel=par)
            if gen is not None and steps is not None:
                bandwidth = modeled_bandwidth(fig, steps, batch, gen, context or 0.0, parallel=par)
                if context is None:
                    bandwidth_note = "weights only: KV reads not included (context unknown)"
        flops_note = None
        computed_prompt = prompt
        if step_tokens is not None and step_tokens.per_s is not None and gen is not None:
            # Tokens the engine actually scheduled: prompt tokens served from the prefix cache cost nothing.
            computed_prompt = max(0.0, step_tokens.per_s - gen)
            if prompt is not None and computed_prompt < 0.95 * prompt:
                flops_note = "prompt tokens the engine computed (prefix-cache hits excluded)"
        if fig is not None and (gen is not None or computed_prompt is not None):
            flops = modeled_flops(fig, gen or 0.0, computed_prompt or 0.0, context or 0.0)
        if fig is not None and hw is not None and hw.bandwidth_bytes_per_s:
            ceiling, crit = self._ceiling_at(fig, hw, par, max(1, round(batch or 1)), round(context or 0))
        measured, measured_why = measured_bandwidth(snapshot.devices, hw)

        engine_bw = engine_flops = None
        engine_bw_why = engine_flops_why = None
        if tokens.source == "engine" and real_engine is not None:
            ranks = ((snapshot.tree.tensor_parallel or 1) * (snapshot.tree.pipeline_parallel or 1) if snapshot.tree else 1)
            est_read, est_flops = rate("est_read_bytes"), rate("est_flops")
            engine_bw = est_read.per_s * ranks if est_read and est_read.per_s is not None else None
            engine_flops = est_flops.per_s * ranks if est_flops and est_flops.per_s is not None else None
            missing = _no_estimate(tokens, real_engine)
            engine_bw_why = real_engine.why.get("estimated_read_bytes_total") or (
                missing if real_engine.estimated_read_bytes_total is None else (est_read.why if est_read else None))
            engine_flops_why = real_engine.why.get("estimated_flops_total") or (
                missing if real_engine.estimated_flops_total is None else (est_flops.why if est_flops else None))
        if engine_bw == 0 and (gen or 0) > IDLE_TOKENS_PER_S:
            engine_bw, engine_bw_why = None, "the engine's estimate does not move (vLLM: start it with --enable-mfu-metrics)"
        if engine_flops == 0 and (gen or 0) > IDLE_TOKENS_PER_S:
            engine_flops, engine_flops_why = None, "the engine's estimate does not move (vLLM: start it with --enable-mfu-metrics)"

        peak_bw = hw.bandwidth_bytes_per_s if hw is not None else None
        peak_flops = hw.peak_flops if hw is not None else None
        ridge = ops_per_byte(peak_flops, peak_bw) if peak_flops and peak_bw else None
        mbu = bandwidth / peak_bw if bandwidth is not None and peak_bw else None
        mbu_measured = measured / peak_bw if measured is not None and peak_bw else None
        mfu = flops / peak_flops if flops is not None and peak_flops else None
        intensity = flops / bandwidth if flops is not None and bandwidth else None
        disagreement = abs(bandwidth - measured) / measured if bandwidth and measured else None

        # ---- latency
        latency = self._latencies(gauges, now)
        self._previous_gauges = gauges

        # ---- memory
        tree = snapshot.tree
        gpu_by_pid: dict[int, int] = {}
        for device in snapshot.devices:
            for proc in device.processes:
                if proc.used_bytes is not None:
                    gpu_by_pid[proc.pid] = gpu_by_pid.get(proc.pid, 0) + proc.used_bytes
        if tree is not None and gpu_by_pid:
            tree = evolve(tree, processes=tuple(evolve(p, gpu_memory_bytes=gpu_by_pid.get(p.pid)) for p in tree.processes))
        rss = [p.rss_bytes for p in (tree.processes if tree else ()) if p.rss_bytes is not None]
        tree_rss = sum(rss) if rss else None
        tree_gpu = [d.memory_tree_bytes for d in snapshot.devices if d.kind == "gpu" and d.memory_tree_bytes is not None]
        tree_gpu_total = sum(tree_gpu) if tree_gpu else None
        with_torch = [a for a in snapshot.agents if a.torch_reserved_bytes is not None]
        allocated = sum(a.torch_allocated_bytes or 0 for a in with_torch) if with_torch else None
        reserved = sum(a.torch_reserved_bytes or 0 for a in with_torch) if with_torch else None
        torch_why = (snapshot.agents[0].why.get("torch") if snapshot.agents else None) or "no agent (infermon run / attach)"
        gpus_present = [d for d in snapshot.devices if d.kind == "gpu"]
        if gpus_present and not any(d.used_by_tree for d in gpus_present) and "devices" not in why:
            why["devices"] = "no GPU lists the process tree (in a container? run with --pid=host)"

        # ---- verdict
        no_counters = agent_not_counting = None
        if real_engine is not None and "engine" in real_engine.why and real_engine.url:
            no_counters = f"the engine at {real_engine.url} did not answer ({real_engine.why['engine']})"
        elif tokens.source is None and snapshot.agents:
            # An agent runs but counts nothing (yet): its reason, never "no agent".
            agent_not_counting = why.get("agent") or tokens.why or "the agent counts no tokens"
        stale_for = None
        if stale:
            stale_for = max(0.0, now - (self._engine_rates._last.seen_at if tokens.source == "engine" and self._engine_rates and self._engine_rates._last else now))
        first_rate = tokens.rates.get("generation") if tokens.source is not None and not tokens.why else None
        first_reading_of = None
        if first_rate is not None and first_rate.per_s is None and first_rate.why == NEEDS_TWO_READINGS:
            first_reading_of = "the engine's" if tokens.source == "engine" else "the agent's"
        elif no_counters is None and tokens.source is not None:
            # A source answered but gives no token rate (no such counter, a counter reset): its reason.
            no_counters = next((r.why for r in tokens.rates.values() if r.per_s is None and r.why), None)
        recent_generation, recent_prompt = self._recent_rates(gen, prompt, interval)
        verdict = make_verdict(VerdictInputs(
            generation=gen, prompt=prompt, batch=batch, intensity=intensity, ridge=ridge, mbu=mbu, mfu=mfu,
            disagreement=disagreement, have_model=fig is not None, have_hardware=hw is not None and bool(peak_bw),
            stale_for=stale_for or (3 * interval if stale else None), no_counters_why=no_counters,
            first_reading_of=first_reading_of, agent_not_counting=agent_not_counting,
            recent_generation=recent_generation, recent_prompt=recent_prompt, previous_phase=self._shown_phase))
        self._shown_phase = verdict.phase

        # ---- figures
        engine_found = real_engine is not None
        gen_why = _rate_why(rate("generation"), tokens, why, engine_found)
        F: dict[str, Figure] = {}

        last_figures, figures_now = self._last_figures, {}
        self._last_figures = figures_now

        def put(name: str, value, source: str, why_text: str | None = None, note: str | None = None,
                stale_flag: bool = False) -> None:
            # A figure that reads as it did last tick is last tick's (frozen) object: most of the
            # fifty do, and building each again was a fifth of the derivation's CPU.
            key = (value, source, why_text, note, stale_flag)
            kept = last_figures.get(name)
            if (kept is not None and kept[0] == key and type(value) is type(kept[0][0])
                    and (value != 0 or str(value) == str(kept[0][0]))):  # -0.0 == 0.0, shown apart
                found = kept[1]
            else:
                found = figure(value, FIGURE_INFO[name][0], source, why_text, note, stale_flag)
            figures_now[name] = (key, found)
            F[name] = found

        held_note = None
        if rate("generation") is not None and rate("generation").held and not stale:
            held_why = rate("generation").why or ""
            held_note = held_why if held_why.startswith("between") else "last reading (the source has not published since)"
        put("generation_tokens_per_s", gen, label, gen_why, held_note, stale)
        put("prompt_tokens_per_s", prompt, label, _rate_why(rate("prompt"), tokens, why, engine_found), held_note, stale)
        # The gauges are the engine's, or the agents' own readings (when no engine answered, even
        # if the agents count no tokens): the source follows where they came from, not the rate's.
        gauge_source = MEASURED if gauges is not None and gauges.kind == "agent" else ENGINE
        put("requests_running", gauges.requests_running if gauges else None, gauge_source,
            _gauge_why(gauges, "requests_running", why))
        put("requests_waiting", gauges.requests_waiting if gauges else None, gauge_source,
            _gauge_why(gauges, "requests_waiting", why))
        put("batch", batch, label if batch_note and "steps" in batch_note else gauge_source,
            "no running-requests figure and no step counter" if gauges is not None else _gauge_why(gauges, "batch", why),
            batch_note)
        steps_source = label if steps_rate is not None and steps_rate.per_s is not None else MODELED
        put("steps_per_s", steps, steps_source, "needs a step counter or the batch",
            None if steps_source != MODELED else "inferred: generated tokens/s ÷ batch")
        put("tokens_per_step", tokens_per_step, label, "the engine does not count its steps' tokens"
            if tokens.source == "engine" else "needs an engine step counter (vLLM iteration_tokens_total)")
        for key, prefix in (("ttft", "ttft"), ("inter_token", "inter_token"), ("queue_time", "queue_time")):
            value, source_word, reason, note = latency[key]
            put(f"{prefix}_p50_s", value[0] if value else None, source_word, reason, note)
            put(f"{prefix}_p95_s", value[1] if value else None, source_word, reason, note)
        hits, queries = rate("prefix_hits"), rate("prefix_queries")
        hit_rate = hit_note = None
        if hits is not None and queries is not None and hits.delta is not None and queries.delta:
            hit_rate, hit_note = hits.delta / queries.delta, "over the last interval"
        elif gauges is not None and gauges.prefix_cache_queries_total:
            hit_rate = (gauges.prefix_cache_hits_total or 0.0) / gauges.prefix_cache_queries_total
            hit_note = "since the engine started"
        put("prefix_cache_hit_rate", hit_rate, ENGINE, _gauge_why(gauges, "prefix_cache_queries_total", why)
            if gauges is not None else "no engine metrics", hit_note)
        drafted, accepted = rate("spec_draft_tokens"), rate("spec_accepted")
        acceptance = accepted.delta / drafted.delta if drafted and accepted and drafted.delta and accepted.delta is not None else None
        put("spec_acceptance_rate", acceptance, ENGINE, "no speculative decoding in the interval (the engine drafts nothing)"
            if tokens.source == "engine" else "needs an engine that drafts (vLLM's spec_decode metrics)",
            "over the last interval" if acceptance is not None else None)
        put("preemptions_total", gauges.preemptions_total if gauges else None, ENGINE, _gauge_why(gauges, "preemptions_total", why))
        pre = rate("preemptions")
        put("preemptions_per_s", pre.per_s if pre else None, ENGINE, (pre.why if pre else None) or _gauge_why(gauges, "preemptions_total", why))

        hw_word = hw_info.sources if hw_info else {}
        hw_missing = why.get("hardware", "no device ceilings")
        put("peak_bandwidth_bytes_per_s", peak_bw, hw_word.get("bandwidth", NA), hw_missing,
            f"{hw_info.count} × {hw_info.name}" if hw_info and hw_info.count > 1 else None)
        put("peak_flops", peak_flops, hw_word.get("peak_flops", NA), why.get("hardware", "peak FLOP/s of this device unknown"),
            f"dense {hw_info.compute_dtype}" if hw_info else None)
        put("ops_per_byte", ridge, MODELED, "needs both device peaks")
        model_why = why.get("model", "model unknown (give --model)")
        put("bytes_per_step", bytes_step, MODELED, model_why if fig is None else "needs the batch",
            f"batch {batch:.1f}, ctx {context:,.0f}" if bytes_step is not None and context is not None
            else ("ctx unknown: weights only" if bytes_step is not None else None))
        bw_why = model_why if fig is None else (gen_why if gen is None else "needs the batch (no running-requests figure)")
        put("bandwidth_modeled_bytes_per_s", bandwidth, MODELED, bw_why, bandwidth_note)
        put("bandwidth_measured_bytes_per_s", measured, MEASURED, measured_why)
        put("bandwidth_engine_bytes_per_s", engine_bw, ENGINE, engine_bw_why or _no_estimate(tokens, real_engine))
        put("bandwidth_vs_engine", (bandwidth - engine_bw) / engine_bw if bandwidth is not None and engine_bw else None,
            MODELED, "needs the modeled figure and the engine's estimate")
        put("bandwidth_disagreement", disagreement, MODELED, "needs the modeled and the measured bandwidth")
        put("flops_modeled_per_s", flops, MODELED, model_why if fig is None else gen_why, flops_note)
        put("flops_engine_per_s", engine_flops, ENGINE, engine_flops_why or _no_estimate(tokens, real_engine))
        put("flops_vs_engine", (flops - engine_flops) / engine_flops if flops is not None and engine_flops else None,
            MODELED, "needs the modeled figure and the engine's estimate")
        put("mbu", mbu, MODELED, F["bandwidth_modeled_bytes_per_s"].why if bandwidth is None else hw_missing)
        put("mbu_measured", mbu_measured, MEASURED, measured_why if measured is None else hw_missing)
        put("mfu", mfu, MODELED, F["flops_modeled_per_s"].why if flops is None else "peak FLOP/s of this device unknown")
        put("operating_intensity", intensity, MODELED, "needs the modeled FLOP/s and bandwidth")
        context_note = f"batch {max(1, round(batch or 1))}, ctx {context:,.0f}" if context is not None else \
            f"batch {max(1, round(batch or 1))}, empty cache (context unknown)"
        put("decode_ceiling_tokens_per_s", ceiling, MODELED, model_why if fig is None else hw_missing, context_note)
        crit_why = model_why if fig is None else (hw_missing if not peak_flops else "decode never turns compute-bound at this context")
        put("critical_batch", crit, MODELED, crit_why, "compute-bound above it" if crit else None)

        put("kv_bytes_per_token", fig.kv_bytes_per_token if fig else None, MODELED, model_why,
            f"{fig.spec.attention_kind.upper()}, {fig.kv_dtype}" if fig else None)
        cap_why = _gauge_why(gauges, "kv_capacity_tokens", why) if gauges is not None else (
            model_why if fig is None else hw_missing)
        if inside is not None and capacity is None:
            cap_why = inside.why.get("kv_capacity_tokens", cap_why)
        put("kv_capacity_tokens", capacity, capacity_source or NA, cap_why, capacity_note)
        put("kv_pool_bytes", capacity * fig.kv_bytes_per_token if capacity is not None and fig is not None else None,
            MODELED, "needs the KV capacity and the model")
        usage_why = _gauge_why(gauges, "kv_usage", why) if gauges is not None else "no engine metrics"
        put("kv_usage", usage, usage_source or NA, usage_why)
        resident_why = usage_why if usage is None else "needs the KV capacity"
        if gauges is not None and gauges.kind == "agent" and resident is None:
            resident_why = gauges.why.get("kv_tokens_resident", resident_why)
        put("kv_resident_tokens", resident, resident_source or NA, resident_why,
            inside.source if inside is not None and resident is not None else None)
        put("context_tokens", context, MODELED, F["kv_resident_tokens"].why if resident is None else "needs the running requests")
        headroom = capacity - resident if capacity is not None and resident is not None else None
        headroom_why = (F["kv_resident_tokens"].why if resident is None else F["kv_capacity_tokens"].why)
        put("kv_headroom_tokens", max(0.0, headroom) if headroom is not None else None, MODELED, headroom_why)
        fits = headroom / context if headroom is not None and context else None
        put("sequences_fit", fits, MODELED, headroom_why if headroom is None else "needs the mean context",
            f"at the mean context {context:,.0f}" if fits is not None else None)
        inside_memory = agent_memory(snapshot.agents) if snapshot.agents else None
        if inside_memory is not None and inside_memory.weights_bytes is not None:
            # What the watched models' parameters occupy, counted inside the process.
            put("weight_bytes", inside_memory.weights_bytes, MEASURED, None,
                "the watched models' parameters (agent)")
        else:
            put("weight_bytes", fig.weight_bytes if fig else None, MEASURED if fig and fig.weight_bytes_source.startswith(("measured", "safetensors", "GGUF")) else MODELED,
                model_why, fig.weight_bytes_source if fig else None)
        put("tree_rss_bytes", tree_rss, MEASURED, "no process readable")
        put("tree_gpu_memory_bytes", tree_gpu_total, MEASURED, why.get("devices", "no GPU lists the process tree"))
        put("torch_allocated_bytes", allocated, MEASURED, torch_why)
        put("torch_reserved_bytes", reserved, MEASURED, torch_why)
        put("torch_cache_free", 1 - allocated / reserved if reserved else None, MEASURED, torch_why)
        put("alloc_retries", sum(a.alloc_retries or 0 for a in with_torch) if with_torch else None, MEASURED, torch_why)
        put("ooms", sum(a.ooms or 0 for a in with_torch) if with_torch else None, MEASURED, torch_why)
        figures = Figures(**F)

        # ---- history, summary, the view
        busy = verdict.phase not in ("idle", "unknown")
        alive = tree is None or tree.alive
        if alive:
            self.history.add(gen, prompt, mbu)
        # The last reading after an exit (an agent's final record) still counts its tokens.
        if alive or gen_rate is not None:
            self.accumulator.add(
                now, generation_delta=gen_rate.delta if gen_rate else None,
                prompt_delta=rate("prompt").delta if rate("prompt") else None, generation_rate=gen, mbu=mbu, busy=busy,
                device_memory=tree_gpu_total, torch_allocated=allocated, torch_reserved=reserved, rss=tree_rss,
                model_name=fig.name if fig else None, flops_per_token=fig.flops_per_token if fig else None,
                token_source=_token_source_words(tokens, real_engine), flops=flops,
                weights=inside_memory.weights_bytes if inside_memory is not None else None)
        trend = Trend(generation=self.history.buckets(self.history.generation),
                      prompt=self.history.buckets(self.history.prompt),
                      peak_generation_tokens_per_s=self.history.peak_generation, peak_mbu=self.history.peak_mbu,
                      latency_window=latency["ttft"][3] or latency["inter_token"][3])
        if gauges is not None:
            notes.extend(gauges.hints)
        notes.extend(r.why for name, r in tokens.rates.items() if r.why and "backwards" in r.why)
        warnings = tuple(dict.fromkeys((*self.warnings, *plausibility_warnings(
            fig, hw if hw is not None and hw.bandwidth_bytes_per_s else None, context=context, batch=running,
            kv_capacity_tokens=capacity, mbu=mbu, mfu=mfu, parallel=par))))
        notes.extend(self.serving_notes)
        speculation = _speculation(rate("spec_drafts"), rate("spec_draft_tokens"), rate("spec_accepted"))
        found_levers, levers_why = self._operating_levers(fig, hw, par, batch, context, gen, capacity, verdict.phase,
                                                          speculation)
        if levers_why:
            why["levers"] = levers_why
        engine_out = _slim_engine(real_engine if tokens.source != "agent" else agent_engine)
        if not alive and self._last_alive is not None:
            # The process has exited: its last figures stay what every view shows, with the exit and the
            # final totals (an agent's last record counts).
            return replace(self._last_alive, time=snapshot.time, monotonic=snapshot.monotonic, tree=tree,
                           summary=self.accumulator.summary(), why={**self._last_alive.why, **why})
        view = LiveView(
            time=snapshot.time, monotonic=snapshot.monotonic, interval_s=interval, figures=figures, verdict=verdict,
            tree=tree, devices=snapshot.devices, engine=engine_out,
            agents=tuple(evolve(a, model_config=None, ttft=None, inter_token=None) for a in snapshot.agents),
            host=snapshot.host,
            model=_model_info(fig, self.model_source), hardware=hw_info, trend=trend,
            summary=self.accumulator.summary(), warnings=warnings, notes=tuple(dict.fromkeys(notes)), why=why,
            levers=found_levers)
        if alive:
            self._last_alive = view
        return view

    def _ceiling_at(self, fig, hw, par, batch: int, context: int) -> tuple[float, float | None]:
        """(decode ceiling tokens/s, critical batch) at a whole batch and context: worked out again
        only when one of them, the model, the device or the split changes (the batch and context
        stay put for many ticks; every tick runs on caches the server has emptied, so each
        recomputation costs several times what it would in a loop)."""
        memo = self._ceiling_memo
        if (memo is not None and memo[0] is fig and memo[1] == hw and memo[2] == par
                and memo[3] == batch and memo[4] == context):
            return memo[5]
        found = (decode_step(fig, hw, batch, context, parallel=par).tokens_per_s,
                 critical_batch(fig, hw, context, parallel=par))
        self._ceiling_memo = (fig, hw, par, batch, context, found)
        return found

    def _recent_rates(self, generation: float | None, prompt: float | None,
                      interval: float) -> tuple[float | None, float | None]:
        """Mean generation and prompt tokens/s over the last PHASE_WINDOW_S of working ticks, this one
        included (see verdict.steady_phase); an idle or rateless tick empties the window, so a new
        burst of work is judged on its own."""
        window = self._phase_window
        if phase_of(generation, prompt) in ("idle", "unknown"):
            window.clear()
            return None, None
        window.append((generation or 0.0, prompt or 0.0))
        keep = max(1, round(PHASE_WINDOW_S / interval)) if interval > 0 else 1
        while len(window) > keep:
            window.popleft()
        return sum(g for g, _ in window) / len(window), sum(p for _, p in window) / len(window)

    def _operating_levers(self, fig, hw, par, batch, context, generation, capacity, phase, speculation=None):
        """What each lever would give at this operating point (model.levers), or why there are none.

        The modeled levers are recomputed only when the point moves (batch and context to two
        significant digits; they are a few dozen decode steps of arithmetic, not worth redoing for
        jitter); the measured rate, which moves every tick, is applied to them exactly and cheaply.
        """
        if fig is None or hw is None or not hw.bandwidth_bytes_per_s:
            return None, "needs the model and the device's peaks"
        if hw.count > 1 and par is None:
            return None, "the GPUs' split is unknown"
        b = max(1.0, batch or 1.0)
        c = context or 0.0
        measured = generation if phase in ("decode", "mixed") and generation else None
        key = (id(fig), hw.name, hw.count, par, _two_digits(b), _two_digits(c), _two_digits(capacity), speculation)
        if key != self._levers_key:
            self._levers_key = key
            self._levers_measured = self._levers = None
            try:
                found = modeled_levers(fig, hw, OperatingPoint(batch=b, context=c, kv_capacity_tokens=capacity,
                                                               parallel=par), speculation)
                # The worked formulas are calc --levers --explain's; a live view carries the figures.
                self._levers_modeled = replace(found, baseline=replace(found.baseline, formula=""),
                                               levers=tuple(replace(lever, formula="") for lever in found.levers))
                self._levers_error = None
            except (ValueError, ZeroDivisionError, OverflowError) as exc:
                self._levers_modeled = None
                self._levers_error = f"levers not computed: {exc}"
        if self._levers_modeled is None:
            return None, self._levers_error
        if self._levers is None or measured != self._levers_measured:
            self._levers_measured = measured
            self._levers = with_measured_rate(self._levers_modeled, measured)
        return self._levers, None

    def _latencies(self, gauges: EngineSample | None, now: float) -> dict[str, tuple]:
        """(p50, p95) or None, source word, reason, window for ttft, inter_token and queue_time."""
        out: dict[str, tuple] = {}
        key = (gauges.url, gauges.kind) if gauges is not None else None
        if key != self._latency_key:
            self._latency_key = key
            self._latency = {name: LatencyWindow() for name in self._latency}
        word = ENGINE if gauges is not None and gauges.kind != "agent" else MEASURED
        for name, window in self._latency.items():
            hist = getattr(gauges, name, None) if gauges is not None else None
            window.add(now, hist)
            found = window.latency()
            if found is None or found.p50 is None:
                reason = (gauges.why.get(name) if gauges is not None else None) or (
                    "no requests finished yet" if window.points else "no latency histogram")
                out[name] = (None, NA, reason, None)
            else:
                out[name] = ((found.p50, found.p95), word, None, found.window)
        return out



# The name callers used before the derivation layer had its own package.
LiveModel = Deriver


def _speculation(drafts: Rate | None, draft_tokens: Rate | None, accepted: Rate | None) -> Speculation | None:
    """The engine's own speculative decoding over the interval (k draft tokens a draft, α per token), for the
    speculative lever; None where the engine drafts nothing (the lever then assumes k and α, and says so)."""
    if not (drafts and draft_tokens and accepted) or not drafts.delta or not draft_tokens.delta or accepted.delta is None:
        return None
    k = max(1, round(draft_tokens.delta / drafts.delta))
    rate = min(1.0, accepted.delta / draft_tokens.delta)
    return Speculation(draft_tokens=k, acceptance=_two_digits(acceptance_from_rate(rate, k)) or 0.0,
                       acceptance_source="engine-reported")


def _two_digits(value: float | None) -> float | None:
    """``value`` to two significant digits (a cache key that ignores jitter)."""
    if value is None or value == 0:
        return value
    from math import floor, log10

    return round(value, 1 - int(floor(log10(abs(value)))))


def _split_words(parallel: Parallelism | None) -> str | None:
    if parallel is None or parallel.trivial:
        return None
    parts = [f"TP {parallel.tp}"] + ([f"PP {parallel.pp}"] if parallel.pp > 1 else []) + (
        [f"{parallel.dp} replicas"] if parallel.dp > 1 else [])
    return " × ".join(parts)


def _rate_why(rate: Rate | None, tokens: _Tokens, why: dict[str, str], engine_found: bool = True) -> str:
    if tokens.why and tokens.source is None:
        return tokens.why
    if rate is None:
        # No endpoint found but an agent runs (a script under infermon run): the agent's reason.
        first, second = ("engine", "agent") if engine_found else ("agent", "engine")
        return why.get(first) or why.get(second) or "no token counters: no engine metrics and no agent"
    return rate.why or "not available"


def _gauge_why(gauges: EngineSample | None, name: str, why: dict[str, str]) -> str:
    if gauges is None:
        return why.get("engine") or "no engine metrics"
    return gauges.why.get(name) or f"not reported by {gauges.kind}"


def _no_estimate(tokens: _Tokens, engine: EngineSample | None) -> str:
    if engine is None or tokens.source != "engine":
        return "no engine estimate (vLLM with --enable-mfu-metrics publishes one)"
    if engine.kind == "vllm":
        return "vLLM publishes its estimate only when started with --enable-mfu-metrics"
    return f"{engine.kind} publishes no estimate of its work"


def _token_source_words(tokens: _Tokens, engine: EngineSample | None) -> str | None:
    if tokens.source == "engine" and engine is not None:
        return f"{engine.kind}'s counters"
    if tokens.source == "agent":
        return "the in-process agent"
    return None


def _slim_engine(engine: EngineSample | None) -> EngineSample | None:
    """The engine sample without its histograms: views read the percentiles from ``figures``."""
    if engine is None:
        return None
    changes = {name: None for name in ("ttft", "inter_token", "queue_time")}
    return evolve(engine, **changes)


def _model_info(fig: ModelFigures | None, source: str | None) -> ModelInfo | None:
    if fig is None:
        return None
    return ModelInfo(name=fig.name, source=source or "", params_total=fig.params.total, params_active=fig.params.active,
                     weight_bytes=fig.weight_bytes, weight_bytes_source=fig.weight_bytes_source,
                     weight_dtype=fig.weight_format.dtype, kv_dtype=fig.kv_dtype,
                     kv_bytes_per_token=fig.kv_bytes_per_token, flops_per_token=fig.flops_per_token,
                     attention=fig.spec.attention_kind, layers=fig.spec.num_layers)


def _running(engine: EngineSample | None) -> float | None:
    if engine is None:
        return None
    return engine.batch if engine.batch is not None else engine.requests_running


def _interval_batch(previous: EngineSample | None, current: EngineSample | None) -> float | None:
    """Sequences per decode step over the interval: the mean of the batch seen at its two ends."""
    values = [v for v in (_running(previous), _running(current)) if v is not None]
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
