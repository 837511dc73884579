"""Numeric formats: bytes per value, quantization scale overhead, and which peak applies."""

from __future__ import annotations

from dataclasses import dataclass

BYTES_PER_VALUE: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
}
DTYPES: tuple[str, ...] = tuple(BYTES_PER_VALUE)

# Spellings found in config.json (`torch_dtype`), GGUF and on command lines.
_ALIASES: dict[str, str] = {
    "float32": "fp32", "float": "fp32", "f32": "fp32", "fp32": "fp32",
    "bfloat16": "bf16", "bf16": "bf16",
    "float16": "fp16", "half": "fp16", "f16": "fp16", "fp16": "fp16",
    "float8": "fp8", "fp8": "fp8", "float8_e4m3fn": "fp8", "float8_e5m2": "fp8", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8",
    "int8": "int8", "i8": "int8", "q8": "int8",
    "int4": "int4", "i4": "int4", "q4": "int4",
}

# Default group size assumed for int4 when nothing says otherwise (GPTQ and AWQ default).
DEFAULT_INT4_GROUP_SIZE = 128


class DTypeError(ValueError):
    """An unknown or unusable numeric format."""


def normalize_dtype(name: str) -> str:
    """Map a user or config spelling ("bfloat16", "FP16", "float8_e4m3fn") to a canonical dtype."""
    key = str(name).strip().lower().removeprefix("torch.")
    try:
        return _ALIASES[key]
    except KeyError:
        raise DTypeError(
            f"unknown dtype {name!r}: use one of {', '.join(DTYPES)}"
        ) from None


@dataclass(frozen=True)
class WeightFormat:
    """How quantized matmul weights are stored.

    ``dtype`` is the stored value type; ``group_size`` the number of weights
    sharing one scale (``None``: per-channel or none); ``scale_bytes`` the size of
    one scale; ``zero_point_bytes`` the size of one zero point per group (0 when
    symmetric); ``block_elements`` for block-wise fp8 scales (e.g. 128×128).
    """

    dtype: str
    group_size: int | None = None
    scale_bytes: float = 2.0
    zero_point_bytes: float = 0.0
    block_elements: int | None = None
    method: str = ""
    measured_bytes_per_param: float | None = None

    def bytes_per_param(self) -> float:
        """Bytes per weight = value bytes + (scale + zero point) / group size.

        Block-wise scales add ``scale_bytes / block_elements`` instead. With
        neither, the format has no per-weight overhead (per-channel scales are
        rows, not weights, and are ignored: < 0.1 % for any real layer).
        ``measured_bytes_per_param``, where a file gave it (a GGUF under
        4 bits per weight), is the answer as it is.
        """
        if self.measured_bytes_per_param is not None:
            return self.measured_bytes_per_param
        value = BYTES_PER_VALUE[self.dtype]
        if self.group_size:
            value += (self.scale_bytes + self.zero_point_bytes) / self.group_size
        elif self.block_elements:
            value += self.scale_bytes / self.block_elements
        return value


def plain_format(dtype: str) -> WeightFormat:
    """The format a user means by ``--dtype D``: int4 gets group-128 fp16 scales, others none."""
    dtype = normalize_dtype(dtype)
    if dtype == "int4":
        return WeightFormat("int4", group_size=DEFAULT_INT4_GROUP_SIZE, scale_bytes=2.0, method="int4 (assumed g128)")
    return WeightFormat(dtype)


def _group(value: object) -> int | None:
    """A positive whole group size (at most 2^24 weights), else None (per-channel or unknown)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 2**24:
        return None
    return value


def format_from_quantization_config(qc: dict, default_dtype: str) -> WeightFormat | None:
    """Read a Hugging Face ``quantization_config`` into a :class:`WeightFormat`.

    Knows GPTQ/AWQ (``bits``, ``group_size``, ``sym``/``zero_point``), fp8
    (``weight_block_size``), bitsandbytes (``load_in_4bit``/``load_in_8bit``) and
    compressed-tensors' ``config_groups``. Returns ``None`` when it is not a
    weight quantization it understands (including values of the wrong type).
    """
    if not isinstance(qc, dict):
        return None
    method = str(qc.get("quant_method", ""))[:40].lower()
    if method == "fp8" or qc.get("fmt") in ("e4m3", "e5m2"):
        block = qc.get("weight_block_size")
        block_elements = None
        if isinstance(block, (list, tuple)) and 0 < len(block) <= 4 and all(_group(b) for b in block):
            block_elements = 1
            for b in block:
                block_elements *= b
        return WeightFormat("fp8", scale_bytes=4.0, block_elements=block_elements, method="fp8")
    if method == "bitsandbytes":
        if qc.get("load_in_4bit") is True:
            # bnb nf4/fp4: blocksize 64 with an 8-bit double-quantized absmax ≈ 0.5 + 1/64 B/param.
            return WeightFormat("int4", group_size=64, scale_bytes=1.0, method="bitsandbytes-4bit")
        if qc.get("load_in_8bit") is True:
            return WeightFormat("int8", method="bitsandbytes-8bit")
        return None
    if method == "compressed-tensors":
        groups = qc.get("config_groups")
        for group in (groups.values() if isinstance(groups, dict) else ()):
            weights = group.get("weights") if isinstance(group, dict) else None
            if not isinstance(weights, dict):
                continue
            bits = weights.get("num_bits")
            kind = str(weights.get("type", "int"))[:16].lower()
            if bits == 8 and kind == "float":
                return WeightFormat("fp8", method="compressed-tensors fp8")
            if bits in (4, 8) and not isinstance(bits, bool):
                zp = 0.0 if weights.get("symmetric", True) else (0.5 if bits == 4 else 1.0)
                return WeightFormat("int4" if bits == 4 else "int8", group_size=_group(weights.get("group_size")),
                                    scale_bytes=2.0, zero_point_bytes=zp, method=f"compressed-tensors w{bits}")
        return None
    bits = qc.get("bits", qc.get("w_bit"))
    if bits in (4, 8) and not isinstance(bits, bool):
        gs = _group(qc.get("group_size", qc.get("q_group_size")))
        symmetric = bool(qc.get("sym", not qc.get("zero_point", True)))
        zp = 0.0 if symmetric else (0.5 if bits == 4 else 1.0)
        return WeightFormat("int4" if bits == 4 else "int8", group_size=gs, scale_bytes=2.0,
                            zero_point_bytes=zp, method=method or f"int{bits}")
    return None


def compute_dtype(weight_dtype: str, activation_dtype: str, available: set[str]) -> str:
    """The dtype whose tensor-core peak bounds the matmuls.

    Weight-only int4/int8 kernels dequantize and multiply in the activation
    dtype (fp16/bf16), so their peak applies; fp8 weights run fp8 matmuls where
    the GPU has them; fp32 uses the plain fp32 rate.
    """
    if weight_dtype == "fp8" and "fp8" in available:
        return "fp8"
    if weight_dtype in ("fp32", "bf16", "fp16"):
        return weight_dtype
    return activation_dtype if activation_dtype in ("bf16", "fp16", "fp32") else "fp16"
