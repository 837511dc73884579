"""Exact parameter counts, per architecture, from a :class:`ModelSpec`.

Not the 12·L·d² estimate: every weight matrix, bias, norm and embedding is
counted, MoE experts are split into total and active, and MLA's low-rank
projections are counted as they are stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from infermon.model.spec import ModelSpec


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts (plain numbers of weights).

    - ``total``: every stored parameter (all experts).
    - ``active``: parameters used for one token (routed experts per token,
      shared experts, dense layers, everything else).
    - ``embedding``: the input token embedding; ``positional``: learned
      position embeddings. Both are gathers: a token reads one row.
    - ``lm_head``: the separate output projection (0 when tied).
    - ``matmul_total`` / ``matmul_active``: weights that take part in a matrix
      multiply for every token (projections, MLPs, router, LM head — a tied
      head is counted here although it is stored once). No biases, norms or
      gathers. ``flops_per_token = 2 × matmul_active``.
    - ``routed_experts``: all routed expert weights (total); ``routed_active``
      the part one token uses.
    - ``decoder_linear``: weights of the decoder layers' linear maps (what a
      weight-only quantization such as GPTQ/AWQ stores compressed).
    """

    total: int
    active: int
    embedding: int
    positional: int
    lm_head: int
    matmul_total: int
    matmul_active: int
    routed_experts: int
    routed_active: int
    decoder_linear: int

    @property
    def active_without_embedding(self) -> int:
        """Active parameters less the input tables (token embedding and learned positions).

        A token gathers one row of each, so they do no work per token; ``active`` counts
        them whole, as Hugging Face's parameter count does. DeepSeek-V3: 37.55 B with them,
        36.6 B without (its authors' "37B activated").
        """
        return self.active - self.embedding - self.positional


def _mlp(hidden: int, inter: int, gated: bool, bias: bool) -> tuple[int, int]:
    """(weights, biases) of one MLP: gated = gate, up, down (3·H·I); plain = up, down (2·H·I)."""
    weights = (3 if gated else 2) * hidden * inter
    biases = ((2 * inter if gated else inter) + hidden) if bias else 0
    return weights, biases


def _attention(spec: ModelSpec) -> tuple[int, int, int]:
    """(matmul weights, biases, norm weights) of one attention block."""
    hidden, heads = spec.hidden_size, spec.num_heads
    if spec.is_mla:
        qk_head = spec.qk_nope_head_dim + spec.qk_rope_head_dim
        norms = spec.kv_lora_rank
        if spec.q_lora_rank:
            q = hidden * spec.q_lora_rank + spec.q_lora_rank * heads * qk_head
            norms += spec.q_lora_rank
        else:
            q = hidden * heads * qk_head
        kv = hidden * (spec.kv_lora_rank + spec.qk_rope_head_dim) + spec.kv_lora_rank * heads * (
            spec.qk_nope_head_dim + spec.v_head_dim)
        out = heads * spec.v_head_dim * hidden
        return q + kv + out, 0, norms
    q_out = heads * spec.head_dim
    kv_out = spec.num_kv_heads * spec.head_dim
    weights = hidden * q_out + 2 * hidden * kv_out + q_out * hidden
    biases = (q_out + 2 * kv_out if spec.qkv_bias else 0) + (hidden if spec.attn_out_bias else 0)
    norms = 2 * spec.head_dim if spec.qk_norm else 0
    return weights, biases, norms


@dataclass(frozen=True)
class LayerParams:
    """Parameters of one decoder layer.

    - ``total``: every stored parameter of the layer (all experts, biases, norms).
    - ``active``: what one token uses (routed experts per token, the rest whole).
    - ``matmul_total`` / ``matmul_active``: weights in matrix multiplies (no biases or norms).
    - ``routed`` / ``routed_active``: routed expert weights and biases, all and per token.
    - ``linear``: the layer's linear-map weights (what GPTQ/AWQ store compressed).
    - ``replicable``: matmul weights that tensor parallelism does not split but copies to
      every rank: the MoE router and MLA's latent down-projections (``q_a``, ``kv_a``).
    - ``kv_projection``: the K and V projection weights (GQA/MHA/MQA; 0 for MLA), which are
      copied rather than split once there are more ranks than KV heads.
    """

    total: int
    active: int
    matmul_total: int
    matmul_active: int
    routed: int
    routed_active: int
    linear: int
    replicable: int
    kv_projection: int


def layer_params(spec: ModelSpec) -> tuple[LayerParams, ...]:
    """Per decoder layer, its :class:`LayerParams` (dense and MoE layers differ; MLA's low-rank maps counted as stored)."""
    hidden = spec.hidden_size
    norm_size = hidden * (2 if spec.norm_bias else 1)

    attn_w, attn_b, attn_norm = _attention(spec)
    dense_w, dense_b = _mlp(hidden, spec.intermediate_size, spec.gated_mlp, spec.mlp_bias)
    if spec.is_mla:
        latent = hidden * (spec.kv_lora_rank + spec.qk_rope_head_dim)
        latent += hidden * spec.q_lora_rank if spec.q_lora_rank else 0
        kv_projection = 0
    else:
        latent = 0
        kv_projection = 2 * hidden * spec.num_kv_heads * spec.head_dim

    layers: list[LayerParams] = []
    for is_moe in spec.moe_layers or (False,) * spec.num_layers:
        layer_fixed = attn_w + attn_b + attn_norm + spec.norms_per_layer * norm_size
        layer_matmul = attn_w
        if is_moe:
            expert_w, expert_b = _mlp(hidden, spec.moe_intermediate_size, spec.gated_mlp, spec.mlp_bias)
            router = hidden * spec.num_experts
            shared_w, shared_b = (0, 0)
            if spec.shared_expert_intermediate_size:
                shared_w, shared_b = _mlp(hidden, spec.shared_expert_intermediate_size, spec.gated_mlp, spec.mlp_bias)
            shared_gate = hidden if spec.shared_expert_gate else 0
            layer_fixed += router + shared_w + shared_b + shared_gate + (spec.num_experts if spec.router_bias else 0)
            layer_matmul += router + shared_w + shared_gate
            experts_all = spec.num_experts * (expert_w + expert_b)
            experts_used = spec.experts_per_token * (expert_w + expert_b)
            layers.append(LayerParams(
                total=layer_fixed + experts_all,
                active=layer_fixed + experts_used,
                matmul_total=layer_matmul + spec.num_experts * expert_w,
                matmul_active=layer_matmul + spec.experts_per_token * expert_w,
                routed=experts_all,
                routed_active=experts_used,
                linear=attn_w + router + shared_w + shared_gate + spec.num_experts * expert_w,
                replicable=latent + router,
                kv_projection=kv_projection,
            ))
        else:
            layer_fixed += dense_w + dense_b
            layer_matmul += dense_w
            layers.append(LayerParams(
                total=layer_fixed, active=layer_fixed, matmul_total=layer_matmul, matmul_active=layer_matmul,
                routed=0, routed_active=0, linear=attn_w + dense_w, replicable=latent, kv_projection=kv_projection,
            ))
    return tuple(layers)


def count_params(spec: ModelSpec) -> ParamCount:
    """Count every parameter of ``spec``; see :class:`ParamCount` for the fields."""
    hidden = spec.hidden_size
    norm_size = hidden * (2 if spec.norm_bias else 1)
    layers = layer_params(spec)
    total = sum(layer.total for layer in layers)
    active = sum(layer.active for layer in layers)
    matmul_total = sum(layer.matmul_total for layer in layers)
    matmul_active = sum(layer.matmul_active for layer in layers)
    routed_total = sum(layer.routed for layer in layers)
    routed_active = sum(layer.routed_active for layer in layers)
    decoder_linear = sum(layer.linear for layer in layers)

    embed_dim = spec.embed_projection_dim or hidden
    embedding = spec.vocab_size * embed_dim
    positional = spec.learned_positions * hidden
    lm_head = 0 if spec.tie_word_embeddings else spec.vocab_size * embed_dim
    lm_head_bias = spec.vocab_size if spec.lm_head_bias else 0
    projections = 2 * hidden * spec.embed_projection_dim if spec.embed_projection_dim else 0
    final_norm = norm_size if spec.final_norm else 0
    outside = embedding + positional + lm_head + lm_head_bias + projections + final_norm
    head_matmul = spec.vocab_size * embed_dim + projections

    return ParamCount(
        total=total + outside,
        active=active + outside,
        embedding=embedding,
        positional=positional,
        lm_head=lm_head,
        matmul_total=matmul_total + head_matmul,
        matmul_active=matmul_active + head_matmul,
        routed_experts=routed_total,
        routed_active=routed_active,
        decoder_linear=decoder_linear,
    )


def seed_estimate_params(spec: ModelSpec) -> int:
    """The seed's rough estimate: ``12 × layers × hidden²`` (ignores embeddings, GQA, MLP width)."""
    return 12 * spec.num_layers * spec.hidden_size ** 2
