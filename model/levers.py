"""What would change decode tokens/s at an operating point: every lever, quantified, and where it stops.

An operating point is a model on hardware, decoding ``batch`` sequences of ``context`` cached
tokens (and, live, the rate measured there and the engine's KV capacity). Each lever is the
same decode arithmetic (:func:`~infermon.model.roofline.decode_step`) at a changed point:

- **batch** ×2, ×4, at the KV-capacity limit ⌊capacity ÷ C⌋, and at the critical batch
  (where the step turns compute-bound);
- **weights** int8 / int4 (weight-only, group-wise int4 with fp16 scales per 128), **KV cache** fp8;
- **context** halved / doubled (KV reads per step and sequences that fit);
- **speculative decoding**: k draft tokens at acceptance rate α: E = (1 − α^(k+1)) ÷ (1 − α)
  tokens per sequence per target step; a cycle is k draft steps plus one target step that
  verifies k+1 tokens per sequence; tokens/s = B × E ÷ cycle;
- **tensor parallelism** over twice the GPUs (KV heads split only down to one per rank, MLA
  latents on every rank; communication not counted).

Each lever names the ceiling it runs into: ``bandwidth`` or ``compute`` (the roofline term
that bounds the step), ``kv_capacity`` (the cache is full: the batch cannot grow further) or
``memory`` (the weights no longer fit). With a measured rate, the measured efficiency
(measured ÷ modeled tokens/s at the operating point) is applied to every lever and said as
such: the modeled figure is a ceiling; the adjusted one assumes the overheads scale with it.

Decode only: prefill interleaved with decode, scheduling and communication are not modeled.
Pure and cheap (a few dozen decode steps): the live view can call :func:`levers` every tick.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from infermon.model.figures import ModelFigures, model_figures
from infermon.model.frozen import evolve
from infermon.model.gpu import Hardware
from infermon.model.kv import kv_bytes_per_token
from infermon.model.parallel import Parallelism
from infermon.model.plausibility import does_not_fit_reason
from infermon.model.roofline import (
    DEFAULT_MEMORY_UTILIZATION,
    DEFAULT_RESERVE_BYTES,
    DecodeStep,
    critical_batch,
    decode_step,
    kv_capacity,
)

CEILINGS = ("bandwidth", "compute", "kv_capacity", "memory")
DEFAULT_DRAFT_TOKENS = 4
DEFAULT_ACCEPTANCE = 0.7
DEFAULT_DRAFT_COST = 0.1


@dataclass(frozen=True)
class OperatingPoint:
    """Where the deployment runs: ``batch`` sequences (≥ 1) of ``context`` cached tokens each.

    ``measured_tokens_per_s``: the decode rate measured there (None: none). ``kv_capacity_tokens``:
    the engine's own KV capacity where it reports one (None: modeled from memory as ``calc``
    does, with ``memory_utilization`` and ``reserve_bytes``). ``parallel``: the split over
    ``hw.count`` GPUs (None: the hardware as one device).
    """

    batch: float
    context: float
    measured_tokens_per_s: float | None = None
    kv_capacity_tokens: float | None = None
    parallel: Parallelism | None = None
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION
    reserve_bytes: float = DEFAULT_RESERVE_BYTES


@dataclass(frozen=True)
class Speculation:
    """Speculative decoding: ``draft_tokens`` k per step, ``acceptance`` α (the chance each draft token
    is accepted; ``acceptance_source`` says whether it was assumed or engine-reported), and the draft's
    cost: a draft model's figures, or ``draft_cost`` = its step time ÷ the target's at the same batch."""

    draft_tokens: int = DEFAULT_DRAFT_TOKENS
    acceptance: float = DEFAULT_ACCEPTANCE
    acceptance_source: str = "assumed"
    draft: ModelFigures | None = None
    draft_cost: float = DEFAULT_DRAFT_COST


@dataclass(frozen=True)
class Lever:
    """One lever at the operating point.

    ``tokens_per_s``: modeled decode tokens/s over all sequences; ``latency_s``: modeled time
    between two tokens of one sequence; ``gain`` = tokens_per_s ÷ the baseline's; ``ceiling``:
    what bounds it (see :data:`CEILINGS`); ``expected_*``: the same with the measured efficiency
    applied (None without a measured rate); ``kv_capacity_tokens``: the cache in this scenario.
    ``why`` is set when the lever does not apply (its figures are then None) or is capped.
    ``formula`` shows the arithmetic with the numbers.
    """

    key: str
    name: str
    change: str
    batch: float
    context: float
    tokens_per_s: float | None
    latency_s: float | None
    ceiling: str | None
    gain: float | None
    kv_capacity_tokens: float | None
    expected_tokens_per_s: float | None = None
    expected_latency_s: float | None = None
    formula: str = ""
    why: str | None = None


@dataclass(frozen=True)
class Levers:
    """The baseline (the operating point as modeled), the measured efficiency, and every lever."""

    baseline: Lever
    efficiency: float | None
    efficiency_note: str
    levers: tuple[Lever, ...]
    notes: tuple[str, ...] = ()

    def get(self, key: str) -> Lever:
        """The lever with ``key`` (``batch_x2``, ``weights_int4``, ``speculative``…)."""
        for lever in self.levers:
            if lever.key == key:
                return lever
        raise KeyError(key)



def batch_text(batch: float) -> str:
    """A batch as people read it: whole sequences as an integer, a mean batch (a live engine's,
    averaged over an interval) to two decimals."""
    if float(batch).is_integer():
        return f"{int(batch):,}"
    return f"{batch:,.2f}" if abs(batch) < 100 else f"{batch:,.0f}"


def expected_tokens_per_step(draft_tokens: int, acceptance: float) -> float:
    """Tokens per sequence one speculative step yields: E = (1 − α^(k+1)) ÷ (1 − α), between 1 and k+1.

    The accepted prefix of k drafts plus the target's own next token; α = 1 gives k+1.
    """
    k, a = draft_tokens, min(max(acceptance, 0.0), 1.0)
    if a >= 1.0:
        return float(k + 1)
    return (1.0 - a ** (k + 1)) / (1.0 - a)


def acceptance_from_rate(rate: float, draft_tokens: int) -> float:
    """α from an engine's acceptance rate r = accepted ÷ drafted tokens (vLLM's spec-decode counters).

    Drafts past the first rejection are discarded, so r = (α + α² + … + α^k) ÷ k, not α: this
    inverts that (r rises monotonically with α) by bisection. r ≤ 0 gives 0, r ≥ 1 gives 1.
    """
    k = max(1, int(draft_tokens))
    if not rate > 0:
        return 0.0
    if rate >= 1:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if sum(mid ** i for i in range(1, k + 1)) / k < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _ceiling(step: DecodeStep) -> str:
    return "compute" if step.bound == "compute" else "bandwidth"


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.3g} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} µs"


def _gb(value: float) -> str:
    return f"{value / 1e9:.3g} GB"


def _scaled(hw: Hardware, factor: int) -> Hardware:
    """``factor`` times as many of the same GPUs."""
    return dataclasses.replace(hw, count=hw.count * factor, memory_bytes=hw.memory_bytes * factor,
                               bandwidth_bytes_per_s=hw.bandwidth_bytes_per_s * factor,
                               peak_flops=hw.peak_flops * factor if hw.peak_flops is not None else None)


class _Point:
    """The arithmetic shared by every lever at one operating point."""

    def __init__(self, fig: ModelFigures, hw: Hardware, point: OperatingPoint) -> None:
        self.fig, self.hw, self.point = fig, hw, point
        self.parallel = point.parallel
        self.batch = max(1.0, float(point.batch))
        self.context = max(0.0, float(point.context))
        modeled = kv_capacity(fig, hw, point.memory_utilization, point.reserve_bytes, parallel=self.parallel)
        self.capacity_scale = 1.0
        self.capacity_note = "modeled from free memory"
        if point.kv_capacity_tokens is not None and point.kv_capacity_tokens > 0 and modeled > 0:
            self.capacity_scale = point.kv_capacity_tokens / modeled
            self.capacity_note = "the engine's, scaled by how each scenario changes the modeled one"
        self.capacity = modeled * self.capacity_scale
        self.base = decode_step(fig, hw, self.batch, round(self.context), parallel=self.parallel)

    def capacity_for(self, fig: ModelFigures, hw: Hardware, parallel: Parallelism | None) -> float:
        return kv_capacity(fig, hw, self.point.memory_utilization, self.point.reserve_bytes,
                           parallel=parallel) * self.capacity_scale

    def max_batch(self, capacity: float, context: float) -> float:
        """Sequences of ``context`` tokens the cache holds (infinite for an empty cache)."""
        if context <= 0:
            return math.inf
        return math.floor(capacity / context)

    def lever(self, key: str, name: str, change: str, step: DecodeStep | None, *, batch: float, context: float,
              capacity: float | None, formula: str, ceiling: str | None = None, why: str | None = None,
              tokens_per_s: float | None = None, latency_s: float | None = None) -> Lever:
        if step is not None:
            tokens_per_s = step.tokens_per_s if tokens_per_s is None else tokens_per_s
            latency_s = step.time_s if latency_s is None else latency_s
            ceiling = ceiling or _ceiling(step)
        gain = tokens_per_s / self.base.tokens_per_s if tokens_per_s is not None and self.base.tokens_per_s else None
        return Lever(key=key, name=name, change=change, batch=batch, context=context, tokens_per_s=tokens_per_s,
                     latency_s=latency_s, ceiling=ceiling, gain=gain, kv_capacity_tokens=capacity,
                     formula=formula, why=why)

    def not_applicable(self, key: str, name: str, change: str, why: str, ceiling: str | None = None) -> Lever:
        return Lever(key=key, name=name, change=change, batch=self.batch, context=self.context, tokens_per_s=None,
                     latency_s=None, ceiling=ceiling, gain=None, kv_capacity_tokens=None, formula="", why=why)

    def step(self, fig: ModelFigures, batch: float, context: float, hw: Hardware | None = None,
             parallel: Parallelism | None = None, tokens: int = 1) -> DecodeStep:
        hw = hw or self.hw
        parallel = parallel if parallel is not None else self.parallel
        return decode_step(fig, hw, batch, round(context), parallel=parallel, tokens_per_sequence=tokens)

    def step_formula(self, step: DecodeStep, fig: ModelFigures, batch: float, context: float,
                     hw: Hardware | None = None) -> str:
        """The step's arithmetic with its numbers: one device, or per GPU of each pipeline stage."""
        hw = hw or self.hw
        if step.per_gpu:
            gpu_bw = hw.bandwidth_bytes_per_s / hw.count
            stages = "; ".join(
                f"max({_gb(st.bytes)} ÷ {gpu_bw / 1e9:.4g} GB/s, {st.flops / 1e12:.4g} TFLOP ÷ peak) = "
                f"{_seconds(st.time_s)}" for st in step.per_gpu)
            return (f"per GPU of each stage, {step.micro_batches:g} micro-batch(es): {stages}; cycle "
                    f"{_seconds(step.time_s)}; tokens/s = B ÷ cycle = {batch:g} ÷ {_seconds(step.time_s)}"
                    f" = {step.tokens_per_s:,.1f}")
        peak = _seconds(step.compute_time_s) if step.compute_time_s is not None else "n/a"
        return (f"t = max(bytes ÷ BW, FLOPs ÷ peak) = max({_gb(step.bytes)} ÷ {hw.bandwidth_bytes_per_s / 1e9:.4g} GB/s,"
                f" {step.flops / 1e12:.4g} TFLOP ÷ peak) = max({_seconds(step.memory_time_s)}, {peak})"
                f" = {_seconds(step.time_s)}; tokens/s = B ÷ t = {batch:g} ÷ {_seconds(step.time_s)}"
                f" = {step.tokens_per_s:,.1f}")


def levers(fig: ModelFigures, hw: Hardware, point: OperatingPoint, speculation: Speculation | None = None) -> Levers:
    """Every lever of the module docstring at ``point``; ``speculation`` defaults to k = 4, α = 0.7 (assumed).

    The modeled levers, then the measured efficiency applied (:func:`with_measured_rate`)."""
    return with_measured_rate(modeled_levers(fig, hw, point, speculation), point.measured_tokens_per_s)


def with_measured_rate(found: Levers, measured_tokens_per_s: float | None) -> Levers:
    """The levers with the measured efficiency applied.

    efficiency = measured tokens/s ÷ the baseline's modeled tokens/s; every lever's expected
    tokens/s = its modeled tokens/s × efficiency and expected latency = its modeled latency ÷
    efficiency. Without a valid measured rate, or where the weights do not fit (no operating point
    to measure against), the levers are returned as modeled. Cheap next to :func:`modeled_levers`:
    a live view recomputes only this part when only the measured rate moved."""
    base = found.baseline.tokens_per_s
    measured = measured_tokens_per_s
    if measured is None or not math.isfinite(measured) or measured <= 0 or not base or base <= 0:
        return found  # no rate, or no modeled operating point (weights that do not fit)
    eff = measured / base

    def applied(lever: Lever) -> Lever:
        # evolve, not replace: the live view applies the measured rate to a dozen levers every tick,
        # and replace was a quarter of the whole derivation's CPU.
        return evolve(
            lever,
            expected_tokens_per_s=lever.tokens_per_s * eff if lever.tokens_per_s is not None else None,
            expected_latency_s=lever.latency_s / eff if lever.latency_s is not None else None)

    note = (f"measured {measured:,.1f} tokens/s is {eff:.0%} of the modeled {base:,.1f}: "
            "the last column applies that efficiency to every lever")
    return evolve(found, baseline=applied(found.baseline), efficiency=eff, efficiency_note=note,
                  levers=tuple(applied(lever) for lever in found.levers))


def modeled_levers(fig: ModelFigures, hw: Hardware, point: OperatingPoint,
                   speculation: Speculation | None = None) -> Levers:
    """Every lever at ``point`` as modeled: no measured efficiency (``point.measured_tokens_per_s`` is
    not read; :func:`with_measured_rate` applies it)."""
    at = _Point(fig, hw, point)
    spec = speculation or Speculation()
    b, c = at.batch, at.context
    notes: list[str] = []
    if point.batch < 1:
        notes.append("no sequence running: the levers are worked out at batch 1")
    reason = does_not_fit_reason(fig, hw, at.parallel)
    if reason:
        return _not_fitting(at, fig, hw, reason, notes)
    if c > 0 and b * c > at.capacity:
        notes.append(f"batch {batch_text(b)} × context {c:,.0f} is more than the KV cache holds ({at.capacity:,.0f} tokens): "
                     "the operating point itself cannot run as given, and levers capped at the cache may fall below it")
    base_formula = at.step_formula(at.base, fig, b, c)
    baseline = at.lever("baseline", "now", f"B {batch_text(b)}, C {c:,.0f}", at.base, batch=b, context=c,
                        capacity=at.capacity, formula=base_formula,
                        ceiling="kv_capacity" if c > 0 and b * c >= at.capacity else None)
    eff_note = "no measured rate: the figures are the modeled ceilings"

    out: list[Lever] = []
    limit = at.max_batch(at.capacity, c)

    # ---- batch
    for factor in (2, 4):
        key, name = f"batch_x{factor}", f"batch ×{factor}"
        want = b * factor
        if want <= limit:
            step = at.step(fig, want, c)
            out.append(at.lever(key, name, f"B {batch_text(b)} → {batch_text(want)}", step, batch=want, context=c, capacity=at.capacity,
                                formula=at.step_formula(step, fig, want, c)))
        elif limit > b:
            step = at.step(fig, limit, c)
            out.append(at.lever(key, name, f"B {batch_text(b)} → {batch_text(limit)} (not {batch_text(want)})", step, batch=limit, context=c,
                                capacity=at.capacity, ceiling="kv_capacity",
                                why=f"the KV cache holds {limit:,.0f} sequences of {c:,.0f} tokens",
                                formula=at.step_formula(step, fig, limit, c)))
        else:
            out.append(at.not_applicable(key, name, f"B {batch_text(b)} → {batch_text(want)}",
                                         f"the KV cache is full: it holds {limit:,.0f} sequences of {c:,.0f} tokens",
                                         "kv_capacity"))
    if math.isinf(limit):
        out.append(at.not_applicable("batch_kv_limit", "batch to KV limit", "—",
                                     "an empty cache (context 0) sets no batch limit"))
    elif limit >= 1:
        step = at.step(fig, limit, c)
        out.append(at.lever("batch_kv_limit", "batch to KV limit", f"B {batch_text(b)} → {limit:,.0f}", step,
                            batch=limit, context=c, capacity=at.capacity, ceiling="kv_capacity",
                            formula=f"B = ⌊capacity ÷ C⌋ = ⌊{at.capacity:,.0f} ÷ {c:,.0f}⌋ = {limit:,.0f}; "
                                    + at.step_formula(step, fig, limit, c)))
    else:
        out.append(at.not_applicable("batch_kv_limit", "batch to KV limit", "—",
                                     f"not one sequence of {c:,.0f} tokens fits the KV cache", "kv_capacity"))
    crossing = critical_batch(fig, hw, round(c), parallel=at.parallel)
    if crossing is None:
        why = ("FLOP peak unknown" if not hw.peak_flops else
               "never compute-bound at this context: KV reads grow with the batch as fast as FLOPs")
        out.append(at.not_applicable("batch_critical", "critical batch", "—", why,
                                     "bandwidth" if hw.peak_flops else None))
    else:
        reach = min(crossing, limit)
        step = at.step(fig, reach, c)
        capped = crossing > limit
        out.append(at.lever("batch_critical", "critical batch", f"B {batch_text(b)} → {reach:,.1f}", step,
                            batch=reach, context=c, capacity=at.capacity,
                            ceiling="kv_capacity" if capped else "compute",
                            why=(f"compute-bound from batch {crossing:,.1f}, beyond the {limit:,.0f} sequences the "
                                 "KV cache holds") if capped else None,
                            formula=f"B* where bytes ÷ BW = FLOPs ÷ peak: {crossing:,.1f}; "
                                    + at.step_formula(step, fig, reach, c)))

    # ---- weights and KV cache formats
    override = fig.params.total if fig.params_overridden else None
    for dtype, label in (("int8", "weights int8"), ("int4", "weights int4")):
        key = f"weights_{dtype}"
        new = model_figures(fig.spec, dtype=dtype, kv_dtype=fig.kv_dtype, params_override=override)
        if new.weight_bytes >= fig.weight_bytes * 0.999:
            out.append(at.not_applicable(key, label, "—", f"the weights are already {_gb(fig.weight_bytes)}, "
                                         f"no more than {dtype} ({_gb(new.weight_bytes)})"))
            continue
        cap = at.capacity_for(new, hw, at.parallel)
        step = at.step(new, b, c)
        out.append(at.lever(key, label, f"{fig.weight_bytes / 1e9:.3g} → {_gb(new.weight_bytes)}", step,
                            batch=b, context=c, capacity=cap,
                            formula=f"W = {new.weight_format.bytes_per_param():g} B per quantized weight "
                                    f"({new.weight_format.method or dtype}"
                                    + ("" if fig.params_overridden else "; embeddings and norms unquantized")
                                    + f") = {_gb(new.weight_bytes)}; " + at.step_formula(step, new, b, c)))
    if fig.kv_dtype in ("fp8", "int8", "int4"):
        out.append(at.not_applicable("kv_fp8", "KV cache fp8", "—", f"the KV cache is already {fig.kv_dtype}"))
    else:
        new = dataclasses.replace(fig, kv_dtype="fp8", kv_bytes_per_token=float(kv_bytes_per_token(fig.spec, "fp8")))
        cap = at.capacity_for(new, hw, at.parallel)
        step = at.step(new, b, c)
        out.append(at.lever("kv_fp8", "KV cache fp8", f"{fig.kv_bytes_per_token:,.0f} → "
                            f"{new.kv_bytes_per_token:,.0f} B/tok", step, batch=b, context=c, capacity=cap,
                            formula=f"KV/token at 1 B per value = {new.kv_bytes_per_token:,.0f} B; "
                                    + at.step_formula(step, new, b, c)))

    # ---- context
    for factor, key, name in ((0.5, "context_half", "context ÷2"), (2.0, "context_x2", "context ×2")):
        if c <= 0:
            out.append(at.not_applicable(key, name, "—", "the cache is empty (context 0)"))
            continue
        new_c = max(1.0, round(c * factor))
        fits = at.max_batch(at.capacity, new_c)
        batch = min(b, fits)
        if batch < 1:
            out.append(at.not_applicable(key, name, f"C {c:,.0f} → {new_c:,.0f}",
                                         f"not one sequence of {new_c:,.0f} tokens fits the KV cache", "kv_capacity"))
            continue
        step = at.step(fig, batch, new_c)
        why = None
        if batch < b:
            why = f"only {batch:,.0f} sequences of {new_c:,.0f} tokens fit the KV cache"
        limit_positions = fig.spec.max_position_embeddings
        if limit_positions and new_c > limit_positions:
            why = (why + "; " if why else "") + f"beyond the model's {limit_positions:,} positions"
        out.append(at.lever(key, name, f"C {c:,.0f} → {new_c:,.0f}", step, batch=batch, context=new_c,
                            capacity=at.capacity, ceiling="kv_capacity" if batch < b else None, why=why,
                            formula=f"{fits:,.0f} sequences fit; " + at.step_formula(step, fig, batch, new_c)))

    # ---- speculative decoding
    out.append(_speculative(at, fig, spec))

    # ---- tensor parallel over twice the GPUs
    if at.parallel is not None:
        par = at.parallel
    else:
        # Without a split the hardware is one device; its GPUs, if several, as tensor parallel.
        par = Parallelism(tp=hw.count)
    tp2 = Parallelism(tp=par.tp * 2, pp=par.pp, dp=par.dp)
    hw2 = _scaled(hw, 2)
    name = "TP ×2"
    reason = does_not_fit_reason(fig, hw2, tp2)
    if reason:
        out.append(at.not_applicable("tensor_parallel", name, f"TP {par.tp} → {tp2.tp}", reason, "memory"))
    else:
        step = at.step(fig, b, c, hw=hw2, parallel=tp2)
        cap = at.capacity_for(fig, hw2, tp2)
        why = None
        if fig.spec.num_heads % tp2.tp:
            why = f"TP {tp2.tp} does not divide the {fig.spec.num_heads} attention heads: engines refuse it"
        out.append(at.lever("tensor_parallel", name, f"TP {par.tp} → {tp2.tp}", step, batch=b,
                            context=c,
                            capacity=cap, why=why,
                            formula=f"weights and KV heads ÷ {tp2.tp} per GPU (KV heads no fewer than one per rank, "
                                    f"an MLA latent whole); " + at.step_formula(step, fig, b, c, hw2)
                                    + "; all-reduce time not counted"))
    return Levers(baseline=baseline, efficiency=None, efficiency_note=eff_note, levers=tuple(out),
                  notes=tuple(notes))


def _not_fitting(at: _Point, fig: ModelFigures, hw: Hardware, reason: str, notes: list[str]) -> Levers:
    """Weights that do not fit: no operating point exists; only the levers that make them fit have figures."""
    b, c = at.batch, at.context
    baseline = at.not_applicable("baseline", "now", f"batch {batch_text(b)}, context {c:,.0f}", reason, "memory")
    out: list[Lever] = []
    override = fig.params.total if fig.params_overridden else None
    for dtype in ("int8", "int4"):
        new = model_figures(fig.spec, dtype=dtype, kv_dtype=fig.kv_dtype, params_override=override)
        if new.weight_bytes < fig.weight_bytes and not does_not_fit_reason(new, hw, at.parallel):
            step = at.step(new, b, c)
            out.append(dataclasses.replace(
                at.lever(f"weights_{dtype}", f"weights {dtype}", f"weights {_gb(fig.weight_bytes)} → "
                         f"{_gb(new.weight_bytes)}", step, batch=b, context=c,
                         capacity=at.capacity_for(new, hw, at.parallel), formula=at.step_formula(step, new, b, c)),
                gain=None, expected_tokens_per_s=None, expected_latency_s=None, why="makes the weights fit"))
        else:
            out.append(at.not_applicable(f"weights_{dtype}", f"weights {dtype}", "—", reason, "memory"))
    par = at.parallel or Parallelism(tp=hw.count)
    tp2, hw2 = Parallelism(tp=par.tp * 2, pp=par.pp, dp=par.dp), _scaled(hw, 2)
    still = does_not_fit_reason(fig, hw2, tp2)
    if still:
        out.append(at.not_applicable("tensor_parallel", "TP ×2", f"TP {par.tp} → {tp2.tp}", still, "memory"))
    else:
        step = at.step(fig, b, c, hw=hw2, parallel=tp2)
        out.append(dataclasses.replace(
            at.lever("tensor_parallel", "TP ×2", f"TP {par.tp} → {tp2.tp}", step, batch=b,
                     context=c, capacity=at.capacity_for(fig, hw2, tp2), formula=at.step_formula(step, fig, b, c, hw2)),
            gain=None, expected_tokens_per_s=None, expected_latency_s=None, why="makes the weights fit"))
    return Levers(baseline=baseline, efficiency=None,
                  efficiency_note=f"{reason}: no operating point to measure against", levers=tuple(out),
                  notes=tuple(notes))


def _speculative(at: _Point, fig: ModelFigures, spec: Speculation) -> Lever:
    """k draft steps + one target step verifying k+1 tokens per sequence; E tokens per sequence per cycle."""
    b, c = at.batch, at.context
    k, alpha = max(1, int(spec.draft_tokens)), min(max(spec.acceptance, 0.0), 1.0)
    name = "speculative"
    expected = expected_tokens_per_step(k, alpha)
    verify = at.step(fig, b, c, tokens=k + 1)
    if spec.draft is not None:
        try:
            draft_step = at.step(spec.draft, b, c).time_s
            draft_text = f"draft {spec.draft.name}: {_seconds(draft_step)} per step (its own figures)"
        except ValueError:
            draft_step = None
    else:
        draft_step = None
    if draft_step is None:
        draft_step = spec.draft_cost * at.base.time_s
        draft_text = (f"draft step assumed {spec.draft_cost:g} × the target's step = {_seconds(draft_step)} "
                      "(give a draft model for its own figures)")
    cycle = k * draft_step + verify.time_s
    tokens_per_s = b * expected / cycle
    latency = cycle / expected
    source = spec.acceptance_source
    formula = (f"E = (1 − α^(k+1)) ÷ (1 − α) = (1 − {alpha:g}^{k + 1}) ÷ (1 − {alpha:g}) = {expected:.3f} tokens "
               f"per sequence per step (α {source}); {draft_text}; verify {k + 1} tokens per sequence: "
               f"{_seconds(verify.time_s)} ({verify.bound}-bound); cycle = k × draft + verify = {_seconds(cycle)}; "
               f"tokens/s = B × E ÷ cycle = {batch_text(b)} × {expected:.3f} ÷ {_seconds(cycle)} = {tokens_per_s:,.1f}")
    why = None
    if tokens_per_s < at.base.tokens_per_s:
        why = "costs more than it yields here: the draft steps and the wider verification outweigh the accepted tokens"
    return at.lever("speculative", name, f"k={k}, α={alpha:g} ({source})", None, batch=b, context=c,
                    capacity=at.capacity, formula=formula, ceiling=_ceiling(verify), why=why,
                    tokens_per_s=tokens_per_s, latency_s=latency)
