"""Read a GGUF file (llama.cpp's format) into a :class:`ModelSpec`.

The file's ``{arch}.*`` metadata is translated into a Hugging Face style
config dict and handed to :func:`spec_from_config`, so a GGUF model is counted
by exactly the same rules as its ``config.json``. What only the file knows —
which tensors exist (tied head, biases), their stored sizes and types — is
taken from the tensor table, and the exact weight bytes are measured there.

Parsing is left to ``gguf.GGUFReader`` (the reference reader shipped with
llama.cpp); every failure it can raise on a damaged file is turned into a
one-line :class:`ModelLoadError`.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path
from typing import Any

from infermon.model.config import LIMITS, ConfigError, spec_from_config
from infermon.model.dtypes import WeightFormat
from infermon.model.loaders import LoadedModel, ModelLoadError
from infermon.model.params import count_params
from infermon.model.stored import StoredBytes

GGUF_MAGIC = b"GGUF"

# GGUF architecture name -> HF model_type. Architectures absent here are passed
# through unchanged; spec_from_config then warns that it assumed a Llama layout.
_MODEL_TYPES: dict[str, str] = {
    "llama": "llama",
    "mistral": "mistral",
    "mistral3": "mistral",
    "qwen2": "qwen2",
    "qwen2moe": "qwen2_moe",
    "qwen3": "qwen3",
    "qwen3moe": "qwen3_moe",
    "gemma": "gemma",
    "gemma2": "gemma2",
    "gemma3": "gemma3_text",
    "phi3": "phi3",
    "falcon": "falcon",
    "gpt2": "gpt2",
    "gptneox": "gpt_neox",
    "starcoder2": "starcoder2",
    "olmo2": "olmo2",
    "granite": "granite",
    "command-r": "cohere",
    "internlm2": "internlm2",
    "exaone": "exaone",
    "minicpm": "minicpm",
    "baichuan": "baichuan",
    "deepseek2": "deepseek_v2",
}

# Tensors that hold values derived from the config (RoPE scaling tables), not
# trained parameters: stored, so they count as bytes, but not as parameters.
_NON_PARAMETER_TENSORS = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")
_NON_PARAMETER_SUFFIXES = (".attn_rot_embd",)

_FLOAT_DTYPES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float32"}
_SPLIT_NAME = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on a single line, for a user-facing error."""
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def _open_reader(path: Path) -> Any:
    """A ``GGUFReader`` on ``path``, or a :class:`ModelLoadError` saying why not."""
    try:
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover - a declared dependency
        raise ModelLoadError(f"{path}: reading GGUF files needs the 'gguf' package (pip install gguf)") from None
    if path.exists() and not path.is_file():
        raise ModelLoadError(f"{path}: not a regular file")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such file") from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read ({_one_line(exc)})") from None
    if magic != GGUF_MAGIC:
        # Checked here rather than left to the reader: memmap refuses empty files
        # with a confusing message, and the reader's own is terse.
        raise ModelLoadError(f"{path}: not a GGUF file (it does not start with the 'GGUF' magic)")
    problem = _header_problem(path)
    if problem:
        raise ModelLoadError(f"{path}: truncated or corrupt GGUF file ({problem})")
    try:
        return GGUFReader(path)
    except MemoryError:
        raise ModelLoadError(f"{path}: corrupt GGUF file (absurd sizes in its header)") from None
    except Exception as exc:  # truncated or corrupt headers surface as many numpy/struct/value errors
        raise ModelLoadError(f"{path}: truncated or corrupt GGUF file ({_one_line(exc)})") from None


# GGUF value types → item size in bytes (8 = string, 9 = array: variable).
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _header_problem(path: Path) -> str | None:
    """Walk the key/value header checking every count and length against the bytes left.

    gguf's reader trusts them, and one absurd array length near the end of a corrupt file
    makes it loop for as long as the length says. Returns what is wrong, or None.
    """
    import mmap
    import struct

    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            size = len(data)
            if size < 24:
                return "shorter than its header"
            (version,) = struct.unpack_from("<I", data, 4)
            if version < 2:
                return None  # v1 used 32-bit counts; the reader handles (or refuses) it
            n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
            offset = 24
            if n_kv > (size - offset) // 12 or n_tensors > (size - offset) // 24:
                return f"claims {n_kv} keys and {n_tensors} tensors in {size} bytes"

            def string(at: int) -> int:
                if at + 8 > size:
                    raise ValueError("a string runs past the end")
                (length,) = struct.unpack_from("<Q", data, at)
                if length > size - at - 8:
                    raise ValueError(f"a string of {length} bytes runs past the end")
                return at + 8 + length

            def value(at: int, kind: int, depth: int = 0) -> int:
                if kind in _SCALAR_SIZES:
                    if at + _SCALAR_SIZES[kind] > size:
                        raise ValueError("a value runs past the end")
                    return at + _SCALAR_SIZES[kind]
                if kind == 8:
                    return string(at)
                if kind == 9 and depth < 4:
                    if at + 12 > size:
                        raise ValueError("an array header runs past the end")
                    item, count = struct.unpack_from("<IQ", data, at)
                    at += 12
                    if item in _SCALAR_SIZES:
                        if count * _SCALAR_SIZES[item] > size - at:
                            raise ValueError(f"an array of {count} items runs past the end")
                        return at + count * _SCALAR_SIZES[item]
                    if count > (size - at) // 8:
                        raise ValueError(f"an array of {count} items runs past the end")
                    for _ in range(count):
                        at = value(at, item, depth + 1)
                    return at
                raise ValueError(f"unknown value type {kind}")

            for _ in range(n_kv):
                offset = string(offset)
                if offset + 4 > size:
                    return "a key runs past the end"
                (kind,) = struct.unpack_from("<I", data, offset)
                offset = value(offset + 4, kind)
    except ValueError as exc:
        return str(exc)
    except (OSError, struct.error) as exc:
        return _one_line(exc)
    return None


class _Metadata:
    """Typed access to one reader's key/value fields, collecting warnings."""

    def __init__(self, reader: Any, arch: str):
        self.reader = reader
        self.arch = arch
        self.warnings: list[str] = []

    def raw(self, key: str) -> Any:
        """The value of ``key`` (``{arch}`` expanded), or None when absent or unreadable."""
        field = self.reader.get_field(key.format(arch=self.arch))
        if field is None or not field.types:
            return None
        return field.contents()

    def string(self, key: str) -> str | None:
        """A string field, or None."""
        value = self.raw(key)
        return value.strip() if isinstance(value, str) and value.strip() else None

    def integer(self, key: str) -> int | None:
        """A non-negative integer field; a per-layer array collapses to its largest value (with a warning)."""
        value = self.raw(f"{{arch}}.{key}")
        if isinstance(value, list):
            numbers = [v for v in value if _is_whole(v)]
            if not numbers:
                return None
            positive = [int(v) for v in numbers if v > 0]
            if len(set(positive)) > 1:
                self.warnings.append(
                    f"GGUF {self.arch}.{key} varies per layer ({min(positive)}..{max(positive)}): "
                    f"counted every layer at {max(positive)}")
            return max(positive) if positive else 0
        if not _is_whole(value) or value < 0:
            return None
        return int(value)


def _is_whole(value: Any) -> bool:
    """True for an integral number (bools excluded: a flag is not a count)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and int(value) == value


def _tensor_dims(tensor: Any) -> tuple[int, ...]:
    """GGML order: ``dims[0]`` is the contiguous (input) axis, ``dims[1]`` the rows."""
    return tuple(int(d) for d in tensor.shape.tolist())


def _vocab_size(meta: _Metadata, tensors: dict[str, Any]) -> int | None:
    """Rows of the token embedding; else ``{arch}.vocab_size``; else the tokenizer's token count.

    The embedding comes first because the converter may pad it past the token
    list, and it is the embedding that holds the parameters.
    """
    embd = tensors.get("token_embd.weight")
    if embd is not None:
        dims = _tensor_dims(embd)
        if len(dims) >= 2 and dims[1] > 0:
            return dims[1]
    declared = meta.integer("vocab_size")
    if declared:
        return declared
    field = meta.reader.get_field("tokenizer.ggml.tokens")
    # len(field.data) counts the strings without decoding each of them.
    if field is not None and field.data and field.data != [-1]:
        return len(field.data)
    return None


def _type_name(tensor: Any) -> str:
    """The tensor's GGML type name (``F16``, ``Q4_K``)."""
    return getattr(tensor.tensor_type, "name", str(tensor.tensor_type))


def _storage(tensors: list[Any], file_type: int | None) -> tuple[str, str, WeightFormat | None]:
    """(label for the byte count, torch_dtype, weight format of quantized linear weights or None).

    The dominant type is weighted by elements over matrices: 1-D norms are F32
    in every GGUF and say nothing about the checkpoint's format.
    """
    weights: Counter[str] = Counter()
    for t in tensors:
        if len(_tensor_dims(t)) >= 2:
            weights[_type_name(t)] += int(t.n_elements)
    if not weights:
        for t in tensors:
            weights[_type_name(t)] += int(t.n_elements)
    dominant = weights.most_common(1)[0][0] if weights else "F32"
    label = dominant
    if dominant not in _FLOAT_DTYPES and file_type is not None:
        # The file type names the quantization mix (Q4_K_M), which the tensor
        # types alone (Q4_K here, Q6_K there) do not.
        try:
            from gguf import LlamaFileType

            name = LlamaFileType(file_type & ~int(LlamaFileType.GUESSED)).name
            label = name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            pass
    if dominant in _FLOAT_DTYPES:
        return label, _FLOAT_DTYPES[dominant], None
    return label, "float16", _quantized_format(tensors, dominant, label)


def _quantized_format(tensors: list[Any], dominant: str, label: str) -> WeightFormat:
    """The decoder's quantized matrices as a :class:`WeightFormat` with their measured bytes per weight.

    Expressed as int8/int4 values plus per-block overhead so that
    ``bytes_per_param()`` equals the measured average (K-quant mixes included).
    Formats under 4 bits cannot be expressed that way and are floored at int4.
    """
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    elements = stored = 0
    for t in tensors:
        if t.name.startswith("blk.") and len(_tensor_dims(t)) >= 2:
            elements += int(t.n_elements)
            stored += int(t.n_bytes)
    per_weight = stored / elements if elements else 0.5
    try:
        block = int(GGML_QUANT_SIZES[GGMLQuantizationType[dominant]][0])
    except KeyError:
        block = 32
    method = f"GGUF {label}"
    if per_weight >= 1.0:
        return WeightFormat("int8", group_size=block, scale_bytes=(per_weight - 1.0) * block, method=method)
    if per_weight >= 0.5:
        return WeightFormat("int4", group_size=block, scale_bytes=(per_weight - 0.5) * block, method=method)
    # Below 4 bits (Q2_K, Q3_K, IQ2…): no int4 + overhead form exists; the measured
    # average is the figure, never a 0.5 B floor.
    return WeightFormat("int4", method=f"{method} ({per_weight * 8:.2f} bits/weight measured)",
                        measured_bytes_per_param=per_weight)


def _config(meta: _Metadata, tensors: dict[str, Any], dtype: str, where: str) -> dict:
    """The HF-style config dict this GGUF's metadata describes."""
    arch = meta.arch
    required = {"block_count": meta.integer("block_count"),
                "embedding_length": meta.integer("embedding_length"),
                "attention.head_count": meta.integer("attention.head_count")}
    embd = tensors.get("token_embd.weight")
    if not required["embedding_length"] and embd is not None:
        required["embedding_length"] = _tensor_dims(embd)[0]
    missing = [f"{arch}.{key}" for key, value in required.items() if not value]
    if missing:
        known = "" if arch in _MODEL_TYPES else f" (architecture {arch!r} is not one infermon knows)"
        raise ModelLoadError(f"{where}: GGUF metadata lacks {', '.join(missing)}{known}")
    layers, hidden, heads = required["block_count"], required["embedding_length"], required["attention.head_count"]
    if layers > LIMITS["layer count"]:
        # Checked before anything is built per layer (a hostile 2^63 would never finish).
        raise ModelLoadError(f"{where}: impossible {arch}.block_count {layers:,} (at most {LIMITS['layer count']:,})")

    vocab = _vocab_size(meta, tensors)
    if not vocab:
        raise ModelLoadError(f"{where}: cannot tell the vocabulary size (no token_embd.weight, "
                             f"{arch}.vocab_size or tokenizer.ggml.tokens)")

    experts = meta.integer("expert_count") or 0
    expert_ffn = meta.integer("expert_feed_forward_length")
    ffn = meta.integer("feed_forward_length") or expert_ffn
    if not ffn and "blk.0.ffn_down.weight" in tensors:
        ffn = _tensor_dims(tensors["blk.0.ffn_down.weight"])[0]

    model_type = _MODEL_TYPES.get(arch, arch)
    if arch == "llama" and experts:
        model_type = "mixtral"
    if arch == "deepseek2" and any(name.endswith(".exp_probs_b.bias") for name in tensors):
        # An expert-selection bias is what sets V3's router apart from V2's.
        model_type = "deepseek_v3"

    cfg: dict[str, Any] = {
        "model_type": model_type,
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "vocab_size": vocab,
        "torch_dtype": dtype,
        # A GGUF without output.weight reuses token_embd for the LM head.
        "tie_word_embeddings": "output.weight" not in tensors,
        # Biases are read off the tensor table; spec_from_config adds Qwen2's qkv biases by itself.
        "attention_bias": "blk.0.attn_output.bias" in tensors,
        "mlp_bias": "blk.0.ffn_down.bias" in tensors,
    }
    if ffn:
        cfg["intermediate_size"] = ffn
    kv_heads = meta.integer("attention.head_count_kv")
    if kv_heads:
        cfg["num_key_value_heads"] = kv_heads
    key_length = meta.integer("attention.key_length")
    if key_length and not meta.integer("attention.kv_lora_rank"):
        cfg["head_dim"] = key_length
    context = meta.integer("context_length")
    if context:
        cfg["max_position_embeddings"] = context

    window = meta.integer("attention.sliding_window")
    if window:
        cfg["sliding_window"] = window
        pattern = meta.raw("{arch}.attention.sliding_window_pattern")
        if isinstance(pattern, list) and len(pattern) == layers:
            cfg["layer_types"] = ["sliding_attention" if p else "full_attention" for p in pattern]
        elif _is_whole(pattern) and pattern > 0:
            cfg["sliding_window_pattern"] = int(pattern)

    if experts:
        cfg["num_local_experts"] = experts
        if expert_ffn:
            cfg["moe_intermediate_size"] = expert_ffn
        for gguf_key, config_key in (("expert_used_count", "num_experts_per_tok"),
                                     ("expert_shared_feed_forward_length", "shared_expert_intermediate_size"),
                                     ("expert_shared_count", "n_shared_experts"),
                                     ("leading_dense_block_count", "first_k_dense_replace")):
            value = meta.integer(gguf_key)
            if value:
                cfg[config_key] = value
        dense = meta.integer("leading_dense_block_count") or 0
        if model_type in ("qwen2_moe", "qwen3_moe") and dense:
            cfg["mlp_only_layers"] = list(range(min(dense, layers)))

    kv_lora = meta.integer("attention.kv_lora_rank")
    if kv_lora:
        rope = meta.integer("rope.dimension_count")
        # Newer converters store the absorbed-MLA shapes in key/value_length and
        # the per-head ones in the *_mla keys.
        qk_head = meta.integer("attention.key_length_mla") or key_length
        v_head = meta.integer("attention.value_length_mla") or meta.integer("attention.value_length")
        if not (rope and qk_head and v_head) or qk_head <= rope:
            raise ModelLoadError(f"{where}: GGUF MLA metadata incomplete ({arch}.attention.key_length, "
                                 f"value_length and rope.dimension_count are needed)")
        cfg.update(kv_lora_rank=kv_lora, q_lora_rank=meta.integer("attention.q_lora_rank") or None,
                   qk_rope_head_dim=rope, qk_nope_head_dim=qk_head - rope, v_head_dim=v_head,
                   head_dim=rope)
        nextn = meta.integer("nextn_predict_layers")
        if nextn:
            cfg["num_nextn_predict_layers"] = nextn

    if model_type == "falcon":
        cfg["new_decoder_architecture"] = "blk.0.attn_norm_2.weight" in tensors
        cfg["num_kv_heads"] = kv_heads or heads
        cfg["multi_query"] = (kv_heads or heads) == 1
        cfg["parallel_attn"] = "blk.0.ffn_norm.weight" not in tensors
        cfg["bias"] = "blk.0.attn_qkv.bias" in tensors
    if model_type == "gpt2":
        positions = tensors.get("position_embd.weight")
        n_positions = _tensor_dims(positions)[1] if positions is not None and len(_tensor_dims(positions)) >= 2 else context
        if n_positions:
            cfg["n_positions"] = n_positions
    return cfg


_ROUTED_EXPERT = re.compile(r"\.ffn_[a-z_]+_exps\.")


def _stored_bytes(tensors: list[Any], label: str) -> StoredBytes:
    """The tensor table's bytes, split the way a decode step reads them (see :class:`StoredBytes`).

    The token embedding's row is its stored size ÷ rows, so a quantized table is
    gathered at its quantized width; routed experts are their tensors' own bytes.
    """
    by_name = {t.name: t for t in tensors}
    total = float(sum(int(t.n_bytes) for t in tensors))
    gathered = row = 0.0
    tables = ["position_embd.weight"]
    if "output.weight" in by_name:
        tables.append("token_embd.weight")  # otherwise it is the LM head too, read whole
    for name in tables:
        tensor = by_name.get(name)
        if tensor is None:
            continue
        dims = _tensor_dims(tensor)
        rows = dims[1] if len(dims) >= 2 else 0
        if rows <= 0:
            continue
        gathered += float(tensor.n_bytes)
        row += float(tensor.n_bytes) / rows
    routed = float(sum(int(t.n_bytes) for t in tensors if _ROUTED_EXPERT.search(t.name)))

    def size(name: str) -> float:
        tensor = by_name.get(name)
        return float(tensor.n_bytes) if tensor is not None else 0.0

    return StoredBytes(total=total, gathered=gathered, gathered_row=row, routed_experts=routed,
                       source=f"measured: GGUF tensor sizes ({label})", embedding=size("token_embd.weight"),
                       lm_head=size("output.weight"), positional=size("position_embd.weight"))


def _shard_paths(path: Path, count: int) -> list[Path] | None:
    """All shards of a split GGUF (``name-00001-of-00003.gguf``), or None when one is missing."""
    match = _SPLIT_NAME.match(path.name)
    if not match:
        return None
    width = len(match["index"])
    paths = [path.with_name(f"{match['stem']}-{i:0{width}d}-of-{match['count']}.gguf") for i in range(1, count + 1)]
    return paths if all(p.is_file() for p in paths) else None


def _all_tensors(reader: Any, path: Path, meta: _Metadata) -> tuple[list[Any], bool]:
    """Every tensor of the model (from all shards of a split file) and whether that set is complete."""
    tensors = list(reader.tensors)
    count = meta.raw("split.count")
    if not _is_whole(count) or count <= 1:
        return tensors, True
    shards = _shard_paths(path, int(count))
    if shards is None:
        meta.warnings.append(f"split GGUF with {int(count)} parts, not all found beside {path.name}: "
                             "weight bytes not measured")
        return tensors, False
    tensors = []
    for shard in shards:
        tensors.extend(reader.tensors if shard == path else _open_reader(shard).tensors)
    return tensors, True


def _load(reader: Any, path: Path) -> LoadedModel:
    """The :class:`LoadedModel` an opened reader describes."""
    where = str(path)
    arch_field = reader.get_field("general.architecture")
    arch = arch_field.contents() if arch_field is not None and arch_field.types else None
    if not isinstance(arch, str) or not arch.strip():
        raise ModelLoadError(f"{where}: GGUF metadata lacks general.architecture")
    meta = _Metadata(reader, arch.strip().lower())

    all_tensors, complete = _all_tensors(reader, path, meta)
    by_name = {t.name: t for t in all_tensors}
    file_type = meta.raw("general.file_type")
    label, dtype, weight_format = _storage(all_tensors, int(file_type) if _is_whole(file_type) else None)

    cfg = _config(meta, by_name, dtype, where)
    name = meta.string("general.name") or path.stem
    try:
        spec = spec_from_config(cfg, name=name)
    except ConfigError as exc:
        raise ModelLoadError(f"{where}: {exc}") from None
    # llama.cpp computes in what the file stores: no serving-dtype rule applies.
    spec = dataclasses.replace(spec, dtype_source="gguf")
    if weight_format is not None:
        spec = dataclasses.replace(spec, weight_format=weight_format)

    warnings = list(spec.warnings) + meta.warnings
    exact = stored = None
    if complete:
        stored = _stored_bytes(all_tensors, label)
        exact = (stored.total, stored.source)
        in_file = sum(int(t.n_elements) for t in all_tensors
                      if t.name not in _NON_PARAMETER_TENSORS and not t.name.endswith(_NON_PARAMETER_SUFFIXES))
        counted = count_params(spec).total
        if in_file != counted:
            warnings.append(
                f"GGUF tensors hold {in_file:,} parameters but the {spec.model_type} layout counts {counted:,} "
                f"({in_file - counted:+,}); figures use the layout count")
    spec = dataclasses.replace(spec, warnings=tuple(warnings))
    return LoadedModel(spec, f"GGUF: {path}", exact, tuple(warnings), stored)


_DAMAGED_HEADER = (ValueError, KeyError, IndexError, OverflowError, UnicodeDecodeError, MemoryError)


def load_gguf(path: Path | str) -> LoadedModel:
    """Load a ``.gguf`` file: spec from its metadata, exact weight bytes from its tensor table.

    Raises :class:`ModelLoadError` (one line) for anything that is not a
    readable GGUF model file.
    """
    path = Path(path)
    reader = _open_reader(path)
    try:
        return _load(reader, path)
    except _DAMAGED_HEADER as exc:
        # What a damaged header can make the reader or the numbers raise. Programming errors
        # (NameError, AttributeError, TypeError…) are not caught: they must fail loudly.
        raise ModelLoadError(f"{path}: corrupt GGUF metadata ({_one_line(exc)})") from None
