"""Find a model's config from what the user typed: a path, a folder, a cached HF id, a GGUF file or a preset.

The only I/O in ``infermon.model``: each loader reads the files it is pointed at.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from infermon.model.config import ConfigError, spec_from_config
from infermon.model.dtypes import normalize_dtype
from infermon.model.spec import ModelSpec
from infermon.model.stored import StoredBytes

# A safetensors header is JSON of a few hundred kB at most; refuse absurd lengths
# (a corrupt or non-safetensors file) instead of reading gigabytes.
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_MAX_CONFIG_BYTES = 16 * 1024 * 1024


class ModelLoadError(ValueError):
    """The model argument names nothing usable; the message is one line for the user."""


@dataclass(frozen=True)
class LoadedModel:
    """A model spec and where it came from.

    ``exact_weight_bytes`` is (bytes, source) when the checkpoint's files were
    measured (safetensors headers, the index's ``total_size``, GGUF tensors);
    ``stored`` breaks those bytes down tensor by tensor where the file allows
    (GGUF: the embedding at its stored row size, the routed experts).
    """

    spec: ModelSpec
    source: str
    exact_weight_bytes: tuple[float, str] | None = None
    warnings: tuple[str, ...] = ()
    stored: StoredBytes | None = None


def _read_json(path: Path) -> dict:
    try:
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise ModelLoadError(f"{path}: too large to be a config.json")
        data = json.loads(path.read_text(encoding="utf-8"))
    except ModelLoadError:
        raise
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: not a JSON object")
    return data


def _spec(cfg: dict, name: str, where: str) -> ModelSpec:
    try:
        return spec_from_config(cfg, name=name)
    except ConfigError as exc:
        raise ModelLoadError(f"{where}: {exc}") from None


def safetensors_header(path: Path) -> dict:
    """The JSON header of one safetensors file (no tensor is read).

    Layout: 8-byte little-endian header length N, N bytes of JSON mapping each
    tensor to its ``dtype``, ``shape`` and ``data_offsets`` [begin, end).
    """
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) != 8:
            raise ModelLoadError(f"{path}: truncated safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length <= 0 or length > _MAX_SAFETENSORS_HEADER:
            raise ModelLoadError(f"{path}: not a safetensors file (header length {length})")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelLoadError(f"{path}: corrupt safetensors header") from None
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path}: corrupt safetensors header")
    return header


def safetensors_header_bytes(path: Path) -> int:
    """Bytes of tensor data in one safetensors file: Σ (end − begin) of its ``data_offsets``."""
    total = 0
    for key, entry in safetensors_header(path).items():
        if key == "__metadata__":
            continue
        try:
            begin, end = entry["data_offsets"]
            total += int(end) - int(begin)
        except (KeyError, TypeError, ValueError):
            raise ModelLoadError(f"{path}: corrupt safetensors entry {key!r}") from None
    return total


# safetensors dtype names of the float formats a checkpoint's torch_dtype can be.
_SAFETENSORS_FLOATS = {"F32": "fp32", "F16": "fp16", "BF16": "bf16"}


def safetensors_dtype(files: list[Path]) -> str | None:
    """The float dtype a checkpoint's tensors are stored in, for a config that names none.

    vLLM then takes the dtype every stored dtype casts to without loss (its
    ``common_broadcastable_dtype``): fp32 if any tensor is fp32, else the one of
    bf16/fp16 present (both: the one holding more bytes). Integer tensors (packed
    GPTQ/AWQ weights) cast to any float and decide nothing. None: no float tensor.
    """
    held: dict[str, int] = {}
    for path in files:
        for key, entry in safetensors_header(path).items():
            if key == "__metadata__" or not isinstance(entry, dict):
                continue
            name = _SAFETENSORS_FLOATS.get(str(entry.get("dtype")))
            offsets = entry.get("data_offsets")
            if name is None:
                continue
            try:
                size = int(offsets[1]) - int(offsets[0])
            except (TypeError, ValueError, IndexError, KeyError):
                size = 0
            held[name] = held.get(name, 0) + max(0, size)
    if not held:
        return None
    if "fp32" in held:
        return "fp32"
    return max(held, key=held.get)


def _dtype_from_files(spec: ModelSpec, folder: Path) -> ModelSpec:
    """A config without ``torch_dtype``: take the stored tensors' dtype, as vLLM does."""
    if spec.dtype_source != "absent":
        return spec
    files = sorted(folder.glob("*.safetensors"))
    found = safetensors_dtype(files) if files else None
    if found is None:
        return spec
    return dataclasses.replace(spec, torch_dtype=found, dtype_source="safetensors")


def exact_weight_bytes(folder: Path) -> tuple[float, str] | None:
    """Weight bytes of a checkpoint folder: the index's ``metadata.total_size``, else the sum of safetensors headers."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = _read_json(index)
        total = (data.get("metadata") or {}).get("total_size")
        if isinstance(total, (int, float)) and total > 0:
            return float(total), f"measured: {index.name} total_size"
    files = sorted(folder.glob("*.safetensors"))
    if files:
        total = sum(safetensors_header_bytes(f) for f in files)
        if total > 0:
            return float(total), f"measured: headers of {len(files)} safetensors file(s)"
    return None


def load_config_file(path: Path, name: str | None = None) -> LoadedModel:
    """A ``config.json`` file; exact weight bytes from safetensors beside it, if any."""
    cfg = _read_json(path)
    folder = path.parent
    spec = _spec(cfg, name or (folder.name if path.name == "config.json" else path.stem), str(path))
    spec = _dtype_from_files(spec, folder)
    return LoadedModel(spec, f"config: {path}", exact_weight_bytes(folder), spec.warnings)


def load_folder(folder: Path) -> LoadedModel:
    """A checkpoint folder: its config.json, or its one GGUF file."""
    config = folder / "config.json"
    if config.is_file():
        return load_config_file(config, name=folder.name)
    ggufs = sorted(folder.glob("*.gguf"))
    if len(ggufs) == 1:
        return load_gguf_file(ggufs[0])
    if ggufs:
        raise ModelLoadError(f"{folder}: holds {len(ggufs)} GGUF files; name one of them")
    raise ModelLoadError(f"{folder}: no config.json (nor a GGUF file) in this folder")


def load_gguf_file(path: Path) -> LoadedModel:
    from infermon.model.gguf_loader import load_gguf

    return load_gguf(path)


def preset_names() -> list[str]:
    """Names of the built-in presets."""
    folder = resources.files("infermon.model.presets")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _preset_config(name: str) -> dict | None:
    key = name.strip().lower()
    folder = resources.files("infermon.model.presets")
    candidate = folder / f"{key}.json"
    if candidate.is_file():
        return json.loads(candidate.read_text(encoding="utf-8"))
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text(encoding="utf-8"))
            if str((data.get("_infermon") or {}).get("hf_id", "")).lower() == key:
                return data
    return None


def load_preset(name: str) -> LoadedModel | None:
    """A built-in preset by name (``llama-2-7b``) or by its HF id; None when there is none."""
    cfg = _preset_config(name)
    if cfg is None:
        return None
    meta = cfg.get("_infermon") or {}
    label = meta.get("display_name") or name
    spec = _spec(cfg, label, f"preset {name}")
    if spec.dtype_source == "absent" and meta.get("stored_dtype"):
        # The published config names no dtype; the published weights' safetensors do.
        spec = dataclasses.replace(spec, torch_dtype=normalize_dtype(meta["stored_dtype"]), dtype_source="safetensors")
    return LoadedModel(spec, f"preset: {meta.get('hf_id', name)} config.json", None, spec.warnings)


def load_from_hf_cache(repo_id: str) -> LoadedModel | None:
    """A model id already in the local Hugging Face cache (never touches the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id huggingface_hub rejects is simply not in the cache
        return None
    if not isinstance(found, (str, os.PathLike)):
        found = _any_cached_snapshot(repo_id)
        if found is None:
            return None
    path = Path(found)
    cfg = _read_json(path)
    spec = _dtype_from_files(_spec(cfg, repo_id, f"{repo_id} (HF cache)"), path.parent)
    revision = path.parent.name
    return LoadedModel(spec, f"HF cache: {repo_id}@{revision[:12]}", exact_weight_bytes(path.parent), spec.warnings)


def _any_cached_snapshot(repo_id: str) -> Path | None:
    """A snapshot fetched by commit (no ``refs/main``): the newest one holding a config.json."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        return None
    folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    try:
        configs = [p / "config.json" for p in folder.iterdir() if (p / "config.json").is_file()]
    except OSError:
        return None
    return max(configs, key=lambda p: p.stat().st_mtime) if configs else None


def load_model(argument: str) -> LoadedModel:
    """Resolve ``--model``: a path (config.json, folder, .gguf), a cached HF id, or a preset.

    Raises :class:`ModelLoadError` with one line and, for names, the closest presets.
    """
    text = str(argument).strip()
    if not text:
        raise ModelLoadError("empty model name")
    path = Path(text).expanduser()
    if path.is_dir():
        return load_folder(path)
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return load_gguf_file(path)
        return load_config_file(path)
    looks_like_path = text.endswith((".json", ".gguf")) or os.sep in text and text.startswith((".", "/", "~"))
    if looks_like_path:
        raise ModelLoadError(f"{text}: no such file or folder")
    if "/" in text:
        cached = load_from_hf_cache(text)
        if cached is not None:
            return cached
    preset = load_preset(text)
    if preset is not None:
        return preset
    names = preset_names()
    close = difflib.get_close_matches(text.lower(), names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    where = " not in the local Hugging Face cache and" if "/" in text else ""
    raise ModelLoadError(
        f"unknown model {text!r}:{where} not a file or a preset{hint} (`infermon calc --list-models` lists presets)"
    )
