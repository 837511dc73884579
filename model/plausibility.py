"""Plausibility: what makes a set of figures impossible or untrustworthy, said in one line each.

Pure, and fed only what every caller has (the model's figures, the hardware, the operating
point, shares measured against the peaks), so ``calc`` and the live view warn alike.
"""

from __future__ import annotations

import math

from infermon.model.figures import ModelFigures
from infermon.model.gpu import Hardware
from infermon.model.parallel import Parallelism, weight_bytes_per_gpu

# A share of a peak above this cannot be (the peaks are the hardware's own ceilings).
PEAK_SHARE = 1.0


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def weights_fit(fig: ModelFigures, hw: Hardware, parallel: Parallelism | None = None) -> bool:
    """Whether the weights fit in GPU memory: per GPU of the split when given, else in the total."""
    if parallel is None or (parallel.trivial and hw.count == 1):
        return fig.weight_bytes <= hw.memory_bytes
    if hw.count != parallel.gpus:
        return fig.weight_bytes <= hw.memory_bytes
    return weight_bytes_per_gpu(fig, parallel) <= hw.memory_bytes / hw.count


def does_not_fit_reason(fig: ModelFigures, hw: Hardware, parallel: Parallelism | None = None) -> str | None:
    """Why decode figures are n/a (weights larger than the memory they must live in), or None."""
    if not hw.memory_bytes or weights_fit(fig, hw, parallel):
        return None
    if parallel is not None and not parallel.trivial and hw.count == parallel.gpus:
        need = weight_bytes_per_gpu(fig, parallel)
        return (f"the weights do not fit: {_si(need, 'B')} per GPU in {_si(hw.memory_bytes / hw.count, 'B')} "
                f"(split TP {parallel.tp} × PP {parallel.pp})")
    return f"the weights do not fit: {_si(fig.weight_bytes, 'B')} in {_si(hw.memory_bytes, 'B')}"


def warnings(
    fig: ModelFigures | None,
    hw: Hardware | None,
    *,
    context: float | None = None,
    batch: float | None = None,
    kv_capacity_tokens: float | None = None,
    mbu: float | None = None,
    mfu: float | None = None,
    parallel: Parallelism | None = None,
) -> tuple[str, ...]:
    """Every reason the figures for this operating point cannot be right, one line each.

    - a context (tokens per sequence) beyond the model's ``max_position_embeddings``;
    - weights that do not fit (per GPU of the split; decode figures are then n/a);
    - a batch × context beyond the KV capacity (the engine would queue or preempt);
    - an MBU or MFU above 100 % (a rate, batch or model that does not match the device);
    - a dtype that had to be assumed (no or an unrecognised ``torch_dtype``);
    - a tensor-parallel split an engine refuses (heads not divisible by TP).
    Anything unknown (None) is simply not checked.
    """
    out: list[str] = []
    spec = fig.spec if fig is not None else None
    if spec is not None and context is not None and spec.max_position_embeddings:
        if context > spec.max_position_embeddings:
            out.append(f"context {context:,.0f} is beyond the model's maximum of {spec.max_position_embeddings:,} "
                       "tokens (max_position_embeddings): engines refuse it, and the KV figures assume it")
    if fig is not None and hw is not None:
        reason = does_not_fit_reason(fig, hw, parallel)
        if reason:
            out.append(f"{reason}: decode figures are n/a")
    if kv_capacity_tokens is not None and context and batch and math.isfinite(kv_capacity_tokens):
        if batch * context > kv_capacity_tokens:
            out.append(f"batch {batch:,.0f} × context {context:,.0f} = {batch * context:,.0f} tokens is more than the "
                       f"KV cache holds ({kv_capacity_tokens:,.0f}): an engine would queue or preempt sequences")
    for name, share in (("MBU", mbu), ("MFU", mfu)):
        if share is not None and math.isfinite(share) and share > PEAK_SHARE:
            out.append(f"{name} {share:.0%} is above the device's peak, which cannot be: the rate, the batch, "
                       "the model or the device figures do not match")
        elif share is not None and not math.isfinite(share):
            out.append(f"{name} is not a finite number: the rate or the device figures are unusable")
    if spec is not None and spec.dtype_source == "absent":
        out.append("dtype unknown: the config names no torch_dtype and no checkpoint file says one; taken as "
                   "float32 as Hugging Face and vLLM do (give --dtype if it is stored otherwise)")
    elif spec is not None and spec.dtype_source == "unrecognised":
        out.append("dtype unknown: the config's torch_dtype is not one infermon reads; assumed bf16 (give --dtype)")
    if spec is not None and parallel is not None and parallel.tp > 1:
        if spec.num_heads % parallel.tp:
            out.append(f"TP {parallel.tp} does not divide the {spec.num_heads} attention heads: vLLM and SGLang "
                       "refuse this split")
        elif not spec.is_mla and spec.num_kv_heads % parallel.tp and parallel.tp % spec.num_kv_heads:
            out.append(f"TP {parallel.tp} and the {spec.num_kv_heads} KV heads do not divide one another: "
                       "vLLM refuses this split")
    return tuple(out)
