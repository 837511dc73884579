"""NVML probe: one ``DeviceSample`` per NVIDIA GPU per tick, and it never raises.

Units of what it reports (NVML's own units in brackets):

- memory: bytes; ``memory_used_bytes`` is memory info v2's ``used``, which leaves out
  the driver's reserved memory (v1's ``used`` includes it; v1 is the fallback).
- utilisation: fraction 0–1 (NVML: percent over its last sample period).
- clocks: MHz. Power: W (NVML: mW). Temperature: °C.
- PCIe: bytes/s, from NVML's cumulative byte counters (field values
  ``NVML_FI_DEV_PCIE_COUNT_TX/RX_BYTES``) differenced between two ticks; where
  those are not supported, from ``nvmlDeviceGetPcieThroughput`` (KiB/s × 1024).
  That call counts bytes over a 20 ms window *inside* the call, so it costs
  ~20 ms each; the counters cost nothing.
- ``derived_bandwidth_bytes_per_s`` = bus width (bits) × max memory clock (MHz)
  × 1e6 × 2 (double data rate) / 8 (bits → bytes).
- GPM (Hopper and newer): ``DRAM_BW_UTIL``, ``ANY_TENSOR_UTIL``, ``SM_UTIL``,
  ``SM_OCCUPANCY`` between this tick's GPM sample and an earlier one at least
  100 ms older, NVML percent → fraction 0–1. ``dram_bandwidth_util`` is the
  measured share of peak DRAM bandwidth actually achieved.

Failure handling: every NVML call is wrapped. A reading NVML does not support
is asked once and then never again on that device (an unsupported call costs
nothing per tick); any other failure is retried next tick. Each failure leaves
the field ``None`` and its reason in ``why``. A GPU that fell off the bus gets
``why["device"]`` and no further calls. No threads, no sleeps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from infermon.probes.snapshot import DeviceSample, GpuProcess

# nvml.h enum values. They are NVML's stable C ABI, so they are spelled out here
# instead of being read from the binding (an old binding or a fake may lack one).
_ERR_NOT_SUPPORTED = 3
_ERR_NO_PERMISSION = 4
_ERR_DRIVER_NOT_LOADED = 9
_ERR_LIBRARY_NOT_FOUND = 12
_ERR_FUNCTION_NOT_FOUND = 13
_ERR_GPU_IS_LOST = 15
_ERR_LIB_RM_VERSION_MISMATCH = 18
_ERR_ARGUMENT_VERSION_MISMATCH = 25

_CLOCK_SM = 1
_CLOCK_MEM = 2
_TEMPERATURE_GPU = 0
_PCIE_UTIL_TX_BYTES = 0
_PCIE_UTIL_RX_BYTES = 1
_FI_DEV_PCIE_COUNT_TX_BYTES = 197
_FI_DEV_PCIE_COUNT_RX_BYTES = 198
_FI_DEV_NVLINK_LINK_COUNT = 91
_FI_DEV_NVLINK_THROUGHPUT_DATA_TX = 138  # cumulative KiB, per link (scopeId = link)
_FI_DEV_NVLINK_THROUGHPUT_DATA_RX = 139
# nvml.h: "A scopeId of UINT_MAX returns aggregate value summed up across all links for the
# specified counter type" (two fields a GPU instead of two per link: 36 on an H100 SXM).
_ALL_LINKS = 0xFFFFFFFF
NVLINK_NONE = "no NVLink on this GPU"
_VALUE_NOT_AVAILABLE_ULL = 2**64 - 1  # NVML_VALUE_NOT_AVAILABLE as unsigned long long
_KIB = 1024  # nvmlDeviceGetPcieThroughput's "KB/s" are KiB/s (as nvitop reads them)

# DeviceSample field → NVML_GPM_METRIC_* id; NVML reports each as a percentage 0–100.
_GPM_METRICS = {
    "dram_bandwidth_util": 10,  # DRAM_BW_UTIL
    "tensor_util": 5,  # ANY_TENSOR_UTIL
    "sm_util": 2,  # SM_UTIL
    "sm_occupancy": 3,  # SM_OCCUPANCY
}
_GPM_FIELDS = tuple(_GPM_METRICS)
GPM_MIN_INTERVAL_S = 0.1

NOT_SUPPORTED = "not supported on this GPU"
NOT_IN_BINDING = "not available in this driver's NVML"
GPU_LOST = "GPU is lost (fell off the bus)"
NO_DRIVER = "no NVIDIA driver (NVML library not found)"
GPM_UNSUPPORTED = "GPM not supported on this GPU (needs Hopper or newer)"
GPM_NOT_PERMITTED = "GPM not permitted (needs root or the profiling permission)"
GPM_NEEDS_TWO = "GPM needs two samples ≥100 ms apart"
PCIE_NEEDS_TWO = "PCIe byte counters need two samples"
CONTAINER_HINT = (
    "none of this GPU's processes is in the watched tree "
    "(in a container without --pid=host, NVML's pids cannot match)"
)

# Bit of the clocks-event (formerly "throttle") reason mask → words, in bit order.
_THROTTLE_WORDS = (
    (0x001, "idle"),
    (0x002, "applications clocks setting"),
    (0x004, "SW power cap"),
    (0x008, "HW slowdown"),
    (0x010, "sync boost"),
    (0x020, "SW thermal slowdown"),
    (0x040, "HW thermal slowdown"),
    (0x080, "HW power brake"),
    (0x100, "display clock setting"),
    (0x200, "board limit"),
    (0x400, "reliability"),
)


def throttle_reason_words(mask: int) -> tuple[str, ...]:
    """Why the clocks are held back, in words, from NVML's clocks-event reason bitmask.

    0 → ``()``. A bit this table does not know shows as ``"reason 0x…"`` rather than vanishing.
    """
    words = [word for bit, word in _THROTTLE_WORDS if mask & bit]
    known = 0
    for bit, _ in _THROTTLE_WORDS:
        known |= bit
    unknown = mask & ~known
    bit = 1
    while unknown >= bit:
        if unknown & bit:
            words.append(f"reason {bit:#x}")
        bit <<= 1
    return tuple(words)


def derived_bandwidth(bus_width_bits: int | None, max_memory_clock_mhz: float | None) -> float | None:
    """Peak DRAM bandwidth in bytes/s = bus width (bits) × max memory clock (MHz) × 1e6 × 2 / 8.

    The × 2 is double data rate. H100 SXM: 5120 × 2619 → 3.35e12; A10: 384 × 6251 → 600e9.
    ``None`` when either input is unknown or not positive.
    """
    if not bus_width_bits or not max_memory_clock_mhz or bus_width_bits <= 0 or max_memory_clock_mhz <= 0:
        return None
    return bus_width_bits * max_memory_clock_mhz * 1e6 * 2 / 8


# --- failures ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    """A classified exception. kind: lost, unsupported, missing (no such function or
    struct version in this driver), permission, or error."""

    kind: str
    reason: str
    code: int | None = None


class _GpuLost(Exception):
    """Raised inside the probe to abandon a device that fell off the bus."""


def _blame(why: dict[str, str], fields: Iterable[str], reason: str) -> None:
    for name in fields:
        why[name] = reason


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | None:
    """A finite real number, or None (a broken binding may hand back anything)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _whole(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # exact: going through float would turn 2**64 - 1 into 2**64
    number = _number(value)
    return int(number) if number is not None else None


def _used_bytes(value: Any) -> int | None:
    """usedGpuMemory: None or NVML_VALUE_NOT_AVAILABLE mean NVML does not know (WDDM, some vGPU/MIG)."""
    used = _whole(value)
    if used is None or used == _VALUE_NOT_AVAILABLE_ULL or used < 0:
        return None
    return used


# --- per-device state ---------------------------------------------------------------------


@dataclass
class _GpmState:
    supported: bool | None = None
    blocked: str | None = None  # a reason that will not change: never try GPM again
    samples: list[Any] = field(default_factory=list)  # two NVML sample buffers, freed in close()
    previous: int | None = None  # index into samples of the reading to difference against
    previous_time: float = 0.0


@dataclass
class _Device:
    index: int
    handle: Any = None
    handle_why: str | None = None
    lost: bool = False
    static: dict[str, Any] = field(default_factory=dict)  # readings that never change
    unsupported: dict[str, str] = field(default_factory=dict)  # reading → reason; never asked again
    variant: dict[str, int] = field(default_factory=dict)  # reading → first call variant worth trying
    pcie_previous: tuple[float, float | None, int, int] | None = None  # (clock s, NVML s, tx, rx)
    nvlink_links: int | None = None
    nvlink_aggregate: bool | None = None  # the driver sums the links itself (None: not asked yet)
    nvlink_previous: tuple[float, int, int] | None = None  # (clock s, tx KiB, rx KiB)
    gpm: _GpmState = field(default_factory=_GpmState)


# A call variant: NVML function name, arguments after the device handle, keyword arguments.
_Call = tuple[str, tuple[Any, ...], dict[str, Any]]


def _calls(*names_and_args: tuple[Any, ...]) -> tuple[_Call, ...]:
    return tuple((name, tuple(args), {}) for name, *args in names_and_args)


_NAME = _calls(("nvmlDeviceGetName",))
_UUID = _calls(("nvmlDeviceGetUUID",))
_UTILIZATION = _calls(("nvmlDeviceGetUtilizationRates",))
_SM_CLOCK = _calls(("nvmlDeviceGetClockInfo", _CLOCK_SM))
_MEMORY_CLOCK = _calls(("nvmlDeviceGetClockInfo", _CLOCK_MEM))
_SM_CLOCK_MAX = _calls(("nvmlDeviceGetMaxClockInfo", _CLOCK_SM))
_MEMORY_CLOCK_MAX = _calls(("nvmlDeviceGetMaxClockInfo", _CLOCK_MEM))
_POWER = _calls(("nvmlDeviceGetPowerUsage",))
_POWER_LIMIT = _calls(("nvmlDeviceGetEnforcedPowerLimit",))
# TemperatureV is the current API; the plain one is deprecated but all older drivers have it.
_TEMPERATURE = _calls(
    ("nvmlDeviceGetTemperatureV", _TEMPERATURE_GPU),
    ("nvmlDeviceGetTemperature", _TEMPERATURE_GPU),
)
# "Clocks event reasons" is the new name of the throttle reasons; same bits.
_THROTTLE = _calls(
    ("nvmlDeviceGetCurrentClocksEventReasons",),
    ("nvmlDeviceGetCurrentClocksThrottleReasons",),
)
_BUS_WIDTH = _calls(("nvmlDeviceGetMemoryBusWidth",))
_PCIE_COUNTERS = _calls(
    ("nvmlDeviceGetFieldValues", [_FI_DEV_PCIE_COUNT_TX_BYTES, _FI_DEV_PCIE_COUNT_RX_BYTES]),
)
_PCIE_TX = _calls(("nvmlDeviceGetPcieThroughput", _PCIE_UTIL_TX_BYTES))
_PCIE_RX = _calls(("nvmlDeviceGetPcieThroughput", _PCIE_UTIL_RX_BYTES))
_COMPUTE_PROCESSES = _calls(
    ("nvmlDeviceGetComputeRunningProcesses_v3",),
    ("nvmlDeviceGetComputeRunningProcesses_v2",),
)
_GRAPHICS_PROCESSES = _calls(
    ("nvmlDeviceGetGraphicsRunningProcesses_v3",),
    ("nvmlDeviceGetGraphicsRunningProcesses_v2",),
)


# --- the probe ----------------------------------------------------------------------------


class NvmlProbe:
    """Samples every NVIDIA GPU through NVML.

    ``nvml`` is a module-like object with pynvml's API (default: ``pynvml``, imported
    in ``start()``). ``clock`` gives monotonic seconds; tests pass a fake one.

    After ``start()``: ``available`` (bool), ``why`` (one human line when not
    available, else None), ``driver_version``, ``nvml_version``, ``device_count``.
    """

    def __init__(self, nvml: Any = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._nvml = nvml
        self._clock = clock
        self._started = False
        self._initialized = False
        self._devices: list[_Device] = []
        self._memory_calls: tuple[_Call, ...] = ()
        self.available = False
        self.why: str | None = "NVML probe not started"
        self.driver_version: str | None = None
        self.nvml_version: str | None = None
        self.device_count = 0

    # --- lifecycle ---

    def start(self) -> None:
        """nvmlInit, versions, device count and handles. Never raises; on failure ``available`` is False."""
        if self._started:
            return
        self._started = True
        if self._nvml is None:
            try:
                import pynvml
            except Exception:
                self._unavailable("nvidia-ml-py is not installed (no module pynvml)")
                return
            self._nvml = pynvml
        _, failure = self._invoke("nvmlInit")
        if failure is not None:
            self._unavailable(_init_reason(failure))
            return
        self._initialized = True
        self.driver_version = _text(self._invoke("nvmlSystemGetDriverVersion")[0])
        self.nvml_version = _text(self._invoke("nvmlSystemGetNVMLVersion")[0])
        count, failure = self._invoke("nvmlDeviceGetCount")
        if failure is not None or _whole(count) is None:
            self._unavailable(failure.reason if failure else "NVML: no device count")
            self._shutdown()
            return
        self.device_count = _whole(count) or 0
        if self.device_count <= 0:
            self._unavailable("NVML found no NVIDIA GPU")
            self._shutdown()
            return
        # Memory info v2 needs the binding's struct version constant; without it, v1 only.
        memory_v2 = getattr(self._nvml, "nvmlMemory_v2", None)
        v2 = (("nvmlDeviceGetMemoryInfo", (), {"version": memory_v2}),) if memory_v2 else ()
        self._memory_calls = v2 + (("nvmlDeviceGetMemoryInfo", (), {}),)
        self._devices = [_Device(index) for index in range(self.device_count)]
        for device in self._devices:
            self._acquire_handle(device)
        self.available = True
        self.why = None

    def close(self) -> None:
        """Free GPM samples, nvmlShutdown. Never raises; safe to call twice."""
        for device in self._devices:
            for gpm_sample in device.gpm.samples:
                self._invoke("nvmlGpmSampleFree", gpm_sample)
            device.gpm.samples.clear()
            device.gpm.previous = None
        self._shutdown()
        if self.available:
            self.available = False
            self.why = "NVML probe closed"

    # --- one tick ---

    def sample(self, tree_pids: frozenset[int]) -> tuple[DeviceSample, ...]:
        """One DeviceSample per GPU; ``()`` when NVML is unavailable. Never raises."""
        if not self.available:
            return ()
        samples = []
        for device in self._devices:
            try:
                samples.append(self._sample_device(device, tree_pids))
            except _GpuLost:
                device.lost = True
                samples.append(DeviceSample(index=device.index, why={"device": GPU_LOST}))
            except Exception as exc:  # a bug here must cost one device, not the monitor
                samples.append(DeviceSample(index=device.index, why={"device": f"NVML probe failed: {exc!r}"}))
        return _explain_unmatched_tree(tuple(samples), tree_pids)

    def _sample_device(self, device: _Device, tree_pids: frozenset[int]) -> DeviceSample:
        if device.lost:
            return DeviceSample(index=device.index, why={"device": GPU_LOST})
        if device.handle is None and not self._acquire_handle(device):
            return DeviceSample(index=device.index, why={"device": device.handle_why or "no NVML handle"})
        why: dict[str, str] = {}

        def read(reading: str, fields: tuple[str, ...], calls: tuple[_Call, ...], static: bool = False) -> Any:
            return self._read(device, why, reading, fields, calls, static)

        name = _text(read("name", ("name",), _NAME, static=True))
        uuid = _text(read("uuid", ("uuid",), _UUID, static=True))
        memory = read("memory", ("memory_total_bytes", "memory_used_bytes"), self._memory_calls)
        utilization = read("utilization", ("utilization_gpu", "utilization_memory"), _UTILIZATION)
        sm_clock = _number(read("sm_clock", ("sm_clock_mhz",), _SM_CLOCK))
        memory_clock = _number(read("memory_clock", ("memory_clock_mhz",), _MEMORY_CLOCK))
        sm_clock_max = _number(read("sm_clock_max", ("sm_clock_max_mhz",), _SM_CLOCK_MAX, static=True))
        memory_clock_max = _number(
            read("memory_clock_max", ("memory_clock_max_mhz",), _MEMORY_CLOCK_MAX, static=True)
        )
        power_mw = _number(read("power", ("power_w",), _POWER))
        power_limit_mw = _number(read("power_limit", ("power_limit_w",), _POWER_LIMIT))
        temperature = _number(read("temperature", ("temperature_c",), _TEMPERATURE))
        throttle_mask = _whole(read("throttle", ("throttle_reasons",), _THROTTLE))
        bus_width = _whole(read("bus_width", ("bus_width_bits",), _BUS_WIDTH, static=True))

        bandwidth = derived_bandwidth(bus_width, memory_clock_max)
        if bandwidth is None:
            why["derived_bandwidth_bytes_per_s"] = "needs the memory bus width and max memory clock"
        pcie_tx, pcie_rx = self._pcie(device, why)
        nvlink_tx, nvlink_rx = self._nvlink(device, why)
        processes, used_by_tree, memory_tree = self._processes(device, why, tree_pids)
        gpm_supported, gpm_values = self._gpm(device, why)

        reported = dict(
            index=device.index,
            kind="gpu",
            name=name,
            uuid=uuid,
            memory_total_bytes=_whole(getattr(memory, "total", None)),
            memory_used_bytes=_whole(getattr(memory, "used", None)),
            memory_tree_bytes=memory_tree,
            utilization_gpu=_fraction(getattr(utilization, "gpu", None)),
            utilization_memory=_fraction(getattr(utilization, "memory", None)),
            sm_clock_mhz=sm_clock,
            sm_clock_max_mhz=sm_clock_max,
            memory_clock_mhz=memory_clock,
            memory_clock_max_mhz=memory_clock_max,
            power_w=power_mw / 1000 if power_mw is not None else None,
            power_limit_w=power_limit_mw / 1000 if power_limit_mw is not None else None,
            temperature_c=temperature,
            throttle_reasons=throttle_reason_words(throttle_mask) if throttle_mask is not None else (),
            pcie_tx_bytes_per_s=pcie_tx,
            pcie_rx_bytes_per_s=pcie_rx,
            nvlink_tx_bytes_per_s=nvlink_tx,
            nvlink_rx_bytes_per_s=nvlink_rx,
            bus_width_bits=bus_width,
            derived_bandwidth_bytes_per_s=bandwidth,
            gpm_supported=gpm_supported,
            processes=processes,
            used_by_tree=used_by_tree,
            **gpm_values,
        )
        for field_name, value in reported.items():
            if value is None and field_name not in why:  # e.g. the binding handed back a non-number
                why[field_name] = "NVML gave no usable value"
        return DeviceSample(**reported, why=why)

    # --- NVLink ---

    def _nvlink(self, device: _Device, why: dict[str, str]) -> tuple[float | None, float | None]:
        """NVLink data bytes/s summed over the GPU's links, from NVML's cumulative KiB counters
        (bytes/s = Δ KiB × 1024 / Δ seconds between two ticks)."""
        fields = ("nvlink_tx_bytes_per_s", "nvlink_rx_bytes_per_s")
        if "nvlink" in device.unsupported:
            _blame(why, fields, device.unsupported["nvlink"])
            return None, None
        if device.nvlink_links is None:
            counted, failure = self._invoke("nvmlDeviceGetFieldValues", device.handle, [_FI_DEV_NVLINK_LINK_COUNT])
            if failure is not None:
                return self._nvlink_failed(device, why, fields, failure)
            try:
                links = _whole(counted[0].value.uiVal) if counted[0].nvmlReturn == 0 else 0
            except Exception:
                links = 0
            device.nvlink_links = links or 0
            if not links:
                device.unsupported["nvlink"] = NVLINK_NONE
                _blame(why, fields, NVLINK_NONE)
                return None, None
        counts = self._nvlink_counts(device, why, fields)
        if counts is None:
            return None, None
        tx, rx = counts
        now = self._clock()
        previous, device.nvlink_previous = device.nvlink_previous, (now, tx, rx)
        if previous is None or now <= previous[0] or tx < previous[1] or rx < previous[2]:
            _blame(why, fields, "NVLink counters need two ticks")
            return None, None
        elapsed = now - previous[0]
        return (tx - previous[1]) * _KIB / elapsed, (rx - previous[2]) * _KIB / elapsed

    def _nvlink_counts(self, device: _Device, why: dict[str, str], fields: tuple[str, ...]) -> tuple[int, int] | None:
        """Cumulative (TX, RX) KiB over all links: the driver's own sum where it gives one, else
        the sum of the per-link counters (drivers that refuse the all-links scope)."""
        if device.nvlink_aggregate is not False:
            ids = [(_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, _ALL_LINKS), (_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, _ALL_LINKS)]
            values, failure = self._invoke("nvmlDeviceGetFieldValues", device.handle, ids)
            if failure is not None:
                self._nvlink_failed(device, why, fields, failure)
                return None
            try:
                returns = [value.nvmlReturn for value in values]
                if returns == [0, 0]:
                    device.nvlink_aggregate = True
                    tx, rx = _whole(values[0].value.ullVal), _whole(values[1].value.ullVal)
                    if tx is None or rx is None:
                        _blame(why, fields, "NVML gave no usable value")
                        return None
                    return tx, rx
            except Exception:
                returns = None
            if device.nvlink_aggregate:  # it summed before: a passing failure, not a refusal
                _blame(why, fields, self._code_reason(next((r for r in returns or () if r), None)))
                return None
            device.nvlink_aggregate = False  # this driver wants each link asked for
        ids = [(field, link) for link in range(device.nvlink_links)
               for field in (_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, _FI_DEV_NVLINK_THROUGHPUT_DATA_RX)]
        values, failure = self._invoke("nvmlDeviceGetFieldValues", device.handle, ids)
        if failure is not None:
            self._nvlink_failed(device, why, fields, failure)
            return None
        tx = rx = 0
        for value in values or ():
            if value.nvmlReturn != 0:
                if value.nvmlReturn == _ERR_NOT_SUPPORTED:
                    device.unsupported["nvlink"] = NOT_SUPPORTED
                _blame(why, fields, self._code_reason(value.nvmlReturn))
                return None
            if value.fieldId == _FI_DEV_NVLINK_THROUGHPUT_DATA_TX:
                tx += value.value.ullVal
            else:
                rx += value.value.ullVal
        return tx, rx

    def _nvlink_failed(self, device: _Device, why: dict[str, str], fields: tuple[str, ...],
                       failure: _Failure) -> tuple[None, None]:
        if failure.kind == "lost":
            raise _GpuLost
        if failure.kind in ("unsupported", "missing"):
            device.unsupported["nvlink"] = failure.reason  # never asked again
        _blame(why, fields, failure.reason)
        return None, None

    # --- PCIe ---

    def _pcie(self, device: _Device, why: dict[str, str]) -> tuple[float | None, float | None]:
        """Bytes/s from the cumulative counters, else from the 20 ms throughput call."""
        fields = ("pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s")
        if "pcie_counters" not in device.unsupported:
            attempt: dict[str, str] = {}
            values = self._read(device, attempt, "pcie_counters", fields, _PCIE_COUNTERS)
            if values is not None:
                rates = self._pcie_rates(device, values, why)
                if rates is not None:
                    return rates
            elif "pcie_counters" not in device.unsupported:
                why.update(attempt)  # a passing failure: say so, and try the counters again next tick
                return None, None
        tx = _number(self._read(device, why, "pcie_tx", fields[:1], _PCIE_TX))
        rx = _number(self._read(device, why, "pcie_rx", fields[1:], _PCIE_RX))
        return (tx * _KIB if tx is not None else None, rx * _KIB if rx is not None else None)

    def _pcie_rates(
        self, device: _Device, values: Any, why: dict[str, str]
    ) -> tuple[float | None, float | None] | None:
        """Rates from two readings of the byte counters; None when the counters are unsupported."""
        fields = ("pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s")
        now = self._clock()
        try:
            tx_value, rx_value = values[0], values[1]
            returns = (_whole(tx_value.nvmlReturn), _whole(rx_value.nvmlReturn))
            counts = (_whole(tx_value.value.ullVal), _whole(rx_value.value.ullVal))
            stamp_us = _whole(rx_value.timestamp)
        except Exception as exc:
            _blame(why, fields, f"NVML field values unreadable: {exc!r}")
            return None, None
        if _ERR_NOT_SUPPORTED in returns:
            device.unsupported["pcie_counters"] = NOT_SUPPORTED
            return None
        if returns != (0, 0) or counts[0] is None or counts[1] is None:
            code = next((code for code in returns if code), None)
            _blame(why, fields, self._code_reason(code))
            return None, None
        tx, rx = counts
        # NVML stamps each value (µs since the epoch); the probe's clock covers bindings that do not.
        stamp = stamp_us / 1e6 if stamp_us else None
        previous, device.pcie_previous = device.pcie_previous, (now, stamp, tx, rx)
        if previous is None:
            _blame(why, fields, PCIE_NEEDS_TWO)
            return None, None
        then, then_stamp, then_tx, then_rx = previous
        elapsed = stamp - then_stamp if stamp and then_stamp else now - then
        if elapsed <= 0 or tx < then_tx or rx < then_rx:
            _blame(why, fields, "PCIe byte counters went back (reset); rate again next tick")
            return None, None
        return (tx - then_tx) / elapsed, (rx - then_rx) / elapsed

    # --- processes ---

    def _processes(
        self, device: _Device, why: dict[str, str], tree_pids: frozenset[int]
    ) -> tuple[tuple[GpuProcess, ...], bool, int | None]:
        """Compute and graphics processes merged by pid; whether the tree uses this GPU; its bytes."""
        used_by_pid: dict[int, int | None] = {}
        complete = True
        for reading, kind, calls in (
            ("compute_processes", "compute", _COMPUTE_PROCESSES),
            ("graphics_processes", "graphics", _GRAPHICS_PROCESSES),
        ):
            attempt: dict[str, str] = {}
            listed = self._read(device, attempt, reading, ("processes",), calls)
            if listed is None:
                # A GPU without graphics support simply has no graphics processes.
                if kind == "graphics" and device.unsupported.get(reading) == NOT_SUPPORTED:
                    continue
                complete = False
                reason = f"{kind} processes: {attempt['processes']}"
                why["processes"] = f"{why['processes']}; {reason}" if "processes" in why else reason
                continue
            try:
                for proc in listed:
                    pid = _whole(getattr(proc, "pid", None))
                    if pid is not None and used_by_pid.get(pid) is None:
                        used_by_pid[pid] = _used_bytes(getattr(proc, "usedGpuMemory", None))
            except Exception as exc:
                complete = False
                why["processes"] = f"{kind} processes unreadable: {exc!r}"
        processes = tuple(GpuProcess(pid, used_by_pid[pid]) for pid in sorted(used_by_pid))
        in_tree = [proc for proc in processes if proc.pid in tree_pids]
        memory_tree: int | None = None
        if not tree_pids:
            why["memory_tree_bytes"] = "no watched process tree"
        elif not complete:
            why["memory_tree_bytes"] = "GPU process list incomplete"
        elif any(proc.used_bytes is None for proc in in_tree):
            why["memory_tree_bytes"] = "NVML does not report per-process memory here"
        else:
            memory_tree = sum(proc.used_bytes or 0 for proc in in_tree)
        return processes, bool(in_tree), memory_tree

    # --- GPM ---

    def _gpm(self, device: _Device, why: dict[str, str]) -> tuple[bool | None, dict[str, float | None]]:
        """GPM metrics between the previous kept sample and this one. Allocates two sample
        buffers per device once; ``close()`` frees them."""
        state = device.gpm
        values: dict[str, float | None] = dict.fromkeys(_GPM_FIELDS)
        if state.blocked is None and state.supported is None:
            support, failure = self._invoke("nvmlGpmQueryDeviceSupport", device.handle)
            if failure is not None:
                self._gpm_failed(device, why, failure, ("gpm_supported",) + _GPM_FIELDS)
                return state.supported, values
            state.supported = bool(_whole(getattr(support, "isSupportedDevice", 0)))
            if not state.supported:
                state.blocked = GPM_UNSUPPORTED
        if state.blocked is not None:
            unknown_support = ("gpm_supported",) if state.supported is None else ()
            _blame(why, _GPM_FIELDS + unknown_support, state.blocked)
            return state.supported, values
        while len(state.samples) < 2:
            buffer, failure = self._invoke("nvmlGpmSampleAlloc")
            if failure is not None:
                self._gpm_failed(device, why, failure, _GPM_FIELDS)
                return state.supported, values
            state.samples.append(buffer)
        target = 0 if state.previous is None else 1 - state.previous
        _, failure = self._invoke("nvmlGpmSampleGet", device.handle, state.samples[target])
        if failure is not None:
            self._gpm_failed(device, why, failure, _GPM_FIELDS)
            return state.supported, values
        now = self._clock()
        if state.previous is None or now - state.previous_time < GPM_MIN_INTERVAL_S:
            # Too close: keep the older sample, so the next tick spans a longer interval.
            if state.previous is None:
                state.previous, state.previous_time = target, now
            _blame(why, _GPM_FIELDS, GPM_NEEDS_TWO)
            return state.supported, values
        first = state.samples[state.previous]
        state.previous, state.previous_time = target, now
        return state.supported, self._gpm_metrics(device, why, first, state.samples[target])

    def _gpm_metrics(self, device: _Device, why: dict[str, str], first: Any, second: Any) -> dict[str, float | None]:
        values: dict[str, float | None] = dict.fromkeys(_GPM_FIELDS)
        nvml = self._nvml
        try:
            request = nvml.c_nvmlGpmMetricsGet_t()
            request.version = getattr(nvml, "NVML_GPM_METRICS_GET_VERSION", 1)
            request.numMetrics = len(_GPM_METRICS)
            request.sample1 = first
            request.sample2 = second
            for slot, metric_id in enumerate(_GPM_METRICS.values()):
                request.metrics[slot].metricId = metric_id
        except Exception as exc:
            _blame(why, _GPM_FIELDS, f"NVML binding lacks the GPM request: {exc!r}")
            return values
        result, failure = self._invoke("nvmlGpmMetricsGet", request)
        if failure is not None:
            self._gpm_failed(device, why, failure, _GPM_FIELDS)
            return values
        result = request if result is None else result
        for slot, name in enumerate(_GPM_FIELDS):
            try:
                metric = result.metrics[slot]
                code, percent = _whole(metric.nvmlReturn), _number(metric.value)
            except Exception as exc:
                why[name] = f"GPM result unreadable: {exc!r}"
                continue
            if code != 0:
                why[name] = NOT_SUPPORTED if code == _ERR_NOT_SUPPORTED else self._code_reason(code)
            elif percent is None:
                why[name] = "GPM gave no value"
            else:
                values[name] = percent / 100
        return values

    def _gpm_failed(self, device: _Device, why: dict[str, str], failure: _Failure, fields: tuple[str, ...]) -> None:
        """Blame GPM fields; remember failures that will not go away so GPM is not asked again."""
        state = device.gpm
        if failure.kind == "lost":
            raise _GpuLost
        if failure.kind == "permission":
            state.blocked = GPM_NOT_PERMITTED
        elif failure.kind == "unsupported":
            state.supported = False if state.supported is None else state.supported
            state.blocked = GPM_UNSUPPORTED
        elif failure.kind == "missing":
            state.blocked = f"GPM {NOT_IN_BINDING}"
        _blame(why, fields, state.blocked or failure.reason)

    # --- calling NVML ---

    def _read(
        self,
        device: _Device,
        why: dict[str, str],
        reading: str,
        fields: tuple[str, ...],
        calls: tuple[_Call, ...],
        static: bool = False,
    ) -> Any:
        """The result of the first call variant that works (``device.handle`` goes first),
        or None with the reason for each of ``fields`` in ``why``.

        A variant the driver lacks, or does not support while a later one remains, is
        skipped for good; if no variant is left the reading is marked unsupported and
        never asked again. ``static`` readings are kept after the first success.
        """
        if static and reading in device.static:
            return device.static[reading]
        if reading in device.unsupported:
            _blame(why, fields, device.unsupported[reading])
            return None
        failure: _Failure | None = None
        for position in range(device.variant.get(reading, 0), len(calls)):
            name, args, kwargs = calls[position]
            value, failure = self._invoke(name, device.handle, *args, **kwargs)
            if failure is None:
                if static:
                    device.static[reading] = value
                return value
            if failure.kind == "lost":
                raise _GpuLost
            last = position == len(calls) - 1
            if failure.kind == "missing" or (failure.kind == "unsupported" and not last):
                device.variant[reading] = position + 1
                continue
            break
        assert failure is not None
        if failure.kind in ("unsupported", "missing"):
            device.unsupported[reading] = failure.reason
        _blame(why, fields, failure.reason)
        return None

    def _invoke(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, _Failure | None]:
        """Call ``nvml.<name>``; (result, None) or (None, failure). Never raises."""
        function = getattr(self._nvml, name, None)
        if not callable(function):
            return None, _Failure("missing", NOT_IN_BINDING)
        try:
            return function(*args, **kwargs), None
        except Exception as exc:
            return None, self._classify(exc)

    def _classify(self, exc: BaseException) -> _Failure:
        nvml_error = getattr(self._nvml, "NVMLError", None)
        mismatch = getattr(self._nvml, "NVMLLibraryMismatchError", None)
        if isinstance(nvml_error, type) and isinstance(exc, nvml_error):
            code = getattr(exc, "value", None)
            reason = f"NVML: {_message(exc)}"
            if code == _ERR_GPU_IS_LOST:
                return _Failure("lost", GPU_LOST, code)
            if code == _ERR_NOT_SUPPORTED:
                return _Failure("unsupported", NOT_SUPPORTED, code)
            if code in (_ERR_FUNCTION_NOT_FOUND, _ERR_ARGUMENT_VERSION_MISMATCH):
                return _Failure("missing", NOT_IN_BINDING, code)
            if code == _ERR_NO_PERMISSION:
                return _Failure("permission", reason, code)
            return _Failure("error", reason, code)
        if isinstance(mismatch, type) and isinstance(exc, mismatch):
            return _Failure("missing", NOT_IN_BINDING)
        return _Failure("error", f"NVML binding failed: {type(exc).__name__}: {exc}")

    def _code_reason(self, code: int | None) -> str:
        """'NVML: <message>' for a bare return code (GPM and field values report codes, not exceptions)."""
        try:
            return f"NVML: {_message(self._nvml.NVMLError(code))}"
        except Exception:
            return f"NVML error {code}"

    def _acquire_handle(self, device: _Device) -> bool:
        handle, failure = self._invoke("nvmlDeviceGetHandleByIndex", device.index)
        if failure is not None:
            device.lost = failure.kind == "lost"
            device.handle_why = failure.reason
            return False
        device.handle, device.handle_why = handle, None
        return True

    def _unavailable(self, reason: str) -> None:
        self.available = False
        self.why = reason

    def _shutdown(self) -> None:
        if self._initialized:
            self._initialized = False
            self._invoke("nvmlShutdown")


def _fraction(percent: Any) -> float | None:
    number = _number(percent)
    return number / 100 if number is not None else None


def _message(exc: BaseException) -> str:
    try:
        return str(exc) or type(exc).__name__
    except Exception:
        return type(exc).__name__


def _init_reason(failure: _Failure) -> str:
    """One line saying why NVML would not start, in the user's terms."""
    return {
        _ERR_LIBRARY_NOT_FOUND: NO_DRIVER,
        _ERR_DRIVER_NOT_LOADED: "NVIDIA driver not loaded",
        _ERR_NO_PERMISSION: "NVML: insufficient permissions",
        _ERR_LIB_RM_VERSION_MISMATCH: "NVML: driver/library version mismatch (reload the driver or reboot)",
    }.get(failure.code, failure.reason)


def _explain_unmatched_tree(
    samples: tuple[DeviceSample, ...], tree_pids: frozenset[int]
) -> tuple[DeviceSample, ...]:
    """When a tree is watched but no GPU lists any of its pids, a tree total of 0 would be a
    silent zero: NVML reports host pids, which never match inside a container without
    --pid=host. Devices that do list processes get None and that reason instead."""
    if not tree_pids or any(sample.used_by_tree for sample in samples):
        return samples
    return tuple(
        replace(sample, memory_tree_bytes=None, why={**sample.why, "memory_tree_bytes": CONTAINER_HINT})
        if sample.processes and sample.memory_tree_bytes == 0
        else sample
        for sample in samples
    )
