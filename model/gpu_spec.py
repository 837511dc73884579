"""The GPU record the arithmetic consumes: memory, bandwidth and dense peaks per dtype."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuSpec:
    """One accelerator model, as its datasheet gives it.

    Units: ``memory_bytes`` in bytes (SI: 24 GB = 24e9), ``bandwidth_bytes_per_s``
    in bytes/s, ``peak_flops`` in FLOP/s (or OP/s for integer types) **dense**,
    i.e. without 2:4 structured sparsity. Keys of ``peak_flops`` are dtype names:
    ``fp64``, ``fp32``, ``tf32``, ``bf16``, ``fp16``, ``fp8``, ``int8``, ``int4``, ``fp4``;
    a missing key means the hardware has no dense tensor path for that dtype.
    """

    name: str
    vendor: str
    memory_bytes: float
    bandwidth_bytes_per_s: float
    peak_flops: dict[str, float]
    source: str
    aliases: tuple[str, ...] = ()
    notes: str = ""
    # NVML name variants that are not simple prefixes/suffixes of ``name``.
    nvml_names: tuple[str, ...] = field(default=())
