"""A model's size figures for one choice of dtypes: weight bytes, KV bytes, FLOPs per token."""

from __future__ import annotations

from dataclasses import dataclass

from infermon.model.dtypes import BYTES_PER_VALUE, WeightFormat, normalize_dtype, plain_format
from infermon.model.kv import kv_bytes_per_token
from infermon.model.params import ParamCount, count_params
from infermon.model.spec import ModelSpec
from infermon.model.stored import StoredBytes


@dataclass(frozen=True)
class ModelFigures:
    """Everything the roofline needs to know about a model, in base units.

    ``weight_bytes`` is what the weights occupy (B); ``gathered_bytes`` the
    part that is only gathered (input and position embeddings, B) and
    ``gathered_row_bytes`` what one token reads of it; ``routed_expert_bytes``
    all routed MoE expert weights (B). ``flops_per_token`` = 2 × matmul
    parameters active per token (FLOP/token). ``kv_bytes_per_token`` in B/token.
    ``embedding_bytes`` (the input token table, stored once even when tied),
    ``lm_head_bytes`` (a separate output head; 0 when tied) and
    ``positional_bytes`` place the tables for pipeline stages (B).
    """

    name: str
    spec: ModelSpec
    params: ParamCount
    weight_format: WeightFormat
    activation_dtype: str
    kv_dtype: str
    weight_bytes: float
    weight_bytes_source: str
    gathered_bytes: float
    gathered_row_bytes: float
    routed_expert_bytes: float
    kv_bytes_per_token: float
    flops_per_token: float
    params_overridden: bool = False
    embedding_bytes: float = 0.0
    lm_head_bytes: float = 0.0
    positional_bytes: float = 0.0


def _activation_dtype(spec: ModelSpec) -> str:
    return spec.torch_dtype if spec.torch_dtype in ("bf16", "fp16", "fp32") else "bf16"


def modeled_weight_bytes(params: ParamCount, fmt: WeightFormat, activation_dtype: str, quantized_checkpoint: bool) -> float:
    """Weight bytes = params × bytes/param.

    Weight-only integer formats (int8, int4 — GPTQ, AWQ, bitsandbytes) and a
    quantized checkpoint's own format compress the decoder's linear weights
    only: embeddings, LM head and norms stay in the activation dtype. A plain
    float ``--dtype`` applies to every parameter.
    """
    if quantized_checkpoint or fmt.dtype in ("int4", "int8"):
        rest = params.total - params.decoder_linear
        return params.decoder_linear * fmt.bytes_per_param() + rest * BYTES_PER_VALUE[activation_dtype]
    return params.total * fmt.bytes_per_param()


def model_figures(
    spec: ModelSpec,
    dtype: str | None = None,
    kv_dtype: str | None = None,
    params_override: float | None = None,
    exact_weight_bytes: tuple[float, str] | None = None,
    stored: StoredBytes | None = None,
) -> ModelFigures:
    """Figures for ``spec`` stored as ``dtype`` (default: the checkpoint's own) with a ``kv_dtype`` cache.

    ``params_override`` replaces the count by a nominal figure (the seed's "7B"):
    every parameter is then taken to be read per token and to take part in a
    matmul (flops_per_token = 2 × params). ``exact_weight_bytes`` (bytes,
    source) replaces the modeled weight bytes when the checkpoint's files were
    measured and no other dtype was asked for. ``stored`` (a tensor-by-tensor
    breakdown, e.g. of a GGUF file) goes further: the gathered embedding and
    the routed experts are then the file's own bytes, not parameters × a width.
    """
    activation = _activation_dtype(spec)
    quantized_checkpoint = dtype is None and spec.weight_format is not None
    if dtype is not None:
        fmt = plain_format(dtype)
    elif spec.weight_format is not None:
        fmt = spec.weight_format
    else:
        fmt = plain_format(spec.torch_dtype)
    if dtype is not None and fmt.dtype in ("bf16", "fp16", "fp32"):
        activation = fmt.dtype
    kv = normalize_dtype(kv_dtype) if kv_dtype else activation

    params = count_params(spec)
    if params_override is not None:
        total = int(round(params_override))
        params = ParamCount(total=total, active=total, embedding=0, positional=0, lm_head=0,
                            matmul_total=total, matmul_active=total, routed_experts=0, routed_active=0,
                            decoder_linear=total)
        weight_bytes = total * fmt.bytes_per_param()
        source = f"modeled: {total:,} params (given) × {fmt.bytes_per_param():g} B ({fmt.dtype})"
        gathered = row = routed = 0.0
        embedding = head = positional = 0.0
    else:
        weight_bytes = modeled_weight_bytes(params, fmt, activation, quantized_checkpoint)
        source = f"modeled: exact parameter count at {fmt.method or fmt.dtype}"
        if exact_weight_bytes is not None and dtype is None:
            weight_bytes, source = exact_weight_bytes
        embed_width = BYTES_PER_VALUE[activation] if (quantized_checkpoint or fmt.dtype in ("int4", "int8")) else fmt.bytes_per_param()
        gathered = 0.0 if spec.tie_word_embeddings else params.embedding * embed_width
        gathered += params.positional * embed_width
        row = (0.0 if spec.tie_word_embeddings else (spec.embed_projection_dim or spec.hidden_size) * embed_width)
        row += (spec.hidden_size * embed_width if params.positional else 0.0)
        routed = params.routed_experts * fmt.bytes_per_param()
        embedding = params.embedding * embed_width
        head = params.lm_head * embed_width
        positional = params.positional * embed_width
        if stored is not None and dtype is None:
            weight_bytes, source = stored.total, stored.source
            gathered, row, routed = stored.gathered, stored.gathered_row, stored.routed_experts
            embedding, head, positional = stored.embedding, stored.lm_head, stored.positional

    return ModelFigures(
        name=spec.name,
        spec=spec,
        params=params,
        weight_format=fmt,
        activation_dtype=activation,
        kv_dtype=kv,
        weight_bytes=float(weight_bytes),
        weight_bytes_source=source,
        gathered_bytes=float(gathered),
        gathered_row_bytes=float(row),
        routed_expert_bytes=float(routed),
        kv_bytes_per_token=float(kv_bytes_per_token(spec, kv)),
        flops_per_token=2.0 * params.matmul_active,
        params_overridden=params_override is not None,
        embedding_bytes=float(embedding),
        lm_head_bytes=float(head),
        positional_bytes=float(positional),
    )


def expert_fraction_read(experts_per_token: int, experts: int, batch: float) -> float:
    """Expected share of a layer's routed experts a decode step touches: 1 − (1 − k/E)^B.

    Assumes tokens route independently and uniformly (real routers are
    skewed, which lowers the share).
    """
    if experts <= 0 or batch <= 0:
        return 0.0
    return 1.0 - (1.0 - experts_per_token / experts) ** batch


def weight_bytes_read_per_step(fig: ModelFigures, batch: float) -> float:
    """Weight bytes one decode step at batch B reads (B).

    All weights, except: gathered tables (input/position embeddings) read
    only B rows, and MoE layers read only the experts their tokens hit
    (:func:`expert_fraction_read`).
    """
    # Never below zero, whatever the inputs: a negative read is not a faster one.
    fixed = max(0.0, fig.weight_bytes - fig.gathered_bytes - fig.routed_expert_bytes)
    rows = min(fig.gathered_bytes, batch * fig.gathered_row_bytes)
    experts = fig.routed_expert_bytes * expert_fraction_read(
        fig.spec.experts_per_token, fig.spec.num_experts, batch)
    return fixed + rows + experts
