"""Work done per second by a serving process: bytes read and FLOPs, from its token and step rates.

The live counterpart of :func:`infermon.model.roofline.decode_step`: the same bytes per step
(weights read at the batch + every sequence's KV at its context, sliding windows included), with
the rates a monitor measures. Pure functions, SI units.
"""

from __future__ import annotations

from infermon.model.figures import ModelFigures, weight_bytes_read_per_step
from infermon.model.kv import attention_flops_per_token, kv_bytes_per_sequence
from infermon.model.parallel import Parallelism, all_stage_figures, micro_batches


def _split(parallel: Parallelism | None) -> bool:
    return parallel is not None and not (parallel.tp == 1 and parallel.pp == 1)


def _weights_all_gpus(fig: ModelFigures, batch: float, parallel: Parallelism) -> float:
    """Weight bytes every GPU reads for one step of B sequences = dp × tp × m × Σ_s W_read,s(b).

    Each replica runs B/dp sequences as m = min(pp, B/dp) micro-batches of b; each rank of a stage
    reads its share (plus what TP copies to every rank) once per micro-batch.
    """
    replica = batch / parallel.dp
    micro = micro_batches(replica, parallel.pp)
    b = replica / micro
    per_rank = sum(weight_bytes_read_per_step(stage, b) for stage in all_stage_figures(fig, parallel))
    return parallel.dp * parallel.tp * micro * per_rank


def _kv_all_gpus(fig: ModelFigures, context: float, parallel: Parallelism) -> float:
    """KV bytes every GPU reads for one token of a sequence at context C = tp × Σ_s kv_seq,s(C).

    Each stage's ranks each hold their KV heads of the stage's layers: copied heads (fewer KV heads
    than ranks) and MLA latents (whole on every rank) are read by every rank that holds them.
    """
    return parallel.tp * sum(kv_bytes_per_sequence(stage.spec, stage.kv_dtype, round(context))
                             for stage in all_stage_figures(fig, parallel))


def step_bytes(fig: ModelFigures, batch: float, context: float, *, parallel: Parallelism | None = None) -> float:
    """Bytes one decode step reads (B) = W_read(B) + B × kv_seq(C).

    ``W_read`` is every weight but the gathered tables (B rows of them) and the MoE experts the batch
    misses; ``kv_seq(C)`` is Σ over layers of min(C, window) × KV bytes per token per layer. The
    same expression :func:`~infermon.model.roofline.decode_step` uses for its memory time.

    With ``parallel`` (a TP/PP/DP split), the bytes every GPU reads for one step of all B
    sequences, copies included: weights as :func:`_weights_all_gpus`, KV as B × :func:`_kv_all_gpus`
    (falcon-7b at TP 8 reads its one KV head on all 8 ranks: 8 × the plain KV bytes).
    """
    if _split(parallel):
        return _weights_all_gpus(fig, batch, parallel) + batch * _kv_all_gpus(fig, context, parallel)
    return weight_bytes_read_per_step(fig, batch) + batch * kv_bytes_per_sequence(fig.spec, fig.kv_dtype, round(context))


def modeled_bandwidth(fig: ModelFigures, steps_per_s: float, batch: float, decode_tokens_per_s: float,
                      context: float, *, parallel: Parallelism | None = None) -> float:
    """Bytes read per second (B/s) = steps/s × W_read(B) + decode tokens/s × kv_seq(C).

    Every engine step (prefill or decode) reads the weights once; every generated token reads its
    sequence's KV cache. With steps/s = decode tokens/s ÷ B this is steps/s × :func:`step_bytes`.
    Activations are not counted (a few MB per step against gigabytes of weights). With ``parallel``
    the bytes are those every GPU reads (see :func:`step_bytes`); a step advances all B sequences.
    """
    if _split(parallel):
        return (steps_per_s * _weights_all_gpus(fig, batch, parallel)
                + decode_tokens_per_s * _kv_all_gpus(fig, context, parallel))
    return (steps_per_s * weight_bytes_read_per_step(fig, batch)
            + decode_tokens_per_s * kv_bytes_per_sequence(fig.spec, fig.kv_dtype, round(context)))


def head_flops_per_token(fig: ModelFigures) -> float:
    """FLOPs of the LM head for one token (FLOP) = 2 × vocabulary × hidden width (0 with a given count)."""
    if fig.params_overridden:
        return 0.0
    spec = fig.spec
    return 2.0 * spec.vocab_size * (spec.embed_projection_dim or spec.hidden_size)


def modeled_flops(fig: ModelFigures, generation_tokens_per_s: float, prompt_tokens_per_s: float,
                  context: float) -> float:
    """FLOP/s = gen/s × (F + attn(C)) + prompt/s × (F − head + attn(C/2)).

    F = 2 × matmul parameters per token (``flops_per_token``); attn(C) = attention-score FLOPs of a
    token attending to C tokens. A prompt token computes no logits (engines compute them for the
    last prompt token only) and attends on average to half of the context its sequence ends with.
    """
    attention_decode = attention_flops_per_token(fig.spec, round(context)) if not fig.params_overridden else 0.0
    attention_prompt = attention_flops_per_token(fig.spec, round(context / 2)) if not fig.params_overridden else 0.0
    prompt_per_token = max(0.0, fig.flops_per_token - head_flops_per_token(fig)) + attention_prompt
    return generation_tokens_per_s * (fig.flops_per_token + attention_decode) + prompt_tokens_per_s * prompt_per_token
