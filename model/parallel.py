"""Tensor, pipeline and data parallelism: what one GPU of a deployment holds, reads and computes.

The sharding rules are vLLM's (SGLang and TGI shard the same way):

- **Tensor parallel (TP, ``tp`` ranks).** Attention heads, MLPs (and every expert, along its
  intermediate dimension), the input embedding and the LM head (both by vocabulary) are split
  evenly. KV heads are split too, but a rank never holds less than one: with fewer KV heads
  than ranks each head is copied ``tp / h_kv`` times, and so are its K/V projections. MLA
  caches one latent per token and layer that every rank holds whole; its latent
  down-projections (``q_a``, ``kv_a``) and every MoE router are copied to every rank.
- **Pipeline parallel (PP, ``pp`` stages).** Each stage holds a contiguous run of layers
  (vLLM's ``get_pp_indices``: ⌊L/pp⌋ each, the remainder to the stages before the last), the
  first stage the embedding, the last the LM head (a tied table is held by both).
- **Data parallel (DP, ``dp`` replicas).** Whole copies; batch, tokens/s and KV capacity add up.

Not modeled: communication time (TP all-reduces, PP activation transfers), expert parallelism,
and norms and biases that TP copies rather than splits (well under 0.1 % of any layer).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

from infermon.model.dtypes import BYTES_PER_VALUE
from infermon.model.figures import ModelFigures
from infermon.model.gpu import Hardware
from infermon.model.params import layer_params
from infermon.model.spec import ModelSpec


@dataclass(frozen=True)
class Parallelism:
    """How a deployment splits the model: ``tp`` × ``pp`` GPUs per replica, ``dp`` replicas."""

    tp: int = 1
    pp: int = 1
    dp: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")

    @property
    def gpus(self) -> int:
        """GPUs of the whole deployment = tp × pp × dp."""
        return self.tp * self.pp * self.dp

    @property
    def trivial(self) -> bool:
        """One GPU holding everything."""
        return self.gpus == 1

    @classmethod
    def for_gpus(cls, gpus: int, tp: int | None = None, pp: int | None = None) -> Parallelism:
        """The split of ``gpus`` GPUs: given tp and pp, the rest is data parallel; neither given: all TP.

        Raises ValueError when tp × pp does not divide the GPU count.
        """
        if tp is None and pp is None:
            return cls(tp=gpus)
        tp, pp = tp or 1, pp or 1
        if gpus % (tp * pp):
            raise ValueError(f"{gpus} GPUs cannot be split into replicas of tp {tp} × pp {pp}")
        return cls(tp=tp, pp=pp, dp=gpus // (tp * pp))


def kv_heads_per_rank(num_kv_heads: int, tp: int) -> int:
    """KV heads one TP rank holds = max(1, ⌈h_kv / tp⌉): split while there are enough, else copied.

    Llama-3-70B (8 KV heads): 1 per rank at tp 8 and still 1 at tp 16 (each head on 2 ranks).
    """
    return max(1, -(-num_kv_heads // tp))


def stage_layers(num_layers: int, pp: int) -> tuple[range, ...]:
    """The layers of each pipeline stage: ⌊L/pp⌋ each, one more for the ``L mod pp`` stages before the last.

    This is vLLM's default partition (``get_pp_indices``); the last stage, which also runs the
    LM head, never gets an extra layer unless every stage does.
    """
    if pp < 1 or pp > num_layers:
        raise ValueError(f"{pp} pipeline stages for {num_layers} layers")
    sizes = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        sizes[-i] += 1
    ranges, start = [], 0
    for size in sizes:
        ranges.append(range(start, start + size))
        start += size
    return tuple(ranges)


def kv_bytes_per_token_per_layer_per_rank(spec: ModelSpec, tp: int, kv_dtype: str) -> float:
    """Bytes one token adds to one layer's cache on one TP rank (B).

    GQA/MHA/MQA: 2 × max(1, ⌈h_kv/tp⌉) × d_head × bytes. MLA: (kv_lora_rank + rope_dim) × bytes,
    the whole latent on every rank.
    """
    width = BYTES_PER_VALUE[kv_dtype]
    if spec.is_mla:
        return (spec.kv_lora_rank + spec.qk_rope_head_dim) * width
    return 2 * kv_heads_per_rank(spec.num_kv_heads, tp) * spec.head_dim * width


def kv_bytes_per_token_per_rank(spec: ModelSpec, tp: int, kv_dtype: str, pp: int = 1) -> float:
    """KV bytes per token of context on the busiest GPU (B/token).

    = layers of the largest stage × :func:`kv_bytes_per_token_per_layer_per_rank`. With tp = pp = 1
    this is ``kv_bytes_per_token``; falcon-7b (1 KV head) on 8 GPUs keeps all 8,192 B/token on
    every rank, where an even split would claim 1,024.
    """
    layers = max(len(r) for r in stage_layers(spec.num_layers, pp))
    return layers * kv_bytes_per_token_per_layer_per_rank(spec, tp, kv_dtype)


def gpu_share(hw: Hardware, parallel: Parallelism) -> Hardware:
    """One GPU of ``hw`` (whose figures are totals over ``hw.count`` identical GPUs)."""
    if hw.count != parallel.gpus:
        raise ValueError(f"hardware of {hw.count} GPU(s) for a tp {parallel.tp} × pp {parallel.pp} × "
                         f"dp {parallel.dp} deployment ({parallel.gpus} GPUs)")
    if hw.count == 1:
        return hw
    n = hw.count
    return dataclasses.replace(hw, count=1, memory_bytes=hw.memory_bytes / n,
                               bandwidth_bytes_per_s=hw.bandwidth_bytes_per_s / n,
                               peak_flops=hw.peak_flops / n if hw.peak_flops is not None else None)


def stage_figures(fig: ModelFigures, parallel: Parallelism, stage: int = 0) -> ModelFigures:
    """What one TP rank of pipeline stage ``stage`` holds, reads and computes, as :class:`ModelFigures`.

    Weight bytes per rank = (stage layers' bytes + the stage's tables) ÷ tp + copied weights:
    for each layer, routers and MLA latent projections × (1 − 1/tp), and K/V projections ×
    (⌈h_kv/tp⌉/h_kv − 1/tp). Layer bytes are the model's decoder bytes shared out by parameter
    count (routed experts at their own bytes per parameter). Gathered bytes and the row a token
    gathers are the stage's tables ÷ tp (the vocabulary is split); FLOPs per token = the stage's
    matmul weights × 2 ÷ tp plus the copied ones × 2; KV bytes per token as
    :func:`kv_bytes_per_token_per_rank` for the stage's layers. ``spec`` is the stage's layers
    with the rank's KV heads, so windows and MoE layers follow. ``params`` stays the whole model's.
    """
    if parallel.tp == 1 and parallel.pp == 1:
        return fig
    tp, pp = parallel.tp, parallel.pp
    spec = fig.spec
    ranges = stage_layers(spec.num_layers, pp)
    layers = ranges[stage]
    first, last = stage == 0, stage == pp - 1
    windows = spec.layer_windows or (None,) * spec.num_layers
    moe = spec.moe_layers or (False,) * spec.num_layers
    replace: dict = dict(num_layers=len(layers), layer_windows=tuple(windows[i] for i in layers),
                         moe_layers=tuple(moe[i] for i in layers))
    if not spec.is_mla:
        replace["num_kv_heads"] = kv_heads_per_rank(spec.num_kv_heads, tp)
    rank_spec = dataclasses.replace(spec, **replace)
    kv = rank_spec.num_layers * kv_bytes_per_token_per_layer_per_rank(spec, tp, fig.kv_dtype)

    if fig.params_overridden:
        # A nominal count: uniform layers, nothing gathered or copied.
        share = len(layers) / spec.num_layers
        return dataclasses.replace(fig, spec=rank_spec, weight_bytes=fig.weight_bytes * share / tp,
                                   gathered_bytes=0.0, gathered_row_bytes=0.0, routed_expert_bytes=0.0,
                                   kv_bytes_per_token=kv, flops_per_token=fig.flops_per_token * share / tp,
                                   embedding_bytes=0.0, lm_head_bytes=0.0, positional_bytes=0.0)

    per_layer = layer_params(spec)
    in_stage = [per_layer[i] for i in layers]
    routed_all = sum(p.routed for p in per_layer)
    other_all = sum(p.total - p.routed for p in per_layer)
    tables = fig.embedding_bytes + fig.lm_head_bytes + fig.positional_bytes
    other_bytes = max(0.0, fig.weight_bytes - tables - fig.routed_expert_bytes)
    width = other_bytes / other_all if other_all else 0.0
    routed_width = fig.routed_expert_bytes / routed_all if routed_all else 0.0
    stage_other = sum(p.total - p.routed for p in in_stage) * width
    stage_routed = sum(p.routed for p in in_stage) * routed_width

    tied = spec.tie_word_embeddings
    stored_tables = gathered = row = 0.0
    head_matmul = 0.0
    if first:
        stored_tables += fig.embedding_bytes + fig.positional_bytes
        # The input table is only gathered from, unless this one stage also uses it as the head.
        if not (tied and last):
            gathered += fig.embedding_bytes
            row += fig.embedding_bytes / spec.vocab_size
        if fig.positional_bytes and spec.learned_positions:
            gathered += fig.positional_bytes
            row += fig.positional_bytes / spec.learned_positions
    if last:
        stored_tables += fig.lm_head_bytes if not tied else (fig.embedding_bytes if not first else 0.0)
        head_matmul = spec.vocab_size * (spec.embed_projection_dim or spec.hidden_size)
        head_matmul += 2 * spec.hidden_size * spec.embed_projection_dim if spec.embed_projection_dim else 0

    copied = 0.0  # parameters each rank holds beyond an even 1/tp share
    if tp > 1:
        kv_share = kv_heads_per_rank(spec.num_kv_heads, tp) / spec.num_kv_heads - 1 / tp
        copied = sum(p.replicable * (1 - 1 / tp) + p.kv_projection * max(0.0, kv_share) for p in in_stage)

    matmul = sum(p.matmul_active for p in in_stage) + head_matmul
    return dataclasses.replace(
        fig,
        spec=rank_spec,
        weight_bytes=(stage_other + stage_routed + stored_tables) / tp + copied * width,
        gathered_bytes=gathered / tp,
        gathered_row_bytes=row / tp,
        routed_expert_bytes=stage_routed / tp,
        kv_bytes_per_token=kv,
        flops_per_token=2.0 * (matmul / tp + copied),
        embedding_bytes=(fig.embedding_bytes / tp) if first or (tied and last) else 0.0,
        lm_head_bytes=fig.lm_head_bytes / tp if last else 0.0,
        positional_bytes=fig.positional_bytes / tp if first else 0.0,
    )


@functools.lru_cache(maxsize=32)
def all_stage_figures(fig: ModelFigures, parallel: Parallelism) -> tuple[ModelFigures, ...]:
    """:func:`stage_figures` of every pipeline stage, first to last.

    Cached (both arguments are frozen): a tick or a bisection asks for the same split many times.
    """
    return tuple(stage_figures(fig, parallel, s) for s in range(parallel.pp))


def weight_bytes_per_gpu(fig: ModelFigures, parallel: Parallelism) -> float:
    """Weight bytes on the fullest GPU (B): the largest stage's per-rank bytes."""
    return max(s.weight_bytes for s in all_stage_figures(fig, parallel))


def micro_batches(replica_batch: float, pp: int) -> float:
    """Micro-batches in flight in one replica's pipeline = max(1, min(pp, B)): one per stage at most."""
    return max(1.0, min(float(pp), replica_batch))


def pipeline_cycle_s(stage_times: list[float], micro: float) -> float:
    """Time for every sequence of a replica to get one token (s) = max(Σ stage times, m × slowest stage).

    One micro-batch passes the stages in turn (Σ); with m micro-batches in flight the slowest
    stage works m times per cycle. pp = 1: the one stage's time.
    """
    return max(sum(stage_times), micro * max(stage_times))
