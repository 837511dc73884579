"""Live analysis from scripted rates: MBU, MFU, intensity, bound, verdict, headroom."""

import pytest

from infermon.model.analysis import LiveRates, analyze
from infermon.model.config import spec_from_config
from infermon.model.figures import model_figures, weight_bytes_read_per_step
from infermon.model.gpu import combine, lookup_gpu

from samples import LLAMA2_7B


def fig():
    return model_figures(spec_from_config(LLAMA2_7B), dtype="fp16")


def a10():
    return combine(lookup_gpu("a10"), 1, "fp16")


def test_memory_bound_decode_verdict_and_figures():
    f = fig()
    rates = LiveRates(1.0, generation_tokens_per_s=60.0, prompt_tokens_per_s=0.0, batch=3,
                      kv_tokens_resident=3000, kv_capacity_tokens=13000)
    a = analyze(rates, f, a10())
    expected_bw = 60 / 3 * (weight_bytes_read_per_step(f, 3) + 3000 * 524288)
    assert a.achieved_bandwidth_modeled_bytes_per_s == pytest.approx(expected_bw)
    assert a.mbu == pytest.approx(expected_bw / 600e9)
    assert a.achieved_flops_per_s == pytest.approx(60 * f.flops_per_token)
    assert a.bound == "memory"
    assert a.operating_intensity == pytest.approx(a.achieved_flops_per_s / expected_bw)
    assert a.verdict.startswith("memory-bound decode: batch 3")
    assert "vs ridge 208" in a.verdict and "of peak bandwidth" in a.verdict
    assert a.kv_headroom_tokens == 10000
    assert a.context_tokens == 1000


def test_prefill_is_compute_bound():
    a = analyze(LiveRates(1.0, 5.0, 5000.0, batch=1, kv_tokens_resident=100), fig(), a10())
    assert a.phase == "prefill"
    assert a.bound == "compute"
    assert a.verdict.startswith("compute-bound prefill")


def test_idle():
    a = analyze(LiveRates(1.0, 0.0, 0.0, batch=0), fig(), a10())
    assert a.phase == "idle" and a.verdict.startswith("idle")


def test_unknown_model_says_why():
    a = analyze(LiveRates(1.0, 40.0, 0.0, batch=1), None, a10())
    assert a.mbu is None
    assert "model" in a.why
    assert "give --model" in a.verdict


def test_measured_bandwidth_disagreement_is_flagged():
    rates = LiveRates(1.0, 40.0, 0.0, batch=1, kv_tokens_resident=0, measured_bandwidth_bytes_per_s=200e9)
    a = analyze(rates, fig(), a10())
    assert a.bandwidth_disagreement > 0.25
    assert "differ by" in a.verdict
    assert a.mbu_measured == pytest.approx(200e9 / 600e9)


def test_no_counters():
    a = analyze(LiveRates(1.0, None, None, batch=None), fig(), a10())
    assert a.phase == "unknown" and "no token counters" in a.verdict


def test_impossible_figures_are_called_out():
    a = analyze(LiveRates(1.0, 5000.0, 0.0, batch=1, kv_tokens_resident=0), fig(), a10())
    assert a.mbu > 1.1
    assert "cannot be" in a.verdict and "--model" in a.verdict


def test_a_tensor_parallel_split_counts_the_copied_kv():
    """falcon-7b on 8 GPUs at TP 8: every rank reads the one KV head, so the modeled bandwidth is higher."""
    from infermon.model.loaders import load_preset
    from infermon.model.parallel import Parallelism

    fig = model_figures(load_preset("falcon-7b").spec)
    hw = combine(lookup_gpu("h100"), 8, "bf16")
    rates = LiveRates(interval_s=1.0, generation_tokens_per_s=800.0, prompt_tokens_per_s=0.0, batch=16,
                      kv_tokens_resident=16 * 4096, kv_capacity_tokens=1e6)
    plain = analyze(rates, fig, hw)
    split = analyze(rates, fig, hw, parallel=Parallelism(tp=8))
    kv_read = 16 * 4096 * fig.kv_bytes_per_token   # once, as one device would
    kv_projection = 32 * 2 * 4544 * 64 * 2         # the K/V weights of the one head, every layer, bf16
    extra = 7 * (kv_read + kv_projection)          # seven more ranks read the same head and its weights
    assert split.achieved_bandwidth_modeled_bytes_per_s == pytest.approx(
        plain.achieved_bandwidth_modeled_bytes_per_s + 800 / 16 * extra, rel=1e-3)
    # A split that does not match the hardware is ignored rather than trusted.
    assert analyze(rates, fig, hw, parallel=Parallelism(tp=4)) == plain
