"""Roofline ceilings: ridge point, KV capacity, decode and prefill time, critical batch.

Pure functions of plain numbers (SI base units: bytes, seconds, FLOP, FLOP/s),
each with its formula, and :func:`ceilings` tying them together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infermon.model.figures import ModelFigures, weight_bytes_read_per_step
from infermon.model.gpu import Hardware
from infermon.model.kv import kv_bytes_per_sequence
from infermon.model.parallel import (
    Parallelism,
    all_stage_figures,
    gpu_share,
    micro_batches,
    pipeline_cycle_s,
    stage_figures,
)
from infermon.model.work import step_bytes

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
    """One decode step at batch B and context C: every running sequence gets one token.

    ``bytes`` = weight bytes read (B) + B × KV bytes per sequence at C;
    ``flops`` = B × flops_per_token; ``time_s`` = max of the two times;
    ``tokens_per_s`` = B ÷ time; ``bound`` says which term won.

    Across GPUs (``parallel`` given): ``bytes`` and ``flops`` are summed over every GPU;
    ``time_s`` is the pipeline cycle (the time between two tokens of one sequence);
    ``memory_time_s`` / ``compute_time_s`` the cycle with only that term counted;
    ``per_gpu`` the step of one rank of each stage for one micro-batch.
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
    parallel: Parallelism | None = None
    micro_batches: float = 1.0
    per_gpu: tuple[DecodeStep, ...] = ()


def _single_step(fig: ModelFigures, hw: Hardware, batch: float, context: int, tokens: int = 1) -> DecodeStep:
    """One device's step: B sequences of C cached tokens, each putting ``tokens`` new tokens through.

    Bytes are :func:`~infermon.model.work.step_bytes` (the live view's formula too). ``tokens`` > 1
    is a speculative-decoding verification: the weights are read once for all B × n tokens (MoE
    experts for the tokens they route), each sequence's cache once, and the FLOPs scale with B × n.
    ``tokens_per_s`` counts the tokens put through.
    """
    if tokens == 1:
        moved = step_bytes(fig, batch, context)
    else:
        moved = (weight_bytes_read_per_step(fig, batch * tokens)
                 + batch * kv_bytes_per_sequence(fig.spec, fig.kv_dtype, round(context)))
    flops = batch * tokens * fig.flops_per_token
    t_mem = memory_time_s(moved, hw.bandwidth_bytes_per_s)
    t_cmp = compute_time_s(flops, hw.peak_flops) if hw.peak_flops else None
    t = max(t_mem, t_cmp or 0.0)
    return DecodeStep(batch, context, moved, flops, t_mem, t_cmp, t, batch * tokens / t,
                      "compute" if t_cmp is not None and t_cmp > t_mem else "memory")


def _uses_parallel(hw: Hardware, parallel: Parallelism | None) -> bool:
    """Whether the per-GPU arithmetic applies (it equals the plain one on one GPU)."""
    return parallel is not None and not (parallel.trivial and hw.count == 1)


def decode_step(fig: ModelFigures, hw: Hardware, batch: int, context: int, *,
                parallel: Parallelism | None = None, tokens_per_sequence: int = 1) -> DecodeStep:
    """t = max((W_read(B) + B·kv_seq(C)) / BW, B·flops_per_token / peak); tokens/s = B / t.

    Without ``parallel`` the hardware is one device of its summed figures. With it, per GPU:
    each of the dp replicas runs B/dp sequences as m = min(pp, B/dp) micro-batches of b;
    a stage's step t_s = max((W_read,s(b) + b·kv_seq,s(C)) / BW_gpu, b·F_s / peak_gpu) with the
    stage's per-rank figures (:func:`~infermon.model.parallel.stage_figures`); the cycle
    = max(Σ_s t_s, m × max_s t_s) (:func:`~infermon.model.parallel.pipeline_cycle_s`);
    tokens/s = B / cycle. Communication is not counted. ``tokens_per_sequence`` n > 1 is a
    speculative verification step: n tokens per sequence through the model at once (B·n FLOPs,
    the weights and each cache read once); tokens/s then counts the B·n tokens put through.
    """
    n = tokens_per_sequence
    if not _uses_parallel(hw, parallel):
        return _single_step(fig, hw, batch, context, n)
    gpu = gpu_share(hw, parallel)
    replica = batch / parallel.dp
    micro = micro_batches(replica, parallel.pp)
    b = replica / micro
    steps = tuple(_single_step(stage, gpu, b, context, n) for stage in all_stage_figures(fig, parallel))
    cycle = pipeline_cycle_s([st.time_s for st in steps], micro)
    t_mem = pipeline_cycle_s([st.memory_time_s for st in steps], micro)
    t_cmp = (pipeline_cycle_s([st.compute_time_s for st in steps], micro)
             if all(st.compute_time_s is not None for st in steps) else None)
    copies = parallel.dp * parallel.tp * micro
    return DecodeStep(batch, context, copies * sum(st.bytes for st in steps), copies * sum(st.flops for st in steps),
                      t_mem, t_cmp, cycle, batch * n / cycle,
                      "compute" if t_cmp is not None and t_cmp > t_mem else "memory",
                      parallel=parallel, micro_batches=micro, per_gpu=steps)


def critical_batch(fig: ModelFigures, hw: Hardware, context: int, *,
                   parallel: Parallelism | None = None) -> float | None:
    """The batch B* where the step's memory and compute times meet (a real number), for the deployment.

    With ``parallel``: one pipeline stage's rank crosses at b* (the formula below on its per-rank
    figures), so B* = dp × b* for pp = 1; with pipeline stages the crossing of the cycle's two
    terms is found by bisection.
    """
    if not _uses_parallel(hw, parallel):
        return _critical_batch(fig, hw, context)
    if not hw.peak_flops:
        return None
    if parallel.pp == 1:
        one = _critical_batch(stage_figures(fig, parallel, 0), gpu_share(hw, parallel), context)
        return None if one is None else one * parallel.dp

    def gap(batch: float) -> float:
        step = decode_step(fig, hw, batch, context, parallel=parallel)
        return step.compute_time_s - step.memory_time_s

    return _bisect(gap, floor=float(parallel.dp * parallel.pp))


def _bisect(gap, floor: float = 0.0) -> float | None:
    """The B > floor where an increasing ``gap`` turns from negative to positive; None if it never does."""
    lo, hi = floor, max(1.0, 2 * floor)
    while gap(hi) < 0:
        lo, hi = hi, hi * 2
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


def _critical_batch(fig: ModelFigures, hw: Hardware, context: int) -> float | None:
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

    return _bisect(gap)


def prefill_time_s(fig: ModelFigures, hw: Hardware, prompt_tokens: int, *,
                   parallel: Parallelism | None = None) -> float:
    """Prefill of P tokens (s) = max(P × flops_per_token / peak, W_read(P) / BW).

    The seed writes P × params / peak; with 2 FLOP per parameter that is the
    compute term (A10, 7B fp16: 350 × 14e9 / 125e12 = 39 ms). Short prompts
    are bounded by reading the weights once instead. With ``parallel`` one
    prompt passes the pipeline stages in turn: Σ over stages of that time on
    one rank of the stage (data-parallel replicas do not shorten one prompt).
    """
    if _uses_parallel(hw, parallel):
        gpu = gpu_share(hw, parallel)
        return sum(prefill_time_s(stage, gpu, prompt_tokens) for stage in all_stage_figures(fig, parallel))
    t_mem = memory_time_s(weight_bytes_read_per_step(fig, prompt_tokens), hw.bandwidth_bytes_per_s)
    if not hw.peak_flops:
        return t_mem
    return max(prompt_tokens * fig.flops_per_token / hw.peak_flops, t_mem)


def generation_time_s(fig: ModelFigures, hw: Hardware, prompt_tokens: int, output_tokens: int, batch: int, *,
                      parallel: Parallelism | None = None) -> float:
    """Decode time of N tokens per sequence after a P-token prompt (s) = Σᵢ step(B, P + i).

    The seed's N × time/token, with the cache growing by one token per step.
    Above 100,000 steps the sum is taken at evenly spaced contexts; with pipeline
    stages at most 2,000 contexts are sampled (each step there costs a stage walk).
    """
    if output_tokens <= 0:
        return 0.0
    samples = min(output_tokens, 100_000 if not _uses_parallel(hw, parallel) else 2_000)
    stride = output_tokens / samples
    total = 0.0
    for i in range(samples):
        context = prompt_tokens + int(i * stride)
        total += decode_step(fig, hw, batch, context, parallel=parallel).time_s
    return total * stride


@dataclass(frozen=True)
class Ceilings:
    """The ``ceilings`` object of ``calc --json``; units in the field names.

    Totals are over every GPU. The ``*_per_gpu`` figures (set when a parallelism is given)
    are those of the GPU that binds: the fullest for weights and KV bytes per token, the
    emptiest for free bytes and KV budget.
    """

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
    weight_bytes_per_gpu: float | None = None
    free_bytes_per_gpu: float | None = None
    kv_budget_bytes_per_gpu: float | None = None
    kv_bytes_per_token_per_gpu: float | None = None

    @property
    def fits(self) -> bool:
        """Whether the weights fit: on every GPU where the split is known, else in the total."""
        free = self.free_bytes_per_gpu if self.free_bytes_per_gpu is not None else self.free_bytes_after_weights
        return free >= 0


def ceilings(
    fig: ModelFigures,
    hw: Hardware,
    batch: int = 1,
    context: int | None = None,
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
    reserve_bytes: float = DEFAULT_RESERVE_BYTES,
    *,
    parallel: Parallelism | None = None,
) -> tuple[Ceilings, DecodeStep]:
    """All ceilings for ``fig`` on ``hw`` at ``batch`` sequences of ``context`` tokens (0 when None).

    With ``parallel`` every memory figure is per GPU first: on each pipeline stage's ranks,
    budget_s = max(0, memory_gpu × utilization − weights_rank,s − reserve) (the reserve is
    per GPU); capacity = dp × min_s ⌊budget_s ÷ KV/token_rank,s⌋ tokens (each token's KV is
    spread over the ranks, so all of them run out together); sequences likewise with KV per
    sequence; totals are summed over all GPUs. Times per token are those of one sequence
    (latency): weights floor = Σ_s W_read,s(1) ÷ BW_gpu, prefill = Σ_s F_s ÷ peak_gpu.
    """
    ctx = context or 0
    step = decode_step(fig, hw, batch, ctx, parallel=parallel)
    crit = critical_batch(fig, hw, ctx, parallel=parallel)
    ridge = ops_per_byte(hw.peak_flops, hw.bandwidth_bytes_per_s) if hw.peak_flops else None
    if not _uses_parallel(hw, parallel):
        budget = kv_budget_bytes(hw.memory_bytes, fig.weight_bytes, memory_utilization, reserve_bytes)
        one = weight_bytes_read_per_step(fig, 1)
        per_gpu: dict = {}
        if parallel is not None:
            per_gpu = dict(weight_bytes_per_gpu=fig.weight_bytes,
                           free_bytes_per_gpu=free_bytes_after_weights(hw.memory_bytes, fig.weight_bytes),
                           kv_budget_bytes_per_gpu=budget, kv_bytes_per_token_per_gpu=fig.kv_bytes_per_token)
        return Ceilings(
            ops_per_byte=ridge,
            free_bytes_after_weights=free_bytes_after_weights(hw.memory_bytes, fig.weight_bytes),
            kv_budget_bytes=budget,
            kv_capacity_tokens=kv_capacity_tokens(budget, fig.kv_bytes_per_token),
            max_sequences=max_sequences(budget, kv_bytes_per_sequence(fig.spec, fig.kv_dtype, ctx)) if context else None,
            weights_time_per_token_s=memory_time_s(one, hw.bandwidth_bytes_per_s),
            decode_step_time_s=step.time_s,
            decode_tokens_per_s=step.tokens_per_s,
            prefill_time_per_token_s=compute_time_s(fig.flops_per_token, hw.peak_flops) if hw.peak_flops else None,
            critical_batch=crit,
            bound=step.bound,
            **per_gpu,
        ), step

    gpu = gpu_share(hw, parallel)
    stages = all_stage_figures(fig, parallel)
    ranks_per_stage = parallel.tp * parallel.dp
    budgets = [kv_budget_bytes(gpu.memory_bytes, st.weight_bytes, memory_utilization, reserve_bytes) for st in stages]
    frees = [free_bytes_after_weights(gpu.memory_bytes, st.weight_bytes) for st in stages]
    capacity = min(kv_capacity_tokens(b, st.kv_bytes_per_token) for b, st in zip(budgets, stages)) * parallel.dp
    sequences = None
    if context:
        sequences = min(max_sequences(b, kv_bytes_per_sequence(st.spec, st.kv_dtype, ctx))
                        for b, st in zip(budgets, stages)) * parallel.dp
    floor = sum(memory_time_s(weight_bytes_read_per_step(st, 1), gpu.bandwidth_bytes_per_s) for st in stages)
    prefill = (sum(compute_time_s(st.flops_per_token, gpu.peak_flops) for st in stages) if gpu.peak_flops else None)
    return Ceilings(
        ops_per_byte=ridge,
        free_bytes_after_weights=ranks_per_stage * sum(frees),
        kv_budget_bytes=ranks_per_stage * sum(budgets),
        kv_capacity_tokens=capacity,
        max_sequences=sequences,
        weights_time_per_token_s=floor,
        decode_step_time_s=step.time_s,
        decode_tokens_per_s=step.tokens_per_s,
        prefill_time_per_token_s=prefill,
        critical_batch=crit,
        bound=step.bound,
        weight_bytes_per_gpu=max(st.weight_bytes for st in stages),
        free_bytes_per_gpu=min(frees),
        kv_budget_bytes_per_gpu=min(budgets),
        kv_bytes_per_token_per_gpu=max(st.kv_bytes_per_token for st in stages),
    ), step


def kv_capacity(fig: ModelFigures, hw: Hardware, memory_utilization: float = DEFAULT_MEMORY_UTILIZATION,
                reserve_bytes: float = DEFAULT_RESERVE_BYTES, *, parallel: Parallelism | None = None) -> int:
    """Tokens of context the deployment's KV cache holds: ``ceilings(...).kv_capacity_tokens`` alone.

    One GPU: ⌊max(0, memory × u − W − reserve) ÷ KV/token⌋; split: dp × min over stages of the
    per-GPU figure (see :func:`ceilings`).
    """
    if not _uses_parallel(hw, parallel):
        return kv_capacity_tokens(kv_budget_bytes(hw.memory_bytes, fig.weight_bytes, memory_utilization, reserve_bytes),
                                  fig.kv_bytes_per_token)
    gpu = gpu_share(hw, parallel)
    return parallel.dp * min(
        kv_capacity_tokens(kv_budget_bytes(gpu.memory_bytes, st.weight_bytes, memory_utilization, reserve_bytes),
                           st.kv_bytes_per_token)
        for st in all_stage_figures(fig, parallel))


@dataclass(frozen=True)
class Achieved:
    """Decode at a measured rate: bandwidth (B/s), FLOP/s and their shares of the peaks."""

    bandwidth_bytes_per_s: float
    flops_per_s: float
    mbu: float
    mfu: float | None


def achieved(fig: ModelFigures, hw: Hardware, tokens_per_s: float, batch: int, context: int, *,
             parallel: Parallelism | None = None) -> Achieved:
    """From decode tokens/s X at batch B and context C.

    steps/s = X / B; bandwidth = steps/s × (W_read(B) + B·kv_seq(C));
    FLOP/s = X × flops_per_token; MBU = bandwidth / peak bandwidth;
    MFU = FLOP/s / peak FLOP/s. With ``parallel`` the bytes are those every GPU
    reads (copied weights and KV included) against the summed bandwidth.
    """
    step = decode_step(fig, hw, batch, context, parallel=parallel)
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
