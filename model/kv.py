"""KV-cache sizes: bytes per token and per sequence, for MHA, GQA, MQA, MLA and sliding windows."""

from __future__ import annotations

from infermon.model.dtypes import BYTES_PER_VALUE
from infermon.model.spec import ModelSpec


def kv_bytes_per_token_per_layer(spec: ModelSpec, kv_dtype: str) -> float:
    """Bytes one token adds to one layer's cache.

    MHA/GQA/MQA: ``2 (K and V) × h_kv × d_head × bytes``. MLA caches the
    compressed latent and the shared rope key instead:
    ``(kv_lora_rank + qk_rope_head_dim) × bytes``.
    """
    width = BYTES_PER_VALUE[kv_dtype]
    if spec.is_mla:
        return (spec.kv_lora_rank + spec.qk_rope_head_dim) * width
    return 2 * spec.num_kv_heads * spec.head_dim * width


def kv_bytes_per_token(spec: ModelSpec, kv_dtype: str) -> float:
    """Bytes per token of context with every layer holding it: layers × per-layer bytes (B/token).

    Llama-2-7B in fp16: 2 × 32 × 32 × 128 × 2 = 524,288 B/token. The seed's
    ``2·2·layers·d_model`` is the MHA special case; GQA models with 8 KV heads
    of 32 need a quarter of it.
    """
    return spec.num_layers * kv_bytes_per_token_per_layer(spec, kv_dtype)


def kv_bytes_per_sequence(spec: ModelSpec, kv_dtype: str, context: int) -> float:
    """Bytes one sequence of ``context`` tokens holds: Σ_layers min(context, window_layer) × per-layer bytes.

    Sliding-window layers keep at most ``window`` tokens; full layers keep all.
    """
    per_layer = kv_bytes_per_token_per_layer(spec, kv_dtype)
    return _held_tokens(spec, context) * per_layer


def _held_tokens(spec: ModelSpec, context: int) -> float:
    """Σ_layers min(context, window_layer): token-layers one sequence of ``context`` tokens holds."""
    windows = spec.layer_windows
    if not windows:
        return context * spec.num_layers  # every layer full: no sum over the layers, each tick
    return sum(min(context, w) if w is not None else context for w in windows)


def attention_flops_per_token(spec: ModelSpec, context: int) -> float:
    """Attention-score FLOPs for one new token attending to ``context`` tokens (FLOP/token).

    Per layer ``2·C·h·d_qk`` for QKᵀ plus ``2·C·h·d_v`` for the weighted sum of
    V, with C capped by the layer's window; for MHA-like models this is the
    usual ``4 × layers × context × h × d_head``. Not part of
    ``flops_per_token``, which counts the weight matmuls only.
    """
    if spec.is_mla:
        d_qk = spec.qk_nope_head_dim + spec.qk_rope_head_dim
        d_v = spec.v_head_dim
    else:
        d_qk = d_v = spec.head_dim
    spans = _held_tokens(spec, context)
    return 2.0 * spans * spec.num_heads * (d_qk + d_v)
