"""Exact parameter counts per architecture, against published totals."""

import json
from pathlib import Path

import pytest

from infermon.model.config import spec_from_config
from infermon.model.loaders import load_preset, preset_names
from infermon.model.params import count_params, seed_estimate_params

from infermon.testing.samples import LLAMA2_7B

PUBLISHED = json.loads((Path(__file__).parent / "data" / "published_params.json").read_text())

CASES = {
    # name: (config, published total, published active or None)
    "llama-2-7b": (LLAMA2_7B, 6_738_415_616, None),
    "mixtral-8x7b": (dict(model_type="mixtral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                          num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                          num_local_experts=8, num_experts_per_tok=2), 46_702_792_704, 12_879_925_248),
    "gpt2": (dict(model_type="gpt2", vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024),
             124_439_808, None),
    "opt-13b": (dict(model_type="opt", vocab_size=50272, hidden_size=5120, ffn_dim=20480, num_hidden_layers=40,
                     num_attention_heads=40, max_position_embeddings=2048, word_embed_proj_dim=5120),
                12_853_473_280, None),
    "falcon-7b": (dict(model_type="falcon", vocab_size=65024, hidden_size=4544, num_hidden_layers=32,
                       num_attention_heads=71, multi_query=True, parallel_attn=True, bias=False),
                  6_921_720_704, None),
    "qwen2.5-7b": (dict(model_type="qwen2", vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                        num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                        tie_word_embeddings=False), 7_615_616_512, None),
    "phi-3-mini": (dict(model_type="phi3", vocab_size=32064, hidden_size=3072, intermediate_size=8192,
                        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32), 3_821_079_552, None),
    "deepseek-v3": (dict(model_type="deepseek_v3", vocab_size=129280, hidden_size=7168, intermediate_size=18432,
                         moe_intermediate_size=2048, num_hidden_layers=61, first_k_dense_replace=3,
                         moe_layer_freq=1, n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8,
                         q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
                         v_head_dim=128, num_attention_heads=128, num_key_value_heads=128,
                         topk_method="noaux_tc"), 671_026_419_200, None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_exact_counts_match_published_totals(name):
    config, total, active = CASES[name]
    counts = count_params(spec_from_config(config))
    assert counts.total == total
    if active is not None:
        assert counts.active == active


def test_deepseek_v3_active_is_about_37b():
    counts = count_params(spec_from_config(CASES["deepseek-v3"][0]))
    assert 36.5e9 < counts.active < 38e9


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_presets_match_published_totals(name):
    loaded = load_preset(name)
    assert loaded is not None, f"published figure for {name} but no preset"
    counts = count_params(loaded.spec)
    assert counts.total == PUBLISHED[name]["params"], PUBLISHED[name].get("source")


def test_at_least_fifteen_presets_and_all_load():
    names = preset_names()
    assert len(names) >= 15
    for name in names:
        loaded = load_preset(name)
        assert loaded is not None and count_params(loaded.spec).total > 0


def test_tied_embeddings_are_counted_once():
    untied = count_params(spec_from_config(LLAMA2_7B))
    tied = count_params(spec_from_config({**LLAMA2_7B, "tie_word_embeddings": True}))
    assert untied.total - tied.total == 32000 * 4096
    # The tied head still multiplies every token: same FLOPs.
    assert untied.matmul_active == tied.matmul_active


def test_gated_mlp_has_three_matrices_plain_has_two():
    gated = count_params(spec_from_config(LLAMA2_7B))
    plain = count_params(spec_from_config({**LLAMA2_7B, "model_type": "gpt_neox", "num_key_value_heads": 32}))
    per_layer_gated = 3 * 4096 * 11008
    per_layer_plain = 2 * 4096 * 11008
    assert gated.matmul_active - plain.matmul_active == 32 * (per_layer_gated - per_layer_plain)


def test_qwen2_counts_qkv_biases():
    base = dict(CASES["qwen2.5-7b"][0])
    with_bias = count_params(spec_from_config(base)).total
    without = count_params(spec_from_config({**base, "model_type": "llama"})).total
    assert with_bias - without == 28 * (3584 + 2 * 512)


def test_embedding_gather_takes_no_flops():
    counts = count_params(spec_from_config(LLAMA2_7B))
    # matmul params: 32 layers of attention + MLP, plus the LM head; not the input embedding or norms.
    assert counts.matmul_active == 32 * (4 * 4096**2 + 3 * 4096 * 11008) + 32000 * 4096
    assert counts.total - counts.matmul_active == 32000 * 4096 + 65 * 4096


def test_unknown_model_type_warns_and_names_the_assumption():
    spec = spec_from_config({**LLAMA2_7B, "model_type": "brandnew"})
    assert any("brandnew" in w and "Llama-style" in w for w in spec.warnings)
    assert count_params(spec).total == 6_738_415_616


def test_seed_estimate_is_rough():
    spec = spec_from_config(LLAMA2_7B)
    assert seed_estimate_params(spec) == 12 * 32 * 4096**2
    assert seed_estimate_params(spec) != count_params(spec).total
