"""GPU table: names as NVML reports them, aliases, MIG suffixes, suggestions, dense peaks."""

import pytest

from infermon.model.gpu import GpuLookupError, find_gpu, is_mig_name, lookup_gpu, suggest_gpus
from infermon.model.gpu_table import GPUS

REQUIRED = ["a10", "a10g", "a100-40gb-pcie", "a100-80gb-pcie", "a100-40gb-sxm", "a100-80gb-sxm", "h100-pcie",
            "h100-sxm", "h100-nvl", "h200", "h200-nvl", "h20", "l4", "l40", "l40s", "rtx-a6000", "rtx-6000-ada",
            "rtx3090", "rtx4090", "rtx5090", "v100", "t4", "b200", "gb200", "mi300x", "mi325x"]


@pytest.mark.parametrize("name, expected", [
    ("NVIDIA A10", "NVIDIA A10"),
    ("A10", "NVIDIA A10"),
    ("a10", "NVIDIA A10"),
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"),
    ("H100 80GB HBM3", "NVIDIA H100 80GB HBM3"),
    ("h100-sxm", "NVIDIA H100 80GB HBM3"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"),
    ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "NVIDIA A100-SXM4-40GB"),
    ("Tesla T4", "Tesla T4"),
    ("NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4090"),
    ("AMD Instinct MI300X", "AMD Instinct MI300X"),
])
def test_names_resolve(name, expected):
    assert lookup_gpu(name).name == expected


@pytest.mark.parametrize("alias", REQUIRED)
def test_table_has_every_required_gpu(alias):
    assert find_gpu(alias) is not None, alias


def test_table_has_at_least_25_rows_each_with_a_source():
    assert len(GPUS) >= 25
    for gpu in GPUS:
        assert gpu.source and gpu.memory_bytes > 0 and gpu.bandwidth_bytes_per_s > 0
        assert gpu.peak_flops.get("bf16", gpu.peak_flops.get("fp16", 0)) > 0, gpu.name


def test_peaks_are_dense_not_sparse():
    # Datasheets print 2:4-sparse figures; H100 SXM bf16 dense is 989.5 TFLOPS (1,979 with sparsity).
    assert lookup_gpu("h100-sxm").peak_flops["bf16"] == pytest.approx(989.5e12, rel=0.01)
    assert lookup_gpu("a100").peak_flops["bf16"] == pytest.approx(312e12)
    assert lookup_gpu("a10").peak_flops["fp16"] == pytest.approx(125e12)
    assert lookup_gpu("a10").bandwidth_bytes_per_s == pytest.approx(600e9)
    assert lookup_gpu("a10").datasheet_memory_bytes == pytest.approx(24e9)


def test_memory_is_what_nvml_reports_with_the_datasheet_beside_it():
    """NVML's memory.total (MiB × 2^20) is what engines size their KV cache from and what the live view reads."""
    h100 = lookup_gpu("h100-sxm")
    assert h100.reported_memory_bytes == 81_559 * 2**20 == h100.memory_bytes
    assert h100.memory_bytes == pytest.approx(85.52e9, rel=1e-4)
    assert h100.datasheet_memory_bytes == 80e9
    assert lookup_gpu("a10").memory_bytes == 23_028 * 2**20
    assert lookup_gpu("h200").memory_bytes == 143_771 * 2**20
    assert lookup_gpu("l4").memory_bytes == 23_034 * 2**20
    assert "81,559 MiB" in h100.memory_source
    for gpu in GPUS:
        # The reported size is within a few percent of the marketing one (ECC, reserved, GiB vs GB).
        if gpu.reported_memory_bytes is not None:
            assert 0.93 < gpu.reported_memory_bytes / gpu.datasheet_memory_bytes < 1.12, gpu.name
        else:
            assert gpu.memory_bytes == gpu.datasheet_memory_bytes and "datasheet" in gpu.memory_source


def test_mig_names_are_recognised():
    assert is_mig_name("NVIDIA A100-SXM4-40GB MIG 1g.5gb")
    assert not is_mig_name("NVIDIA A100-SXM4-40GB")


def test_unknown_gpu_suggests_close_names():
    with pytest.raises(GpuLookupError) as err:
        lookup_gpu("h1OO")
    assert "h100" in str(err.value).lower()
    assert suggest_gpus("a1000")
