"""GGUF loading: tiny random-weight files written with ``gguf.GGUFWriter``, read back by ``load_gguf``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from infermon.model import gguf_loader  # noqa: E402
from infermon.model.figures import model_figures, weight_bytes_read_per_step  # noqa: E402
from infermon.model.gguf_loader import load_gguf  # noqa: E402
from infermon.model.loaders import ModelLoadError, load_model  # noqa: E402
from infermon.model.params import count_params  # noqa: E402

from infermon.testing.gguf_factory import Q, _model, write_gguf  # noqa: E402


# --------------------------------------------------------------------------- happy paths

def test_llama_f16_dimensions_params_and_bytes(tmp_path):
    path = tmp_path / "tiny.gguf"
    written = write_gguf(path)
    loaded = load_gguf(path)
    spec = loaded.spec
    assert (spec.model_type, spec.name) == ("llama", "tiny-test")
    assert (spec.num_layers, spec.hidden_size, spec.intermediate_size, spec.vocab_size) == (2, 64, 128, 100)
    assert (spec.num_heads, spec.num_kv_heads, spec.head_dim) == (4, 2, 16)
    assert spec.attention_kind == "gqa"
    assert spec.max_position_embeddings == 256
    assert spec.tie_word_embeddings is False
    assert spec.torch_dtype == "fp16" and spec.weight_format is None
    assert count_params(spec).total == written["elements"]
    assert loaded.exact_weight_bytes == (float(written["bytes"]), "measured: GGUF tensor sizes (F16)")
    assert loaded.source == f"GGUF: {path}"
    assert loaded.warnings == ()


def test_f32_model_sets_fp32(tmp_path):
    path = tmp_path / "f32.gguf"
    written = write_gguf(path, dtype=Q.F32, file_type=0)
    loaded = load_gguf(path)
    assert loaded.spec.torch_dtype == "fp32"
    assert loaded.exact_weight_bytes == (float(written["bytes"]), "measured: GGUF tensor sizes (F32)")
    assert written["bytes"] == 4 * written["elements"]


def test_q8_0_model_measures_quantized_bytes(tmp_path):
    path = tmp_path / "q8.gguf"
    written = write_gguf(path, dtype=Q.Q8_0, file_type=int(gguf.LlamaFileType.MOSTLY_Q8_0))
    loaded = load_gguf(path)
    spec = loaded.spec
    assert count_params(spec).total == written["elements"]
    assert loaded.exact_weight_bytes == (float(written["bytes"]), "measured: GGUF tensor sizes (Q8_0)")
    assert written["bytes"] < 2 * written["elements"]  # really quantized, not F16
    assert spec.torch_dtype == "fp16"  # activations
    assert spec.weight_format is not None and spec.weight_format.dtype == "int8"
    assert spec.weight_format.bytes_per_param() == pytest.approx(34 / 32)  # Q8_0: 32 int8 + one f16 scale


def test_quantized_label_comes_from_the_file_type(tmp_path):
    path = tmp_path / "q4.gguf"
    written = write_gguf(path, dtype=Q.Q4_0, file_type=int(gguf.LlamaFileType.MOSTLY_Q4_0))
    loaded = load_gguf(path)
    assert loaded.exact_weight_bytes == (float(written["bytes"]), "measured: GGUF tensor sizes (Q4_0)")
    assert loaded.spec.weight_format.dtype == "int4"
    assert loaded.spec.weight_format.bytes_per_param() == pytest.approx(18 / 32)  # 32 nibbles + one f16 scale
    # Without a file type the dominant tensor type names the format.
    write_gguf(tmp_path / "q4_bare.gguf", dtype=Q.Q4_0)
    assert load_gguf(tmp_path / "q4_bare.gguf").exact_weight_bytes[1] == "measured: GGUF tensor sizes (Q4_0)"


def test_tied_embeddings_detected(tmp_path):
    path = tmp_path / "tied.gguf"
    written = write_gguf(path, tied=True)
    loaded = load_gguf(path)
    assert "output.weight" not in written["names"]
    assert loaded.spec.tie_word_embeddings is True
    assert count_params(loaded.spec).lm_head == 0
    assert count_params(loaded.spec).total == written["elements"]
    assert loaded.warnings == ()


def test_mha_when_kv_heads_equal_heads(tmp_path):
    path = tmp_path / "mha.gguf"
    write_gguf(path, kv=4)
    assert load_gguf(path).spec.attention_kind == "mha"


def test_missing_head_count_kv_defaults_to_mha(tmp_path):
    path = tmp_path / "nokv.gguf"
    write_gguf(path, kv=4, omit=("attention.head_count_kv",))
    assert load_gguf(path).spec.num_kv_heads == 4


def test_moe_total_exceeds_active(tmp_path):
    path = tmp_path / "moe.gguf"
    written = write_gguf(path, experts=4, used=2)
    loaded = load_gguf(path)
    spec = loaded.spec
    params = count_params(spec)
    assert spec.model_type == "mixtral"
    assert (spec.num_experts, spec.experts_per_token, spec.moe_intermediate_size) == (4, 2, 128)
    assert params.total == written["elements"]
    assert params.total > params.active
    # Two of four experts per token: the routed half of the expert weights is inactive.
    assert params.total - params.active == params.routed_experts // 2
    assert loaded.warnings == ()


@pytest.mark.parametrize(
    ("arch", "shape", "model_type"),
    [
        ("qwen2", {}, "qwen2"),
        ("qwen3", {}, "qwen3"),
        ("gemma2", {"tied": True}, "gemma2"),
        ("phi3", {}, "phi3"),
        ("gpt2", {"kv": 4, "ffn": 256}, "gpt2"),
        ("falcon", {"ffn": 256}, "falcon"),
        ("deepseek2", {"experts": 4, "used": 2}, "deepseek_v2"),
        ("deepseek2", {"experts": 4, "used": 2, "q_lora": 48, "v3": True}, "deepseek_v3"),
        ("qwen2moe", {"experts": 4, "used": 2}, "qwen2_moe"),
        ("qwen3moe", {"experts": 4, "used": 2}, "qwen3_moe"),
    ],
)
def test_architectures_count_exactly(tmp_path, arch, shape, model_type):
    path = tmp_path / f"{arch}.gguf"
    written = write_gguf(path, arch, **shape)
    loaded = load_gguf(path)
    assert loaded.spec.model_type == model_type
    assert count_params(loaded.spec).total == written["elements"], loaded.warnings
    assert not [w for w in loaded.warnings if "GGUF tensors hold" in w]


def test_architecture_details(tmp_path):
    write_gguf(tmp_path / "g.gguf", "gemma2", tied=True)
    gemma = load_gguf(tmp_path / "g.gguf").spec
    assert gemma.layer_windows == (32, None) and gemma.norms_per_layer == 4 and gemma.tie_word_embeddings

    write_gguf(tmp_path / "f.gguf", "falcon", ffn=256)
    falcon = load_gguf(tmp_path / "f.gguf").spec
    assert falcon.attention_kind == "mqa" and falcon.norms_per_layer == 1 and not falcon.gated_mlp

    write_gguf(tmp_path / "d.gguf", "deepseek2", experts=4, used=2)
    ds = load_gguf(tmp_path / "d.gguf").spec
    assert ds.attention_kind == "mla"
    assert (ds.kv_lora_rank, ds.q_lora_rank, ds.qk_nope_head_dim, ds.qk_rope_head_dim, ds.v_head_dim) == (32, None, 16, 8, 16)
    assert ds.moe_layers == (False, True) and ds.num_shared_experts == 1


def test_unknown_architecture_with_llama_keys_loads_with_warning(tmp_path):
    # Written as llama, then the architecture string renamed to one infermon does not map.
    path = tmp_path / "odd.gguf"
    keys, _ = _model("llama")
    writer = gguf.GGUFWriter(str(path), "oddarch")
    for key, value in keys.items():
        writer.add_uint32(f"oddarch.{key}", value)
    writer.add_tensor("token_embd.weight", np.zeros((100, 64), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    loaded = load_gguf(path)
    assert loaded.spec.model_type == "oddarch"
    assert any("unknown model_type" in w for w in loaded.warnings)
    assert any("GGUF tensors hold" in w for w in loaded.warnings)  # only the embedding was written


def test_param_mismatch_is_a_warning_naming_both_numbers(tmp_path):
    path = tmp_path / "extra.gguf"
    written = write_gguf(path, extra=(("blk.0.mystery.weight", (8, 64)),))
    loaded = load_gguf(path)
    counted = count_params(loaded.spec).total
    assert written["elements"] == counted + 8 * 64
    [warning] = [w for w in loaded.warnings if "GGUF tensors hold" in w]
    assert f"{written['elements']:,}" in warning and f"{counted:,}" in warning
    assert loaded.exact_weight_bytes[0] == written["bytes"]


def test_rope_tables_are_bytes_but_not_parameters(tmp_path):
    path = tmp_path / "rope.gguf"
    written = write_gguf(path, extra=(("rope_freqs.weight", (8,)),))
    loaded = load_gguf(path)
    assert loaded.warnings == ()
    assert loaded.exact_weight_bytes[0] == written["bytes"]


def test_split_gguf_sums_every_shard(tmp_path):
    written = write_gguf(tmp_path / "big.gguf", split_max_tensors=10)
    shards = sorted(tmp_path.glob("big-*-of-*.gguf"))
    assert len(shards) == 3
    loaded = load_gguf(shards[0])
    assert count_params(loaded.spec).total == written["elements"]
    assert loaded.exact_weight_bytes[0] == written["bytes"]
    assert loaded.warnings == ()

    shards[-1].unlink()
    partial = load_gguf(shards[0])
    assert partial.exact_weight_bytes is None
    assert any("split GGUF" in w for w in partial.warnings)


def test_name_falls_back_to_file_stem(tmp_path):
    path = tmp_path / "nameless.gguf"
    write_gguf(path, name=None)
    assert load_gguf(path).spec.name == "nameless"


# --------------------------------------------------------------------------- dispatch

def test_load_model_dispatches_gguf_suffix(tmp_path):
    path = tmp_path / "Tiny.GGUF"
    written = write_gguf(path)
    loaded = load_model(str(path))
    assert loaded.source == f"GGUF: {path}"
    assert count_params(loaded.spec).total == written["elements"]


def test_load_model_folder_with_one_gguf(tmp_path):
    write_gguf(tmp_path / "only.gguf")
    assert load_model(str(tmp_path)).source.startswith("GGUF: ")


# --------------------------------------------------------------------------- errors

def _one_line_error(path: Path) -> str:
    with pytest.raises(ModelLoadError) as info:
        load_model(str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    # Raised "from None": nothing from gguf/numpy is chained onto what the user sees.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    return message


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.gguf"
    write_gguf(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _one_line_error(path)


def test_file_truncated_inside_the_header(tmp_path):
    path = tmp_path / "head.gguf"
    write_gguf(path)
    path.write_bytes(path.read_bytes()[:40])
    assert "truncated or corrupt" in _one_line_error(path)


@pytest.mark.parametrize("cut", [4, 8, 24, 100, 300, 700, 1500])
def test_any_truncation_is_a_model_load_error(tmp_path, cut):
    path = tmp_path / "cut.gguf"
    write_gguf(path)
    path.write_bytes(path.read_bytes()[:cut])
    _one_line_error(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "random.gguf"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    assert "not a GGUF file" in _one_line_error(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    assert "not a GGUF file" in _one_line_error(path)


def test_gguf_magic_then_garbage(tmp_path):
    path = tmp_path / "garbage.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    _one_line_error(path)


def test_huge_tensor_count_is_an_error(tmp_path):
    path = tmp_path / "count.gguf"
    write_gguf(path)
    data = bytearray(path.read_bytes())
    data[8:16] = (2**40).to_bytes(8, "little")  # tensor_count follows magic and version
    path.write_bytes(bytes(data))
    _one_line_error(path)


def test_missing_block_count(tmp_path):
    path = tmp_path / "noblocks.gguf"
    write_gguf(path, omit=("block_count",))
    message = _one_line_error(path)
    assert "llama.block_count" in message


def test_missing_architecture(tmp_path):
    path = tmp_path / "noarch.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.kv_data[0].pop("general.architecture", None)
    writer.add_uint32("llama.block_count", 2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert "general.architecture" in _one_line_error(path)


def test_missing_file_via_load_gguf(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_gguf(tmp_path / "absent.gguf")


def test_absurd_array_length_is_refused_quickly(tmp_path):
    """A corrupt array count near the end must not send the reader into a long loop."""
    import struct
    import time

    from infermon.model.loaders import ModelLoadError, load_model

    path = tmp_path / "evil.gguf"
    key = b"tokenizer.ggml.tokens"
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    body += struct.pack("<Q", len(key)) + key + struct.pack("<I", 9)      # an array …
    body += struct.pack("<IQ", 8, 2**40)                                   # … of 2^40 strings
    body += struct.pack("<Q", 3) + b"abc"
    path.write_bytes(body)
    began = time.monotonic()
    with pytest.raises(ModelLoadError, match="corrupt GGUF file"):
        load_model(str(path))
    assert time.monotonic() - began < 2


# --------------------------------------------------------------------------- MoE, quantization families, bytes read

def test_qwen_moe_details(tmp_path):
    write_gguf(tmp_path / "q2.gguf", "qwen2moe", experts=4, used=2)
    qwen2 = load_gguf(tmp_path / "q2.gguf").spec
    assert qwen2.is_moe and qwen2.moe_layers == (True, True)
    assert (qwen2.num_experts, qwen2.experts_per_token, qwen2.moe_intermediate_size) == (4, 2, 128)
    assert qwen2.shared_expert_intermediate_size == 256 and qwen2.shared_expert_gate and qwen2.qkv_bias
    write_gguf(tmp_path / "q3.gguf", "qwen3moe", experts=4, used=2)
    qwen3 = load_gguf(tmp_path / "q3.gguf").spec
    assert qwen3.is_moe and qwen3.qk_norm and not qwen3.shared_expert_intermediate_size


# Every GGML storage family the loader reads: floats, legacy block quants, K-quants,
# i-quants, ternary and microscaling formats (dimensions multiples of 256 for the K/i-quants).
QUANT_FAMILIES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                  "Q6_K", "IQ2_XXS", "IQ2_S", "IQ3_S", "IQ4_NL", "IQ4_XS", "IQ1_M", "TQ1_0", "TQ2_0", "MXFP4"]
BIG = dict(hidden=256, heads=4, kv=2, ffn=512, vocab=512)


@pytest.mark.parametrize("kind", QUANT_FAMILIES)
def test_every_quantization_family_loads_with_its_own_bytes(tmp_path, kind):
    path = tmp_path / f"{kind}.gguf"
    written = write_gguf(path, dtype=Q[kind], **BIG)
    loaded = load_gguf(path)
    assert count_params(loaded.spec).total == written["elements"]
    assert loaded.exact_weight_bytes[0] == written["bytes"]
    fig = model_figures(loaded.spec, exact_weight_bytes=loaded.exact_weight_bytes, stored=loaded.stored)
    assert fig.weight_bytes == written["bytes"]
    # One decode step gathers one stored row of the embedding, at the table's own (quantized) width.
    embd = written["sizes"]["token_embd.weight"]
    assert weight_bytes_read_per_step(fig, 1) == pytest.approx(written["bytes"] - embd + embd / 512)
    if kind not in ("F32", "F16", "BF16"):
        matrices = [n for n in written["sizes"] if n.startswith("blk.") and written["sizes"][n] > 4 * 256]
        elements = sum(np.prod(shape) for name, shape in _model("llama", **BIG)[1] if name in matrices)
        measured = sum(written["sizes"][n] for n in matrices) / elements
        assert loaded.spec.weight_format.bytes_per_param() == pytest.approx(measured)


def test_quantized_embedding_never_makes_the_read_negative(tmp_path):
    """A Q4_0 model whose embedding dominates: the read is the file's bytes, never below zero."""
    path = tmp_path / "wide-vocab.gguf"
    written = write_gguf(path, dtype=Q.Q4_0, vocab=8192, file_type=int(gguf.LlamaFileType.MOSTLY_Q4_0))
    loaded = load_gguf(path)
    fig = model_figures(loaded.spec, exact_weight_bytes=loaded.exact_weight_bytes, stored=loaded.stored)
    embd = written["sizes"]["token_embd.weight"]
    assert embd == 8192 * 64 // 32 * 18  # 64-wide rows of Q4_0: 2 blocks of 18 bytes
    read = weight_bytes_read_per_step(fig, 1)
    assert read == pytest.approx(written["bytes"] - embd + 36)
    assert 0 < read < written["bytes"]
    for batch in (1, 8, 8192, 10**6):
        assert 0 < weight_bytes_read_per_step(fig, batch) <= written["bytes"]


def test_experts_below_four_bits_are_read_at_their_real_bytes(tmp_path):
    """Q2_K experts are 2.6 bits per weight, not floored at int4's 0.5 B."""
    path = tmp_path / "moe-q2k.gguf"
    written = write_gguf(path, dtype=Q.Q2_K, experts=8, used=2, file_type=int(gguf.LlamaFileType.MOSTLY_Q2_K), **BIG)
    loaded = load_gguf(path)
    fig = model_figures(loaded.spec, exact_weight_bytes=loaded.exact_weight_bytes, stored=loaded.stored)
    experts = sum(v for k, v in written["sizes"].items() if "_exps." in k)
    assert fig.routed_expert_bytes == experts
    assert experts / (2 * 3 * 8 * 256 * 512) == pytest.approx(84 / 256)  # Q2_K: 84 bytes per 256 weights
    embd = written["sizes"]["token_embd.weight"]
    hit = 1 - (1 - 2 / 8)
    assert weight_bytes_read_per_step(fig, 1) == pytest.approx(written["bytes"] - embd + embd / 512 - experts * (1 - hit))
    assert "bits/weight measured" in loaded.spec.weight_format.method


def test_k_quant_mix_reads_what_the_file_holds(tmp_path):
    """A Q4_K_M-style mix (Q4_K embedding, Q6_K head and some layers): every tensor at its own size."""
    mix = {"token_embd.weight": Q.Q4_K, "output.weight": Q.Q6_K, "blk.0.attn_v.weight": Q.Q6_K,
           "blk.0.ffn_down.weight": Q.Q6_K}
    path = tmp_path / "q4km.gguf"
    written = write_gguf(path, dtype=Q.Q4_K, types=mix, file_type=int(gguf.LlamaFileType.MOSTLY_Q4_K_M), **BIG)
    loaded = load_gguf(path)
    assert loaded.exact_weight_bytes == (float(written["bytes"]), "measured: GGUF tensor sizes (Q4_K_M)")
    fig = model_figures(loaded.spec, exact_weight_bytes=loaded.exact_weight_bytes, stored=loaded.stored)
    embd = written["sizes"]["token_embd.weight"]
    assert embd == 512 * 144  # one Q4_K block (144 B) per 256-wide row
    assert weight_bytes_read_per_step(fig, 1) == pytest.approx(written["bytes"] - embd + 144)


def test_tied_gguf_reads_the_whole_table_as_the_head(tmp_path):
    path = tmp_path / "tied-q8.gguf"
    written = write_gguf(path, dtype=Q.Q8_0, tied=True)
    loaded = load_gguf(path)
    fig = model_figures(loaded.spec, exact_weight_bytes=loaded.exact_weight_bytes, stored=loaded.stored)
    assert fig.gathered_bytes == 0
    assert weight_bytes_read_per_step(fig, 1) == written["bytes"]


def test_a_programming_error_is_not_reported_as_a_corrupt_file(tmp_path, monkeypatch):
    """Only what a damaged header can raise becomes "corrupt GGUF"; a bug must fail loudly."""
    path = tmp_path / "ok.gguf"
    write_gguf(path)

    def broken(*args, **kwargs):
        return undefined_name  # noqa: F821 - the point of the test

    monkeypatch.setattr(gguf_loader, "_vocab_size", broken)
    with pytest.raises(NameError):
        load_gguf(path)
