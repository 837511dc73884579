"""The architecture of a model, reduced to the dimensions the arithmetic needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from infermon.model.dtypes import WeightFormat


@dataclass(frozen=True)
class ModelSpec:
    """Dimensions of a decoder-only transformer, as read from its config.

    Counts are plain integers. ``layer_windows`` has one entry per layer: the
    sliding-window length in tokens, or ``None`` for full attention.
    ``moe_layers`` has one entry per layer: ``True`` where the MLP is a
    mixture of experts. ``weight_format`` is set when the checkpoint itself is
    quantized (from ``quantization_config``); ``torch_dtype`` is the dtype of
    everything else and of the activations, as stored. ``dtype_source`` says where
    it came from: ``config`` (its ``torch_dtype``/``dtype``), ``absent`` (none given:
    float32, as Hugging Face and vLLM take it), ``unrecognised``, ``safetensors``
    (the tensors' own dtype) or ``gguf``.
    """

    name: str
    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    gated_mlp: bool = True
    qkv_bias: bool = False
    attn_out_bias: bool = False
    mlp_bias: bool = False
    norm_bias: bool = False
    norms_per_layer: int = 2
    final_norm: bool = True
    qk_norm: bool = False
    tie_word_embeddings: bool = False
    lm_head_bias: bool = False
    learned_positions: int = 0
    embed_projection_dim: int = 0
    # Mixture of experts
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0
    shared_expert_gate: bool = False
    router_bias: bool = False
    moe_layers: tuple[bool, ...] = ()
    # Multi-head latent attention (DeepSeek V2/V3)
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # Attention span per layer
    layer_windows: tuple[int | None, ...] = ()
    max_position_embeddings: int | None = None
    # Storage
    torch_dtype: str = "bf16"
    dtype_source: str = "config"
    weight_format: WeightFormat | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0 and any(self.moe_layers)

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def attention_kind(self) -> str:
        """``mla``, ``mha``, ``mqa`` or ``gqa``."""
        if self.is_mla:
            return "mla"
        if self.num_kv_heads == self.num_heads:
            return "mha"
        if self.num_kv_heads == 1:
            return "mqa"
        return "gqa"

    @property
    def sliding_layers(self) -> int:
        return sum(1 for w in self.layer_windows if w is not None)
