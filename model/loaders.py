"""Find a model's config from what the user typed: a path, a folder, a cached HF id, a GGUF file or a preset.

The only I/O in ``infermon.model``: each loader reads the files it is pointed at.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import sys
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from infermon.model.config import ConfigError, spec_from_config
from infermon.model.dtypes import normalize_dtype
from infermon.model.spec import ModelSpec
from infermon.model.stored import StoredBytes

# Every file here is untrusted: reads are bounded in bytes and in JSON nesting depth.
# A safetensors header is JSON of a few hundred kB (a few MB for the largest single files);
# a config.json a few kB; an index a few MB (DeepSeek-V3's: 9 MB for 91,000 tensors).
_MAX_SAFETENSORS_HEADER = 64 * 1024 * 1024
_MAX_CONFIG_BYTES = 16 * 1024 * 1024
_MAX_INDEX_BYTES = 64 * 1024 * 1024
_MAX_JSON_DEPTH = 64
_MAX_SAFETENSORS_FILES = 10_000
_MAX_WEIGHT_BYTES = 1e15  # 1 PB: beyond any checkpoint
# Bytes per value of the safetensors dtypes whose size is a whole number of bytes.
_SAFETENSORS_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
                      "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}


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


def _regular_files(folder: Path, pattern: str) -> list[Path]:
    """Regular files matching ``pattern``: a FIFO or device named like a checkpoint would block a read forever."""
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def _too_deep(value: object, limit: int = _MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests deeper than ``limit`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return False


def parse_json(raw: bytes, where: str) -> object:
    """Untrusted JSON bytes as Python values, or a one-line :class:`ModelLoadError`.

    Refuses nesting beyond 64 levels (the parser's own recursion included) and the
    integers of more than 4,300 digits Python will not convert. NaN and Infinity literals
    parse to floats; every number read from them is checked where it is used.
    """
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ModelLoadError(f"{where}: JSON nested too deeply to be a model file") from None
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{where}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError:
        raise ModelLoadError(f"{where}: not UTF-8 text") from None
    except ValueError as exc:  # e.g. an integer beyond Python's 4,300-digit conversion limit
        text = " ".join(str(exc).split())[:120]
        raise ModelLoadError(f"{where}: unreadable JSON ({text})") from None
    if _too_deep(data):
        raise ModelLoadError(f"{where}: JSON nested more than {_MAX_JSON_DEPTH} levels deep")
    return data


def _read_json(path: Path, limit: int = _MAX_CONFIG_BYTES) -> dict:
    if path.exists() and not path.is_file():
        raise ModelLoadError(f"{path}: not a regular file")
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such file") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    if len(raw) > limit:
        raise ModelLoadError(f"{path}: larger than {limit // 2**20} MiB, too large to be a {path.name}")
    data = parse_json(raw, str(path))
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: not a JSON object")
    return data


def _spec(cfg: dict, name: str, where: str) -> ModelSpec:
    try:
        return spec_from_config(cfg, name=name)
    except ConfigError as exc:
        raise ModelLoadError(f"{where}: {exc}") from None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def safetensors_header(path: Path) -> dict:
    """The JSON header of one safetensors file, every entry checked against the file (no tensor is read).

    Layout: 8-byte little-endian header length N, N bytes of JSON mapping each
    tensor to its ``dtype``, ``shape`` and ``data_offsets`` [begin, end) within the
    data that follows. Each entry must lie inside the file, and its shape must hold
    exactly its bytes (a 10¹² × 10¹² shape over 16 bytes is a corrupt file, not a model).
    """
    if not path.is_file():
        raise ModelLoadError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            raw = handle.read(8)
            if len(raw) != 8:
                raise ModelLoadError(f"{path}: truncated safetensors file")
            (length,) = struct.unpack("<Q", raw)
            if length <= 0 or length > _MAX_SAFETENSORS_HEADER or length > size - 8:
                raise ModelLoadError(f"{path}: not a safetensors file (header length {length} in {size} bytes)")
            blob = handle.read(length)
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    header = parse_json(blob, f"{path}: safetensors header")
    if not isinstance(header, dict):
        raise ModelLoadError(f"{path}: corrupt safetensors header")
    data_bytes = size - 8 - length
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        shown = key if len(key) <= 60 else key[:60] + "…"
        if not isinstance(entry, dict):
            raise ModelLoadError(f"{path}: corrupt safetensors entry {shown!r}")
        offsets, shape, dtype = entry.get("data_offsets"), entry.get("shape"), entry.get("dtype")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets)
                or not offsets[0] <= offsets[1] <= data_bytes):
            raise ModelLoadError(f"{path}: corrupt safetensors entry {shown!r} (its data_offsets are not inside the file)")
        if not isinstance(shape, list) or len(shape) > 16 or not all(_is_count(d) for d in shape):
            raise ModelLoadError(f"{path}: corrupt safetensors entry {shown!r} (its shape is not a list of sizes)")
        width = _SAFETENSORS_SIZES.get(dtype) if isinstance(dtype, str) else None
        if width is not None and math.prod(shape) * width != offsets[1] - offsets[0]:
            raise ModelLoadError(f"{path}: corrupt safetensors entry {shown!r} (its shape does not match its bytes)")
    return header


def safetensors_header_bytes(path: Path) -> int:
    """Bytes of tensor data in one safetensors file: Σ (end − begin) of its ``data_offsets``."""
    return sum(entry["data_offsets"][1] - entry["data_offsets"][0]
               for key, entry in safetensors_header(path).items() if key != "__metadata__")


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
    for path in files[:_MAX_SAFETENSORS_FILES]:
        for key, entry in safetensors_header(path).items():
            name = _SAFETENSORS_FLOATS.get(entry.get("dtype")) if key != "__metadata__" else None
            if name is not None:
                held[name] = held.get(name, 0) + entry["data_offsets"][1] - entry["data_offsets"][0]
    if not held:
        return None
    if "fp32" in held:
        return "fp32"
    return max(held, key=held.get)


def _dtype_from_files(spec: ModelSpec, folder: Path) -> ModelSpec:
    """A config without ``torch_dtype``: take the stored tensors' dtype, as vLLM does."""
    if spec.dtype_source != "absent":
        return spec
    files = _regular_files(folder, "*.safetensors")
    found = safetensors_dtype(files) if files else None
    if found is None:
        return spec
    return dataclasses.replace(spec, torch_dtype=found, dtype_source="safetensors")


def exact_weight_bytes(folder: Path) -> tuple[float, str] | None:
    """Weight bytes of a checkpoint folder: the index's ``metadata.total_size``, else the sum of safetensors headers."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        data = _read_json(index, _MAX_INDEX_BYTES)
        metadata = data.get("metadata")
        total = metadata.get("total_size") if isinstance(metadata, dict) else None
        if total is not None:
            if (isinstance(total, bool) or not isinstance(total, (int, float)) or not math.isfinite(total)
                    or not 0 < total <= _MAX_WEIGHT_BYTES):
                shown = f"an integer of {total.bit_length()} bits" if isinstance(total, int) else repr(total)[:40]
                raise ModelLoadError(f"{index}: impossible metadata.total_size {shown} (need bytes up to 1e15)")
            return float(total), f"measured: {index.name} total_size"
    files = _regular_files(folder, "*.safetensors")
    if len(files) > _MAX_SAFETENSORS_FILES:
        raise ModelLoadError(f"{folder}: {len(files)} safetensors files, more than any checkpoint has")
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
    ggufs = _regular_files(folder, "*.gguf")
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


def _maybe_in_hf_cache(repo_id: str) -> bool:
    """False only when no folder huggingface_hub could use as its cache holds ``repo_id`` (importing
    huggingface_hub costs a few hundred ms at start-up, for a model that is not there)."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    roots = [os.environ.get("HF_HUB_CACHE"), os.environ.get("HUGGINGFACE_HUB_CACHE"), os.path.join(home, "hub")]
    loaded = sys.modules.get("huggingface_hub.constants")  # already imported: its own answer costs nothing
    if loaded is not None:
        roots.append(getattr(loaded, "HF_HUB_CACHE", None))
    folder = "models--" + repo_id.replace("/", "--")
    return any(root and os.path.isdir(os.path.join(root, folder)) for root in roots)


def load_from_hf_cache(repo_id: str) -> LoadedModel | None:
    """A model id already in the local Hugging Face cache (never touches the network)."""
    if not _maybe_in_hf_cache(repo_id):
        return None
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
    if path.exists():
        raise ModelLoadError(f"{text}: not a regular file or a folder (a FIFO, a device or a socket is not read)")
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
