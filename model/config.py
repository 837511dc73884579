"""Turn a Hugging Face ``config.json`` (as a dict) into a :class:`ModelSpec`.

Each architecture family differs in a few structural choices (gated or plain
MLP, which projections carry biases, RMSNorm or LayerNorm, tied embeddings,
learned positions, MoE layout, MLA). Those choices live here, keyed by
``model_type``, so the counting in :mod:`infermon.model.params` stays generic.
"""

from __future__ import annotations

import math
from typing import Any

from infermon.model.dtypes import DTypeError, format_from_quantization_config, normalize_dtype
from infermon.model.spec import ModelSpec


class ConfigError(ValueError):
    """A config that cannot describe a model (missing or impossible values)."""


LLAMA_LIKE = {
    "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
    "gemma3_text", "phi3", "deepseek_v2", "deepseek_v3", "olmo2", "granite", "cohere", "internlm2",
    "yi", "baichuan", "exaone", "minicpm", "ministral", "llama4_text", "glm", "starcoder2",
}
KNOWN = LLAMA_LIKE | {"gpt2", "opt", "falcon", "gpt_neox"}


def _first(cfg: dict, *keys: str, default: Any = None) -> Any:
    for key in keys:
        value = cfg.get(key)
        if value is not None:
            return value
    return default


# Upper bounds on what a config may claim: far beyond any real model, yet small enough that the
# arithmetic stays finite and per-layer tuples stay small (a hostile "num_hidden_layers": 1e12
# would otherwise mean a tuple of a trillion entries).
LIMITS: dict[str, int] = {
    "hidden size": 1_000_000,
    "layer count": 10_000,
    "attention head count": 100_000,
    "KV head count": 100_000,
    "vocabulary size": 100_000_000,
    "head dimension": 100_000,
    "MLP intermediate size": 10_000_000,
    "position count": 100_000_000,
    "experts per token": 100_000,
    "kv_lora_rank": 1_000_000,
    "qk_nope_head_dim": 100_000,
    "qk_rope_head_dim": 100_000,
    "v_head_dim": 100_000,
}
DEFAULT_LIMIT = 10_000_000_000  # windows, maximum positions, group sizes and other counts


def _shown(value: Any) -> str:
    """A config value for an error line: short, and never a conversion that can itself fail."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 40 else text[:40] + "…"


def _is_count(value: Any) -> bool:
    """A whole, finite number (bools excluded: a flag is not a count)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float):
        return math.isfinite(value) and value.is_integer()
    return True


def _label(value: Any, limit: int = 64) -> str:
    """A name from a config: a string, cut to ``limit`` characters; anything else is no name."""
    return value.strip()[:limit] if isinstance(value, str) else ""


def _positive_int(cfg: dict, what: str, *keys: str, default: Any = None) -> int:
    value = _first(cfg, *keys, default=default)
    if value is None:
        raise ConfigError(f"config lacks {what} (looked for {', '.join(keys)})")
    limit = LIMITS.get(what, DEFAULT_LIMIT)
    if not _is_count(value) or not 0 < value <= limit:
        raise ConfigError(f"config has an impossible {what}: {_shown(value)} (need a positive integer up to {limit:,})")
    return int(value)


def _optional_positive_int(value: Any, limit: int = DEFAULT_LIMIT, what: str = "value") -> int | None:
    """A positive count within ``limit``; None when absent or switched off (null, false, 0, −1, a word).

    A number that cannot be a count (NaN, infinite, fractional, beyond ``limit``) is a
    :class:`ConfigError`, not silently nothing: it would change the model.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    if not _is_count(value) or value > limit:
        raise ConfigError(f"config has an impossible {what}: {_shown(value)} (need a positive integer up to {limit:,})")
    return int(value)


def _optional_count(cfg: dict, key: str, default: int, minimum: int = 0, limit: int = DEFAULT_LIMIT) -> int:
    """An optional structural count: ``default`` when absent or null, a :class:`ConfigError` when not a count."""
    value = cfg.get(key)
    if value is None:
        return default
    if not _is_count(value) or not minimum <= value <= limit:
        raise ConfigError(f"config has an impossible {key}: {_shown(value)} (need a whole number "
                          f"from {minimum} to {limit:,})")
    return int(value)


def _layer_windows(cfg: dict, model_type: str, layers: int) -> tuple[int | None, ...]:
    """Per layer: the sliding window in tokens, or None for full attention."""
    window = _optional_positive_int(cfg.get("sliding_window"), what="sliding_window")
    types = cfg.get("layer_types")
    if isinstance(types, list) and len(types) == layers and window:
        return tuple(window if str(t).startswith("sliding") else None for t in types)
    if not window:
        return (None,) * layers
    if model_type == "gemma2":
        # Gemma 2 alternates: even layers local (sliding), odd layers global.
        return tuple(window if i % 2 == 0 else None for i in range(layers))
    if model_type in ("gemma3_text", "gemma3"):
        pattern = _optional_positive_int(cfg.get("sliding_window_pattern"), what="sliding_window_pattern") or 6
        return tuple(None if (i + 1) % pattern == 0 else window for i in range(layers))
    if model_type in ("qwen2", "qwen2_moe", "qwen3", "qwen3_moe"):
        if not cfg.get("use_sliding_window", False):
            return (None,) * layers
        full = _optional_count(cfg, "max_window_layers", 0)
        return tuple(None if i < full else window for i in range(layers))
    return (window,) * layers


def _moe_layers(cfg: dict, model_type: str, layers: int, experts: int) -> tuple[bool, ...]:
    if experts <= 0:
        return (False,) * layers
    if model_type in ("deepseek_v2", "deepseek_v3"):
        first_dense = _optional_count(cfg, "first_k_dense_replace", 0)
        freq = _optional_count(cfg, "moe_layer_freq", 1, minimum=1)
        return tuple(i >= first_dense and i % freq == 0 for i in range(layers))
    if model_type in ("qwen2_moe", "qwen3_moe"):
        step = _optional_count(cfg, "decoder_sparse_step", 1, minimum=1)
        dense_only = cfg.get("mlp_only_layers") or []
        if not isinstance(dense_only, list) or not all(_is_count(i) for i in dense_only):
            raise ConfigError(f"config has an impossible mlp_only_layers: {_shown(dense_only)} (need a list of layer numbers)")
        dense_only = {int(i) for i in dense_only}
        return tuple(i not in dense_only and (i + 1) % step == 0 for i in range(layers))
    return (True,) * layers


def spec_from_config(cfg: dict, name: str = "") -> ModelSpec:
    """Build a :class:`ModelSpec` from a config dict; raises :class:`ConfigError`."""
    if not isinstance(cfg, dict):
        raise ConfigError("config is not a JSON object")
    warnings: list[str] = []
    model_type = _label(cfg.get("model_type")).lower()
    text = cfg.get("text_config")
    if isinstance(text, dict) and "hidden_size" not in cfg:
        # Multimodal wrappers (Gemma 3, Llava, Mllama…) keep the decoder in text_config.
        warnings.append(f"{model_type or 'model'}: counting the text decoder only (vision/audio towers not included)")
        outer_dtype = cfg.get("torch_dtype") or cfg.get("dtype")
        cfg = {**text}
        if not (cfg.get("torch_dtype") or cfg.get("dtype")):
            cfg["torch_dtype"] = outer_dtype
        model_type = (_label(cfg.get("model_type")) or model_type).lower()

    hidden = _positive_int(cfg, "hidden size", "hidden_size", "n_embd", "d_model", "dim")
    layers = _positive_int(cfg, "layer count", "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    heads = _positive_int(cfg, "attention head count", "num_attention_heads", "n_head", "num_heads", "n_heads")
    vocab = _positive_int(cfg, "vocabulary size", "vocab_size", "padded_vocab_size")

    if model_type not in KNOWN:
        warnings.append(
            f"unknown model_type {model_type or '(none)'!r}: assumed a Llama-style decoder "
            "(gated MLP, RMSNorm, 2 norms per layer, no biases, untied unless tie_word_embeddings)"
        )

    if model_type == "falcon":
        if cfg.get("new_decoder_architecture"):
            kv_heads = _positive_int(cfg, "KV head count", "num_kv_heads", default=heads)
        elif cfg.get("multi_query", True):
            kv_heads = 1
        else:
            kv_heads = heads
    else:
        kv_heads = _positive_int(cfg, "KV head count", "num_key_value_heads", "num_kv_heads", "n_head_kv",
                                 "multi_query_group_num", default=heads)
    if heads % kv_heads:
        raise ConfigError(f"attention heads ({heads}) are not a multiple of KV heads ({kv_heads})")
    head_dim = _positive_int(cfg, "head dimension", "head_dim", default=hidden // heads if hidden % heads == 0 else None)

    if model_type in ("gpt2", "gpt_neox", "falcon", "starcoder2"):
        default_inter = 4 * hidden
    else:
        default_inter = None
    intermediate = _positive_int(cfg, "MLP intermediate size", "intermediate_size", "ffn_dim", "n_inner",
                                 "ffn_hidden_size", default=default_inter)

    raw_dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    dtype_source = "config"
    if raw_dtype is None:
        # Hugging Face and vLLM read a config without one as float32.
        dtype, dtype_source = "fp32", "absent"
    else:
        try:
            dtype = normalize_dtype(raw_dtype)
        except DTypeError:
            warnings.append(f"unrecognised torch_dtype {str(raw_dtype)[:40]!r}: assumed bf16")
            dtype, dtype_source = "bf16", "unrecognised"
    weight_format = None
    if cfg.get("quantization_config") is not None:
        weight_format = format_from_quantization_config(cfg["quantization_config"], dtype)
        if weight_format is None:
            warnings.append("quantization_config not understood: weights counted at torch_dtype")

    tie_default = model_type in ("gpt2", "opt", "falcon", "gemma", "gemma2", "gemma3_text")
    fields: dict[str, Any] = dict(
        name=_label(name, 200) or _label(cfg.get("_name_or_path"), 200) or model_type or "model",
        model_type=model_type or "unknown",
        vocab_size=vocab,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", tie_default)),
        max_position_embeddings=_optional_positive_int(
            _first(cfg, "max_position_embeddings", "n_positions", "max_seq_len", "seq_length"),
            what="max_position_embeddings"),
        torch_dtype=dtype,
        dtype_source=dtype_source,
        weight_format=weight_format,
    )

    if model_type == "gpt2":
        fields.update(gated_mlp=False, qkv_bias=True, attn_out_bias=True, mlp_bias=True, norm_bias=True,
                      learned_positions=_positive_int(cfg, "position count", "n_positions", "max_position_embeddings"))
    elif model_type == "opt":
        bias = bool(cfg.get("enable_bias", True))
        proj = _optional_positive_int(cfg.get("word_embed_proj_dim"), LIMITS["hidden size"], "word_embed_proj_dim") or hidden
        fields.update(gated_mlp=False, qkv_bias=bias, attn_out_bias=bias, mlp_bias=bias,
                      norm_bias=bool(cfg.get("layer_norm_elementwise_affine", True)),
                      # OPT's learned positions carry an offset of 2 rows.
                      learned_positions=_positive_int(cfg, "position count", "max_position_embeddings") + 2,
                      final_norm=bool(cfg.get("do_layer_norm_before", True)),
                      embed_projection_dim=proj if proj != hidden else 0)
    elif model_type == "falcon":
        bias = bool(cfg.get("bias", False))
        if cfg.get("new_decoder_architecture"):
            norms = 2
        elif cfg.get("parallel_attn", True):
            norms = 1
        else:
            norms = 2
        fields.update(gated_mlp=False, qkv_bias=bias, attn_out_bias=bias, mlp_bias=bias, norm_bias=True,
                      norms_per_layer=norms)
    elif model_type == "gpt_neox":
        fields.update(gated_mlp=False, qkv_bias=True, attn_out_bias=True, mlp_bias=True, norm_bias=True)
    elif model_type == "starcoder2":
        bias = bool(cfg.get("use_bias", True))
        fields.update(gated_mlp=False, qkv_bias=bias, attn_out_bias=bias, mlp_bias=bias, norm_bias=True)
    else:
        attention_bias = bool(cfg.get("attention_bias", False))
        qkv_bias = attention_bias or model_type in ("qwen2", "qwen2_moe")
        fields.update(qkv_bias=qkv_bias, attn_out_bias=attention_bias, mlp_bias=bool(cfg.get("mlp_bias", False)))
        if model_type in ("gemma2", "gemma3_text"):
            fields["norms_per_layer"] = 4
        if model_type in ("qwen3", "qwen3_moe", "gemma3_text", "olmo2"):
            fields["qk_norm"] = True

    # Mixture of experts
    experts = _optional_positive_int(_first(cfg, "num_local_experts", "n_routed_experts", "num_experts"),
                                     100_000, "expert count") or 0
    if experts:
        k = _positive_int(cfg, "experts per token", "num_experts_per_tok", "num_experts_per_token", "moe_topk", default=None)
        if k > experts:
            raise ConfigError(f"experts per token ({k}) exceeds the expert count ({experts})")
        moe_inter = _optional_positive_int(cfg.get("moe_intermediate_size"), LIMITS["MLP intermediate size"],
                                           "moe_intermediate_size") or intermediate
        shared = _optional_positive_int(cfg.get("n_shared_experts"), 100_000, "n_shared_experts") or 0
        shared_inter = _optional_positive_int(cfg.get("shared_expert_intermediate_size"),
                                              LIMITS["MLP intermediate size"] * 100_000,
                                              "shared_expert_intermediate_size") or 0
        if shared and not shared_inter:
            shared_inter = shared * moe_inter
        if shared_inter and not shared:
            shared = 1
        fields.update(num_experts=experts, experts_per_token=k, moe_intermediate_size=moe_inter,
                      num_shared_experts=shared, shared_expert_intermediate_size=shared_inter,
                      shared_expert_gate=model_type == "qwen2_moe" and bool(shared_inter),
                      router_bias=model_type == "deepseek_v3" or cfg.get("topk_method") == "noaux_tc")
    fields["moe_layers"] = _moe_layers(cfg, model_type, layers, experts)

    # Multi-head latent attention
    if cfg.get("kv_lora_rank"):
        fields.update(
            q_lora_rank=_optional_positive_int(cfg.get("q_lora_rank"), LIMITS["kv_lora_rank"], "q_lora_rank"),
            kv_lora_rank=_positive_int(cfg, "kv_lora_rank", "kv_lora_rank"),
            qk_nope_head_dim=_positive_int(cfg, "qk_nope_head_dim", "qk_nope_head_dim"),
            qk_rope_head_dim=_positive_int(cfg, "qk_rope_head_dim", "qk_rope_head_dim"),
            v_head_dim=_positive_int(cfg, "v_head_dim", "v_head_dim"),
        )
        if cfg.get("num_nextn_predict_layers"):
            warnings.append("multi-token-prediction layers are not counted (they are not used for plain decoding)")

    fields["layer_windows"] = _layer_windows(cfg, model_type, layers)
    fields["warnings"] = tuple(warnings)
    return ModelSpec(**fields)
