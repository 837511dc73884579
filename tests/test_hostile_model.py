"""Hostile model files: absurd numbers, deep nesting, lying headers. Each is one clear line, fast; never a traceback."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from infermon.model.config import ConfigError, spec_from_config
from infermon.model.loaders import ModelLoadError, load_model, safetensors_header

from infermon.testing.gguf_factory import write_gguf
from infermon.testing.samples import LLAMA2_7B

HUGE = "9" * 5000                      # beyond Python's 4,300-digit int conversion
DEEP = "[" * 100_000 + "]" * 100_000   # beyond any parser's recursion


def one_line(call, *args, seconds: float = 2.0) -> str:
    """``call`` raises ModelLoadError with one line, quickly, with nothing chained for the user to see."""
    began = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        call(*args)
    assert time.monotonic() - began < seconds
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    assert info.value.__cause__ is None
    return message


def config_text(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.json"
    path.write_text(text)
    return path


def with_value(key: str, raw: str) -> str:
    """LLAMA2_7B as JSON text with ``key`` set to the raw JSON ``raw`` (NaN, 1e308, a 5000-digit number…)."""
    body = json.dumps({k: v for k, v in LLAMA2_7B.items() if k != key})
    return body[:-1] + f', "{key}": {raw}}}'


# ------------------------------------------------------------------ config.json

@pytest.mark.parametrize("key", ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                                 "intermediate_size", "num_key_value_heads", "head_dim"])
@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e308", "-1e308", "1e12", "1.5", "0", "-7",
                                 '"4096"', "[4096]", "{}", "true", HUGE])
def test_absurd_dimensions_are_one_line(tmp_path, key, raw):
    message = one_line(load_model, str(config_text(tmp_path, with_value(key, raw))))
    assert str(tmp_path) in message


@pytest.mark.parametrize("key, raw", [
    ("max_position_embeddings", "NaN"), ("max_position_embeddings", "1e308"), ("sliding_window", "Infinity"),
    ("num_local_experts", "1e308"), ("num_local_experts", "NaN"),
    ("model_type", '"mixtral", "num_local_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 1e300'),
    ("model_type", '"mixtral", "num_local_experts": 8, "num_experts_per_tok": 1e308'),
    ("model_type", '"deepseek_v3", "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_layer_freq": 0'),
    ("model_type", '"qwen2_moe", "num_experts": 8, "num_experts_per_tok": 2, "decoder_sparse_step": 0'),
    ("model_type", '"qwen2_moe", "num_experts": 8, "num_experts_per_tok": 2, "mlp_only_layers": [[1]]'),
    ("model_type", '"deepseek_v3", "n_routed_experts": 8, "num_experts_per_tok": 2, "first_k_dense_replace": "x"'),
    ("kv_lora_rank", "1e308"), ("kv_lora_rank", HUGE),
])
def test_absurd_structure_is_one_line(tmp_path, key, raw):
    one_line(load_model, str(config_text(tmp_path, with_value(key, raw))))


@pytest.mark.parametrize("raw", ["NaN", "1e308", HUGE, DEEP, '{"a": ' * 50_000 + "1" + "}" * 50_000])
def test_absurd_values_in_keys_no_one_reads_are_harmless_or_one_line(tmp_path, raw):
    """A NaN where nobody looks is harmless; a number or nesting no parser survives is one line."""
    path = config_text(tmp_path, with_value("initializer_range", raw))
    try:
        loaded = load_model(str(path))
    except ModelLoadError as exc:
        assert "\n" not in str(exc)
        assert raw in (HUGE, DEEP) or raw.startswith('{"a"')
    else:
        assert loaded.spec.num_layers == 32


def test_deep_nesting_is_refused_quickly(tmp_path):
    assert "nested" in one_line(load_model, str(config_text(tmp_path, DEEP)))
    # Deep, yet within the parser's recursion: refused by the depth bound after parsing.
    assert "nested more than 64 levels" in one_line(load_model, str(config_text(tmp_path, "[" * 500 + "]" * 500)))


def test_a_huge_config_is_not_read_whole(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b" " * (17 * 2**20))
    assert "too large" in one_line(load_model, str(path))


QUANT = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=6),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                         st.sampled_from(["quant_method", "bits", "group_size", "config_groups", "weights", "num_bits",
                                          "type", "weight_block_size", "load_in_4bit", "sym", "w_bit"]), inner,
                         max_size=4), max_leaves=20)
NUMBERS = st.one_of(st.integers(-2**70, 2**70), st.floats(), st.none(), st.booleans(), st.text(max_size=5),
                    st.lists(st.integers(-3, 3), max_size=3))
KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
        "intermediate_size", "head_dim", "max_position_embeddings", "sliding_window", "sliding_window_pattern",
        "num_local_experts", "num_experts_per_tok", "moe_intermediate_size", "n_shared_experts",
        "shared_expert_intermediate_size", "first_k_dense_replace", "moe_layer_freq", "decoder_sparse_step",
        "mlp_only_layers", "max_window_layers", "kv_lora_rank", "q_lora_rank", "qk_nope_head_dim",
        "qk_rope_head_dim", "v_head_dim", "word_embed_proj_dim", "n_positions", "layer_types", "torch_dtype"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_type=st.sampled_from(["llama", "mixtral", "qwen2_moe", "deepseek_v3", "gemma2", "gpt2", "opt",
                                   "falcon", "qwen2"]),
       values=st.dictionaries(st.sampled_from(KEYS), NUMBERS, max_size=6), quant=QUANT)
def test_config_with_any_numbers_is_a_spec_or_a_config_error(model_type, values, quant):
    """NaN, ±inf, 2^70, strings, lists in any key the loader reads: a spec, or ConfigError; never another error."""
    from infermon.model.figures import model_figures

    cfg = {**LLAMA2_7B, "model_type": model_type, **values, "quantization_config": quant}
    try:
        spec = spec_from_config(cfg)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    fig = model_figures(spec)
    assert fig.weight_bytes >= 0 and fig.kv_bytes_per_token >= 0


# ------------------------------------------------------------------ safetensors

def safetensors_file(path: Path, header_text: str, data: bytes = b"\0" * 64) -> Path:
    blob = header_text.encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


@pytest.mark.parametrize("entry", [
    '{"dtype": "F16", "shape": [4], "data_offsets": [0, NaN]}',
    '{"dtype": "F16", "shape": [4], "data_offsets": [0, 1e308]}',
    '{"dtype": "F16", "shape": [4], "data_offsets": [0, %s]}' % HUGE,
    '{"dtype": "F16", "shape": [4], "data_offsets": [8, 0]}',
    '{"dtype": "F16", "shape": [4], "data_offsets": [-8, 0]}',
    '{"dtype": "F16", "shape": [4], "data_offsets": [0, 1000000]}',
    '{"dtype": "F16", "shape": [1000000000000, 1000000000000], "data_offsets": [0, 8]}',
    '{"dtype": "F16", "shape": [NaN], "data_offsets": [0, 8]}',
    '{"dtype": "F16", "shape": "x", "data_offsets": [0, 8]}',
    '{"dtype": "F16", "shape": [4], "data_offsets": "x"}',
    '[1, 2]',
    DEEP,
])
def test_hostile_safetensors_headers(tmp_path, entry):
    path = safetensors_file(tmp_path / "model.safetensors", '{"w": %s}' % entry)
    one_line(safetensors_header, path)
    (tmp_path / "config.json").write_text(json.dumps(LLAMA2_7B))
    one_line(load_model, str(tmp_path))


def test_a_safetensors_header_longer_than_the_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    assert "header length" in one_line(safetensors_header, path)


@pytest.mark.parametrize("total", ["NaN", "1e308", "-5", '"12"', HUGE, "0"])
def test_hostile_index_total_size(tmp_path, total):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA2_7B))
    (tmp_path / "model.safetensors.index.json").write_text('{"metadata": {"total_size": %s}, "weight_map": {}}' % total)
    one_line(load_model, str(tmp_path))


# ------------------------------------------------------------------ GGUF

def _patch_u32(path: Path, key: bytes, value: int, fmt: str = "<I") -> None:
    """Overwrite the scalar value that follows metadata ``key`` (after its 4-byte type tag)."""
    data = bytearray(path.read_bytes())
    at = data.index(key) + len(key)
    (kind,) = struct.unpack_from("<I", data, at)
    struct.pack_into({4: "<I", 10: "<Q"}.get(kind, fmt), data, at + 4, value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("key, value", [(b"llama.block_count", 2**31), (b"llama.embedding_length", 2**31),
                                        (b"llama.attention.head_count", 0), (b"llama.feed_forward_length", 2**31)])
def test_absurd_gguf_metadata(tmp_path, key, value):
    path = tmp_path / "m.gguf"
    write_gguf(path)
    _patch_u32(path, key, value)
    one_line(load_model, str(path))


def test_gguf_tensor_of_a_trillion_by_a_trillion(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(path)
    data = bytearray(path.read_bytes())
    at = data.index(b"token_embd.weight") + len(b"token_embd.weight") + 4
    struct.pack_into("<QQ", data, at, 10**12, 10**12)
    path.write_bytes(bytes(data))
    one_line(load_model, str(path))


def test_gguf_with_a_megabyte_name_loads_with_a_short_one(tmp_path):
    path = tmp_path / "named.gguf"
    write_gguf(path, name="x" * 2**20)
    loaded = load_model(str(path))
    assert len(loaded.spec.name) <= 200


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=8))
def test_gguf_with_bytes_changed_is_a_model_or_one_line(tmp_path, flips):
    path = tmp_path / "fuzz.gguf"
    if not path.exists():
        write_gguf(tmp_path / "clean.gguf")
    data = bytearray((tmp_path / "clean.gguf").read_bytes())
    for at, value in flips:
        data[at % len(data)] = value
    path.write_bytes(bytes(data))
    began = time.monotonic()
    try:
        load_model(str(path))
    except ModelLoadError as exc:
        assert "\n" not in str(exc)
    assert time.monotonic() - began < 3


# ------------------------------------------------------------------ through calc

@pytest.mark.parametrize("raw", ["NaN", "1e308", HUGE])
def test_calc_on_a_hostile_config_is_one_line_exit_2(cli, tmp_path, raw):
    path = config_text(tmp_path, with_value("hidden_size", raw))
    result = cli("calc", "--model", str(path), "--gpu", "a10", "--json")
    assert result.status == 2 and result.out == ""
    assert result.err.count("\n") == 1 and "Traceback" not in result.err


# ------------------------------------------------------------------ files that are not files

def test_fifos_named_like_checkpoints_are_never_opened(tmp_path):
    """A read of a FIFO with no writer never returns: such names are skipped, or refused in one line."""
    import os

    (tmp_path / "config.json").write_text(json.dumps(LLAMA2_7B))
    os.mkfifo(tmp_path / "model.safetensors")
    began = time.monotonic()
    loaded = load_model(str(tmp_path))
    assert loaded.exact_weight_bytes is None and time.monotonic() - began < 2
    lone = tmp_path / "lone"
    lone.mkdir()
    os.mkfifo(lone / "model.gguf")
    assert "no config.json" in one_line(load_model, str(lone))
    assert "not a regular file" in one_line(load_model, str(lone / "model.gguf"))
    assert "not a regular file" in one_line(load_model, "/dev/zero")
    from infermon.model.gguf_loader import load_gguf

    assert "not a regular file" in one_line(load_gguf, lone / "model.gguf")
