"""Roofline ceilings: ridge point, KV capacity, decode and prefill time, critical batch.

Pure functions of plain numbers (SI base units: bytes, seconds, FLOP, FLOP/s),
each with its formula, and :func:`ceilings` tying them together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infermon.model.figures import ModelFigures, weight_bytes_read_per_step
from infermon.model.gpu import Hardware
from infermon.model.work import step_bytes
from infermon.model.kv import attention_flops_per_token, kv_bytes_per_sequence

# Defaults for the KV budget: like vLLM's gpu_memory_utilization, and a reserve
# for activations, the CUDA context and CUDA graphs (about what vLLM leaves on a 24 GB card).
DEFAULT_MEMORY_UTILIZATION = 0.90
DEFAULT_RESERVE_BYTES = 1.0e9


def ops_per_byte(peak_flops: float, bandwidth_bytes_per_s: float) -> float:
    """Ridge point (FLOP/B) = peak FLOP/s ÷ bandwidth B/s. A10: 125e12 / 600e9 = 208.3."""
    return peak_flops / bandwidth_bytes_per_s


def free_bytes_after_weights(memory_bytes: float, weight_bytes: float) -> float:
    """Memory left once the weights are loaded (B) = memory − weights; negative: they do not fit."""
    return memory_bytes - weight_bytes


def kv_budget_bytes(memory_bytes: float, weight_bytes: float, memory_utilization: float, reserve_bytes: float) -> float:
    """Bytes for the KV cache = max(0, memory × utilization − weights − reserve)."""
    return max(0.0, memory_bytes * memory_utilization - weight_bytes - reserve_bytes)


def kv_capacity_tokens(kv_budget: float, kv_bytes_per_token: float) -> int:
    """Tokens the cache holds = ⌊budget ÷ bytes per token⌋. Seed: 10e9 / 524,288 = 19,073."""
    if kv_bytes_per_token <= 0:
        return 0
    return int(kv_budget // kv_bytes_per_token)


def max_sequences(kv_budget: float, kv_bytes_per_sequence_at_context: float) -> int:
    """Sequences of a given context that fit = ⌊budget ÷ bytes per sequence⌋.

    Without sliding windows bytes per sequence = context × KV bytes per token,
    so this is ⌊capacity ÷ context⌋ (seed: 19,073 / 4,096 = 4).
    """
    if kv_bytes_per_sequence_at_context <= 0:
        return 0
    return int(kv_budget // kv_bytes_per_sequence_at_context)


def memory_time_s(bytes_moved: float, bandwidth_bytes_per_s: float) -> float:
    """Time to stream ``bytes_moved`` at full bandwidth (s) = bytes ÷ B/s."""
    return bytes_moved / bandwidth_bytes_per_s


def compute_time_s(flops: float, peak_flops: float) -> float:
    """Time to do ``flops`` at the dense peak (s) = FLOP ÷ FLOP/s."""
    return flops / peak_flops


@dataclass(frozen=True)
class DecodeStep:
    """One decode step at batch B and context C.

    ``bytes`` = weight bytes read (B) + B × KV bytes per sequence at C;
    ``flops`` = B × flops_per_token; ``time_s`` = max of the two times;
    ``tokens_per_s`` = B ÷ time; ``bound`` says which term won.
    """

    batch: int
    context: int
    bytes: float
    flops: float
    memory_time_s: float
    compute_time_s: float | None
    time_s: float
    tokens_per_s: float
    bound: str


def decode_step(fig: ModelFigures, hw: Hardware, batch: int, context: int) -> DecodeStep:
    """t = max((W_read(B) + B·kv_seq(C)) / BW, B·flops_per_token / peak); tokens/s = B / t."""
    moved = step_bytes(fig, batch, context)
    flops = batch * fig.flops_per_token
    t_mem = memory_time_s(moved, hw.bandwidth_bytes_per_s)
    t_cmp = compute_time_s(flops, hw.peak_flops) if hw.peak_flops else None
    t = max(t_mem, t_cmp or 0.0)
    return DecodeStep(batch, context, moved, flops, t_mem, t_cmp, t, batch / t,
                      "compute" if t_cmp is not None and t_cmp > t_mem else "memory")


def critical_batch(fig: ModelFigures, hw: Hardware, context: int) -> float | None:
    """The batch B* where the step's memory and compute times meet (a real number).

    Dense: B* = W₀/BW ÷ (F/peak − (kv_seq(C) + row)/BW), where W₀ is the weight
    bytes read at any batch and row the gathered bytes per token; ≈ ridge ×
    bytes/param ÷ 2 for a dense fp16 model at short context. MoE weights read
    grow with B, so B* is found by bisection. ``None``: decode never becomes
    compute-bound at this context (KV reads grow faster than FLOPs), or the
    FLOP peak is unknown.
    """
    if not hw.peak_flops:
        return None
    kv_seq = kv_bytes_per_sequence(fig.spec, fig.kv_dtype, context)
    if fig.routed_expert_bytes == 0:
        # Dense: the bytes read are linear in B until the gathered table is read whole, so the
        # crossing has a closed form (the live view computes this every tick).
        fixed = fig.weight_bytes - fig.gathered_bytes
        per_sequence = kv_seq + fig.gathered_row_bytes
        slope = fig.flops_per_token / hw.peak_flops - per_sequence / hw.bandwidth_bytes_per_s
        if slope <= 0:
            return None
        batch = fixed / hw.bandwidth_bytes_per_s / slope
        if not fig.gathered_row_bytes or batch * fig.gathered_row_bytes <= fig.gathered_bytes:
            return batch

    def gap(batch: float) -> float:
        moved = weight_bytes_read_per_step(fig, batch) + batch * kv_seq
        return batch * fig.flops_per_token / hw.peak_flops - moved / hw.bandwidth_bytes_per_s

    lo, hi = 0.0, 1.0
    while gap(hi) < 0:
        hi *= 2
        if hi > 1e9:
            return None
    for _ in range(200):
        mid = (lo + hi) / 2
        if gap(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-9 * hi:
            break
    return (lo + hi) / 2


def prefill_time_s(fig: ModelFigures, hw: Hardware, prompt_tokens: int) -> float:
    """Prefill of P tokens (s) = max(P × flops_per_token / peak, W_read(P) / BW).

    The seed writes P × params / peak; with 2 FLOP per parameter that is the
    compute term (A10, 7B fp16: 350 × 14e9 / 125e12 = 39 ms). Short prompts
    are bounded by reading the weights once instead.
    """
    t_mem = memory_time_s(weight_bytes_read_per_step(fig, prompt_tokens), hw.bandwidth_bytes_per_s)
    if not hw.peak_flops:
        return t_mem
    return max(prompt_tokens * fig.flops_per_token / hw.peak_flops, t_mem)


def generation_time_s(fig: ModelFigures, hw: Hardware, prompt_tokens: int, output_tokens: int, batch: int) -> float:
    """Decode time of N tokens per sequence after a P-token prompt (s) = Σᵢ step(B, P + i).

    The seed's N × time/token, with the cache growing by one token per step.
    Above 100,000 steps the sum is taken at evenly spaced contexts.
    """
    if output_tokens <= 0:
        return 0.0
    samples = min(output_tokens, 100_000)
    stride = output_tokens / samples
    total = 0.0
    for i in range(samples):
        context = prompt_tokens + int(i * stride)
        total += decode_step(fig, hw, batch, context).time_s
    return total * stride


@dataclass(frozen=True)
class Ceilings:
    """The ``ceilings`` object of ``calc --json``; units in the field names."""

    ops_per_byte: float | None
    free_bytes_after_weights: float
    kv_budget_bytes: float
    kv_capacity_tokens: int
    max_sequences: int | None
    weights_time_per_token_s: float
    decode_step_time_s: float
    decode_tokens_per_s: float
    prefill_time_per_token_s: float | None
    critical_batch: float | None
    bound: str


def ceilings(
    fig: ModelFigures,
    hw: Hardware,
    batch: int = 1,
    context: int | None = None,
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
    reserve_bytes: float = DEFAULT_RESERVE_BYTES,
) -> tuple[Ceilings, DecodeStep]:
    """All ceilings for ``fig`` on ``hw`` at ``batch`` sequences of ``context`` tokens (0 when None)."""
    ctx = context or 0
    budget = kv_budget_bytes(hw.memory_bytes, fig.weight_bytes, memory_utilization, reserve_bytes)
    step = decode_step(fig, hw, batch, ctx)
    one = weight_bytes_read_per_step(fig, 1)
    return Ceilings(
        ops_per_byte=ops_per_byte(hw.peak_flops, hw.bandwidth_bytes_per_s) if hw.peak_flops else None,
        free_bytes_after_weights=free_bytes_after_weights(hw.memory_bytes, fig.weight_bytes),
        kv_budget_bytes=budget,
        kv_capacity_tokens=kv_capacity_tokens(budget, fig.kv_bytes_per_token),
        max_sequences=max_sequences(budget, kv_bytes_per_sequence(fig.spec, fig.kv_dtype, ctx)) if context else None,
        weights_time_per_token_s=memory_time_s(one, hw.bandwidth_bytes_per_s),
        decode_step_time_s=step.time_s,
        decode_tokens_per_s=step.tokens_per_s,
        prefill_time_per_token_s=compute_time_s(fig.flops_per_token, hw.peak_flops) if hw.peak_flops else None,
        critical_batch=critical_batch(fig, hw, ctx),
        bound=step.bound,
    ), step


@dataclass(frozen=True)
class Achieved:
    """Decode at a measured rate: bandwidth (B/s), FLOP/s and their shares of the peaks."""

    bandwidth_bytes_per_s: float
    flops_per_s: float
    mbu: float
    mfu: float | None


def achieved(fig: ModelFigures, hw: Hardware, tokens_per_s: float, batch: int, context: int) -> Achieved:
    """From decode tokens/s X at batch B and context C.

    steps/s = X / B; bandwidth = steps/s × (W_read(B) + B·kv_seq(C));
    FLOP/s = X × flops_per_token; MBU = bandwidth / peak bandwidth;
    MFU = FLOP/s / peak FLOP/s.
    """
    step = decode_step(fig, hw, batch, context)
    bandwidth = tokens_per_s / batch * step.bytes
    flops = tokens_per_s * fig.flops_per_token
    return Achieved(
        bandwidth_bytes_per_s=bandwidth,
        flops_per_s=flops,
        mbu=bandwidth / hw.bandwidth_bytes_per_s,
        mfu=flops / hw.peak_flops if hw.peak_flops else None,
    )


def is_finite_positive(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0
