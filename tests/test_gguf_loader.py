"""GGUF loading: tiny random-weight files written with ``gguf.GGUFWriter``, read back by ``load_gguf``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from infermon.model.gguf_loader import load_gguf  # noqa: E402
from infermon.model.loaders import ModelLoadError, load_model  # noqa: E402
from infermon.model.params import count_params  # noqa: E402

Q = gguf.GGMLQuantizationType


# --------------------------------------------------------------------------- factory

def _layers_llama(arch: str, hidden: int, heads: int, kv: int, hd: int, ffn: int, experts: int) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor (name, numpy shape) list of one llama-family decoder; numpy shape is (out, in)."""
    out: list[tuple[str, tuple[int, ...]]] = []
    for i in range(2):
        b = f"blk.{i}"
        out += [(f"{b}.attn_norm.weight", (hidden,)),
                (f"{b}.attn_q.weight", (heads * hd, hidden)),
                (f"{b}.attn_k.weight", (kv * hd, hidden)),
                (f"{b}.attn_v.weight", (kv * hd, hidden)),
                (f"{b}.attn_output.weight", (hidden, heads * hd)),
                (f"{b}.ffn_norm.weight", (hidden,))]
        if arch == "qwen2":
            out += [(f"{b}.attn_q.bias", (heads * hd,)), (f"{b}.attn_k.bias", (kv * hd,)), (f"{b}.attn_v.bias", (kv * hd,))]
        if arch == "qwen3":
            out += [(f"{b}.attn_q_norm.weight", (hd,)), (f"{b}.attn_k_norm.weight", (hd,))]
        if arch == "gemma2":
            out += [(f"{b}.post_attention_norm.weight", (hidden,)), (f"{b}.post_ffw_norm.weight", (hidden,))]
        if experts:
            out += [(f"{b}.ffn_gate_inp.weight", (experts, hidden)),
                    (f"{b}.ffn_gate_exps.weight", (experts, ffn, hidden)),
                    (f"{b}.ffn_up_exps.weight", (experts, ffn, hidden)),
                    (f"{b}.ffn_down_exps.weight", (experts, hidden, ffn))]
        else:
            out += [(f"{b}.ffn_gate.weight", (ffn, hidden)), (f"{b}.ffn_up.weight", (ffn, hidden)),
                    (f"{b}.ffn_down.weight", (hidden, ffn))]
    return out


def _model(arch: str, *, hidden: int = 64, heads: int = 4, kv: int = 2, ffn: int = 128, vocab: int = 100,
           experts: int = 0, used: int = 0, tied: bool = False, q_lora: int = 0, v3: bool = False):
    """(metadata keys without the arch prefix, tensor list) of a tiny model of ``arch``."""
    hd = hidden // heads
    keys: dict[str, int] = {"block_count": 2, "embedding_length": hidden, "feed_forward_length": ffn,
                            "attention.head_count": heads, "attention.head_count_kv": kv, "context_length": 256,
                            "rope.dimension_count": hd}
    tensors: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (vocab, hidden))]
    final_norm = [("output_norm.weight", (hidden,))]

    if arch in ("llama", "qwen2", "qwen3", "gemma2"):
        tensors += _layers_llama(arch, hidden, heads, kv, hd, ffn, experts)
        if experts:
            keys.update(expert_count=experts, expert_used_count=used)
        if arch == "gemma2":
            keys["attention.sliding_window"] = 32
            keys["attention.key_length"] = keys["attention.value_length"] = hd
    elif arch == "phi3":
        for i in range(2):
            b = f"blk.{i}"
            tensors += [(f"{b}.attn_norm.weight", (hidden,)), (f"{b}.attn_qkv.weight", ((heads + 2 * kv) * hd, hidden)),
                        (f"{b}.attn_output.weight", (hidden, hidden)), (f"{b}.ffn_norm.weight", (hidden,)),
                        (f"{b}.ffn_up.weight", (2 * ffn, hidden)), (f"{b}.ffn_down.weight", (hidden, ffn))]
    elif arch == "gpt2":
        keys["attention.head_count_kv"] = heads
        keys["context_length"] = 32
        tensors.append(("position_embd.weight", (32, hidden)))
        for i in range(2):
            b = f"blk.{i}"
            tensors += [(f"{b}.attn_norm.weight", (hidden,)), (f"{b}.attn_norm.bias", (hidden,)),
                        (f"{b}.attn_qkv.weight", (3 * hidden, hidden)), (f"{b}.attn_qkv.bias", (3 * hidden,)),
                        (f"{b}.attn_output.weight", (hidden, hidden)), (f"{b}.attn_output.bias", (hidden,)),
                        (f"{b}.ffn_norm.weight", (hidden,)), (f"{b}.ffn_norm.bias", (hidden,)),
                        (f"{b}.ffn_up.weight", (ffn, hidden)), (f"{b}.ffn_up.bias", (ffn,)),
                        (f"{b}.ffn_down.weight", (hidden, ffn)), (f"{b}.ffn_down.bias", (hidden,))]
        final_norm.append(("output_norm.bias", (hidden,)))
    elif arch == "falcon":
        # Falcon-7B layout: multi-query, one LayerNorm with bias per layer, parallel attention + MLP.
        keys["attention.head_count_kv"] = 1
        for i in range(2):
            b = f"blk.{i}"
            tensors += [(f"{b}.attn_norm.weight", (hidden,)), (f"{b}.attn_norm.bias", (hidden,)),
                        (f"{b}.attn_qkv.weight", ((heads + 2) * hd, hidden)),
                        (f"{b}.attn_output.weight", (hidden, hidden)),
                        (f"{b}.ffn_up.weight", (ffn, hidden)), (f"{b}.ffn_down.weight", (hidden, ffn))]
        final_norm.append(("output_norm.bias", (hidden,)))
    elif arch == "deepseek2":
        kv_lora, rope, nope, v, e_ffn = 32, 8, 16, 16, 32
        keys.update({"attention.head_count_kv": heads, "attention.key_length": nope + rope,
                     "attention.value_length": v, "rope.dimension_count": rope, "attention.kv_lora_rank": kv_lora,
                     "expert_count": experts, "expert_used_count": used, "expert_shared_count": 1,
                     "expert_feed_forward_length": e_ffn, "leading_dense_block_count": 1})
        if q_lora:
            keys["attention.q_lora_rank"] = q_lora
        for i in range(2):
            b = f"blk.{i}"
            tensors += [(f"{b}.attn_norm.weight", (hidden,)), (f"{b}.ffn_norm.weight", (hidden,)),
                        (f"{b}.attn_kv_a_mqa.weight", (kv_lora + rope, hidden)),
                        (f"{b}.attn_kv_a_norm.weight", (kv_lora,)),
                        (f"{b}.attn_kv_b.weight", (heads * (nope + v), kv_lora)),
                        (f"{b}.attn_output.weight", (hidden, heads * v))]
            if q_lora:
                tensors += [(f"{b}.attn_q_a.weight", (q_lora, hidden)), (f"{b}.attn_q_a_norm.weight", (q_lora,)),
                            (f"{b}.attn_q_b.weight", (heads * (nope + rope), q_lora))]
            else:
                tensors.append((f"{b}.attn_q.weight", (heads * (nope + rope), hidden)))
            if i == 0:
                tensors += [(f"{b}.ffn_gate.weight", (ffn, hidden)), (f"{b}.ffn_up.weight", (ffn, hidden)),
                            (f"{b}.ffn_down.weight", (hidden, ffn))]
            else:
                tensors += [(f"{b}.ffn_gate_inp.weight", (experts, hidden)),
                            (f"{b}.ffn_gate_exps.weight", (experts, e_ffn, hidden)),
                            (f"{b}.ffn_up_exps.weight", (experts, e_ffn, hidden)),
                            (f"{b}.ffn_down_exps.weight", (experts, hidden, e_ffn)),
                            (f"{b}.ffn_gate_shexp.weight", (e_ffn, hidden)),
                            (f"{b}.ffn_up_shexp.weight", (e_ffn, hidden)),
                            (f"{b}.ffn_down_shexp.weight", (hidden, e_ffn))]
                if v3:
                    tensors.append((f"{b}.exp_probs_b.bias", (experts,)))
    else:  # pragma: no cover - a test typo
        raise ValueError(arch)

    tensors += final_norm
    if not tied:
        tensors.append(("output.weight", (vocab, hidden)))
    return keys, tensors


def write_gguf(path: Path, arch: str = "llama", *, dtype: Q = Q.F16, omit: tuple[str, ...] = (),
               extra: tuple[tuple[str, tuple[int, ...]], ...] = (), name: str | None = "tiny-test",
               file_type: int | None = None, split_max_tensors: int = 0, **shape) -> dict:
    """Write a tiny random-weight GGUF; return what was written (elements, bytes, tensor names).

    1-D tensors (norms, biases) are F32 as in real GGUF files; matrices use ``dtype``.
    """
    keys, tensors = _model(arch, **shape)
    tensors = tensors + list(extra)
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(str(path), arch, split_max_tensors=split_max_tensors)
    if name is not None:
        writer.add_name(name)
    for key, value in keys.items():
        if key not in omit:
            writer.add_uint32(f"{arch}.{key}", int(value))
    if file_type is not None:
        writer.add_file_type(file_type)
    writer.add_tokenizer_model("llama")
    writer.add_token_list([f"tok{i}" for i in range(shape.get("vocab", 100))])
    elements = stored = 0
    for tname, tshape in tensors:
        data = rng.standard_normal(tshape).astype(np.float32) * 0.02
        elements += data.size
        if len(tshape) == 1 or dtype == Q.F32:
            writer.add_tensor(tname, data)
            stored += data.nbytes
        elif dtype == Q.F16:
            half = data.astype(np.float16)
            writer.add_tensor(tname, half)
            stored += half.nbytes
        else:
            packed = gguf.quantize(data, dtype)
            # The writer turns the uint8 byte shape back into the element shape itself.
            writer.add_tensor(tname, packed, raw_dtype=dtype)
            stored += packed.nbytes
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"elements": elements, "bytes": stored, "names": {t for t, _ in tensors}}


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
