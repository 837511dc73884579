"""Live figures from measured rates: achieved bandwidth and FLOP/s, MBU, MFU, bound and a verdict.

Pure: the caller turns two snapshots into :class:`LiveRates`; this module
applies the model's arithmetic to them (DESIGN §4, "Live").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infermon.model.figures import ModelFigures, weight_bytes_read_per_step
from infermon.model.gpu import Hardware
from infermon.model.parallel import Parallelism
from infermon.model.roofline import critical_batch, decode_step, ops_per_byte

# Below this many tokens/s the server counts as idle (counters can tick by a
# token or two from a finishing request).
IDLE_TOKENS_PER_S = 0.5
# Modeled and measured bandwidth "disagree" beyond this relative gap.
DISAGREEMENT = 0.25
# A modeled share of a peak above this is physically impossible (with some slack for datasheet rounding).
IMPOSSIBLE = 1.10


@dataclass(frozen=True)
class LiveRates:
    """What was measured over one interval (s): token rates (tokens/s), the batch (sequences per
    step), tokens resident in the KV cache, and the hardware-measured bandwidth (B/s) if any."""

    interval_s: float
    generation_tokens_per_s: float | None
    prompt_tokens_per_s: float | None
    batch: float | None
    kv_tokens_resident: float | None = None
    kv_capacity_tokens: float | None = None
    measured_bandwidth_bytes_per_s: float | None = None
    measured_bandwidth_source: str | None = None


@dataclass(frozen=True)
class Analysis:
    """The ``analysis`` object: units in the names; shares are fractions 0–1."""

    phase: str
    achieved_bandwidth_modeled_bytes_per_s: float | None
    achieved_bandwidth_measured_bytes_per_s: float | None
    achieved_flops_per_s: float | None
    mbu: float | None
    mbu_measured: float | None
    mfu: float | None
    operating_intensity: float | None
    ops_per_byte: float | None
    bound: str | None
    decode_ceiling_tokens_per_s: float | None
    critical_batch: float | None
    context_tokens: float | None
    kv_headroom_tokens: float | None
    bandwidth_disagreement: float | None
    verdict: str
    why: dict[str, str] = field(default_factory=dict)


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _about(value: float) -> str:
    """Two significant digits: the verdict states a size, not a reading that flickers every tick."""
    if value >= 100:
        return f"{round(value, -(len(str(int(value))) - 2)):,.0f}"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.1f}"


def analyze(rates: LiveRates, fig: ModelFigures | None, hw: Hardware | None, *,
            parallel: Parallelism | None = None) -> Analysis:
    """Rates × the model's arithmetic.

    - steps/s = generation tokens/s ÷ B; bytes per step = W_read(B) + resident KV tokens × KV/token;
      modeled bandwidth = steps/s × bytes per step (B/s). With ``parallel`` (the engine's split over
      ``hw.count`` GPUs) the bytes per step are those every GPU reads, copies included (KV heads
      copied past h_kv ranks, MLA latents on every rank), at the resident tokens per sequence.
    - FLOP/s = (generation + prompt tokens/s) × flops_per_token.
    - MBU = bandwidth ÷ peak bandwidth; MFU = FLOP/s ÷ peak FLOP/s;
      operating intensity = FLOP/s ÷ bandwidth (FLOP/B), against the ridge.
    """
    why: dict[str, str] = {}
    # The split applies only where it matches the hardware (the engine's TP on the GPUs it uses).
    split = parallel if parallel is not None and hw is not None and hw.count == parallel.gpus else None
    gen = rates.generation_tokens_per_s
    prompt = rates.prompt_tokens_per_s
    batch = rates.batch if rates.batch and rates.batch > 0 else None

    if gen is None and prompt is None:
        phase = "unknown"
    elif (gen or 0) < IDLE_TOKENS_PER_S and (prompt or 0) < IDLE_TOKENS_PER_S:
        phase = "idle"
    elif (prompt or 0) > 4 * (gen or 0):
        phase = "prefill"
    elif (prompt or 0) > 0.25 * (gen or 0):
        phase = "mixed"
    else:
        phase = "decode"

    context = None
    if rates.kv_tokens_resident is not None and batch:
        context = rates.kv_tokens_resident / batch

    headroom = None
    if rates.kv_capacity_tokens is not None:
        headroom = max(0.0, rates.kv_capacity_tokens - (rates.kv_tokens_resident or 0.0))
    elif fig is None:
        why["kv_headroom_tokens"] = "no KV capacity: the engine does not report it and the model is unknown"
    else:
        why["kv_headroom_tokens"] = "the engine reports no KV capacity"

    bandwidth = flops = mbu = mfu = intensity = ridge = ceiling = crit = None
    measured = rates.measured_bandwidth_bytes_per_s
    if measured is None:
        why["achieved_bandwidth_measured_bytes_per_s"] = rates.measured_bandwidth_source or "no hardware bandwidth counter"
    if fig is None:
        why["model"] = "model unknown: give --model for modeled figures"
    if hw is None:
        why["hardware"] = "no device peaks known"
    if fig is not None:
        if gen is not None and batch:
            kv_bytes = (rates.kv_tokens_resident or 0.0) * fig.kv_bytes_per_token
            bytes_per_step = weight_bytes_read_per_step(fig, batch) + kv_bytes
            if split is not None:
                per_sequence = round((rates.kv_tokens_resident or 0.0) / batch)
                bytes_per_step = decode_step(fig, hw, batch, per_sequence, parallel=split).bytes
            bandwidth = gen / batch * bytes_per_step
            if rates.kv_tokens_resident is None:
                why["achieved_bandwidth_modeled_bytes_per_s"] = "KV reads not included (the engine reports no KV usage)"
        elif gen is not None:
            why["achieved_bandwidth_modeled_bytes_per_s"] = "batch unknown (no running-requests figure)"
        else:
            why["achieved_bandwidth_modeled_bytes_per_s"] = "no token rate"
        if gen is not None or prompt is not None:
            flops = ((gen or 0.0) + (prompt or 0.0)) * fig.flops_per_token
    if hw is not None:
        if bandwidth is not None and hw.bandwidth_bytes_per_s:
            mbu = bandwidth / hw.bandwidth_bytes_per_s
        if flops is not None and hw.peak_flops:
            mfu = flops / hw.peak_flops
        elif hw.peak_flops is None:
            why["mfu"] = "peak FLOP/s of this device unknown"
        if hw.peak_flops and hw.bandwidth_bytes_per_s:
            ridge = ops_per_byte(hw.peak_flops, hw.bandwidth_bytes_per_s)
        if fig is not None and hw.bandwidth_bytes_per_s:
            b = max(1, round(batch or 1))
            ceiling = decode_step(fig, hw, b, round(context or 0), parallel=split).tokens_per_s
            crit = critical_batch(fig, hw, round(context or 0), parallel=split)
    mbu_measured = measured / hw.bandwidth_bytes_per_s if measured is not None and hw and hw.bandwidth_bytes_per_s else None

    if flops is not None and bandwidth:
        intensity = flops / bandwidth
    bound = None
    if intensity is not None and ridge is not None:
        bound = "memory" if intensity < ridge else "compute"
    elif phase in ("decode", "mixed") and ridge is not None:
        bound = "memory"

    disagreement = None
    if bandwidth and measured:
        disagreement = abs(bandwidth - measured) / measured

    verdict = _verdict(phase, batch, intensity, ridge, mbu, mfu, bound, gen, prompt, disagreement, fig, hw)
    return Analysis(
        phase=phase,
        achieved_bandwidth_modeled_bytes_per_s=bandwidth,
        achieved_bandwidth_measured_bytes_per_s=measured,
        achieved_flops_per_s=flops,
        mbu=mbu,
        mbu_measured=mbu_measured,
        mfu=mfu,
        operating_intensity=intensity,
        ops_per_byte=ridge,
        bound=bound,
        decode_ceiling_tokens_per_s=ceiling,
        critical_batch=crit,
        context_tokens=context,
        kv_headroom_tokens=headroom,
        bandwidth_disagreement=disagreement,
        verdict=verdict,
        why=why,
    )


def _verdict(phase, batch, intensity, ridge, mbu, mfu, bound, gen, prompt, disagreement, fig, hw) -> str:
    """One line in words: where the process sits and what would move it."""
    if phase == "unknown":
        return ("no token counters: no engine metrics and no agent; give --metrics-url, or load the agent "
                "(infermon attach PID, or start it with infermon run)")
    if phase == "idle":
        return "idle: no tokens generated or prefilled in the last interval"
    if fig is None or hw is None:
        return f"{phase}: {gen or 0:.1f} tokens/s generated — give --model and a known device for the roofline"
    over = [(name, share) for name, share in (("bandwidth", mbu), ("FLOP/s", mfu)) if share is not None and share > IMPOSSIBLE]
    if over:
        name, share = max(over, key=lambda pair: pair[1])
        return (f"{phase}: the modeled {name} is {_pct(share)} of the device peak, which cannot be: the model, "
                "the batch or the device figures do not match this process (check --model, --gpu)")
    parts: list[str] = []
    if bound == "compute" or phase == "prefill":
        label = "compute-bound prefill" if phase == "prefill" else f"compute-bound {phase}"
        if bound == "memory":
            label = f"memory-bound {phase}"
        text = label
        if intensity is not None and ridge is not None:
            text += f": {_about(intensity)} FLOP/B vs ridge {ridge:,.0f}"
        if mfu is not None:
            text += f" — {_pct(mfu)} of peak FLOP/s"
        parts.append(text)
    else:
        text = f"memory-bound {phase}"
        details = []
        if batch:
            details.append(f"batch {batch:.0f}")
        if intensity is not None and ridge is not None:
            details.append(f"{_about(intensity)} FLOP/B vs ridge {ridge:,.0f}")
        if details:
            text += ": " + ", ".join(details)
        if mbu is not None:
            text += f" — {5 * round(mbu * 20):.0f}% of peak bandwidth"
            if mbu >= 0.8:
                text += "; near the ceiling: more concurrent requests, weight quantization or speculative decoding raise tokens/s"
            elif mbu < 0.3:
                text += "; far below the ceiling: per-step overheads dominate (scheduling, CPU, small batches)"
            else:
                text += "; more concurrent requests, weight quantization or speculative decoding raise tokens/s"
        parts.append(text)
    if disagreement is not None and disagreement > DISAGREEMENT:
        parts.append(f"modeled and measured bandwidth differ by {_pct(disagreement)}")
    return "; ".join(parts)
