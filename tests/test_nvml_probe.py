"""The NVML probe against a scripted NVML: what a user sees per GPU, and how it degrades."""

from __future__ import annotations

import ctypes.util
import dataclasses
import sys

import pynvml
import pytest

from infermon.testing.fake_nvml import DRAM_BW_UTIL, NOT_AVAILABLE, FakeClock, FakeNvml, GiB, a10, FakeGpu
from infermon.probes.nvml import NvmlProbe, derived_bandwidth, throttle_reason_words
from infermon.probes.snapshot import DeviceSample, GpuProcess

UNKNOWN_ERROR = "NVML: Unknown Error"
OPTIONAL_FIELDS = [
    f.name for f in dataclasses.fields(DeviceSample) if f.default is None and f.name not in ("index",)
]


def started(nvml: FakeNvml) -> NvmlProbe:
    probe = NvmlProbe(nvml, clock=nvml.clock)
    probe.start()
    assert probe.available, probe.why
    return probe


def two_ticks(nvml: FakeNvml, tree: frozenset[int] = frozenset()) -> tuple[DeviceSample, ...]:
    """A second tick, one second after the first: rates and GPM have their two samples."""
    probe = started(nvml)
    probe.sample(tree)
    nvml.clock.advance(1.0)
    samples = probe.sample(tree)
    probe.close()
    return samples


# --- what is reported ---------------------------------------------------------------------


def test_every_gpu_is_reported_with_its_figures_in_our_units():
    nvml = FakeNvml(gpus=8, clock=FakeClock())
    probe = started(nvml)
    assert (probe.device_count, probe.driver_version, probe.nvml_version) == (8, "550.54.15", "12.550.54.15")
    probe.sample(frozenset())
    nvml.clock.advance(1.0)
    samples = probe.sample(frozenset())

    assert [s.index for s in samples] == list(range(8))
    gpu = samples[0]
    assert gpu.kind == "gpu"
    assert gpu.name == "NVIDIA H100 80GB HBM3"
    assert gpu.uuid.startswith("GPU-")
    assert len({s.uuid for s in samples}) == 8
    assert gpu.memory_total_bytes == 80 * GiB
    assert gpu.memory_used_bytes == 60 * GiB  # memory info v2: without the reserved 512 MiB
    assert (gpu.utilization_gpu, gpu.utilization_memory) == (0.87, 0.64)
    assert (gpu.sm_clock_mhz, gpu.sm_clock_max_mhz) == (1755, 1980)
    assert (gpu.memory_clock_mhz, gpu.memory_clock_max_mhz) == (2619, 2619)
    assert (gpu.power_w, gpu.power_limit_w) == (pytest.approx(512.3), 700.0)
    assert gpu.temperature_c == 54
    assert gpu.throttle_reasons == ()
    assert gpu.bus_width_bits == 5120
    assert gpu.derived_bandwidth_bytes_per_s == pytest.approx(3.35e12, rel=1e-3)
    assert gpu.pcie_tx_bytes_per_s == pytest.approx(2.5e9)
    assert gpu.pcie_rx_bytes_per_s == pytest.approx(1.0e9)
    assert gpu.gpm_supported is True
    assert gpu.dram_bandwidth_util == pytest.approx(0.62)
    assert gpu.tensor_util == pytest.approx(0.35)
    assert gpu.sm_util == pytest.approx(0.80)
    assert gpu.sm_occupancy == pytest.approx(0.40)
    assert gpu.why == {"memory_tree_bytes": "no watched process tree"}


def test_throttle_reasons_are_words():
    nvml = FakeNvml(gpus=1, clock=FakeClock())
    nvml.gpus[0].throttle_mask = pynvml.nvmlClocksEventReasonSwPowerCap | pynvml.nvmlClocksEventReasonHwThermalSlowdown
    (gpu,) = two_ticks(nvml)
    assert gpu.throttle_reasons == ("SW power cap", "HW thermal slowdown")


@pytest.mark.parametrize(
    "mask, words",
    [
        (0, ()),
        (0x1, ("idle",)),
        (0x2, ("applications clocks setting",)),
        (0x4, ("SW power cap",)),
        (0x8, ("HW slowdown",)),
        (0x10, ("sync boost",)),
        (0x20, ("SW thermal slowdown",)),
        (0x40, ("HW thermal slowdown",)),
        (0x80, ("HW power brake",)),
        (0x100, ("display clock setting",)),
        (0x4 | 0x80, ("SW power cap", "HW power brake")),
        (0x1000, ("reason 0x1000",)),
    ],
)
def test_throttle_reason_words(mask, words):
    assert throttle_reason_words(mask) == words


def test_derived_bandwidth_matches_the_datasheets():
    assert derived_bandwidth(5120, 2619) == pytest.approx(3.35e12, rel=1e-3)  # H100 SXM
    assert derived_bandwidth(384, 6251) == pytest.approx(600e9, rel=1e-3)  # A10
    assert derived_bandwidth(None, 2619) is None
    assert derived_bandwidth(5120, None) is None
    assert derived_bandwidth(0, 2619) is None


def test_an_a10_reports_its_bandwidth_and_that_it_has_no_gpm():
    (gpu,) = two_ticks(FakeNvml(gpus=[a10()], clock=FakeClock()))
    assert gpu.name == "NVIDIA A10"
    assert gpu.derived_bandwidth_bytes_per_s == pytest.approx(600e9, rel=1e-3)
    assert gpu.gpm_supported is False
    assert gpu.dram_bandwidth_util is None
    assert gpu.why["dram_bandwidth_util"] == "GPM not supported on this GPU (needs Hopper or newer)"


# --- the watched process tree --------------------------------------------------------------


def test_tree_processes_mark_their_gpus_and_add_up_their_memory():
    nvml = FakeNvml(gpus=3, clock=FakeClock())
    nvml.gpus[0].compute_processes.update({100: 30 * GiB, 200: 2 * GiB})
    nvml.gpus[0].graphics_processes[300] = 1 * GiB
    nvml.gpus[1].compute_processes[999] = 5 * GiB
    tree = frozenset({100, 300, 12345})

    first, second, third = two_ticks(nvml, tree)

    assert first.used_by_tree is True
    assert first.memory_tree_bytes == 31 * GiB
    assert first.processes == (GpuProcess(100, 30 * GiB), GpuProcess(200, 2 * GiB), GpuProcess(300, 1 * GiB))
    assert (second.used_by_tree, second.memory_tree_bytes) == (False, 0)
    assert second.processes == (GpuProcess(999, 5 * GiB),)
    assert (third.used_by_tree, third.memory_tree_bytes, third.processes) == (False, 0, ())


@pytest.mark.parametrize("unknown", [None, NOT_AVAILABLE])
def test_unknown_per_process_memory_makes_the_tree_total_unknown(unknown):
    nvml = FakeNvml(gpus=1, clock=FakeClock())
    nvml.gpus[0].compute_processes.update({100: 30 * GiB, 101: unknown})
    (gpu,) = two_ticks(nvml, frozenset({100, 101}))
    assert gpu.used_by_tree is True
    assert GpuProcess(101, None) in gpu.processes
    assert gpu.memory_tree_bytes is None
    assert "per-process memory" in gpu.why["memory_tree_bytes"]


def test_a_tree_that_matches_no_gpu_process_is_explained_not_shown_as_zero():
    """NVML reports host pids; inside a container without --pid=host they never match."""
    nvml = FakeNvml(gpus=2, clock=FakeClock())
    nvml.gpus[0].compute_processes[4242] = 70 * GiB  # the server, under its host pid
    busy, idle = two_ticks(nvml, frozenset({17}))
    assert busy.used_by_tree is False
    assert busy.memory_tree_bytes is None
    assert "--pid=host" in busy.why["memory_tree_bytes"]
    assert idle.memory_tree_bytes == 0


def test_old_drivers_fall_back_to_v2_process_lists_and_v1_memory_info():
    nvml = FakeNvml(gpus=2, clock=FakeClock(), memory_v2=False, process_api="v2")
    nvml.gpus[1].compute_processes[100] = 3 * GiB
    probe = started(nvml)
    for _ in range(3):
        samples = probe.sample(frozenset({100}))
        nvml.clock.advance(1.0)
    assert samples[1].memory_tree_bytes == 3 * GiB
    assert samples[1].used_by_tree is True
    assert samples[0].memory_used_bytes == 60 * GiB + 512 * 1024**2  # v1 counts reserved memory as used
    assert "memory_used_bytes" not in samples[0].why
    # The missing v3 call was tried once per device, not on every tick.
    assert nvml.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == 2
    assert nvml.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 6


# --- PCIe ----------------------------------------------------------------------------------


def test_pcie_rates_need_two_ticks_of_the_byte_counters():
    nvml = FakeNvml(gpus=1, clock=FakeClock())
    probe = started(nvml)
    (first,) = probe.sample(frozenset())
    assert first.pcie_tx_bytes_per_s is None
    assert "two samples" in first.why["pcie_tx_bytes_per_s"]
    nvml.clock.advance(0.5)
    nvml.gpus[0].pcie_tx_bytes_per_s = 2.5e9  # unchanged rate; the counter grew 1.25e9 in 0.5 s
    (second,) = probe.sample(frozenset())
    assert second.pcie_tx_bytes_per_s == pytest.approx(2.5e9)
    assert nvml.calls["nvmlDeviceGetPcieThroughput"] == 0  # the 20 ms-per-call path is not used


def test_without_pcie_counters_the_throughput_call_is_used_in_bytes_per_second():
    nvml = FakeNvml(gpus=[FakeGpu(nvlink_links=0)], clock=FakeClock(), pcie_counters=False)
    probe = started(nvml)
    (first,) = probe.sample(frozenset())
    assert first.pcie_tx_bytes_per_s == pytest.approx(2.5e9, rel=1e-6)  # KiB/s × 1024
    assert first.pcie_rx_bytes_per_s == pytest.approx(1.0e9, rel=1e-6)
    asked = nvml.calls["nvmlDeviceGetFieldValues"]
    probe.sample(frozenset())
    assert nvml.calls["nvmlDeviceGetFieldValues"] == asked  # unsupported counters are not asked again


# --- GPM -----------------------------------------------------------------------------------


def test_gpm_needs_two_samples_at_least_100_ms_apart():
    nvml = FakeNvml(gpus=1, clock=FakeClock())
    probe = started(nvml)
    (first,) = probe.sample(frozenset())
    assert first.gpm_supported is True
    assert first.dram_bandwidth_util is None
    assert first.why["dram_bandwidth_util"] == "GPM needs two samples ≥100 ms apart"

    nvml.clock.advance(0.05)
    (too_soon,) = probe.sample(frozenset())
    assert too_soon.dram_bandwidth_util is None
    assert too_soon.why["sm_util"] == "GPM needs two samples ≥100 ms apart"

    nvml.clock.advance(0.06)  # 110 ms after the first sample, which was kept
    (ready,) = probe.sample(frozenset())
    assert ready.dram_bandwidth_util == pytest.approx(0.62)
    assert "dram_bandwidth_util" not in ready.why

    nvml.gpus[0].gpm_percent[DRAM_BW_UTIL] = 91.5
    nvml.clock.advance(1.0)
    (later,) = probe.sample(frozenset())
    assert later.dram_bandwidth_util == pytest.approx(0.915)

    probe.close()
    assert nvml.live_gpm_samples == 0


def test_gpm_unsupported_is_said_and_not_asked_again():
    nvml = FakeNvml(gpus=1, clock=FakeClock())
    nvml.gpus[0].gpm = "unsupported"
    probe = started(nvml)
    for _ in range(3):
        (gpu,) = probe.sample(frozenset())
        nvml.clock.advance(1.0)
    assert gpu.gpm_supported is False
    for field in ("dram_bandwidth_util", "tensor_util", "sm_util", "sm_occupancy"):
        assert gpu.why[field] == "GPM not supported on this GPU (needs Hopper or newer)"
    assert nvml.calls["nvmlGpmQueryDeviceSupport"] == 1
    assert nvml.calls["nvmlGpmSampleAlloc"] == 0


def test_gpm_without_permission_says_what_is_needed():
    nvml = FakeNvml(gpus=1, clock=FakeClock())
    nvml.gpus[0].gpm = "no permission"
    probe = started(nvml)
    for _ in range(3):
        (gpu,) = probe.sample(frozenset())
        nvml.clock.advance(1.0)
    assert gpu.dram_bandwidth_util is None
    assert gpu.why["dram_bandwidth_util"] == "GPM not permitted (needs root or the profiling permission)"
    assert gpu.memory_total_bytes == 80 * GiB  # the rest of the GPU is still there
    assert nvml.calls["nvmlGpmSampleGet"] == 1
    probe.close()
    assert nvml.live_gpm_samples == 0


def test_gpm_refused_at_the_support_query_keeps_saying_why():
    nvml = FakeNvml(gpus=1, clock=FakeClock())
    nvml.fail("nvmlGpmQueryDeviceSupport", pynvml.NVML_ERROR_NO_PERMISSION)
    probe = started(nvml)
    for _ in range(2):
        (gpu,) = probe.sample(frozenset())
        nvml.clock.advance(1.0)
    assert gpu.gpm_supported is None
    assert gpu.why["gpm_supported"] == "GPM not permitted (needs root or the profiling permission)"
    assert gpu.why["tensor_util"] == "GPM not permitted (needs root or the profiling permission)"
    assert nvml.calls["nvmlGpmQueryDeviceSupport"] == 1


# --- one failing NVML call degrades only its own figures -------------------------------------

TREE = frozenset({100})
GPM_METRICS = ("dram_bandwidth_util", "tensor_util", "sm_util", "sm_occupancy")


def scripted(**options) -> FakeNvml:
    """Every GPU throttled (so a lost throttle reading shows); GPU 0 runs the tree's pid 100
    and another process's graphics context."""
    nvml = FakeNvml(gpus=8, clock=FakeClock(), **options)
    for gpu in nvml.gpus:
        gpu.throttle_mask = pynvml.nvmlClocksEventReasonSwPowerCap
    nvml.gpus[0].compute_processes[100] = 30 * GiB
    nvml.gpus[0].graphics_processes[300] = 1 * GiB
    return nvml


def missing(function: str):
    return lambda nvml: nvml.fail(function, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)


# (failing function, the DeviceSample fields it may change, fake options, setup)
CALLS = [
    ("nvmlDeviceGetName", {"name"}, {}, None),
    ("nvmlDeviceGetUUID", {"uuid"}, {}, None),
    ("nvmlDeviceGetMemoryInfo", {"memory_total_bytes", "memory_used_bytes"}, {}, None),
    ("nvmlDeviceGetUtilizationRates", {"utilization_gpu", "utilization_memory"}, {}, None),
    ("nvmlDeviceGetClockInfo", {"sm_clock_mhz", "memory_clock_mhz"}, {}, None),
    (
        "nvmlDeviceGetMaxClockInfo",
        {"sm_clock_max_mhz", "memory_clock_max_mhz", "derived_bandwidth_bytes_per_s"},
        {},
        None,
    ),
    ("nvmlDeviceGetPowerUsage", {"power_w"}, {}, None),
    ("nvmlDeviceGetEnforcedPowerLimit", {"power_limit_w"}, {}, None),
    ("nvmlDeviceGetTemperatureV", {"temperature_c"}, {}, None),
    ("nvmlDeviceGetTemperature", {"temperature_c"}, {}, missing("nvmlDeviceGetTemperatureV")),
    ("nvmlDeviceGetCurrentClocksEventReasons", {"throttle_reasons"}, {}, None),
    (
        "nvmlDeviceGetCurrentClocksThrottleReasons",
        {"throttle_reasons"},
        {},
        missing("nvmlDeviceGetCurrentClocksEventReasons"),
    ),
    ("nvmlDeviceGetMemoryBusWidth", {"bus_width_bits", "derived_bandwidth_bytes_per_s"}, {}, None),
    ("nvmlDeviceGetFieldValues", {"pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s", "nvlink_tx_bytes_per_s",
                                  "nvlink_rx_bytes_per_s"}, {}, None),
    ("nvmlDeviceGetPcieThroughput", {"pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s"}, {"pcie_counters": False}, None),
    (
        "nvmlDeviceGetComputeRunningProcesses_v3",
        {"processes", "used_by_tree", "memory_tree_bytes"},
        {},
        None,
    ),
    (
        "nvmlDeviceGetComputeRunningProcesses_v2",
        {"processes", "used_by_tree", "memory_tree_bytes"},
        {"process_api": "v2"},
        None,
    ),
    ("nvmlDeviceGetGraphicsRunningProcesses_v3", {"processes", "memory_tree_bytes"}, {}, None),
    ("nvmlDeviceGetGraphicsRunningProcesses_v2", {"processes", "memory_tree_bytes"}, {"process_api": "v2"}, None),
    ("nvmlGpmQueryDeviceSupport", {"gpm_supported", *GPM_METRICS}, {}, None),
    ("nvmlGpmSampleAlloc", set(GPM_METRICS), {}, None),
    ("nvmlGpmSampleGet", set(GPM_METRICS), {}, None),
    ("nvmlGpmMetricsGet", set(GPM_METRICS), {}, None),
]
# Called only by start() and close(); tested on their own below.
LIFECYCLE_CALLS = {
    "nvmlInit",
    "nvmlShutdown",
    "nvmlSystemGetDriverVersion",
    "nvmlSystemGetNVMLVersion",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlGpmSampleFree",
}


def run(options: dict, setup, failing: str | None) -> tuple[DeviceSample, ...]:
    nvml = scripted(**options)
    if setup:
        setup(nvml)
    if failing:
        nvml.fail(failing)
    return two_ticks(nvml, TREE)


@pytest.mark.parametrize("function, affected, options, setup", CALLS, ids=[c[0] for c in CALLS])
def test_one_failing_call_degrades_only_its_fields(function, affected, options, setup):
    clean = run(options, setup, failing=None)
    degraded = run(options, setup, failing=function)

    for before, after in zip(clean, degraded, strict=True):
        assert before.why == {}, "the clean run must show every figure"
        for field in dataclasses.fields(DeviceSample):
            name, was, now = field.name, getattr(before, field.name), getattr(after, field.name)
            if name != "why" and name not in affected:
                assert now == was, f"{function} failing changed {name}"
        changed = {name for name in affected if getattr(after, name) != getattr(before, name)}
        if after.index == 0 or not affected & {"processes", "memory_tree_bytes", "used_by_tree"}:
            assert changed, f"{function} failing changed nothing on GPU {after.index}"
        assert changed - {"used_by_tree"} <= set(after.why) <= affected
        assert any(UNKNOWN_ERROR in reason for reason in after.why.values()) or not changed


def test_the_failure_table_covers_every_nvml_function_the_probe_calls():
    called = set()
    for options in ({}, {"pcie_counters": False}, {"process_api": "v2"}):
        nvml = scripted(**options)
        missing("nvmlDeviceGetTemperatureV")(nvml)
        missing("nvmlDeviceGetCurrentClocksEventReasons")(nvml)
        two_ticks(nvml, TREE)
        called |= set(nvml.calls)
    assert called - LIFECYCLE_CALLS == {c[0] for c in CALLS}


def test_a_broken_binding_costs_only_its_field():
    nvml = FakeNvml(gpus=2, clock=FakeClock())
    nvml.fail("nvmlDeviceGetUtilizationRates", exception=AttributeError("'NoneType' has no attribute 'gpu'"))
    nvml.nvmlDeviceGetPowerUsage = lambda handle: "lots"  # not a number
    first, second = two_ticks(nvml)
    assert first.utilization_gpu is None
    assert "AttributeError" in first.why["utilization_gpu"]
    assert first.power_w is None
    assert first.why["power_w"]
    assert first.memory_total_bytes == 80 * GiB


@pytest.mark.parametrize(
    "exception",
    [pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN), RuntimeError("binding broke")],
    ids=["NVMLError", "RuntimeError"],
)
def test_every_call_failing_still_shows_every_gpu_with_reasons(exception):
    nvml = FakeNvml(gpus=8, clock=FakeClock())
    probe = started(nvml)
    nvml.fail("*", exception=exception)
    samples = probe.sample(frozenset({1}))
    nvml.clock.advance(1.0)
    samples = probe.sample(frozenset({1}))
    assert [s.index for s in samples] == list(range(8))
    for gpu in samples:
        for name in OPTIONAL_FIELDS:
            assert getattr(gpu, name) is None
            assert gpu.why[name], name
    probe.close()  # nvmlShutdown and the GPM frees fail too, and nothing is raised
    assert probe.sample(frozenset()) == ()


# --- NotSupported is asked once -------------------------------------------------------------


def test_a_field_nvml_does_not_support_is_not_asked_for_again():
    nvml = FakeNvml(gpus=4, clock=FakeClock())
    nvml.not_supported("nvmlDeviceGetPowerUsage", device=2)
    probe = started(nvml)
    for _ in range(3):
        samples = probe.sample(frozenset())
        nvml.clock.advance(1.0)
    assert samples[2].power_w is None
    assert samples[2].why["power_w"] == "not supported on this GPU"
    assert samples[1].power_w == pytest.approx(512.3)
    assert nvml.device_calls[("nvmlDeviceGetPowerUsage", 2)] == 1
    assert nvml.device_calls[("nvmlDeviceGetPowerUsage", 1)] == 3


@pytest.mark.parametrize("function", [c[0] for c in CALLS if not c[2] and not c[3]])
def test_no_unsupported_call_is_repeated(function):
    nvml = scripted()
    nvml.not_supported(function)
    probe = started(nvml)
    counts = []
    for _ in range(4):
        probe.sample(TREE)
        nvml.clock.advance(1.0)
        counts.append(nvml.calls[function])
    asked = [count for count in counts if count]  # GPM metrics are first asked on the second tick
    assert len(asked) >= 3
    assert len(set(asked)) == 1, f"{function} asked again after NotSupported: {counts}"


def test_a_passing_failure_is_retried_next_tick():
    nvml = FakeNvml(gpus=1, clock=FakeClock())
    nvml.fail("nvmlDeviceGetPowerUsage", times=1)
    probe = started(nvml)
    (first,) = probe.sample(frozenset())
    (second,) = probe.sample(frozenset())
    assert first.why["power_w"] == UNKNOWN_ERROR
    assert second.power_w == pytest.approx(512.3)


# --- whole GPUs ----------------------------------------------------------------------------


def test_a_lost_gpu_is_reported_and_the_others_carry_on():
    nvml = FakeNvml(gpus=4, clock=FakeClock())
    probe = started(nvml)
    probe.sample(frozenset())
    nvml.gpus[1].lost = True
    nvml.clock.advance(1.0)
    samples = probe.sample(frozenset())
    lost = samples[1]
    assert lost.why == {"device": "GPU is lost (fell off the bus)"}
    assert all(getattr(lost, name) is None for name in OPTIONAL_FIELDS)
    for gpu in (samples[0], samples[2], samples[3]):
        assert gpu.memory_total_bytes == 80 * GiB
        assert gpu.dram_bandwidth_util == pytest.approx(0.62)

    calls_to_lost = sum(n for (_, index), n in nvml.device_calls.items() if index == 1)
    nvml.clock.advance(1.0)
    assert probe.sample(frozenset())[1].why == {"device": "GPU is lost (fell off the bus)"}
    assert sum(n for (_, index), n in nvml.device_calls.items() if index == 1) == calls_to_lost
    probe.close()
    assert nvml.live_gpm_samples == 0


def test_a_gpu_lost_before_start_is_reported():
    nvml = FakeNvml(gpus=2, clock=FakeClock())
    nvml.gpus[0].lost = True
    samples = two_ticks(nvml)
    assert samples[0].why == {"device": "GPU is lost (fell off the bus)"}
    assert samples[1].name == "NVIDIA H100 80GB HBM3"


def test_a_gpu_without_a_handle_is_retried():
    nvml = FakeNvml(gpus=3, clock=FakeClock())
    nvml.fail("nvmlDeviceGetHandleByIndex", pynvml.NVML_ERROR_NO_PERMISSION, device=2, times=2)
    probe = started(nvml)
    first = probe.sample(frozenset())
    assert first[2].why == {"device": "NVML: Insufficient Permissions"}
    assert first[0].name == "NVIDIA H100 80GB HBM3"
    second = probe.sample(frozenset())
    assert second[2].name == "NVIDIA H100 80GB HBM3"


# --- starting and stopping -----------------------------------------------------------------


def test_without_a_driver_the_probe_is_unavailable_and_says_why():
    nvml = FakeNvml(driver_missing=True)
    probe = NvmlProbe(nvml)
    probe.start()
    assert probe.available is False
    assert probe.why == "no NVIDIA driver (NVML library not found)"
    assert probe.sample(frozenset({1})) == ()
    probe.close()
    assert nvml.calls["nvmlShutdown"] == 0


@pytest.mark.skipif(ctypes.util.find_library("nvidia-ml") is not None, reason="this machine has an NVIDIA driver")
def test_the_real_binding_without_a_driver_says_so():
    probe = NvmlProbe()
    probe.start()
    assert (probe.available, probe.why) == (False, "no NVIDIA driver (NVML library not found)")
    assert probe.sample(frozenset()) == ()
    probe.close()


def test_without_nvidia_ml_py_the_probe_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    probe = NvmlProbe()
    probe.start()
    assert probe.available is False
    assert "nvidia-ml-py" in probe.why


@pytest.mark.parametrize(
    "code, reason",
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no NVIDIA driver (NVML library not found)"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "NVML: insufficient permissions"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "NVML: driver/library version mismatch"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "NVIDIA driver not loaded"),
        (pynvml.NVML_ERROR_UNKNOWN, "NVML: Unknown Error"),
    ],
)
def test_nvml_init_failures_read_as_one_clear_line(code, reason):
    nvml = FakeNvml()
    nvml.fail("nvmlInit", code)
    probe = NvmlProbe(nvml)
    probe.start()
    assert probe.available is False
    assert probe.why.startswith(reason)
    assert probe.sample(frozenset()) == ()


def test_a_failing_device_count_leaves_nvml_shut_down():
    nvml = FakeNvml()
    nvml.fail("nvmlDeviceGetCount")
    probe = NvmlProbe(nvml)
    probe.start()
    assert (probe.available, probe.why) == (False, UNKNOWN_ERROR)
    assert nvml.initialized is False


def test_missing_versions_do_not_stop_the_probe():
    nvml = FakeNvml(gpus=1, clock=FakeClock())
    nvml.fail("nvmlSystemGetDriverVersion")
    nvml.fail("nvmlSystemGetNVMLVersion", exception=TypeError("boom"))
    probe = started(nvml)
    assert (probe.driver_version, probe.nvml_version) == (None, None)
    assert probe.sample(frozenset())[0].name == "NVIDIA H100 80GB HBM3"


def test_close_shuts_nvml_down_frees_gpm_and_can_be_repeated():
    nvml = FakeNvml(gpus=8, clock=FakeClock())
    probe = started(nvml)
    probe.sample(frozenset())
    assert nvml.live_gpm_samples == 16
    probe.close()
    probe.close()
    assert nvml.live_gpm_samples == 0
    assert nvml.initialized is False
    assert nvml.calls["nvmlShutdown"] == 1
    assert probe.available is False
    assert probe.sample(frozenset()) == ()


# --- cost ----------------------------------------------------------------------------------


def test_a_tick_of_eight_gpus_discovers_nothing_again():
    nvml = FakeNvml(gpus=8, clock=FakeClock())
    for index, gpu in enumerate(nvml.gpus):
        gpu.compute_processes.update({1000 + index: 10 * GiB, 2000 + index: 1 * GiB})
    tree = frozenset(range(1000, 1064))
    probe = started(nvml)
    # The cost of a tick is measured in bench/tick.py; here: static fields are read once, not per tick.
    for _ in range(50):
        probe.sample(tree)
        nvml.clock.advance(0.5)
    assert nvml.calls["nvmlDeviceGetHandleByIndex"] == 8
    assert nvml.calls["nvmlDeviceGetName"] == 8
    assert nvml.calls["nvmlDeviceGetMemoryBusWidth"] == 8
    assert nvml.calls["nvmlGpmSampleAlloc"] == 16
    assert nvml.calls["nvmlGpmQueryDeviceSupport"] == 8
    probe.close()


@pytest.mark.parametrize("all_links", [True, False], ids=["driver-sums-links", "link-by-link"])
def test_nvlink_traffic_summed_over_links_needs_two_ticks(all_links):
    """The driver's own sum over links (scopeId UINT_MAX: two fields a tick) where it gives one,
    else every link's counters (36 fields a tick on an H100 SXM): the same rates either way."""
    from infermon.testing.fake_nvml import FakeClock, FakeGpu, FakeNvml
    from infermon.probes.nvml import NvmlProbe

    clock = FakeClock()
    gpu = FakeGpu(nvlink_links=18, nvlink_tx_bytes_per_s=10e9, nvlink_rx_bytes_per_s=5e9)
    nvml = FakeNvml([gpu, FakeGpu(nvlink_links=0)], clock=clock, nvlink_all_links=all_links)
    probe = NvmlProbe(nvml, clock=clock)
    probe.start()
    first = probe.sample(frozenset())
    assert first[0].nvlink_tx_bytes_per_s is None and "two ticks" in first[0].why["nvlink_tx_bytes_per_s"]
    clock.advance(1.0)
    asked = nvml.fields_asked
    second = probe.sample(frozenset())
    assert second[0].nvlink_tx_bytes_per_s == pytest.approx(18 * 10e9, rel=1e-3)
    assert second[0].nvlink_rx_bytes_per_s == pytest.approx(18 * 5e9, rel=1e-3)
    assert second[1].nvlink_tx_bytes_per_s is None and "no NVLink" in second[1].why["nvlink_tx_bytes_per_s"]
    pcie = 2 * 2  # both GPUs' PCIe byte counters
    assert nvml.fields_asked - asked == pcie + (2 if all_links else 36)
