"""Roofline formulas: ridge, capacity, decode step, critical batch, MoE reads, achieved figures."""

import pytest
from hypothesis import given, strategies as st

from infermon.model.config import spec_from_config
from infermon.model.figures import expert_fraction_read, model_figures, weight_bytes_read_per_step
from infermon.model.gpu import combine, lookup_gpu
from infermon.model.roofline import (
    achieved,
    ceilings,
    critical_batch,
    decode_step,
    kv_budget_bytes,
    kv_capacity_tokens,
    max_sequences,
    ops_per_byte,
    prefill_time_s,
)

from infermon.testing.samples import LLAMA2_7B

MIXTRAL = dict(model_type="mixtral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
               num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               num_local_experts=8, num_experts_per_tok=2, torch_dtype="bfloat16")


def a10():
    # The seed's A10: its marketing 24 GB (the table holds the 23,028 MiB NVML reports).
    return combine(lookup_gpu("a10"), 1, "fp16", memory_bytes=24e9)


def seed_figures():
    return model_figures(spec_from_config(LLAMA2_7B), dtype="fp16", params_override=7e9)


def test_ridge_is_peak_over_bandwidth():
    assert ops_per_byte(125e12, 600e9) == pytest.approx(208.333, rel=1e-5)


def test_budget_and_capacity():
    assert kv_budget_bytes(24e9, 14e9, 1.0, 0) == 10e9
    assert kv_budget_bytes(24e9, 14e9, 0.9, 1e9) == pytest.approx(6.6e9)
    assert kv_budget_bytes(24e9, 30e9, 1.0, 0) == 0
    assert kv_capacity_tokens(10e9, 524288) == 19073
    assert max_sequences(10e9, 4096 * 524288) == 4


def test_decode_step_is_memory_bound_at_batch_one():
    step = decode_step(seed_figures(), a10(), batch=1, context=0)
    assert step.time_s == pytest.approx(14e9 / 600e9)
    assert step.tokens_per_s == pytest.approx(600e9 / 14e9)
    assert step.bound == "memory"


def test_decode_step_reads_the_kv_cache():
    step = decode_step(seed_figures(), a10(), batch=2, context=1000)
    assert step.bytes == pytest.approx(14e9 + 2 * 1000 * 524288)


def test_large_batch_becomes_compute_bound_and_critical_batch_is_the_ridge():
    fig, hw = seed_figures(), a10()
    # dense fp16, empty cache: B* = ridge × bytes/param ÷ 2 = 208.3
    assert critical_batch(fig, hw, 0) == pytest.approx(125e12 / 600e9, rel=1e-6)
    assert decode_step(fig, hw, 200, 0).bound == "memory"
    assert decode_step(fig, hw, 220, 0).bound == "compute"


def test_critical_batch_none_when_kv_reads_outgrow_flops():
    assert critical_batch(seed_figures(), a10(), 4096) is None


def test_prefill_follows_the_seed_and_floors_at_one_weight_read():
    fig, hw = seed_figures(), a10()
    assert prefill_time_s(fig, hw, 350) == pytest.approx(350 * 14e9 / 125e12)
    assert prefill_time_s(fig, hw, 10) == pytest.approx(14e9 / 600e9)


def test_embedding_gather_reads_only_rows():
    fig = model_figures(spec_from_config(LLAMA2_7B), dtype="fp16")
    embedding = 32000 * 4096 * 2
    assert weight_bytes_read_per_step(fig, 1) == pytest.approx(fig.weight_bytes - embedding + 4096 * 2)


def test_moe_reads_only_the_experts_hit():
    fig = model_figures(spec_from_config(MIXTRAL))
    one = weight_bytes_read_per_step(fig, 1)
    many = weight_bytes_read_per_step(fig, 64)
    assert one < many < fig.weight_bytes + 1
    assert expert_fraction_read(2, 8, 1) == pytest.approx(0.25)
    assert expert_fraction_read(2, 8, 2) == pytest.approx(1 - 0.75**2)
    # batch 1 reads the dense part and 2 of 8 experts per layer
    expert_bytes = 32 * 8 * 3 * 4096 * 14336 * 2
    assert one == pytest.approx(fig.weight_bytes - expert_bytes * 0.75 - 32000 * 4096 * 2 + 4096 * 2)


def test_moe_critical_batch_solves_the_nonlinear_crossing():
    fig = model_figures(spec_from_config(MIXTRAL))
    hw = combine(lookup_gpu("h100-sxm"), 1, "bf16")
    batch = critical_batch(fig, hw, 0)
    step = decode_step(fig, hw, batch, 0)
    assert step.memory_time_s == pytest.approx(step.compute_time_s, rel=1e-6)


def test_tensor_parallel_adds_memory_bandwidth_and_flops():
    one = combine(lookup_gpu("a100"), 1, "bf16")
    four = combine(lookup_gpu("a100"), 4, "bf16")
    assert four.memory_bytes == 4 * one.memory_bytes
    assert four.bandwidth_bytes_per_s == 4 * one.bandwidth_bytes_per_s
    assert four.peak_flops == 4 * one.peak_flops


def test_achieved_at_the_ceiling_is_full_mbu():
    fig, hw = seed_figures(), a10()
    result = achieved(fig, hw, tokens_per_s=600e9 / 14e9, batch=1, context=0)
    assert result.mbu == pytest.approx(1.0)
    assert result.flops_per_s == pytest.approx(600e9 / 14e9 * 14e9)
    assert result.mfu == pytest.approx(result.flops_per_s / 125e12)


@given(memory=st.floats(1e9, 2e12), weights=st.floats(0, 3e12), util=st.floats(0.01, 1.0),
       reserve=st.floats(0, 1e11), kv=st.floats(1, 1e7))
def test_capacity_is_never_negative(memory, weights, util, reserve, kv):
    budget = kv_budget_bytes(memory, weights, util, reserve)
    assert budget >= 0
    assert kv_capacity_tokens(budget, kv) >= 0


@given(batch=st.integers(1, 4096), context=st.integers(0, 131072))
def test_decode_rate_never_exceeds_either_roof(batch, context):
    fig, hw = seed_figures(), a10()
    step = decode_step(fig, hw, batch, context)
    assert step.tokens_per_s <= hw.peak_flops / fig.flops_per_token * (1 + 1e-9)
    assert step.tokens_per_s <= batch * hw.bandwidth_bytes_per_s / fig.weight_bytes * (1 + 1e-9)


@given(batch=st.integers(1, 2048))
def test_more_batch_never_lowers_throughput_with_an_empty_cache(batch):
    fig, hw = seed_figures(), a10()
    assert decode_step(fig, hw, batch + 1, 0).tokens_per_s >= decode_step(fig, hw, batch, 0).tokens_per_s * (1 - 1e-12)


def test_ceilings_bundle_matches_the_parts():
    fig, hw = seed_figures(), a10()
    ceil, step = ceilings(fig, hw, batch=1, context=4096, memory_utilization=1.0, reserve_bytes=0)
    assert ceil.kv_capacity_tokens == 19073 and ceil.max_sequences == 4
    assert ceil.decode_step_time_s == step.time_s
    assert ceil.bound == "memory"


@given(context=st.integers(0, 4096), params=st.sampled_from([None, 7e9]))
def test_dense_critical_batch_is_where_the_two_times_meet(context, params):
    fig = model_figures(spec_from_config(LLAMA2_7B), dtype="fp16", params_override=params)
    hw = combine(lookup_gpu("h100-sxm"), 1, "fp16")
    batch = critical_batch(fig, hw, context)
    if batch is None:
        # KV reads per sequence outgrow its FLOPs: memory time stays ahead at any batch.
        step = decode_step(fig, hw, 100_000, context)
        assert step.memory_time_s >= step.compute_time_s
        return
    step = decode_step(fig, hw, batch, context)
    assert step.memory_time_s == pytest.approx(step.compute_time_s, rel=1e-6)
