"""Plausibility warnings (one pure function for calc and the live view), n/a figures, strict JSON, bounded inputs."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from infermon.model.config import spec_from_config
from infermon.model.figures import model_figures
from infermon.model.gpu import combine, lookup_gpu
from infermon.model.loaders import load_preset
from infermon.model.parallel import Parallelism
from infermon.model.plausibility import does_not_fit_reason, warnings, weights_fit
from infermon.views.calc_view import strict_json

from infermon.testing.samples import LLAMA2_7B


def llama(**extra):
    return model_figures(spec_from_config({**LLAMA2_7B, **extra}))


def strict_loads(text: str):
    """json.loads that refuses NaN/Infinity literals, as strict JSON readers do."""
    def refuse(name):
        raise ValueError(f"non-standard JSON literal {name}")
    return json.loads(text, parse_constant=refuse)


# ------------------------------------------------------------------ the pure function

def test_nothing_to_say_about_a_sound_operating_point():
    fig, hw = llama(), combine(lookup_gpu("a100"), 1, "fp16")
    assert warnings(fig, hw, context=2048, batch=8, kv_capacity_tokens=100_000, mbu=0.8, mfu=0.01) == ()
    assert warnings(None, None) == ()


def test_context_beyond_the_models_maximum():
    [text] = warnings(llama(), None, context=8192)
    assert "8,192" in text and "4,096" in text and "max_position_embeddings" in text
    assert warnings(llama(), None, context=4096) == ()


def test_weights_that_do_not_fit():
    fig = model_figures(load_preset("llama-3-70b").spec)
    one, eight = combine(lookup_gpu("a10"), 1, "bf16"), combine(lookup_gpu("a10"), 8, "bf16")
    assert not weights_fit(fig, one)
    assert "do not fit" in warnings(fig, one)[0] and "decode figures are n/a" in warnings(fig, one)[0]
    # Summed over 8 GPUs it would fit; per GPU of a TP-8 split it does not (17.6 GB + copies in 24 GB: it does).
    assert weights_fit(fig, eight, Parallelism(tp=8))
    two = combine(lookup_gpu("a10"), 2, "bf16")
    reason = does_not_fit_reason(fig, two, Parallelism(tp=2))
    assert reason and "per GPU" in reason and "TP 2" in reason


def test_batch_times_context_beyond_the_cache():
    [text] = warnings(llama(), None, context=4000, batch=8, kv_capacity_tokens=19_073)
    assert "32,000 tokens" in text and "19,073" in text


@pytest.mark.parametrize("name, share", [("MBU", 183.52), ("MFU", 1.2)])
def test_shares_above_the_peak_cannot_be(name, share):
    found = warnings(llama(), None, **{name.lower(): share})
    assert len(found) == 1 and found[0].startswith(f"{name} {share:.0%}") and "cannot be" in found[0]
    assert warnings(llama(), None, **{name.lower(): 1.0}) == ()


def test_unknown_dtypes_are_said():
    absent = model_figures(spec_from_config({k: v for k, v in LLAMA2_7B.items() if k != "torch_dtype"}))
    assert any(w.startswith("dtype unknown") and "float32" in w for w in warnings(absent, None))
    odd = model_figures(spec_from_config({**LLAMA2_7B, "torch_dtype": "float13"}))
    assert any(w.startswith("dtype unknown") and "bf16" in w for w in warnings(odd, None))


def test_splits_an_engine_refuses():
    falcon = model_figures(load_preset("falcon-7b").spec)  # 71 attention heads
    assert any("71 attention heads" in w for w in warnings(falcon, None, parallel=Parallelism(tp=8)))
    llama3 = model_figures(load_preset("llama-3-70b").spec)  # 64 heads, 8 KV heads
    assert warnings(llama3, None, parallel=Parallelism(tp=16)) == ()
    assert any("64 attention heads" in w for w in warnings(llama3, None, parallel=Parallelism(tp=3)))
    odd = llama(hidden_size=6144, num_attention_heads=48, num_key_value_heads=8)
    assert any("8 KV heads do not divide" in w for w in warnings(odd, None, parallel=Parallelism(tp=12)))


# ------------------------------------------------------------------ calc --json

def test_calc_json_carries_warnings_and_nulls_for_what_cannot_run(cli):
    data = strict_loads(cli("calc", "--model", "llama-3-70b", "--gpu", "a10", "--context", "200000",
                            "--prompt-tokens", "100", "--output-tokens", "10", "--tokens-per-s", "5", "--json").out)
    assert any("beyond the model's maximum of 8,192" in w for w in data["warnings"])
    assert any("do not fit" in w for w in data["warnings"])
    for key in ("decode_tokens_per_s", "decode_step_time_s", "weights_time_per_token_s", "critical_batch", "bound"):
        assert data["ceilings"][key] is None
        assert "do not fit" in data["why"][f"ceilings.{key}"]
    assert data["generation"] is None and data["achieved"] is None
    assert "do not fit" in data["why"]["generation"]


def test_table_shows_the_warnings_and_n_a(cli):
    out = " ".join(cli("calc", "--model", "llama-3-70b", "--gpu", "a10").out.split())
    assert "warning: the weights do not fit" in out
    assert "decode tokens/s n/a n/a the weights do not fit" in out
    assert "0.74" not in out  # the old, impossible 0.74 tokens/s


def test_an_impossible_measured_rate_is_flagged(cli):
    data = strict_loads(cli("calc", "--model", "llama-3.1-8b", "--gpu", "a10", "--tokens-per-s", "5000",
                            "--json").out)
    assert data["achieved"]["mbu"] > 100
    assert any(w.startswith("MBU") and "cannot be" in w for w in data["warnings"])


def test_params_active_with_and_without_the_embedding(cli):
    data = cli("calc", "--model", "deepseek-v3", "--gpu", "h200", "--gpus", "8", "--json").json()["model"]
    assert data["params_active"] - data["params_active_without_embedding"] == 129280 * 7168
    assert 37.5e9 < data["params_active"] < 37.6e9
    assert 36.5e9 < data["params_active_without_embedding"] < 36.7e9  # its authors' "37B activated"
    gpt2 = cli("calc", "--model", "gpt2", "--gpu", "t4", "--json").json()["model"]
    assert gpt2["params_active"] - gpt2["params_active_without_embedding"] == 50257 * 768 + 1024 * 768


def test_strict_json_replaces_non_finite_numbers_and_says_where():
    why: dict = {}
    out = strict_json({"a": math.inf, "b": [1.0, math.nan], "c": {"d": -math.inf, "e": "x"}}, why)
    assert out == {"a": None, "b": [1.0, None], "c": {"d": None, "e": "x"}}
    assert set(why) == {"a", "b[1]", "c.d"}
    json.dumps(out, allow_nan=False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(memory=st.floats(1e6, 1e15), bandwidth=st.floats(1e6, 1e16), flops=st.floats(1e6, 1e20),
       batch=st.integers(1, 10_000_000), context=st.integers(0, 1_000_000_000), rate=st.floats(1e-6, 1e12),
       util=st.floats(0.01, 1.0))
def test_any_accepted_input_gives_strict_json(cli, memory, bandwidth, flops, batch, context, rate, util):
    result = cli("calc", "--model", "llama-2-7b", "--gpu-memory", repr(memory), "--gpu-bandwidth", repr(bandwidth),
                 "--gpu-flops", repr(flops), "--batch", str(batch), "--context", str(context),
                 "--tokens-per-s", repr(rate), "--memory-utilization", repr(util), "--json")
    assert result.status == 0, result.err
    data = strict_loads(result.out)
    assert isinstance(data["warnings"], list) and isinstance(data["why"], dict)


# ------------------------------------------------------------------ absurd numbers on the command line

@pytest.mark.parametrize("flag, value", [
    ("--batch", "1e308"), ("--batch", "9" * 5000), ("--context", "1e308"), ("--context", "1e-300"),
    ("--gpu-memory", "1e308"), ("--gpu-memory", "1e-300"), ("--gpu-bandwidth", "inf"), ("--gpu-flops", "nan"),
    ("--gpu-flops", "1e-300"), ("--params", "1e308"), ("--params", "9" * 5000), ("--tokens-per-s", "1e308"),
    ("--tokens-per-s", "1e-300"), ("--tokens-per-s", "nan"), ("--memory-utilization", "1e-300"),
    ("--memory-utilization", "nan"), ("--reserve-bytes", "1e308"), ("--prompt-tokens", "1e308"),
    ("--output-tokens", "99999999999999999999"), ("--tp", "1e308"), ("--gpus", "1e12"), ("--pp", "-1"),
])
def test_absurd_numbers_are_one_line_and_exit_2(cli, flag, value):
    result = cli("calc", "--model", "llama-2-7b", "--gpu", "a10", flag, value)
    assert result.status == 2
    assert result.err.count("\n") == 1 and len(result.err) < 300
    assert flag in result.err and "Traceback" not in result.err
    assert result.out == ""
