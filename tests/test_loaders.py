"""--model resolution: config file, checkpoint folder with safetensors, HF cache, preset, errors."""

import json
import struct

import pytest

from infermon.model.loaders import ModelLoadError, load_model, safetensors_header_bytes

from infermon.testing.samples import LLAMA2_7B


def write_safetensors(path, tensors):
    """A real safetensors file: 8-byte header length, JSON header, then the data bytes."""
    header, offset = {}, 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * offset)
    return offset


def test_config_file(llama2_config):
    loaded = load_model(str(llama2_config))
    assert loaded.spec.num_layers == 32
    assert loaded.source.startswith("config:")
    assert loaded.exact_weight_bytes is None


def test_folder_with_safetensors_gives_exact_bytes(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA2_7B))
    a = write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"a": ("F16", [10, 10], 200)})
    b = write_safetensors(tmp_path / "model-00002-of-00002.safetensors", {"b": ("F16", [5], 10), "c": ("BF16", [3], 6)})
    loaded = load_model(str(tmp_path))
    assert loaded.exact_weight_bytes[0] == a + b == 216
    assert "safetensors" in loaded.exact_weight_bytes[1]


def test_index_total_size_wins(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA2_7B))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 13476839424},
                                                                        "weight_map": {}}))
    loaded = load_model(str(tmp_path))
    assert loaded.exact_weight_bytes[0] == 13476839424


def test_corrupt_safetensors_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\xff" * 8 + b"junk")
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        safetensors_header_bytes(bad)


def test_hf_cache_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "models--acme--tiny-llama" / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(LLAMA2_7B))
    refs = tmp_path / "models--acme--tiny-llama" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0123456789abcdef")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    loaded = load_model("acme/tiny-llama")
    assert loaded.spec.name == "acme/tiny-llama"
    assert loaded.source.startswith("HF cache: acme/tiny-llama@")


def test_hf_cache_snapshot_without_refs(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "models--acme--pinned" / "snapshots" / "feedface"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(LLAMA2_7B))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert load_model("acme/pinned").spec.num_layers == 32


def test_preset_by_name_and_by_hf_id(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert load_model("llama-2-7b").spec.num_layers == 32
    assert load_model("meta-llama/Llama-2-7b-hf").source.startswith("preset")


@pytest.mark.parametrize("content, message", [
    ("{not json", "malformed JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"model_type": "llama"}), "lacks hidden size"),
    (json.dumps({**LLAMA2_7B, "num_hidden_layers": 0}), "impossible layer count"),
    (json.dumps({**LLAMA2_7B, "num_key_value_heads": 5}), "not a multiple"),
])
def test_bad_configs_raise_one_clear_error(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(ModelLoadError, match=message):
        load_model(str(path))


def test_unknown_name_suggests_presets(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match="did you mean llama-2-7b"):
        load_model("llama-2-7")
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        load_model("nobody/nothing")


def test_missing_path(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(str(tmp_path / "missing" / "config.json"))
