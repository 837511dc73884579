"""Find a GPU in the datasheet table by NVML name or short alias, and combine GPUs."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from infermon.model.gpu_spec import GpuSpec
from infermon.model.gpu_table import GPUS


class GpuLookupError(LookupError):
    """A GPU name that matches nothing in the table."""


_MIG = re.compile(r"\s+mig\s+\S+$")
_PREFIXES = ("nvidia ", "tesla ", "geforce ", "amd ", "instinct ", "radeon ")


def _key(name: str) -> str:
    """Canonical matching key: lowercase, no vendor words, no MIG profile, separators unified."""
    text = name.strip().lower()
    text = _MIG.sub("", text)
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if text.startswith(prefix):
                text = text[len(prefix):]
                changed = True
    return re.sub(r"[\s_\-]+", "-", text).strip("-")


def _index() -> dict[str, GpuSpec]:
    index: dict[str, GpuSpec] = {}
    for gpu in GPUS:
        for name in (gpu.name, *gpu.nvml_names, *gpu.aliases):
            index.setdefault(_key(name), gpu)
    return index


_INDEX = _index()


def is_mig_name(name: str) -> bool:
    """True for NVML names of a MIG slice, e.g. ``NVIDIA A100-SXM4-40GB MIG 1g.5gb``."""
    return bool(_MIG.search(name.strip().lower()))


def find_gpu(name: str) -> GpuSpec | None:
    """The table row for ``name`` (NVML name, with or without vendor prefix or MIG suffix, or alias)."""
    return _INDEX.get(_key(name))


def suggest_gpus(name: str, limit: int = 3) -> list[str]:
    """Closest known names and aliases, for a "did you mean" hint."""
    keys = difflib.get_close_matches(_key(name), list(_INDEX), n=limit * 3, cutoff=0.4)
    seen: list[str] = []
    for key in keys:
        gpu = _INDEX[key]
        label = gpu.aliases[0] if gpu.aliases else gpu.name
        if label not in seen:
            seen.append(label)
    return seen[:limit]


def lookup_gpu(name: str) -> GpuSpec:
    """Like :func:`find_gpu` but raises :class:`GpuLookupError` with suggestions."""
    gpu = find_gpu(name)
    if gpu is None:
        hint = suggest_gpus(name)
        more = f"; did you mean {', '.join(hint)}?" if hint else ""
        raise GpuLookupError(
            f"unknown GPU {name!r}{more} (see `infermon calc --list-gpus`, or give "
            "--gpu-memory, --gpu-bandwidth and --gpu-flops)"
        )
    return gpu


@dataclass(frozen=True)
class Hardware:
    """What the arithmetic runs against: ``count`` identical GPUs (tensor parallel: everything adds).

    ``memory_bytes``, ``bandwidth_bytes_per_s`` and ``peak_flops`` are totals
    over all GPUs; ``peak_flops`` is the dense peak of ``compute_dtype``
    (``None`` when unknown). ``sources`` says where each figure came from.
    """

    name: str
    count: int
    memory_bytes: float
    bandwidth_bytes_per_s: float
    peak_flops: float | None
    compute_dtype: str
    sources: dict[str, str]


def combine(
    gpu: GpuSpec | None,
    count: int,
    compute_dtype: str,
    memory_bytes: float | None = None,
    bandwidth_bytes_per_s: float | None = None,
    peak_flops: float | None = None,
) -> Hardware:
    """Total memory, bandwidth and dense peak of ``count`` GPUs, with per-figure overrides (per GPU).

    Memory is the table's driver-reported size (NVML ``memory.total``) where known, so calc
    and the live view, which reads NVML, use the same number.
    """
    sources: dict[str, str] = {}

    def pick(override: float | None, table: float | None, what: str) -> float | None:
        if override is not None:
            sources[what] = "given on the command line"
            return override
        if table is not None and gpu is not None:
            # The memory row holds the driver-reported size where known (see GpuSpec.memory_source).
            sources[what] = f"datasheet: {gpu.memory_source if what == 'memory' else gpu.source}"
            return table
        sources[what] = "unknown"
        return None

    table_peak = gpu.peak_flops.get(compute_dtype) if gpu else None
    memory = pick(memory_bytes, gpu.memory_bytes if gpu else None, "memory")
    bandwidth = pick(bandwidth_bytes_per_s, gpu.bandwidth_bytes_per_s if gpu else None, "bandwidth")
    peak = pick(peak_flops, table_peak, "peak_flops")
    name = gpu.name if gpu else "custom GPU"
    return Hardware(
        name=name,
        count=count,
        memory_bytes=float(memory or 0.0) * count,
        bandwidth_bytes_per_s=(bandwidth or 0.0) * count,
        peak_flops=peak * count if peak is not None else None,
        compute_dtype=compute_dtype,
        sources=sources,
    )
