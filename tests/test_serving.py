"""The dtype a checkpoint is served in (vLLM's dtype=auto), and the peak that applies on GPUs without bf16."""

import json
import struct

import pytest

from infermon.model.loaders import load_model
from infermon.model.serving import auto_dtype, platform_dtypes, serve

from infermon.testing.samples import LLAMA2_7B

AMPERE = {"fp32", "tf32", "bf16", "fp16", "int8"}
TURING = {"fp32", "fp16", "int8", "int4"}


def test_platform_dtypes_follow_compute_capability():
    assert platform_dtypes(AMPERE) == ("bf16", "fp16", "fp32")
    assert platform_dtypes(TURING) == ("fp16", "fp32")
    assert platform_dtypes(None) == ("bf16", "fp16", "fp32")


@pytest.mark.parametrize("stored, model_type, gpu, served, says", [
    ("fp32", "llama", AMPERE, "bf16", "stored as float32"),   # downcast to the preferred dtype
    ("fp32", "llama", TURING, "fp16", "stored as float32"),
    ("bf16", "llama", AMPERE, "bf16", None),                  # supported: as stored
    ("fp16", "llama", AMPERE, "fp16", None),
    ("bf16", "llama", TURING, "fp16", "no bf16 tensor path"),  # fallback to the preferred dtype
    ("fp32", "gemma2", AMPERE, "bf16", "stored as float32"),
    ("fp32", "gemma2", TURING, "fp32", "does not run gemma2 in fp16"),  # fp16 is ruled out for Gemma 2
    ("bf16", "gemma2", TURING, "fp32", "does not run gemma2 in fp16"),
    ("fp8", "llama", AMPERE, "fp8", None),                    # not a float checkpoint dtype: untouched
])
def test_vllm_auto_rule(stored, model_type, gpu, served, says):
    result = auto_dtype(stored, model_type, gpu, "GPU")
    assert result.dtype == served
    assert (result.note is None) if says is None else (says in result.note)


def test_gemma2_preset_is_served_in_bf16_not_fp32(cli):
    """The published Gemma 2 config says float32; vLLM serves it in bf16: half the bytes, the bf16 ridge."""
    data = cli("calc", "--model", "gemma-2-9b", "--gpu", "h100", "--json").json()
    assert data["model"]["weight_bytes"] == pytest.approx(2 * data["model"]["params_total"])
    assert data["ceilings"]["ops_per_byte"] == pytest.approx(989.5e12 / 3.35e12)
    as_stored = cli("calc", "--model", "gemma-2-9b", "--gpu", "h100", "--dtype", "fp32", "--json").json()
    assert as_stored["model"]["weight_bytes"] == pytest.approx(4 * data["model"]["params_total"])
    table = cli("calc", "--model", "gemma-2-9b", "--gpu", "h100").out
    assert "note: stored as float32: served in bf16" in " ".join(table.split())


def test_gpus_without_bf16_use_the_fp16_peak(cli):
    """T4 and V100 have no bf16 tensor path: no more "give --gpu-flops", the fp16 peak with a note."""
    t4 = cli("calc", "--model", "llama-3.1-8b", "--gpu", "t4", "--json")
    assert t4.status == 0, t4.err
    assert t4.json()["gpu"]["peak_flops"] == 65e12
    v100 = cli("calc", "--model", "llama-3.1-8b", "--gpu", "v100", "--dtype", "bf16")
    assert v100.status == 0, v100.err
    assert "has no bf16 tensor path: its fp16 peak is used" in " ".join(v100.out.split())


def _config(folder, **extra):
    cfg = {k: v for k, v in LLAMA2_7B.items() if k != "torch_dtype"}
    cfg.update(extra)
    (folder / "config.json").write_text(json.dumps(cfg))


def _safetensors(path, dtypes):
    header, offset = {}, 0
    for i, dtype in enumerate(dtypes):
        size = 4 * {"F32": 4, "I32": 4, "F16": 2, "BF16": 2}[dtype]
        header[f"t{i}"] = {"dtype": dtype, "shape": [4], "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * offset)


def test_a_config_without_torch_dtype_is_float32_and_says_so(tmp_path, cli):
    _config(tmp_path)
    loaded = load_model(str(tmp_path))
    assert (loaded.spec.torch_dtype, loaded.spec.dtype_source) == ("fp32", "absent")
    served = serve(loaded, AMPERE)
    assert served.figures.weight_format.dtype == "bf16"
    out = " ".join(cli("calc", "--model", str(tmp_path), "--gpu", "a100").out.split())
    assert "warning: dtype unknown: the config names no torch_dtype" in out and "served in bf16" in out
    data = cli("calc", "--model", str(tmp_path), "--gpu", "a100", "--json").json()
    assert any(w.startswith("dtype unknown") for w in data["warnings"])
    assert any("served in bf16" in n for n in data["notes"])


def test_without_torch_dtype_the_safetensors_say_it(tmp_path):
    """vLLM reads the stored dtype when the config names none (int tensors: packed weights, no say)."""
    _config(tmp_path)
    _safetensors(tmp_path / "model.safetensors", ["F16", "F16", "I32"])
    loaded = load_model(str(tmp_path))
    assert (loaded.spec.torch_dtype, loaded.spec.dtype_source) == ("fp16", "safetensors")
    served = serve(loaded, AMPERE)
    assert served.notes == ()
    assert served.figures.weight_format.dtype == "fp16"
    _safetensors(tmp_path / "model.safetensors", ["BF16", "F32"])
    assert load_model(str(tmp_path)).spec.torch_dtype == "fp32"


def test_the_dtype_key_of_newer_configs_counts(tmp_path):
    _config(tmp_path, dtype="bfloat16")
    assert load_model(str(tmp_path)).spec.dtype_source == "config"


def test_gguf_is_served_as_stored(tmp_path):
    from infermon.testing.gguf_factory import Q, write_gguf

    write_gguf(tmp_path / "f32.gguf", dtype=Q.F32)
    loaded = load_model(str(tmp_path / "f32.gguf"))
    served = serve(loaded, AMPERE)
    assert served.figures.weight_format.dtype == "fp32" and served.notes == ()
