"""The GPU record the arithmetic consumes: memory, bandwidth and dense peaks per dtype."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuSpec:
    """One accelerator model, as its datasheet gives it.

    Units: bytes (``datasheet_memory_bytes`` SI: 24 GB = 24e9; ``reported_memory_bytes``
    the driver's total, NVML ``memory.total`` MiB × 2^20, or None where unknown),
    ``bandwidth_bytes_per_s`` in bytes/s, ``peak_flops`` in FLOP/s (or OP/s for integer
    types) **dense**, i.e. without 2:4 structured sparsity. Keys of ``peak_flops`` are
    dtype names: ``fp64``, ``fp32``, ``tf32``, ``bf16``, ``fp16``, ``fp8``, ``int8``,
    ``int4``, ``fp4``; a missing key means the hardware has no dense tensor path for that dtype.
    """

    name: str
    vendor: str
    datasheet_memory_bytes: float
    reported_memory_bytes: float | None
    bandwidth_bytes_per_s: float
    peak_flops: dict[str, float]
    source: str
    aliases: tuple[str, ...] = ()
    notes: str = ""
    # NVML name variants that are not simple prefixes/suffixes of ``name``.
    nvml_names: tuple[str, ...] = field(default=())

    @property
    def memory_bytes(self) -> float:
        """The memory the arithmetic uses (B): the driver-reported total, else the datasheet's."""
        return self.reported_memory_bytes if self.reported_memory_bytes is not None else self.datasheet_memory_bytes

    @property
    def memory_source(self) -> str:
        """Where :attr:`memory_bytes` comes from, in words."""
        if self.reported_memory_bytes is not None:
            mib = self.reported_memory_bytes / 2**20
            return (f"reported by the driver: {mib:,.0f} MiB (the datasheet's "
                    f"{self.datasheet_memory_bytes / 1e9:g} GB is the marketing size)")
        return f"datasheet: {self.datasheet_memory_bytes / 1e9:g} GB (no driver-reported size known)"
