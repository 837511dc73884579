"""Tensor, pipeline and data parallelism: per-GPU weights and KV, replication, pipelines, and calc's flags."""

import dataclasses

import pytest
from hypothesis import given, settings, strategies as st

from infermon.model.config import spec_from_config
from infermon.model.figures import model_figures, weight_bytes_read_per_step
from infermon.model.gpu import combine, lookup_gpu
from infermon.model.kv import kv_bytes_per_token
from infermon.model.loaders import load_preset
from infermon.model.parallel import (
    Parallelism,
    kv_bytes_per_token_per_rank,
    kv_heads_per_rank,
    stage_figures,
    stage_layers,
)
from infermon.model.roofline import ceilings, critical_batch, decode_step

from infermon.testing.samples import LLAMA2_7B


def preset(name, **kw):
    return model_figures(load_preset(name).spec, **kw)


def gpus(name, count, dtype="bf16"):
    return combine(lookup_gpu(name), count, dtype)


# ------------------------------------------------------------------ the per-rank rules

def test_kv_heads_split_then_copy():
    assert kv_heads_per_rank(8, 1) == 8
    assert kv_heads_per_rank(8, 4) == 2
    assert kv_heads_per_rank(8, 8) == 1
    assert kv_heads_per_rank(8, 16) == 1  # each head on two ranks
    assert kv_heads_per_rank(1, 8) == 1   # MQA: the one head on every rank


def test_stage_layers_follow_vllms_partition():
    assert [len(r) for r in stage_layers(80, 3)] == [27, 27, 26]
    assert [len(r) for r in stage_layers(32, 2)] == [16, 16]
    assert [len(r) for r in stage_layers(61, 4)] == [15, 15, 16, 15]
    assert stage_layers(5, 5)[4] == range(4, 5)
    with pytest.raises(ValueError):
        stage_layers(4, 5)


def test_falcon_mqa_keeps_its_whole_cache_on_every_rank():
    """falcon-7b has one KV head: 8 ranks each hold all 8,192 B per token, not 1,024."""
    spec = load_preset("falcon-7b").spec
    assert kv_bytes_per_token(spec, "bf16") == 2 * 32 * 1 * 64 * 2 == 8192
    assert kv_bytes_per_token_per_rank(spec, 8, "bf16") == 8192


def test_llama3_70b_on_16_ranks_copies_each_kv_head_twice():
    spec = load_preset("llama-3-70b").spec
    assert kv_bytes_per_token(spec, "bf16") == 2 * 80 * 8 * 128 * 2 == 327_680
    assert kv_bytes_per_token_per_rank(spec, 8, "bf16") == 327_680 / 8
    assert kv_bytes_per_token_per_rank(spec, 16, "bf16") == 327_680 / 8  # not / 16
    assert kv_bytes_per_token_per_rank(spec, 8, "bf16", pp=2) == 327_680 / 16  # 40 layers per stage


def test_mla_latent_is_on_every_rank():
    spec = load_preset("deepseek-v3").spec
    whole = kv_bytes_per_token(spec, "bf16")
    assert whole == 61 * (512 + 64) * 2
    assert kv_bytes_per_token_per_rank(spec, 8, "bf16") == whole
    assert kv_bytes_per_token_per_rank(spec, 8, "bf16", pp=2) == 31 * (512 + 64) * 2


def test_even_split_of_a_dense_mha_model_has_no_copies():
    fig = model_figures(spec_from_config(LLAMA2_7B), dtype="fp16")
    rank = stage_figures(fig, Parallelism(tp=2))
    assert rank.weight_bytes == pytest.approx(fig.weight_bytes / 2)
    assert rank.flops_per_token == pytest.approx(fig.flops_per_token / 2)
    assert rank.kv_bytes_per_token == fig.kv_bytes_per_token / 2
    assert weight_bytes_read_per_step(rank, 1) == pytest.approx(weight_bytes_read_per_step(fig, 1) / 2)


def test_copies_make_a_rank_hold_more_than_an_even_share():
    """Routers (MoE), MLA latent projections and KV projections past h_kv ranks are copied."""
    for name, tp in (("mixtral-8x7b", 8), ("deepseek-v3", 8), ("falcon-7b", 8)):
        fig = preset(name)
        rank = stage_figures(fig, Parallelism(tp=tp))
        assert rank.weight_bytes > fig.weight_bytes / tp, name
        assert rank.weight_bytes < fig.weight_bytes / tp * 1.05, name
        assert rank.flops_per_token > fig.flops_per_token / tp, name


def test_pipeline_stages_hold_their_layers_and_tables():
    fig = model_figures(spec_from_config(LLAMA2_7B), dtype="fp16")
    first, last = (stage_figures(fig, Parallelism(pp=2), s) for s in (0, 1))
    embedding = head = 32000 * 4096 * 2
    assert first.weight_bytes + last.weight_bytes == pytest.approx(fig.weight_bytes)
    assert first.weight_bytes - last.weight_bytes == pytest.approx(embedding - head + 0)
    assert first.gathered_bytes == embedding and last.gathered_bytes == 0
    assert first.spec.num_layers == last.spec.num_layers == 16
    tied = model_figures(spec_from_config({**LLAMA2_7B, "tie_word_embeddings": True}), dtype="fp16")
    a, b = (stage_figures(tied, Parallelism(pp=2), s) for s in (0, 1))
    # A tied table is on both ends: gathered on the first, read whole as the head on the last.
    assert a.gathered_bytes == embedding and b.gathered_bytes == 0
    assert a.weight_bytes + b.weight_bytes == pytest.approx(tied.weight_bytes + embedding)


# ------------------------------------------------------------------ ceilings across GPUs

def test_one_gpu_with_a_parallelism_is_exactly_the_plain_arithmetic():
    for name in ("llama-2-7b", "mixtral-8x7b", "deepseek-v2-lite", "gemma-2-9b"):
        fig, hw = preset(name), gpus("h100", 1)
        plain, plain_step = ceilings(fig, hw, 8, 2048, 0.9, 1e9)
        split, split_step = ceilings(fig, hw, 8, 2048, 0.9, 1e9, parallel=Parallelism())
        assert dataclasses.replace(split, weight_bytes_per_gpu=None, free_bytes_per_gpu=None,
                                   kv_budget_bytes_per_gpu=None, kv_bytes_per_token_per_gpu=None) == plain
        assert split_step == plain_step


def test_positional_signatures_still_work():
    fig = model_figures(spec_from_config(LLAMA2_7B), dtype="fp16", params_override=7e9)
    hw = combine(lookup_gpu("a10"), 1, "fp16", memory_bytes=24e9)  # the seed's 24 GB A10
    ceil, step = ceilings(fig, hw, 1, 4096, 1.0, 0)
    assert ceil.kv_capacity_tokens == 19073
    assert decode_step(fig, hw, 1, 0).tokens_per_s == pytest.approx(600e9 / 14e9)
    assert critical_batch(fig, hw, 0) == pytest.approx(125e12 / 600e9)


def test_falcon_on_8_gpus_holds_an_eighth_of_the_naive_capacity():
    fig, hw = preset("falcon-7b"), gpus("h100", 8)
    naive, _ = ceilings(fig, hw)
    split, _ = ceilings(fig, hw, parallel=Parallelism(tp=8))
    assert split.kv_bytes_per_token_per_gpu == 8192
    assert split.kv_capacity_tokens == int(split.kv_budget_bytes_per_gpu // 8192)
    assert split.kv_budget_bytes_per_gpu == pytest.approx(hw.memory_bytes / 8 * 0.9 - split.weight_bytes_per_gpu - 1e9)
    # (the plain figure also took one reserve for all eight GPUs)
    assert 7.5 < naive.kv_capacity_tokens / split.kv_capacity_tokens < 8.2


def test_deepseek_v3_on_8_h200_holds_well_under_a_million_tokens():
    """About 0.6 M tokens at the datasheet's 141 GB, 0.71 M at the 143,771 MiB NVML reports; not 4.85 M."""
    fig, hw = preset("deepseek-v3", dtype="fp8"), gpus("h200", 8, "fp8")
    naive, _ = ceilings(fig, hw)
    split, _ = ceilings(fig, hw, parallel=Parallelism(tp=8))
    assert split.kv_bytes_per_token_per_gpu == 61 * 576 * 2  # the bf16 latent, whole on every rank
    assert 0.6e6 < split.kv_capacity_tokens < 0.75e6
    assert naive.kv_capacity_tokens > 7 * split.kv_capacity_tokens


def test_tensor_parallel_speeds_decode_and_keeps_the_critical_batch():
    fig = model_figures(spec_from_config(LLAMA2_7B), dtype="fp16")
    one, two = gpus("a10", 1, "fp16"), gpus("a10", 2, "fp16")
    single = decode_step(fig, one, 1, 0)
    split = decode_step(fig, two, 1, 0, parallel=Parallelism(tp=2))
    assert split.tokens_per_s == pytest.approx(2 * single.tokens_per_s)
    assert split.bytes == pytest.approx(single.bytes)  # the same bytes, read by two GPUs at once
    assert critical_batch(fig, two, 0, parallel=Parallelism(tp=2)) == pytest.approx(critical_batch(fig, one, 0))


def test_pipeline_parallel_does_not_speed_a_memory_bound_decode():
    """Each stage reads its weights once per micro-batch: at a fixed batch, tokens/s stay those of one GPU."""
    fig = model_figures(spec_from_config(LLAMA2_7B), dtype="fp16")
    one, two = gpus("a10", 1, "fp16"), gpus("a10", 2, "fp16")
    for batch in (1, 2, 64):
        single = decode_step(fig, one, batch, 0).tokens_per_s
        piped = decode_step(fig, two, batch, 0, parallel=Parallelism(pp=2)).tokens_per_s
        assert 0.9 * single <= piped <= single * (1 + 1e-9), batch
    # Latency at batch 1 is the same: one token walks both stages.
    assert decode_step(fig, two, 1, 0, parallel=Parallelism(pp=2)).time_s == pytest.approx(
        decode_step(fig, one, 1, 0).time_s)
    # But the KV budget more than doubles: each GPU holds half the weights.
    single_cap = ceilings(fig, one, memory_utilization=1.0, reserve_bytes=0)[0].kv_capacity_tokens
    piped_cap = ceilings(fig, two, memory_utilization=1.0, reserve_bytes=0, parallel=Parallelism(pp=2))[0]
    assert piped_cap.kv_capacity_tokens > 2 * single_cap


def test_data_parallel_replicas_add_up():
    fig, eight, two = preset("llama-3.1-8b"), gpus("l4", 8), gpus("l4", 2)
    par = Parallelism.for_gpus(8, tp=2)
    assert par == Parallelism(tp=2, pp=1, dp=4)
    whole, _ = ceilings(fig, eight, 64, 1024, parallel=par)
    one, _ = ceilings(fig, two, 16, 1024, parallel=Parallelism(tp=2))
    assert whole.kv_capacity_tokens == 4 * one.kv_capacity_tokens
    assert whole.decode_tokens_per_s == pytest.approx(4 * one.decode_tokens_per_s)
    assert whole.max_sequences == 4 * one.max_sequences
    with pytest.raises(ValueError):
        Parallelism.for_gpus(6, tp=4)


def test_hardware_and_split_must_agree():
    fig = preset("llama-3.1-8b")
    with pytest.raises(ValueError, match="hardware of 2 GPU"):
        decode_step(fig, gpus("l4", 2), 1, 0, parallel=Parallelism(tp=4))


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(["llama-2-7b", "llama-3-70b", "falcon-7b", "mixtral-8x7b", "deepseek-v3",
                             "qwen2.5-7b", "gemma-2-9b", "gpt2"]),
       tp=st.sampled_from([1, 2, 4, 8, 16]), pp=st.sampled_from([1, 2, 3, 4]))
def test_a_rank_never_holds_less_than_an_even_share(name, tp, pp):
    fig = preset(name)
    stages = [stage_figures(fig, Parallelism(tp=tp, pp=pp), s) for s in range(pp)]
    assert sum(s.weight_bytes for s in stages) * tp >= fig.weight_bytes * (1 - 1e-9)
    worst_kv = max(s.kv_bytes_per_token for s in stages)
    assert fig.kv_bytes_per_token / (tp * pp) * (1 - 1e-9) <= worst_kv <= fig.kv_bytes_per_token
    assert all(s.weight_bytes > 0 and weight_bytes_read_per_step(s, 1) > 0 for s in stages)


# ------------------------------------------------------------------ calc's flags

def test_calc_gpus_is_a_shorthand_for_tp(cli):
    a = cli("calc", "--model", "falcon-7b", "--gpu", "h100", "--gpus", "8", "--json").json()
    b = cli("calc", "--model", "falcon-7b", "--gpu", "h100", "--tp", "8", "--json").json()
    assert a == b
    assert a["parallel"] == {**a["parallel"], "tp": 8, "pp": 1, "dp": 1, "gpus": 8, "kv_heads_per_gpu": 1,
                             "layers_per_gpu": 32, "kv_bytes_per_token_per_gpu": 8192}
    assert a["gpu"]["count"] == 8


def test_calc_replicas_and_pipeline(cli):
    data = cli("calc", "--model", "llama-3-70b", "--gpu", "h100", "--tp", "4", "--pp", "2", "--gpus", "16",
               "--json").json()
    assert (data["parallel"]["tp"], data["parallel"]["pp"], data["parallel"]["dp"]) == (4, 2, 2)
    assert data["parallel"]["layers_per_gpu"] == 40 and data["parallel"]["kv_heads_per_gpu"] == 2
    assert data["gpu"]["count"] == 16


def test_calc_explain_shows_the_per_gpu_arithmetic(cli):
    out = cli("calc", "--model", "llama-3-70b", "--gpu", "h100", "--gpus", "16", "--context", "8192", "--explain").out
    out = " ".join(out.split())  # the console wraps long lines
    assert "max(1, ⌈kv_heads ÷ TP⌉)" in out and "2 × 80 × 1 × 128 × 2 = 40,960 B" in out
    assert "KV bytes/token per GPU" in out and "2.0× an even split" in out
    assert "stage 1 (80 layers)" in out


@pytest.mark.parametrize("args, message", [
    (["--gpus", "6", "--tp", "4"], "cannot be split"),
    (["--pp", "100"], "more pipeline stages than the model's 32 layers"),
    (["--tp", "0"], "--tp must be a positive integer"),
])
def test_calc_bad_splits_are_one_line(cli, args, message):
    result = cli("calc", "--model", "llama-2-7b", "--gpu", "a10", *args)
    assert result.status == 2 and message in result.err and result.err.count("\n") == 1


# ------------------------------------------------------------------ the live view's bytes per step

def test_step_bytes_across_gpus_match_the_decode_step():
    from infermon.model.work import step_bytes

    for name, par in (("falcon-7b", Parallelism(tp=8)), ("llama-3-70b", Parallelism(tp=4, pp=2, dp=2)),
                      ("deepseek-v2-lite", Parallelism(tp=2)), ("mixtral-8x7b", Parallelism(pp=4))):
        fig, hw = preset(name), gpus("h100", par.gpus)
        for batch, context in ((1, 0), (16, 4096), (64, 1000)):
            assert step_bytes(fig, batch, context, parallel=par) == pytest.approx(
                decode_step(fig, hw, batch, context, parallel=par).bytes)
        assert step_bytes(fig, 8, 100, parallel=Parallelism()) == step_bytes(fig, 8, 100)


def test_modeled_bandwidth_counts_the_copied_kv_of_a_split():
    """falcon-7b at TP 8: every rank reads the one KV head and its K/V weights."""
    from infermon.model.work import modeled_bandwidth

    fig = preset("falcon-7b")
    plain = modeled_bandwidth(fig, 50.0, 16, 800.0, 4096)
    split = modeled_bandwidth(fig, 50.0, 16, 800.0, 4096, parallel=Parallelism(tp=8))
    kv_read = 4096 * fig.kv_bytes_per_token        # one token's cache, as one device reads it
    kv_projection = 32 * 2 * 4544 * 64 * 2         # the K/V weights of the one head, every layer, bf16
    # (rel 1e-6: the final norm's few kB are shared out over the layers)
    assert split == pytest.approx(plain + 800 * 7 * kv_read + 50 * 7 * kv_projection, rel=1e-6)
