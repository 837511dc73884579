"""Levers (issue 17's arithmetic): each pinned on the seed's A10 + Llama-2-7B by hand, and their properties."""

import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from infermon.model.config import spec_from_config
from infermon.model.figures import model_figures
from infermon.model.gpu import combine, lookup_gpu
from infermon.model.levers import (
    CEILINGS,
    OperatingPoint,
    Speculation,
    expected_tokens_per_step,
    levers,
)
from infermon.model.loaders import load_preset
from infermon.model.parallel import Parallelism

from infermon.testing.samples import LLAMA2_7B

# The seed: an A10 (24 GB, 600 GB/s, 125 TFLOP/s fp16) and a nominal 7e9-parameter fp16 Llama-2-7B.
W, BW, PEAK, KV = 14e9, 600e9, 125e12, 524_288  # bytes, B/s, FLOP/s, B/token
F = 2 * 7e9                                      # FLOP/token
C = 1024                                         # tokens in each sequence's cache


def seed():
    fig = model_figures(spec_from_config(LLAMA2_7B), dtype="fp16", params_override=7e9)
    hw = combine(lookup_gpu("a10"), 1, "fp16", memory_bytes=24e9)
    return fig, hw


def seed_levers(batch=1, context=C, measured=None, **spec):
    fig, hw = seed()
    point = OperatingPoint(batch=batch, context=context, measured_tokens_per_s=measured,
                           memory_utilization=1.0, reserve_bytes=0)
    return levers(fig, hw, point, Speculation(**spec) if spec else None)


def rate(batch, weight_bytes=W, kv=KV, context=C):
    """Tokens/s of a memory-bound decode step, by hand: B ÷ ((W + B·C·KV) ÷ BW)."""
    return batch / ((weight_bytes + batch * context * kv) / BW)


# ------------------------------------------------------------------ pinned by hand

def test_baseline():
    result = seed_levers()
    assert result.baseline.tokens_per_s == pytest.approx(rate(1)) == pytest.approx(41.274, abs=1e-3)
    assert result.baseline.latency_s == pytest.approx((W + C * KV) / BW)
    assert result.baseline.kv_capacity_tokens == 19_073  # ⌊10e9 / 524,288⌋
    assert result.efficiency is None and result.baseline.expected_tokens_per_s is None


def test_batch_levers():
    result = seed_levers()
    assert result.get("batch_x2").tokens_per_s == pytest.approx(rate(2)) == pytest.approx(79.61, abs=0.01)
    assert result.get("batch_x4").tokens_per_s == pytest.approx(rate(4)) == pytest.approx(148.63, abs=0.01)
    limit = result.get("batch_kv_limit")
    assert limit.batch == 18 == 19_073 // C
    assert limit.tokens_per_s == pytest.approx(rate(18)) == pytest.approx(456.4, abs=0.1)
    assert limit.ceiling == "kv_capacity"
    # At C = 1024 a sequence's KV (537 MB per step) costs more time than its FLOPs: never compute-bound.
    assert C * KV / BW > F / PEAK
    critical = result.get("batch_critical")
    assert critical.tokens_per_s is None and "never compute-bound" in critical.why


def test_critical_batch_with_an_empty_cache_is_the_ridge():
    lever = seed_levers(context=0).get("batch_critical")
    assert lever.batch == pytest.approx(PEAK / BW)  # 208.3: W / BW = B·F / peak
    assert lever.ceiling == "compute"
    assert lever.tokens_per_s == pytest.approx(PEAK / F, rel=1e-6)


def test_weight_levers():
    result = seed_levers()
    int8 = result.get("weights_int8")
    assert int8.tokens_per_s == pytest.approx(rate(1, weight_bytes=7e9)) == pytest.approx(79.61, abs=0.01)
    assert int8.kv_capacity_tokens == (24e9 - 7e9) // KV == 32_424
    int4 = result.get("weights_int4")
    w4 = 7e9 * (0.5 + 2 / 128)  # 4-bit values + one fp16 scale per 128 weights
    assert int4.tokens_per_s == pytest.approx(rate(1, weight_bytes=w4)) == pytest.approx(144.71, abs=0.01)
    assert int4.kv_capacity_tokens == (24e9 - w4) // KV == 38_892


def test_kv_fp8_and_context_levers():
    result = seed_levers()
    fp8 = result.get("kv_fp8")
    assert fp8.tokens_per_s == pytest.approx(rate(1, kv=KV / 2)) == pytest.approx(42.05, abs=0.01)
    assert fp8.kv_capacity_tokens == 10e9 // (KV / 2) == 38_146
    assert result.get("context_half").tokens_per_s == pytest.approx(rate(1, context=512))
    assert result.get("context_x2").tokens_per_s == pytest.approx(rate(1, context=2048)) == pytest.approx(39.80, abs=0.01)


def test_speculative_decoding():
    k, alpha = 4, 0.7
    expected = (1 - alpha ** (k + 1)) / (1 - alpha)
    assert expected_tokens_per_step(k, alpha) == pytest.approx(expected) == pytest.approx(2.7731, abs=1e-4)
    step = (W + C * KV) / BW                 # the target's step (memory-bound)
    verify = max((W + C * KV) / BW, (k + 1) * F / PEAK)  # 5 tokens through: weights and cache read once
    cycle = k * 0.1 * step + verify           # assumed draft: a tenth of the target's step
    lever = seed_levers().get("speculative")
    assert lever.tokens_per_s == pytest.approx(expected / cycle) == pytest.approx(81.76, abs=0.01)
    assert lever.latency_s == pytest.approx(cycle / expected)
    assert "assumed" in lever.change and "assumed" in lever.formula


def test_speculative_with_a_draft_model_uses_its_figures():
    fig, hw = seed()
    draft = model_figures(load_preset("llama-3.2-1b").spec, dtype="fp16")
    point = OperatingPoint(batch=1, context=C, memory_utilization=1.0, reserve_bytes=0)
    lever = levers(fig, hw, point, Speculation(draft=draft, acceptance=0.8, acceptance_source="engine-reported")
                   ).get("speculative")
    assert "Llama 3.2 1B" in lever.formula and "engine-reported" in lever.change


def test_tensor_parallel_over_two_a10s():
    lever = seed_levers().get("tensor_parallel")
    # Per GPU: half the weights, 16 of 32 KV heads.
    assert lever.tokens_per_s == pytest.approx(1 / ((7e9 + C * KV / 2) / BW)) == pytest.approx(82.55, abs=0.01)
    assert lever.kv_capacity_tokens == (24e9 - 7e9) // (KV / 2) == 64_849
    assert "all-reduce time not counted" in lever.formula


def test_measured_efficiency_is_applied_and_said():
    result = seed_levers(measured=30)
    assert result.efficiency == pytest.approx(30 / rate(1))
    int4 = result.get("weights_int4")
    assert int4.expected_tokens_per_s == pytest.approx(int4.tokens_per_s * 30 / rate(1))
    assert int4.expected_latency_s == pytest.approx(int4.latency_s / result.efficiency)
    assert "applies that efficiency" in result.efficiency_note


def test_engine_capacity_scales_the_scenarios():
    fig, hw = seed()
    point = OperatingPoint(batch=1, context=C, kv_capacity_tokens=19_073 / 2, memory_utilization=1.0, reserve_bytes=0)
    result = levers(fig, hw, point)
    assert result.get("batch_kv_limit").batch == (19_073 / 2) // C
    assert result.get("kv_fp8").kv_capacity_tokens == pytest.approx(38_146 / 2)


def test_levers_that_do_not_apply_say_why():
    fig, hw = seed()
    int4 = model_figures(spec_from_config(LLAMA2_7B), dtype="int4", kv_dtype="fp8", params_override=7e9)
    result = levers(int4, hw, OperatingPoint(batch=1, context=C))
    assert result.get("weights_int8").tokens_per_s is None and "already" in result.get("weights_int8").why
    assert result.get("weights_int4").tokens_per_s is None
    assert "already fp8" in result.get("kv_fp8").why
    empty = levers(fig, hw, OperatingPoint(batch=1, context=0))
    assert "no batch limit" in empty.get("batch_kv_limit").why
    assert empty.get("context_x2").tokens_per_s is None


def test_batch_capped_at_the_kv_limit():
    result = seed_levers(batch=12)
    capped = result.get("batch_x2")
    assert capped.batch == 18 and capped.ceiling == "kv_capacity" and "holds 18 sequences" in capped.why
    full = seed_levers(batch=18).get("batch_x2")
    assert full.tokens_per_s is None and full.ceiling == "kv_capacity"


# ------------------------------------------------------------------ properties

MODELS = ["llama-2-7b", "llama-3.1-8b", "mixtral-8x7b", "qwen2.5-7b", "gemma-2-9b", "deepseek-v2-lite", "falcon-7b"]
GPUS = ["a10", "h100", "l4", "a100"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(MODELS), gpu=st.sampled_from(GPUS), batch=st.integers(1, 256),
       context=st.integers(0, 16_384), count=st.sampled_from([1, 2]), measured=st.none() | st.floats(1, 1e4))
def test_every_lever_stays_under_the_roofs_and_names_its_ceiling(name, gpu, batch, context, count, measured):
    fig = model_figures(load_preset(name).spec, dtype="bf16")
    hw = combine(lookup_gpu(gpu), count, "bf16")
    point = OperatingPoint(batch=batch, context=context, measured_tokens_per_s=measured,
                           parallel=Parallelism(tp=count))
    result = levers(fig, hw, point)
    base = result.baseline.tokens_per_s
    if base is None:
        # The weights do not fit: only levers that make them fit carry figures, and say so.
        assert result.baseline.ceiling == "memory" and "do not fit" in result.baseline.why
        assert all(lever.why for lever in result.levers)
        return
    for lever in (result.baseline, *result.levers):
        assert lever.ceiling in CEILINGS + (None,) if lever.tokens_per_s is None else lever.ceiling in CEILINGS
        if lever.tokens_per_s is None:
            assert lever.why
            continue
        assert math.isfinite(lever.tokens_per_s) and lever.tokens_per_s > 0
        assert lever.gain == pytest.approx(lever.tokens_per_s / base)
        scale = 2 if lever.key == "tensor_parallel" else 1
        # No lever beats the compute roof of the GPUs it runs on.
        assert lever.tokens_per_s <= scale * hw.peak_flops / fig.flops_per_token * (1 + 1e-9)
        if measured is not None:
            assert lever.expected_tokens_per_s == pytest.approx(lever.tokens_per_s * measured / base)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(MODELS), gpu=st.sampled_from(GPUS), batch=st.integers(1, 64),
       context=st.integers(1, 8192))
def test_levers_are_monotonic_where_they_must_be(name, gpu, batch, context):
    fig = model_figures(load_preset(name).spec, dtype="bf16")
    hw = combine(lookup_gpu(gpu), 1, "bf16")
    result = levers(fig, hw, OperatingPoint(batch=batch, context=context))
    base = result.baseline.tokens_per_s
    if base is None:
        return  # the weights do not fit this GPU (covered above)
    if batch * context > result.baseline.kv_capacity_tokens:
        assert any("cannot run as given" in note for note in result.notes)
        return  # the point itself is beyond the cache: nothing to be monotonic against
    x2, x4 = result.get("batch_x2"), result.get("batch_x4")
    if x2.tokens_per_s is not None:
        assert x2.tokens_per_s >= base * (1 - 1e-9)
        assert x2.batch * context <= result.baseline.kv_capacity_tokens
    if x4.tokens_per_s is not None and x2.tokens_per_s is not None:
        assert x4.tokens_per_s >= x2.tokens_per_s * (1 - 1e-9)
    limit = result.get("batch_kv_limit")
    if limit.tokens_per_s is not None:
        assert limit.batch * context <= result.baseline.kv_capacity_tokens
        assert (limit.batch + 1) * context > result.baseline.kv_capacity_tokens
    int8, int4 = result.get("weights_int8"), result.get("weights_int4")
    assert int8.tokens_per_s >= base * (1 - 1e-9) and int4.tokens_per_s >= int8.tokens_per_s * (1 - 1e-9)
    assert int4.kv_capacity_tokens >= int8.kv_capacity_tokens >= result.baseline.kv_capacity_tokens
    assert result.get("kv_fp8").tokens_per_s >= base * (1 - 1e-9)
    half, double = result.get("context_half"), result.get("context_x2")
    assert half.tokens_per_s >= base * (1 - 1e-9)
    if double.tokens_per_s is not None and double.batch == batch:
        assert double.tokens_per_s <= base * (1 + 1e-9)
    assert result.get("tensor_parallel").tokens_per_s >= base * (1 - 1e-9)


@given(k=st.integers(1, 16), a=st.floats(0, 1), b=st.floats(0, 1))
def test_speculation_yields_between_one_and_k_plus_one_and_rises_with_acceptance(k, a, b):
    low, high = sorted((a, b))
    assert 1 - 1e-12 <= expected_tokens_per_step(k, low) <= expected_tokens_per_step(k, high) + 1e-12
    assert expected_tokens_per_step(k, high) <= k + 1 + 1e-12


def test_speculation_that_is_never_accepted_costs_and_says_so():
    lever = seed_levers(acceptance=0.0).get("speculative")
    assert lever.gain < 1 and "costs more than it yields" in lever.why


def test_weights_that_do_not_fit_leave_only_the_levers_that_make_them_fit():
    fig = model_figures(load_preset("llama-2-13b").spec)  # 26 GB of fp16 weights
    hw = combine(lookup_gpu("a10"), 1, "fp16")             # 24.1 GB
    result = levers(fig, hw, OperatingPoint(batch=1, context=1024, measured_tokens_per_s=10))
    assert result.baseline.tokens_per_s is None and result.baseline.ceiling == "memory"
    assert result.efficiency is None
    int8 = result.get("weights_int8")
    assert int8.tokens_per_s > 0 and int8.why == "makes the weights fit" and int8.gain is None
    assert result.get("tensor_parallel").tokens_per_s > 0


# ------------------------------------------------------------------ calc --levers

SEED = ["calc", "--model", "llama-2-7b", "--params", "7e9", "--gpu", "a10", "--gpu-memory", "24GB", "--dtype", "fp16",
        "--memory-utilization", "1.0", "--reserve-bytes", "0", "--context", "1024"]


def test_calc_levers_json(cli):
    data = cli(*SEED, "--tokens-per-s", "30", "--levers", "--json").json()["levers"]
    assert data["baseline"]["tokens_per_s"] == pytest.approx(rate(1))
    assert data["efficiency"] == pytest.approx(30 / rate(1))
    items = {item["key"]: item for item in data["items"]}
    assert set(items) == {"batch_x2", "batch_x4", "batch_kv_limit", "batch_critical", "weights_int8", "weights_int4",
                          "kv_fp8", "context_half", "context_x2", "speculative", "tensor_parallel"}
    assert items["weights_int4"]["tokens_per_s"] == pytest.approx(144.71, abs=0.01)
    assert items["batch_kv_limit"]["ceiling"] == "kv_capacity" and items["batch_kv_limit"]["batch"] == 18
    assert items["batch_critical"]["tokens_per_s"] is None and items["batch_critical"]["why"]
    for item in items.values():
        assert set(item) == {"key", "name", "change", "batch", "context", "tokens_per_s", "latency_s", "ceiling", "gain",
                             "kv_capacity_tokens", "expected_tokens_per_s", "expected_latency_s", "why", "formula"}


def test_calc_levers_table_and_explain(cli):
    out = " ".join(cli(*SEED, "--tokens-per-s", "30", "--levers", "--explain").out.split())
    for text in ("Levers at batch 1, context 1,024", "weights int4", "144.7", "3.51×", "kv capacity", "at 73% eff.",
                 "105.2", "the last column applies that efficiency to every lever",
                 "How the levers are computed", "E = (1 − α^(k+1)) ÷ (1 − α) = (1 − 0.7^5) ÷ (1 − 0.7) = 2.773",
                 "draft step assumed 0.1 × the target's step", "B = ⌊capacity ÷ C⌋ = ⌊19,073 ÷ 1,024⌋ = 18"):
        assert text in out, text


def test_calc_speculation_options(cli):
    given = cli(*SEED, "--levers", "--spec-tokens", "2", "--acceptance", "0.9", "--draft-cost", "0.05", "--json").json()
    lever = {i["key"]: i for i in given["levers"]["items"]}["speculative"]
    e = (1 - 0.9 ** 3) / 0.1
    step = (W + C * KV) / BW
    assert lever["tokens_per_s"] == pytest.approx(e / (2 * 0.05 * step + max(step, 3 * F / PEAK)))
    assert "(given)" in lever["change"]
    drafted = cli(*SEED, "--levers", "--draft-model", "llama-3.2-1b", "--json").json()
    assert "Llama 3.2 1B" in {i["key"]: i for i in drafted["levers"]["items"]}["speculative"]["formula"]


@pytest.mark.parametrize("args, message", [
    (["--acceptance", "1.5"], "--acceptance"), (["--acceptance", "nan"], "--acceptance"),
    (["--draft-cost", "0"], "--draft-cost"), (["--spec-tokens", "1000"], "--spec-tokens"),
    (["--draft-model", "no-such-model"], "--draft-model"),
])
def test_calc_levers_bad_input(cli, args, message):
    result = cli(*SEED, "--levers", *args)
    assert result.status == 2 and message in result.err and result.err.count("\n") == 1


@given(k=st.integers(1, 12), alpha=st.floats(0.0, 1.0))
def test_acceptance_from_the_engines_rate_inverts_the_early_stop(k, alpha):
    from infermon.model.levers import acceptance_from_rate

    rate = sum(alpha ** i for i in range(1, k + 1)) / k  # accepted ÷ drafted, drafts after a rejection dropped
    assert acceptance_from_rate(rate, k) == pytest.approx(alpha, abs=1e-6)
    assert acceptance_from_rate(0.0, k) == 0.0 and acceptance_from_rate(1.0, k) == 1.0


def test_live_levers_apply_each_ticks_measured_rate_exactly():
    """The live view keeps the modeled levers while the operating point holds still and applies every
    tick's measured rate to them: the efficiency is this tick's rate, not the one they were built at."""
    from infermon.testing import scripted

    views = [view for view in scripted.views(12) if view.levers is not None and view.levers.efficiency is not None]
    rates = {view.figures.generation_tokens_per_s.value for view in views}
    assert len(views) >= 8 and len(rates) >= 2  # the scripted rate moves (600, 620, 560 tokens/s…)
    for view in views:
        measured = view.figures.generation_tokens_per_s.value
        found = view.levers
        assert found.efficiency == pytest.approx(measured / found.baseline.tokens_per_s, rel=1e-12)
        for lever in found.levers:
            if lever.tokens_per_s is not None:
                assert lever.expected_tokens_per_s == pytest.approx(lever.tokens_per_s * found.efficiency, rel=1e-12)


def test_the_measured_rate_is_applied_as_dataclasses_replace_would():
    """``with_measured_rate`` copies the levers with ``evolve`` (no ``__init__``): the result must
    equal what ``dataclasses.replace`` builds, and the modeled levers stay as they were."""
    import dataclasses

    from infermon.model.levers import with_measured_rate
    from infermon.testing import scripted

    found = next(view.levers for view in scripted.views(6) if view.levers is not None and view.levers.levers)
    before = dataclasses.asdict(found)
    measured = 0.8 * found.baseline.tokens_per_s
    applied = with_measured_rate(found, measured)
    eff = measured / found.baseline.tokens_per_s

    def by_replace(lever):
        return dataclasses.replace(
            lever, expected_tokens_per_s=lever.tokens_per_s * eff if lever.tokens_per_s is not None else None,
            expected_latency_s=lever.latency_s / eff if lever.latency_s is not None else None)

    assert applied.baseline == by_replace(found.baseline)
    assert applied.levers == tuple(by_replace(lever) for lever in found.levers)
    assert applied.efficiency == pytest.approx(0.8)
    assert dataclasses.asdict(found) == before
