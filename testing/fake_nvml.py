"""A scripted stand-in for the ``pynvml`` module (nvidia-ml-py) on machines without a GPU.

It implements the part of pynvml's API that ``infermon.probes.nvml`` uses, with
pynvml's real constants, error classes (``NVMLError(code)`` builds the matching
``NVMLError_*`` subclass, exactly as in pynvml) and ctypes structs for field
values and GPM, so the probe cannot tell it from the real binding.

Script it through plain attributes::

    clock = FakeClock()
    nvml = FakeNvml(gpus=8, clock=clock)              # eight H100 SXM-like GPUs
    nvml.gpus[0].compute_processes[4242] = 30 * GiB   # pid 4242 holds 30 GiB on GPU 0
    nvml.gpus[3].lost = True                          # GPU 3 fell off the bus
    nvml.fail("nvmlDeviceGetPowerUsage")              # every call raises NVMLError_Unknown
    nvml.fail("nvmlDeviceGetName", times=1)           # only the next call does
    nvml.not_supported("nvmlDeviceGetTemperatureV", device=2)
    nvml.calls["nvmlDeviceGetPowerUsage"]             # how often the probe asked
"""

from __future__ import annotations

import ctypes
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

GiB = 1024**3
MiB = 1024**2

DRAM_BW_UTIL = pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL
ANY_TENSOR_UTIL = pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL
SM_UTIL = pynvml.NVML_GPM_METRIC_SM_UTIL
SM_OCCUPANCY = pynvml.NVML_GPM_METRIC_SM_OCCUPANCY
NOT_AVAILABLE = pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value
ALL_LINKS = 0xFFFFFFFF  # an NVLink counter's scopeId for the sum over all links


class FakeClock:
    """Monotonic seconds that move only when told to; share one between probe and fake."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeGpu:
    """What one GPU reports, in NVML's own units (percent, MHz, mW, bytes)."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = ""
    memory_total: int = 80 * GiB
    memory_used: int = 60 * GiB  # v2 "used", without the reserved part
    memory_reserved: int = 512 * MiB
    utilization_gpu: int = 87
    utilization_memory: int = 64
    sm_clock: int = 1755
    sm_clock_max: int = 1980
    memory_clock: int = 2619
    memory_clock_max: int = 2619
    power_mw: int = 512_300
    power_limit_mw: int = 700_000
    temperature_c: int = 54
    throttle_mask: int = 0
    pcie_tx_bytes_per_s: float = 2.5e9
    pcie_rx_bytes_per_s: float = 1.0e9
    nvlink_links: int = 18  # H100 SXM
    nvlink_tx_bytes_per_s: float = 1.0e9  # per link
    nvlink_rx_bytes_per_s: float = 0.5e9
    bus_width: int = 5120
    compute_processes: dict[int, int | None] = field(default_factory=dict)  # pid → used bytes
    graphics_processes: dict[int, int | None] = field(default_factory=dict)
    gpm: str = "supported"  # "supported", "unsupported" or "no permission"
    gpm_percent: dict[int, float] = field(
        default_factory=lambda: {DRAM_BW_UTIL: 62.0, ANY_TENSOR_UTIL: 35.0, SM_UTIL: 80.0, SM_OCCUPANCY: 40.0}
    )
    lost: bool = False


def a10() -> FakeGpu:
    """An NVIDIA A10 (Ampere: no GPM)."""
    return FakeGpu(
        name="NVIDIA A10",
        memory_total=24 * GiB,
        memory_used=20 * GiB,
        sm_clock_max=1695,
        memory_clock=6251,
        memory_clock_max=6251,
        power_limit_mw=150_000,
        bus_width=384,
        gpm="unsupported",
        nvlink_links=0,
    )


@dataclass
class FakeHandle:
    index: int


@dataclass
class _Injection:
    function: str  # an API name, or "*" for all of them
    error: BaseException
    times: int | None  # None: every call
    device: int | None  # None: every device


@dataclass
class _GpmRecord:
    buffer: Any  # keeps the ctypes object alive while NVML "owns" it
    device: int | None = None
    taken_at: float | None = None
    percent: dict[int, float] = field(default_factory=dict)


class FakeNvml:
    """Scripted pynvml. ``gpus`` is a count of H100-like GPUs or a list of ``FakeGpu``.

    ``driver_missing``: nvmlInit raises NVMLError_LibraryNotFound.
    ``memory_v2=False``: memory info v2 is missing (old driver); v1 still works.
    ``process_api="v2"``: the *_v3 process listings are missing (old driver).
    ``pcie_counters=False``: the PCIe byte-counter field values are not supported.
    ``nvlink_all_links=False``: NVLink counters are read link by link only (the all-links scope is
    an invalid argument).
    """

    def __init__(
        self,
        gpus: int | list[FakeGpu] = 8,
        *,
        clock: FakeClock | None = None,
        driver_missing: bool = False,
        memory_v2: bool = True,
        process_api: str = "v3",
        pcie_counters: bool = True,
        nvlink_all_links: bool = True,
    ) -> None:
        for name in dir(pynvml):
            if name.startswith(("NVML_", "NVMLError", "nvmlClocks", "nvmlMemory_v")):
                setattr(self, name, getattr(pynvml, name))
        self.NVMLLibraryMismatchError = pynvml.NVMLLibraryMismatchError
        self.c_nvmlGpmMetricsGet_t = pynvml.c_nvmlGpmMetricsGet_t

        self.gpus = list(gpus) if not isinstance(gpus, int) else [FakeGpu() for _ in range(gpus)]
        for index, gpu in enumerate(self.gpus):
            gpu.uuid = gpu.uuid or f"GPU-{index:08x}-0000-4000-8000-{index:012x}"
        self.clock = clock or FakeClock()
        self.driver_missing = driver_missing
        self.memory_v2 = memory_v2
        self.process_api = process_api
        self.pcie_counters = pcie_counters
        self.nvlink_all_links = nvlink_all_links
        self.initialized = False
        self.calls: Counter[str] = Counter()
        self.fields_asked = 0  # field values asked for, over all nvmlDeviceGetFieldValues calls
        self.device_calls: Counter[tuple[str, int]] = Counter()
        self._injections: list[_Injection] = []
        self._gpm_samples: dict[int, _GpmRecord] = {}

    # --- scripting ---

    def fail(
        self,
        function: str,
        code: int = pynvml.NVML_ERROR_UNKNOWN,
        *,
        exception: BaseException | None = None,
        times: int | None = None,
        device: int | None = None,
    ) -> None:
        """Make ``function`` ("*": every function) raise NVMLError(code), or ``exception``."""
        error = exception if exception is not None else pynvml.NVMLError(code)
        self._injections.append(_Injection(function, error, times, device))

    def not_supported(self, function: str, *, device: int | None = None) -> None:
        self.fail(function, pynvml.NVML_ERROR_NOT_SUPPORTED, device=device)

    def heal(self) -> None:
        """Drop every injected failure."""
        self._injections.clear()

    @property
    def live_gpm_samples(self) -> int:
        """GPM sample buffers allocated and not yet freed."""
        return len(self._gpm_samples)

    # --- plumbing ---

    def _enter(self, function: str, handle: FakeHandle | None = None, index: int | None = None) -> FakeGpu | None:
        """Count the call, then raise what the script or NVML's rules say it should."""
        if handle is not None:
            index = handle.index
        self.calls[function] += 1
        if index is not None:
            self.device_calls[(function, index)] += 1
        if function != "nvmlInit" and not self.initialized:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        for injection in self._injections:
            if injection.function not in (function, "*") or injection.times == 0:
                continue
            if injection.device is not None and injection.device != index:
                continue
            if injection.times is not None:
                injection.times -= 1
            raise injection.error
        if index is None:
            return None
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        if gpu.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return gpu

    @staticmethod
    def _require(condition: bool) -> None:
        if not condition:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    # --- system ---

    def nvmlInit(self) -> None:
        self._enter("nvmlInit")
        if self.driver_missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialized = False

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return "550.54.15"

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._enter("nvmlSystemGetNVMLVersion")
        return "12.550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex", index=index)
        return FakeHandle(index)

    # --- device readings ---

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        return self._enter("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        return self._enter("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: int | None = None) -> SimpleNamespace:
        gpu = self._enter("nvmlDeviceGetMemoryInfo", handle)
        if version:
            if not self.memory_v2:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
            self._require(version == pynvml.nvmlMemory_v2)
            free = gpu.memory_total - gpu.memory_used - gpu.memory_reserved
            return SimpleNamespace(
                version=version, total=gpu.memory_total, reserved=gpu.memory_reserved, free=free, used=gpu.memory_used
            )
        # v1 counts the reserved memory as used.
        used = gpu.memory_used + gpu.memory_reserved
        return SimpleNamespace(total=gpu.memory_total, free=gpu.memory_total - used, used=used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> SimpleNamespace:
        gpu = self._enter("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=gpu.utilization_gpu, memory=gpu.utilization_memory)

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, type: int) -> int:
        gpu = self._enter("nvmlDeviceGetClockInfo", handle)
        return self._clock(type, gpu.sm_clock, gpu.memory_clock)

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeHandle, type: int) -> int:
        gpu = self._enter("nvmlDeviceGetMaxClockInfo", handle)
        return self._clock(type, gpu.sm_clock_max, gpu.memory_clock_max)

    def _clock(self, clock_type: int, sm: int, memory: int) -> int:
        self._require(clock_type in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_MEM))
        return sm if clock_type == pynvml.NVML_CLOCK_SM else memory

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetEnforcedPowerLimit", handle).power_limit_mw

    def nvmlDeviceGetTemperatureV(self, handle: FakeHandle, sensor: int, version: int = 0x100000C) -> int:
        gpu = self._enter("nvmlDeviceGetTemperatureV", handle)
        self._require(sensor == pynvml.NVML_TEMPERATURE_GPU)
        return gpu.temperature_c

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        gpu = self._enter("nvmlDeviceGetTemperature", handle)
        self._require(sensor == pynvml.NVML_TEMPERATURE_GPU)
        return gpu.temperature_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetCurrentClocksEventReasons", handle).throttle_mask

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetCurrentClocksThrottleReasons", handle).throttle_mask

    def nvmlDeviceGetMemoryBusWidth(self, handle: FakeHandle) -> int:
        return self._enter("nvmlDeviceGetMemoryBusWidth", handle).bus_width

    def nvmlDeviceGetFieldValues(self, handle: FakeHandle, fieldIds: list[int]) -> Any:
        """PCIe byte counters grow at the scripted rate on the fake clock; other fields are unsupported."""
        gpu = self._enter("nvmlDeviceGetFieldValues", handle)
        self.fields_asked += len(fieldIds)
        counters = {
            pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES: gpu.pcie_tx_bytes_per_s,
            pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES: gpu.pcie_rx_bytes_per_s,
        }
        nvlink = {
            pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: gpu.nvlink_tx_bytes_per_s,
            pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: gpu.nvlink_rx_bytes_per_s,
        }
        values = (pynvml.c_nvmlFieldValue_t * len(fieldIds))()
        for slot, requested in zip(values, fieldIds):
            field_id, scope = requested if isinstance(requested, tuple) else (requested, 0)
            slot.fieldId, slot.scopeId = field_id, scope
            slot.timestamp = int(self.clock() * 1e6)
            if self.pcie_counters and field_id in counters:
                slot.nvmlReturn = pynvml.NVML_SUCCESS
                slot.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                slot.value.ullVal = int(counters[field_id] * self.clock())
            elif field_id == pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT:
                slot.nvmlReturn = pynvml.NVML_SUCCESS
                slot.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                slot.value.uiVal = gpu.nvlink_links
            elif field_id in nvlink and gpu.nvlink_links and scope == ALL_LINKS:
                if not self.nvlink_all_links:  # an older driver: each link must be asked for
                    slot.nvmlReturn = pynvml.NVML_ERROR_INVALID_ARGUMENT
                    continue
                slot.nvmlReturn = pynvml.NVML_SUCCESS
                slot.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                slot.value.ullVal = gpu.nvlink_links * int(nvlink[field_id] * self.clock() / 1024)  # KiB
            elif field_id in nvlink and gpu.nvlink_links and scope < gpu.nvlink_links:
                slot.nvmlReturn = pynvml.NVML_SUCCESS
                slot.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                slot.value.ullVal = int(nvlink[field_id] * self.clock() / 1024)  # KiB
            else:
                slot.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values

    def nvmlDeviceGetPcieThroughput(self, handle: FakeHandle, counter: int) -> int:
        gpu = self._enter("nvmlDeviceGetPcieThroughput", handle)
        self._require(counter in (pynvml.NVML_PCIE_UTIL_TX_BYTES, pynvml.NVML_PCIE_UTIL_RX_BYTES))
        rate = gpu.pcie_tx_bytes_per_s if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES else gpu.pcie_rx_bytes_per_s
        return int(rate / 1024)  # KiB/s

    # --- processes ---

    def _processes(self, function: str, handle: FakeHandle, version: str, graphics: bool) -> list[SimpleNamespace]:
        gpu = self._enter(function, handle)
        if version == "v3" and self.process_api != "v3":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        table = gpu.graphics_processes if graphics else gpu.compute_processes
        return [
            SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
            for pid, used in table.items()
        ]

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes("nvmlDeviceGetComputeRunningProcesses_v3", handle, "v3", graphics=False)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes("nvmlDeviceGetComputeRunningProcesses_v2", handle, "v2", graphics=False)

    def nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes("nvmlDeviceGetGraphicsRunningProcesses_v3", handle, "v3", graphics=True)

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes("nvmlDeviceGetGraphicsRunningProcesses_v2", handle, "v2", graphics=True)

    # --- GPM ---

    def nvmlGpmQueryDeviceSupport(self, handle: FakeHandle) -> SimpleNamespace:
        gpu = self._enter("nvmlGpmQueryDeviceSupport", handle)
        return SimpleNamespace(version=pynvml.NVML_GPM_SUPPORT_VERSION, isSupportedDevice=int(gpu.gpm != "unsupported"))

    def nvmlGpmSampleAlloc(self) -> Any:
        self._enter("nvmlGpmSampleAlloc")
        buffer = pynvml.struct_c_nvmlGpmSample_t()
        self._gpm_samples[ctypes.addressof(buffer)] = _GpmRecord(buffer)
        return ctypes.pointer(buffer)

    def _gpm_record(self, sample: Any) -> _GpmRecord:
        record = self._gpm_samples.get(ctypes.cast(sample, ctypes.c_void_p).value or 0)
        self._require(record is not None)  # never allocated, or already freed
        return record

    def nvmlGpmSampleFree(self, gpmSample: Any) -> None:
        self._enter("nvmlGpmSampleFree")
        self._gpm_record(gpmSample)
        del self._gpm_samples[ctypes.cast(gpmSample, ctypes.c_void_p).value]

    def nvmlGpmSampleGet(self, device: FakeHandle, gpmSample: Any) -> Any:
        gpu = self._enter("nvmlGpmSampleGet", device)
        if gpu.gpm == "unsupported":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if gpu.gpm == "no permission":
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
        record = self._gpm_record(gpmSample)
        record.device, record.taken_at, record.percent = device.index, self.clock(), dict(gpu.gpm_percent)
        return gpmSample

    def nvmlGpmMetricsGet(self, metricsGet: Any) -> Any:
        """Each metric is the percentage scripted when the later sample was taken."""
        self._enter("nvmlGpmMetricsGet")
        first, second = self._gpm_record(metricsGet.sample1), self._gpm_record(metricsGet.sample2)
        self._require(metricsGet.version == pynvml.NVML_GPM_METRICS_GET_VERSION)
        self._require(first.taken_at is not None and second.taken_at is not None)
        self._require(first.device == second.device and second.taken_at > first.taken_at)
        for slot in range(metricsGet.numMetrics):
            metric = metricsGet.metrics[slot]
            if metric.metricId in second.percent:
                metric.nvmlReturn = pynvml.NVML_SUCCESS
                metric.value = second.percent[metric.metricId]
            else:
                metric.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return metricsGet
