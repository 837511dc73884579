"""Datasheet figures for the accelerators infermon knows by name.

Conventions (every row follows them; the notes say where a row departs):

* SI units throughout. ``datasheet_memory_bytes``: GB = 1e9 bytes, so an "80 GB" HBM part
  is ``80e9`` (the marketing capacity). ``reported_memory_bytes`` is what the driver
  reports as the card's total (NVML ``memory.total``, what ``nvidia-smi`` prints in MiB;
  rocm-smi for AMD), e.g. 81,559 MiB = 85.5e9 B on an H100 SXM: the size the live view
  sees and every engine sizes its KV cache from, so the arithmetic uses it. Each row says
  where its figure was seen; ECC-capable GDDR cards are given in their default ECC mode
  (on for data-center parts, which costs them about 6 %). ``None`` where no reported figure
  is known: the datasheet figure is used then, and said.
  ``bandwidth_bytes_per_s``: TB/s = 1e12 B/s. ``peak_flops``: TFLOPS = 1e12 FLOP/s
  (TOPS = 1e12 OP/s for the integer types).
* All ``peak_flops`` figures are **dense**. Datasheets print the 2:4 structured-sparsity
  figure, marked ``*`` or "with sparsity"; those were halved, or the dense figure printed
  beside them was used.
* ``fp32`` is the non-tensor (CUDA core / vector) FP32 rate; ``tf32``, ``bf16``, ``fp16``,
  ``fp8``, ``int8``, ``int4`` and ``fp4`` are tensor-core (matrix-core) rates. ``fp64`` is
  the vector FP64 rate where the datasheet gives one (the FP64 tensor rate, where
  different, is in the notes); it is omitted where the datasheet does not list FP64.
* A tensor dtype is omitted when the hardware has no dense tensor path for it: no ``fp8``
  before Ada/Hopper, no ``bf16``/``tf32`` before Ampere, no ``int8`` tensor path on V100,
  no ``int4`` on Hopper/Blackwell datacenter parts, no ``fp4`` before Blackwell.
* GeForce cards (RTX 3090/4090/5090): the ``fp16``/``bf16`` (and ``fp8``) figures are the
  rates **with FP32 accumulate**, which on GeForce are half the FP16-accumulate rates that
  the marketing figures quote. Inference frameworks (cuBLAS/cuBLASLt with an FP32
  compute type) run with FP32 accumulate, so that is the ceiling they can reach.
  Datacenter and professional (RTX A6000, RTX 6000 Ada, A40, L40...) parts run FP32
  accumulate at full rate.
* AMD Instinct MI300X/MI325X: AMD's dense matrix figures.
* Superchip parts (GB200) are given per GPU.
"""

from __future__ import annotations

from infermon.model.gpu_spec import GpuSpec

MIB = 2**20

# Datasheet / whitepaper addresses shared by several rows.
_A100_DS = (
    "NVIDIA A100 Tensor Core GPU datasheet, "
    "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
    "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
)
_H100_DS = (
    "NVIDIA H100 Tensor Core GPU datasheet, "
    "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
)
_H200_DS = (
    "NVIDIA H200 Tensor Core GPU datasheet / product specifications, "
    "https://www.nvidia.com/en-us/data-center/h200/"
)
_V100_DS = (
    "NVIDIA Tesla V100 GPU datasheet, "
    "https://images.nvidia.com/content/technologies/volta/pdf/"
    "volta-v100-datasheet-update-us-1165301-r5.pdf"
)
_GA102_WP = (
    "NVIDIA Ampere GA102 GPU Architecture whitepaper (appendix tables), "
    "https://www.nvidia.com/content/PDF/nvidia-ampere-ga-102-gpu-architecture-whitepaper-v2.pdf"
)
_ADA_WP = (
    "NVIDIA Ada GPU Architecture whitepaper v2.1 (appendix tables), "
    "https://images.nvidia.com/aem-dam/Solutions/Data-Center/l4/"
    "nvidia-ada-gpu-architecture-whitepaper-v2.1.pdf"
)
_RTX_BLACKWELL_WP = (
    "NVIDIA RTX Blackwell GPU Architecture whitepaper (appendix tables), "
    "https://images.nvidia.com/aem-dam/Solutions/geforce/blackwell/"
    "nvidia-rtx-blackwell-gpu-architecture.pdf"
)

_SPARSITY_HALVED = "Datasheet tensor figures are 2:4-sparse (*); halved here."
_GEFORCE_ACC = (
    "GeForce: fp16/bf16/fp8 are the FP32-accumulate rates (half the FP16-accumulate "
    "rates NVIDIA's marketing quotes); inference frameworks accumulate in FP32."
)

GPUS: tuple[GpuSpec, ...] = (
    # ------------------------------------------------------------------ Ampere
    GpuSpec(
        name="NVIDIA A10",
        vendor="NVIDIA",
        datasheet_memory_bytes=24e9,
        # nvidia-smi on A10s in public repos (ECC on, the default; 24,564 MiB with ECC off)
        reported_memory_bytes=23028 * MIB,
        bandwidth_bytes_per_s=600e9,
        peak_flops={
            "fp32": 31.2e12,
            "tf32": 62.5e12,
            "bf16": 125e12,
            "fp16": 125e12,
            "int8": 250e12,
            "int4": 500e12,
        },
        source=(
            "NVIDIA A10 Tensor Core GPU datasheet, "
            "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/"
            "a10-datasheet.pdf"
        ),
        aliases=("a10",),
        notes="24 GB GDDR6, 150 W PCIe. " + _SPARSITY_HALVED,
    ),
    GpuSpec(
        name="NVIDIA A10G",
        vendor="NVIDIA",
        datasheet_memory_bytes=24e9,
        # nvidia-smi on AWS g5 instances in public repos
        reported_memory_bytes=23028 * MIB,
        bandwidth_bytes_per_s=600e9,
        peak_flops={
            "fp32": 35e12,
            "tf32": 35e12,
            "bf16": 70e12,
            "fp16": 70e12,
            "int8": 280e12,
            "int4": 560e12,
        },
        source=(
            "No public NVIDIA datasheet (AWS-only GA102 part in EC2 G5 instances, "
            "https://aws.amazon.com/ec2/instance-types/g5/); memory/bandwidth and the "
            "70 TFLOPS fp16 tensor figure as published for G5 (e.g. "
            "https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/)"
        ),
        aliases=("a10g",),
        notes=(
            "AWS G5 GPU: 80 SMs at up to 1710 MHz. Unlike the A10, FP32-accumulate "
            "tensor math runs at half rate (GeForce-like), hence 70 TFLOPS fp16/bf16. "
            "fp32 and tf32 follow from the SM count and clock; int8/int4 are derived "
            "(GA102 full-rate integer path) and not from any NVIDIA document."
        ),
    ),
    GpuSpec(
        name="NVIDIA A30",
        vendor="NVIDIA",
        datasheet_memory_bytes=24e9,
        # nvidia-smi in public repos, drivers R525 and newer (older drivers: 24,258 MiB)
        reported_memory_bytes=24576 * MIB,
        bandwidth_bytes_per_s=933e9,
        peak_flops={
            "fp64": 5.2e12,
            "fp32": 10.3e12,
            "tf32": 82e12,
            "bf16": 165e12,
            "fp16": 165e12,
            "int8": 330e12,
            "int4": 661e12,
        },
        source=(
            "NVIDIA A30 Tensor Core GPU datasheet, "
            "https://www.nvidia.com/content/dam/en-zz/Solutions/data-center/products/"
            "a30-gpu/pdf/a30-datasheet.pdf"
        ),
        aliases=("a30",),
        notes="24 GB HBM2. FP64 tensor core 10.3 TFLOPS. " + _SPARSITY_HALVED,
    ),
    GpuSpec(
        name="NVIDIA A40",
        vendor="NVIDIA",
        datasheet_memory_bytes=48e9,
        # nvidia-smi in public repos (ECC on, the default)
        reported_memory_bytes=46068 * MIB,
        bandwidth_bytes_per_s=696e9,
        peak_flops={
            "fp32": 37.4e12,
            "tf32": 74.8e12,
            "bf16": 149.7e12,
            "fp16": 149.7e12,
            "int8": 299.3e12,
            "int4": 598.7e12,
        },
        source=(
            "NVIDIA A40 GPU datasheet, "
            "https://images.nvidia.com/content/Solutions/data-center/a40/"
            "nvidia-a40-datasheet.pdf"
        ),
        aliases=("a40",),
        notes="48 GB GDDR6 with ECC. " + _SPARSITY_HALVED,
    ),
    GpuSpec(
        name="NVIDIA A100-PCIE-40GB",
        vendor="NVIDIA",
        datasheet_memory_bytes=40e9,
        # nvidia-smi in public repos, drivers R525 and newer (older drivers: 40,536 MiB)
        reported_memory_bytes=40960 * MIB,
        bandwidth_bytes_per_s=1555e9,
        peak_flops={
            "fp64": 9.7e12,
            "fp32": 19.5e12,
            "tf32": 156e12,
            "bf16": 312e12,
            "fp16": 312e12,
            "int8": 624e12,
            "int4": 1248e12,
        },
        source=_A100_DS,
        aliases=("a100-40gb-pcie", "a100-pcie-40gb"),
        notes="40 GB HBM2, 250 W. FP64 tensor core 19.5 TFLOPS. " + _SPARSITY_HALVED,
        nvml_names=("A100-PCIE-40GB",),
    ),
    GpuSpec(
        name="NVIDIA A100 80GB PCIe",
        vendor="NVIDIA",
        datasheet_memory_bytes=80e9,
        # nvidia-smi in public repos, drivers R525 and newer (older drivers: 80,994 MiB)
        reported_memory_bytes=81920 * MIB,
        bandwidth_bytes_per_s=1935e9,
        peak_flops={
            "fp64": 9.7e12,
            "fp32": 19.5e12,
            "tf32": 156e12,
            "bf16": 312e12,
            "fp16": 312e12,
            "int8": 624e12,
            "int4": 1248e12,
        },
        source=_A100_DS,
        aliases=("a100-80gb-pcie", "a100-pcie-80gb", "a100-pcie"),
        notes="80 GB HBM2e, 300 W. FP64 tensor core 19.5 TFLOPS. " + _SPARSITY_HALVED,
    ),
    GpuSpec(
        name="NVIDIA A100-SXM4-40GB",
        vendor="NVIDIA",
        datasheet_memory_bytes=40e9,
        # nvidia-smi in public repos, drivers R525 and newer (older drivers: 40,536 MiB)
        reported_memory_bytes=40960 * MIB,
        bandwidth_bytes_per_s=1555e9,
        peak_flops={
            "fp64": 9.7e12,
            "fp32": 19.5e12,
            "tf32": 156e12,
            "bf16": 312e12,
            "fp16": 312e12,
            "int8": 624e12,
            "int4": 1248e12,
        },
        source=_A100_DS,
        aliases=("a100-40gb", "a100-40gb-sxm", "a100-sxm4-40gb", "a100-sxm-40gb"),
        notes="40 GB HBM2, 400 W. FP64 tensor core 19.5 TFLOPS. " + _SPARSITY_HALVED,
        nvml_names=("A100-SXM4-40GB",),
    ),
    GpuSpec(
        name="NVIDIA A100-SXM4-80GB",
        vendor="NVIDIA",
        datasheet_memory_bytes=80e9,
        # nvidia-smi in public repos, drivers R525 and newer (older drivers: 81,251 MiB)
        reported_memory_bytes=81920 * MIB,
        bandwidth_bytes_per_s=2039e9,
        peak_flops={
            "fp64": 9.7e12,
            "fp32": 19.5e12,
            "tf32": 156e12,
            "bf16": 312e12,
            "fp16": 312e12,
            "int8": 624e12,
            "int4": 1248e12,
        },
        source=_A100_DS,
        aliases=("a100", "a100-80gb", "a100-sxm", "a100-80gb-sxm", "a100-sxm4-80gb", "a100-sxm4"),
        notes="80 GB HBM2e, 400 W. FP64 tensor core 19.5 TFLOPS. " + _SPARSITY_HALVED,
        nvml_names=("NVIDIA A100-SXM-80GB", "A100-SXM4-80GB", "A100-SXM-80GB"),
    ),
    # ------------------------------------------------------------------ Hopper
    GpuSpec(
        name="NVIDIA H100 PCIe",
        vendor="NVIDIA",
        datasheet_memory_bytes=80e9,
        # nvidia-smi in public repos (one report; the same as H100 SXM)
        reported_memory_bytes=81559 * MIB,
        bandwidth_bytes_per_s=2.0e12,
        peak_flops={
            "fp64": 26e12,
            "fp32": 51e12,
            "tf32": 378e12,
            "bf16": 756.5e12,
            "fp16": 756.5e12,
            "fp8": 1513e12,
            "int8": 1513e12,
        },
        source=_H100_DS,
        aliases=("h100-pcie",),
        notes=(
            "80 GB HBM2e, 300-350 W. FP64 tensor core 51 TFLOPS. Datasheet tensor "
            "figures (756/1513/3026*) are 2:4-sparse; halved here."
        ),
    ),
    GpuSpec(
        name="NVIDIA H100 80GB HBM3",
        vendor="NVIDIA",
        datasheet_memory_bytes=80e9,
        # nvidia-smi in public repos (many reports, drivers 525-580)
        reported_memory_bytes=81559 * MIB,
        bandwidth_bytes_per_s=3.35e12,
        peak_flops={
            "fp64": 34e12,
            "fp32": 67e12,
            "tf32": 494.5e12,
            "bf16": 989.5e12,
            "fp16": 989.5e12,
            "fp8": 1979e12,
            "int8": 1979e12,
        },
        source=_H100_DS,
        aliases=("h100", "h100-sxm", "h100-sxm5"),
        notes=(
            "H100 SXM5, 80 GB HBM3, up to 700 W. FP64 tensor core 67 TFLOPS. Datasheet "
            "tensor figures (989/1979/3958*) are 2:4-sparse; halved here."
        ),
    ),
    GpuSpec(
        name="NVIDIA H100 NVL",
        vendor="NVIDIA",
        datasheet_memory_bytes=94e9,
        # nvidia-smi in public repos
        reported_memory_bytes=95830 * MIB,
        bandwidth_bytes_per_s=3.9e12,
        peak_flops={
            "fp64": 30e12,
            "fp32": 60e12,
            "tf32": 417.5e12,
            "bf16": 835.5e12,
            "fp16": 835.5e12,
            "fp8": 1670.5e12,
            "int8": 1670.5e12,
        },
        source=_H100_DS,
        aliases=("h100-nvl",),
        notes=(
            "Per GPU (the original datasheet listed the NVLink-bridged pair: 188 GB, "
            "7.8 TB/s). 94 GB HBM3, 350-400 W PCIe. FP64 tensor core 60 TFLOPS. "
            "Datasheet tensor figures (835/1671/3341*) are 2:4-sparse; halved here."
        ),
    ),
    GpuSpec(
        name="NVIDIA H200",
        vendor="NVIDIA",
        datasheet_memory_bytes=141e9,
        # nvidia-smi in public repos (many reports)
        reported_memory_bytes=143771 * MIB,
        bandwidth_bytes_per_s=4.8e12,
        peak_flops={
            "fp64": 34e12,
            "fp32": 67e12,
            "tf32": 494.5e12,
            "bf16": 989.5e12,
            "fp16": 989.5e12,
            "fp8": 1979e12,
            "int8": 1979e12,
        },
        source=_H200_DS,
        aliases=("h200", "h200-sxm"),
        notes=(
            "H200 SXM, 141 GB HBM3e, up to 700 W; same compute as H100 SXM. FP64 tensor "
            "core 67 TFLOPS. Datasheet tensor figures (989/1979/3958*) are 2:4-sparse; "
            "halved here."
        ),
    ),
    GpuSpec(
        name="NVIDIA H200 NVL",
        vendor="NVIDIA",
        datasheet_memory_bytes=141e9,
        # nvidia-smi in public repos
        reported_memory_bytes=143771 * MIB,
        bandwidth_bytes_per_s=4.8e12,
        peak_flops={
            "fp64": 30e12,
            "fp32": 60e12,
            "tf32": 417.5e12,
            "bf16": 835.5e12,
            "fp16": 835.5e12,
            "fp8": 1670.5e12,
            "int8": 1670.5e12,
        },
        source=_H200_DS,
        aliases=("h200-nvl",),
        notes=(
            "141 GB HBM3e, up to 600 W PCIe. FP64 tensor core 60 TFLOPS. Datasheet tensor "
            "figures (835/1671/3341*) are 2:4-sparse; halved here."
        ),
    ),
    GpuSpec(
        name="NVIDIA H20",
        vendor="NVIDIA",
        datasheet_memory_bytes=96e9,
        # nvidia-smi in public repos
        reported_memory_bytes=97871 * MIB,
        bandwidth_bytes_per_s=4.0e12,
        peak_flops={
            "fp64": 1e12,
            "fp32": 44e12,
            "tf32": 74e12,
            "bf16": 148e12,
            "fp16": 148e12,
            "fp8": 296e12,
            "int8": 296e12,
        },
        source=(
            "NVIDIA HGX H20 partner specification sheet (Nov 2023); NVIDIA publishes no "
            "public H20 datasheet or URL, figures as widely reported from that sheet"
        ),
        aliases=("h20",),
        notes=(
            "China-market Hopper, 96 GB HBM3, 400 W. Figures are the dense values of "
            "NVIDIA's partner spec sheet, not a public datasheet. A later 141 GB HBM3e "
            "variant is not covered by this row."
        ),
    ),
    # --------------------------------------------------------------------- Ada
    GpuSpec(
        name="NVIDIA L4",
        vendor="NVIDIA",
        datasheet_memory_bytes=24e9,
        # nvidia-smi in public repos (many reports)
        reported_memory_bytes=23034 * MIB,
        bandwidth_bytes_per_s=300e9,
        peak_flops={
            "fp32": 30.3e12,
            "tf32": 60e12,
            "bf16": 121e12,
            "fp16": 121e12,
            "fp8": 242.5e12,
            "int8": 242.5e12,
            "int4": 485e12,
        },
        source=(
            "NVIDIA L4 Tensor Core GPU datasheet, "
            "https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet"
        ),
        aliases=("l4",),
        notes=(
            "24 GB GDDR6, 72 W. Datasheet tensor figures (120/242/485*) are 2:4-sparse; "
            "halved here. int4 is not on the datasheet: derived from Ada's INT4 = 2x INT8."
        ),
    ),
    GpuSpec(
        name="NVIDIA L40",
        vendor="NVIDIA",
        datasheet_memory_bytes=48e9,
        # nvidia-smi in public repos (ECC on, the default; 49,140 MiB with ECC off)
        reported_memory_bytes=46068 * MIB,
        bandwidth_bytes_per_s=864e9,
        peak_flops={
            "fp32": 90.5e12,
            "tf32": 90.5e12,
            "bf16": 181.05e12,
            "fp16": 181.05e12,
            "fp8": 362e12,
            "int8": 362e12,
            "int4": 724e12,
        },
        source=(
            "NVIDIA L40 GPU datasheet, "
            "https://images.nvidia.com/content/Solutions/data-center/vgpu-L40-datasheet.pdf"
        ),
        aliases=("l40",),
        notes="48 GB GDDR6 with ECC, 300 W. " + _SPARSITY_HALVED,
    ),
    GpuSpec(
        name="NVIDIA L40S",
        vendor="NVIDIA",
        datasheet_memory_bytes=48e9,
        # nvidia-smi in public repos (ECC on, the default)
        reported_memory_bytes=46068 * MIB,
        bandwidth_bytes_per_s=864e9,
        peak_flops={
            "fp32": 91.6e12,
            "tf32": 183e12,
            "bf16": 362.05e12,
            "fp16": 362.05e12,
            "fp8": 733e12,
            "int8": 733e12,
            "int4": 1466e12,
        },
        source=(
            "NVIDIA L40S GPU datasheet, "
            "https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413"
        ),
        aliases=("l40s",),
        notes=(
            "48 GB GDDR6 with ECC, 350 W. Datasheet tensor figures (366/733/1466*) are "
            "2:4-sparse; halved here. int4 derived from Ada's INT4 = 2x INT8 (as printed "
            "for the L40), not taken from the L40S datasheet."
        ),
    ),
    # --------------------------------------------------- professional / workstation
    GpuSpec(
        name="NVIDIA RTX A6000",
        vendor="NVIDIA",
        datasheet_memory_bytes=48e9,
        # nvidia-smi in public repos (ECC off, the workstation default)
        reported_memory_bytes=49140 * MIB,
        bandwidth_bytes_per_s=768e9,
        peak_flops={
            "fp32": 38.7e12,
            "tf32": 77.4e12,
            "bf16": 154.8e12,
            "fp16": 154.8e12,
            "int8": 309.7e12,
            "int4": 619.4e12,
        },
        source=(
            _GA102_WP + "; NVIDIA RTX A6000 datasheet, "
            "https://www.nvidia.com/content/dam/en-zz/Solutions/design-visualization/"
            "quadro-product-literature/proviz-print-nvidia-rtx-a6000-datasheet-us-nvidia-"
            "1454980-r9-web%20(1).pdf"
        ),
        aliases=("a6000", "rtx-a6000", "rtxa6000"),
        notes=(
            "48 GB GDDR6 with ECC, 300 W. Professional part: FP32-accumulate tensor math "
            "at full rate. Datasheet 'Tensor performance 309.7 TFLOPS' is fp16 2:4-sparse."
        ),
    ),
    GpuSpec(
        name="NVIDIA RTX 6000 Ada Generation",
        vendor="NVIDIA",
        datasheet_memory_bytes=48e9,
        # nvidia-smi in public repos (ECC off, the workstation default)
        reported_memory_bytes=49140 * MIB,
        bandwidth_bytes_per_s=960e9,
        peak_flops={
            "fp32": 91.1e12,
            "tf32": 182.1e12,
            "bf16": 364.2e12,
            "fp16": 364.2e12,
            "fp8": 728.5e12,
            "int8": 728.5e12,
            "int4": 1457e12,
        },
        source=(
            _ADA_WP + "; NVIDIA RTX 6000 Ada Generation datasheet, "
            "https://www.nvidia.com/content/dam/en-zz/Solutions/design-visualization/"
            "rtx-6000/proviz-print-rtx6000-datasheet-web-2504660.pdf"
        ),
        aliases=("rtx6000-ada", "rtx-6000-ada", "6000-ada", "6000ada"),
        notes=(
            "48 GB GDDR6 with ECC, 300 W. Professional part: FP32-accumulate tensor math "
            "at full rate. Datasheet 'Tensor performance 1457 TFLOPS' is fp8 2:4-sparse."
        ),
    ),
    # ----------------------------------------------------------------- GeForce
    GpuSpec(
        name="NVIDIA GeForce RTX 3090",
        vendor="NVIDIA",
        datasheet_memory_bytes=24e9,
        # nvidia-smi in public repos
        reported_memory_bytes=24576 * MIB,
        bandwidth_bytes_per_s=936e9,
        peak_flops={
            "fp32": 35.6e12,
            "tf32": 35.6e12,
            "bf16": 71e12,
            "fp16": 71e12,
            "int8": 284e12,
            "int4": 568e12,
        },
        source=_GA102_WP,
        aliases=("3090", "rtx3090", "rtx-3090"),
        notes=(
            "24 GB GDDR6X, 350 W. " + _GEFORCE_ACC + " fp16 with FP16 accumulate is "
            "142 TFLOPS dense."
        ),
        nvml_names=("GeForce RTX 3090",),
    ),
    GpuSpec(
        name="NVIDIA GeForce RTX 4090",
        vendor="NVIDIA",
        datasheet_memory_bytes=24e9,
        # nvidia-smi in public repos
        reported_memory_bytes=24564 * MIB,
        bandwidth_bytes_per_s=1008e9,
        peak_flops={
            "fp32": 82.6e12,
            "tf32": 82.6e12,
            "bf16": 165.2e12,
            "fp16": 165.2e12,
            "fp8": 330.3e12,
            "int8": 660.6e12,
            "int4": 1321.2e12,
        },
        source=_ADA_WP,
        aliases=("4090", "rtx4090", "rtx-4090"),
        notes=(
            "24 GB GDDR6X, 450 W. " + _GEFORCE_ACC + " With FP16 accumulate: fp16 "
            "330.3, fp8 660.6 TFLOPS dense."
        ),
    ),
    GpuSpec(
        name="NVIDIA GeForce RTX 5090",
        vendor="NVIDIA",
        datasheet_memory_bytes=32e9,
        # nvidia-smi in public repos
        reported_memory_bytes=32607 * MIB,
        bandwidth_bytes_per_s=1792e9,
        peak_flops={
            "fp32": 104.8e12,
            "tf32": 104.8e12,
            "bf16": 209.5e12,
            "fp16": 209.5e12,
            "fp8": 419e12,
            "int8": 838e12,
            "fp4": 1676e12,
        },
        source=_RTX_BLACKWELL_WP,
        aliases=("5090", "rtx5090", "rtx-5090"),
        notes=(
            "32 GB GDDR7, 575 W. " + _GEFORCE_ACC + " With FP16 accumulate: fp16 419, "
            "fp8 838 TFLOPS dense. fp4 is the whitepaper's FP4 (FP32 accumulate) figure, "
            "1676 dense / 3352 sparse ('AI TOPS'). No int4 figure is published."
        ),
    ),
    # ------------------------------------------------------------ Volta/Turing
    GpuSpec(
        name="Tesla V100-SXM2-32GB",
        vendor="NVIDIA",
        datasheet_memory_bytes=32e9,
        # nvidia-smi in public repos
        reported_memory_bytes=32510 * MIB,
        bandwidth_bytes_per_s=900e9,
        peak_flops={
            "fp64": 7.8e12,
            "fp32": 15.7e12,
            "fp16": 125e12,
        },
        source=_V100_DS,
        aliases=("v100", "v100-32gb", "v100-sxm2-32gb", "v100-sxm2"),
        notes=(
            "32 GB HBM2, 300 W. fp16 is the tensor-core (FP16 multiply, FP32 accumulate) "
            "'deep learning' figure. No bf16/tf32/fp8/int8 tensor paths (int8 only via "
            "DP4A on CUDA cores)."
        ),
    ),
    GpuSpec(
        name="Tesla V100-SXM2-16GB",
        vendor="NVIDIA",
        datasheet_memory_bytes=16e9,
        # nvidia-smi in public repos
        reported_memory_bytes=16160 * MIB,
        bandwidth_bytes_per_s=900e9,
        peak_flops={
            "fp64": 7.8e12,
            "fp32": 15.7e12,
            "fp16": 125e12,
        },
        source=_V100_DS,
        aliases=("v100-16gb", "v100-sxm2-16gb"),
        notes="16 GB HBM2, 300 W. fp16 is the tensor-core figure; no bf16/tf32/int8 tensor paths.",
    ),
    GpuSpec(
        name="Tesla V100-PCIE-32GB",
        vendor="NVIDIA",
        datasheet_memory_bytes=32e9,
        # nvidia-smi in public repos
        reported_memory_bytes=32510 * MIB,
        bandwidth_bytes_per_s=900e9,
        peak_flops={
            "fp64": 7e12,
            "fp32": 14e12,
            "fp16": 112e12,
        },
        source=_V100_DS,
        aliases=("v100-pcie-32gb", "v100-pcie"),
        notes="32 GB HBM2, 250 W. fp16 is the tensor-core figure; no bf16/tf32/int8 tensor paths.",
    ),
    GpuSpec(
        name="Tesla V100-PCIE-16GB",
        vendor="NVIDIA",
        datasheet_memory_bytes=16e9,
        # nvidia-smi in public repos
        reported_memory_bytes=16160 * MIB,
        bandwidth_bytes_per_s=900e9,
        peak_flops={
            "fp64": 7e12,
            "fp32": 14e12,
            "fp16": 112e12,
        },
        source=_V100_DS,
        aliases=("v100-pcie-16gb",),
        notes="16 GB HBM2, 250 W. fp16 is the tensor-core figure; no bf16/tf32/int8 tensor paths.",
    ),
    GpuSpec(
        name="Tesla V100S-PCIE-32GB",
        vendor="NVIDIA",
        datasheet_memory_bytes=32e9,
        # nvidia-smi in public repos
        reported_memory_bytes=32510 * MIB,
        bandwidth_bytes_per_s=1134e9,
        peak_flops={
            "fp64": 8.2e12,
            "fp32": 16.4e12,
            "fp16": 130e12,
        },
        source=_V100_DS,
        aliases=("v100s", "v100s-pcie"),
        notes="32 GB HBM2, 250 W. fp16 is the tensor-core figure; no bf16/tf32/int8 tensor paths.",
    ),
    GpuSpec(
        name="Tesla T4",
        vendor="NVIDIA",
        datasheet_memory_bytes=16e9,
        # nvidia-smi in public repos, recent drivers (older drivers: 15,109 MiB)
        reported_memory_bytes=15360 * MIB,
        bandwidth_bytes_per_s=320e9,
        peak_flops={
            "fp32": 8.1e12,
            "fp16": 65e12,
            "int8": 130e12,
            "int4": 260e12,
        },
        source=(
            "NVIDIA T4 Tensor Core GPU datasheet, "
            "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/"
            "t4-tensor-core-datasheet-951643.pdf"
        ),
        aliases=("t4",),
        notes=(
            "16 GB GDDR6, 70 W; datasheet gives bandwidth as '320+ GB/s'. fp16 is the "
            "'mixed precision (FP16/FP32)' tensor figure. Turing: no bf16/tf32/fp8. "
            "Sustained clocks under the 70 W cap are usually well below boost."
        ),
    ),
    # --------------------------------------------------------------- Blackwell
    GpuSpec(
        name="NVIDIA B200",
        vendor="NVIDIA",
        datasheet_memory_bytes=180e9,
        # nvidia-smi in public repos (many reports)
        reported_memory_bytes=183359 * MIB,
        bandwidth_bytes_per_s=7.7e12,
        peak_flops={
            "fp64": 37e12,
            "fp32": 75e12,
            "tf32": 1.1e15,
            "bf16": 2.25e15,
            "fp16": 2.25e15,
            "fp8": 4.5e15,
            "int8": 4.5e15,
            "fp4": 9e15,
        },
        source=(
            "NVIDIA HGX platform specifications (HGX B200, individual GPU), "
            "https://www.nvidia.com/en-us/data-center/hgx/"
        ),
        aliases=("b200",),
        notes=(
            "HGX B200 SXM, up to 1000 W. Datasheet tensor figures (FP4 18 PF, FP8 9 PF, "
            "FP16/BF16 4.5 PF, TF32 2.2 PF, INT8 9 POPS) are 2:4-sparse; halved here. "
            "FP64 = FP64 tensor. The HGX page gives 180 GB / 7.7 TB/s per GPU; the DGX B200 "
            "datasheet's 64 TB/s aggregate implies 8 TB/s."
        ),
    ),
    GpuSpec(
        name="NVIDIA GB200",
        vendor="NVIDIA",
        datasheet_memory_bytes=186e9,
        # nvidia-smi in public repos
        reported_memory_bytes=189471 * MIB,
        bandwidth_bytes_per_s=8e12,
        peak_flops={
            "fp64": 40e12,
            "fp32": 80e12,
            "tf32": 1.25e15,
            "bf16": 2.5e15,
            "fp16": 2.5e15,
            "fp8": 5e15,
            "int8": 5e15,
            "fp4": 10e15,
        },
        source=(
            "NVIDIA GB200 NVL72 specifications (individual Blackwell GPU), "
            "https://www.nvidia.com/en-us/data-center/gb200-nvl72/"
        ),
        aliases=("gb200",),
        notes=(
            "Per GPU: a GB200 superchip is 1 Grace CPU + 2 Blackwell GPUs, and NVML sees "
            "each GPU separately. Up to 1200 W per GPU. Datasheet tensor figures (FP4 "
            "20 PF, FP8 10 PF, FP16/BF16 5 PF, TF32 2.5 PF, INT8 10 POPS) are 2:4-sparse; "
            "halved here. FP64 = FP64 tensor. Earlier NVL72 pages gave 45 TFLOPS FP64 / "
            "90 TFLOPS FP32 per GPU (90/180 per superchip)."
        ),
    ),
    # --------------------------------------------------------------------- AMD
    GpuSpec(
        name="AMD Instinct MI300X",
        vendor="AMD",
        datasheet_memory_bytes=192e9,
        # rocm-smi 'VRAM Total Memory (B): 206158430208' in public repos
        reported_memory_bytes=196608 * MIB,
        bandwidth_bytes_per_s=5.3e12,
        peak_flops={
            "fp64": 81.7e12,
            "fp32": 163.4e12,
            "tf32": 653.7e12,
            "bf16": 1307.4e12,
            "fp16": 1307.4e12,
            "fp8": 2614.9e12,
            "int8": 2614.9e12,
        },
        source=(
            "AMD Instinct MI300X Accelerator datasheet, "
            "https://www.amd.com/content/dam/amd/en/documents/instinct-tech-docs/"
            "data-sheets/amd-instinct-mi300x-data-sheet.pdf"
        ),
        aliases=("mi300x",),
        notes=(
            "192 GB HBM3, 750 W OAM. AMD dense matrix figures (sparsity figures are 2x). "
            "fp64 is the vector rate (matrix FP64 163.4 TFLOPS); fp32 vector = matrix "
            "163.4 TFLOPS. CDNA3 has no int4 path."
        ),
    ),
    GpuSpec(
        name="AMD Instinct MI325X",
        vendor="AMD",
        datasheet_memory_bytes=256e9,
        # no driver-reported figure found: the datasheet's 256 GB is used
        reported_memory_bytes=None,
        bandwidth_bytes_per_s=6.0e12,
        peak_flops={
            "fp64": 81.7e12,
            "fp32": 163.4e12,
            "tf32": 653.7e12,
            "bf16": 1307.4e12,
            "fp16": 1307.4e12,
            "fp8": 2614.9e12,
            "int8": 2614.9e12,
        },
        source=(
            "AMD Instinct MI325X Accelerator datasheet, "
            "https://www.amd.com/content/dam/amd/en/documents/instinct-tech-docs/"
            "product-briefs/instinct-mi325x-datasheet.pdf"
        ),
        aliases=("mi325x",),
        notes=(
            "256 GB HBM3e, 1000 W OAM; same CDNA3 compute as MI300X. AMD dense matrix "
            "figures (sparsity figures are 2x). fp64 is the vector rate (matrix FP64 "
            "163.4 TFLOPS). No int4 path."
        ),
    ),
)
