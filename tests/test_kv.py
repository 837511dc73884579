"""KV-cache bytes for MHA, GQA, MQA, MLA, sliding windows and fp8 caches."""

import pytest
from hypothesis import given, strategies as st

from infermon.model.config import spec_from_config
from infermon.model.kv import attention_flops_per_token, kv_bytes_per_sequence, kv_bytes_per_token

from infermon.testing.samples import LLAMA2_7B

LLAMA3_8B = dict(model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                 num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, torch_dtype="bfloat16")


def test_mha_matches_the_seed():
    assert kv_bytes_per_token(spec_from_config(LLAMA2_7B), "fp16") == 2 * 2 * 32 * 4096 == 524288


def test_gqa_is_heads_over_kv_heads_smaller():
    assert kv_bytes_per_token(spec_from_config(LLAMA3_8B), "bf16") == 524288 / 4 == 131072


def test_mqa_keeps_one_kv_head():
    falcon = spec_from_config(dict(model_type="falcon", vocab_size=65024, hidden_size=4544, num_hidden_layers=32,
                                   num_attention_heads=71, multi_query=True))
    assert falcon.attention_kind == "mqa"
    assert kv_bytes_per_token(falcon, "bf16") == 2 * 32 * 1 * 64 * 2


def test_mla_caches_the_latent():
    ds = spec_from_config(dict(model_type="deepseek_v3", vocab_size=129280, hidden_size=7168, intermediate_size=18432,
                               num_hidden_layers=61, num_attention_heads=128, kv_lora_rank=512,
                               qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, q_lora_rank=1536))
    assert ds.attention_kind == "mla"
    assert kv_bytes_per_token(ds, "bf16") == 61 * (512 + 64) * 2


def test_fp8_cache_halves_bf16():
    spec = spec_from_config(LLAMA3_8B)
    assert kv_bytes_per_token(spec, "fp8") * 2 == kv_bytes_per_token(spec, "bf16")


def test_sliding_window_caps_each_sequence():
    mistral = spec_from_config({**LLAMA3_8B, "model_type": "mistral", "sliding_window": 4096})
    per_token = kv_bytes_per_token(mistral, "bf16")
    assert kv_bytes_per_sequence(mistral, "bf16", 1000) == 1000 * per_token
    assert kv_bytes_per_sequence(mistral, "bf16", 32768) == 4096 * per_token


def test_gemma2_alternates_local_and_global_layers():
    gemma2 = spec_from_config(dict(model_type="gemma2", vocab_size=256000, hidden_size=3584, intermediate_size=14336,
                                   num_hidden_layers=42, num_attention_heads=16, num_key_value_heads=8, head_dim=256,
                                   sliding_window=4096))
    assert gemma2.sliding_layers == 21
    per_layer = 2 * 8 * 256 * 2
    assert kv_bytes_per_sequence(gemma2, "bf16", 8192) == (21 * 4096 + 21 * 8192) * per_layer


def test_attention_flops_follow_four_l_c_h_d():
    spec = spec_from_config(LLAMA2_7B)
    assert attention_flops_per_token(spec, 4096) == 4 * 32 * 4096 * 32 * 128


@given(kv_heads=st.sampled_from([1, 2, 4, 8, 16, 32]), more=st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_more_kv_heads_never_means_fewer_bytes(kv_heads, more):
    small, large = sorted((kv_heads, more))
    a = kv_bytes_per_token(spec_from_config({**LLAMA2_7B, "num_key_value_heads": small}), "bf16")
    b = kv_bytes_per_token(spec_from_config({**LLAMA2_7B, "num_key_value_heads": large}), "bf16")
    assert a <= b


@given(context=st.integers(1, 10**6), window=st.integers(1, 10**5))
def test_windowed_sequence_never_exceeds_full(context, window):
    full = spec_from_config(LLAMA3_8B)
    windowed = spec_from_config({**LLAMA3_8B, "model_type": "mistral", "sliding_window": window})
    assert kv_bytes_per_sequence(windowed, "bf16", context) <= kv_bytes_per_sequence(full, "bf16", context)
    assert kv_bytes_per_sequence(windowed, "bf16", context) == pytest.approx(
        min(context, window) * kv_bytes_per_token(windowed, "bf16"))
