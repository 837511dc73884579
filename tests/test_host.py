"""The host's ceilings: a real (short) calibration, the per-host cache, overrides, and the host device."""

from __future__ import annotations

import json
import math
import os
import stat
import subprocess
import sys
import time

import pytest

from infermon.probes import host
from infermon.probes.snapshot import HostCeilings

CACHED = HostCeilings(2.5e10, 1.0e11, "calibrated 2026-01-01 on this host: test figures",
                      memory_total_bytes=8_000_000_000, cpu_count=4)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test gets its own cache folder; nothing touches the real ~/.cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("INFERMON_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def no_calibration(monkeypatch):
    """Fail the test if anything calibrates."""
    def refuse(*args, **kwargs):
        raise AssertionError("calibrate() was called")
    monkeypatch.setattr(host, "calibrate", refuse)


@pytest.fixture
def fake_calibration(monkeypatch):
    """A calibration that returns fixed figures instantly and counts its calls."""
    calls = []

    def fake(duration_s=2.0, threads=None):
        calls.append(duration_s)
        return HostCeilings(3e10, 2e11, "calibrated 2026-01-02 on this host: fake", 16_000_000_000, 8)

    monkeypatch.setattr(host, "calibrate", fake)
    return calls


# ---------------------------------------------------------------- real calibration


def test_calibration_gives_sane_cpu_figures_quickly():
    began = time.perf_counter()
    ceilings = host.calibrate(duration_s=0.3)
    elapsed = time.perf_counter() - began

    assert math.isfinite(ceilings.bandwidth_bytes_per_s) and math.isfinite(ceilings.peak_flops)
    assert 1e9 <= ceilings.bandwidth_bytes_per_s <= 1e12
    # A loaded CI machine can give a fraction of the usual matmul rate; the bound catches nonsense only.
    assert 1e8 <= ceilings.peak_flops <= 1e14
    assert ceilings.source.startswith("calibrated ") and "on this host" in ceilings.source
    assert ("copy" in ceilings.source or "dot product" in ceilings.source) and "matmul" in ceilings.source
    assert ceilings.memory_total_bytes > 0 and ceilings.cpu_count >= 1
    # Budget: about duration_s, never much more than twice it (slack for a loaded CI machine).
    assert elapsed < 3.0


def test_calibration_with_one_thread_restores_blas_threads():
    blas = host._OpenBlasThreads.find()
    before = blas.get() if blas else None
    ceilings = host.calibrate(duration_s=0.2, threads=1)
    assert ceilings.bandwidth_bytes_per_s > 0 and ceilings.peak_flops > 0
    if blas is not None:
        assert "(1 BLAS thread)" in ceilings.source
        assert blas.get() == before


@pytest.mark.parametrize("duration", [0, -1, float("nan"), float("inf")])
def test_calibration_rejects_a_meaningless_duration(duration):
    with pytest.raises(ValueError):
        host.calibrate(duration_s=duration)


# ---------------------------------------------------------------- cache


def test_cache_round_trips(cache_dir):
    assert host.load_cached() is None
    assert host.save(CACHED) is None
    assert host.load_cached() == CACHED
    assert host.cache_path() == cache_dir / "host-calibration.json"


def test_cache_file_is_private_and_written_atomically(cache_dir):
    assert host.save(CACHED) is None
    mode = stat.S_IMODE(os.stat(host.cache_path()).st_mode)
    assert mode == 0o600
    assert sorted(p.name for p in cache_dir.iterdir()) == ["host-calibration.json"]  # no temp file left


@pytest.mark.parametrize("content", [
    "{not json",
    "",
    "[1, 2, 3]",
    json.dumps({"format": "something else", "version": 1, "hosts": {}}),
    "\udcff",
])
def test_corrupt_cache_is_ignored_and_overwritten(cache_dir, content):
    cache_dir.mkdir()
    host.cache_path().write_text(content, encoding="utf-8", errors="surrogateescape")
    assert host.load_cached() is None
    assert host.save(CACHED) is None
    assert host.load_cached() == CACHED


@pytest.mark.parametrize("bad_entry", [
    {"bandwidth_bytes_per_s": -1.0, "peak_flops": 1e11, "source": "x"},
    {"bandwidth_bytes_per_s": "fast", "peak_flops": 1e11, "source": "x"},
    {"bandwidth_bytes_per_s": 2e10, "peak_flops": None, "source": "x"},
    {"bandwidth_bytes_per_s": 2e10, "peak_flops": 1e11},
    "not a dict",
])
def test_cache_entry_with_bad_figures_is_ignored(cache_dir, bad_entry):
    cache_dir.mkdir()
    document = {"format": host._CACHE_FORMAT, "version": host._CACHE_VERSION,
                "hosts": {host.host_fingerprint(): bad_entry}}
    host.cache_path().write_text(json.dumps(document), encoding="utf-8")
    assert host.load_cached() is None


def test_cache_from_another_host_is_ignored(cache_dir, monkeypatch):
    assert host.save(CACHED) is None
    monkeypatch.setattr(host, "host_fingerprint", lambda: "other-box|Some Other CPU|64|512000000000")
    assert host.load_cached() is None


def test_hand_written_cache_for_another_fingerprint_is_ignored(cache_dir):
    cache_dir.mkdir()
    entry = {"bandwidth_bytes_per_s": 2e10, "peak_flops": 1e11, "source": "elsewhere"}
    document = {"format": host._CACHE_FORMAT, "version": host._CACHE_VERSION,
                "hosts": {"other-box|Some Other CPU|64|512000000000": entry}}
    host.cache_path().write_text(json.dumps(document), encoding="utf-8")
    assert host.load_cached() is None


def test_a_shared_cache_keeps_every_hosts_entry(cache_dir, monkeypatch):
    assert host.save(CACHED) is None
    mine = host.host_fingerprint()
    monkeypatch.setattr(host, "host_fingerprint", lambda: "other-box|Some Other CPU|64|512000000000")
    other = HostCeilings(4e11, 5e12, "calibrated elsewhere", 512_000_000_000, 64)
    assert host.save(other) is None
    assert host.load_cached() == other
    monkeypatch.setattr(host, "host_fingerprint", lambda: mine)
    assert host.load_cached() == CACHED


def test_fingerprint_names_this_host():
    fingerprint = host.host_fingerprint()
    assert host.cpu_model() in fingerprint
    assert str(host._memory_total()) in fingerprint


def test_save_refuses_missing_figures(cache_dir):
    reason = host.save(HostCeilings(None, 1e11, "half a calibration"))
    assert reason and "nothing to cache" in reason
    assert not host.cache_path().exists()


def test_unwritable_cache_is_a_reason_not_an_error(cache_dir, monkeypatch, fake_calibration):
    cache_dir.parent.mkdir(exist_ok=True)
    cache_dir.write_text("a file where the folder should be")
    reason = host.save(CACHED)
    assert reason and "could not write" in reason
    ceilings = host.host_ceilings()
    assert ceilings.bandwidth_bytes_per_s == 3e10 and len(fake_calibration) == 1


def test_cache_path_follows_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("INFERMON_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert host.cache_path() == tmp_path / "xdg" / "infermon" / "host-calibration.json"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert host.cache_path() == tmp_path / "home" / ".cache" / "infermon" / "host-calibration.json"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert host.cache_path() == tmp_path / "home" / ".cache" / "infermon" / "host-calibration.json"


# ---------------------------------------------------------------- host_ceilings


def test_overrides_win_over_the_cache(no_calibration):
    assert host.save(CACHED) is None
    ceilings = host.host_ceilings({"bandwidth_bytes_per_s": 5e10, "peak_flops": 3e12})
    assert (ceilings.bandwidth_bytes_per_s, ceilings.peak_flops) == (5e10, 3e12)
    assert ceilings.source == "given by the user"
    assert ceilings.memory_total_bytes and ceilings.cpu_count


def test_one_override_takes_the_other_figure_from_the_cache(no_calibration):
    assert host.save(CACHED) is None
    ceilings = host.host_ceilings({"bandwidth_bytes_per_s": 5e10, "peak_flops": None})
    assert (ceilings.bandwidth_bytes_per_s, ceilings.peak_flops) == (5e10, CACHED.peak_flops)
    assert ceilings.source.startswith("bandwidth given by the user; peak FLOP/s: calibrated 2026-01-01")


def test_cache_is_used_before_calibrating(no_calibration):
    assert host.save(CACHED) is None
    assert host.host_ceilings() == CACHED


def test_calibrates_once_then_uses_the_cache(fake_calibration):
    first = host.host_ceilings()
    second = host.host_ceilings()
    assert first == second and first.bandwidth_bytes_per_s == 3e10
    assert len(fake_calibration) == 1


def test_without_calibration_figures_are_none_and_say_why(no_calibration):
    ceilings = host.host_ceilings(allow_calibration=False)
    assert ceilings.bandwidth_bytes_per_s is None and ceilings.peak_flops is None
    assert ceilings.source == "not calibrated: run `infermon calibrate`" == host.NOT_CALIBRATED
    assert ceilings.memory_total_bytes > 0 and ceilings.cpu_count >= 1
    assert not host.cache_path().exists()


def test_without_calibration_an_override_still_applies(no_calibration):
    ceilings = host.host_ceilings({"peak_flops": 1e12}, allow_calibration=False)
    assert ceilings.peak_flops == 1e12 and ceilings.bandwidth_bytes_per_s is None
    assert host.NOT_CALIBRATED in ceilings.source


@pytest.mark.parametrize("overrides", [{"bandwidth": 1e10}, {"peak_flops": 0}, {"peak_flops": float("nan")},
                                       {"bandwidth_bytes_per_s": True}])
def test_bad_overrides_are_the_callers_mistake(overrides, no_calibration):
    with pytest.raises(ValueError):
        host.host_ceilings(overrides)


# ---------------------------------------------------------------- host as a device


def test_host_device_sample(monkeypatch):
    monkeypatch.setattr(host, "_host_counters", host._HostCounters())
    first = host.host_device_sample(CACHED)
    assert first.kind == "host" and first.index == 0
    assert first.name == host.cpu_model() and first.name
    assert first.memory_total_bytes > 0 and 0 <= first.memory_used_bytes <= first.memory_total_bytes
    assert first.utilization_gpu is None and "first" in first.why["utilization_gpu"]
    for gpu_only in ("sm_clock_mhz", "power_w", "temperature_c", "pcie_tx_bytes_per_s", "tensor_util"):
        assert getattr(first, gpu_only) is None and first.why[gpu_only].startswith("host CPU")
    assert CACHED.source in first.why["derived_bandwidth_bytes_per_s"]

    second = host.host_device_sample(CACHED)
    assert 0.0 <= second.utilization_gpu <= 1.0
    assert "utilization_gpu" not in second.why


def test_the_kept_open_counters_read_what_psutil_reads():
    counters = host._HostCounters()
    total, available = counters.memory()
    memory = host.psutil.virtual_memory()
    assert total == memory.total
    assert abs(available - memory.available) < 64 * 2**20  # the two reads are moments apart
    assert counters.cpu_busy() is None
    host.psutil.cpu_percent(interval=None)
    busy_until = time.monotonic() + 0.5
    while time.monotonic() < busy_until:  # one CPU busy: the host's busy share is at least 1/ncpu
        pass
    ours, theirs = counters.cpu_busy(), host.psutil.cpu_percent(interval=None) / 100
    assert 0.0 < ours <= 1.0
    assert abs(ours - theirs) < 0.15
    assert len(counters._open) == 2  # kept open: the next tick reads the same two files again
    counters.memory()
    counters.cpu_busy()
    assert len(counters._open) == 2


@pytest.mark.parametrize("meminfo, stat", [
    ("", ""),                                                      # empty files
    ("MemTotal: lots kB\nMemAvailable: -\n", "cpu  a b c d\n"),   # words where numbers go
    ("MemTotal:\n", "cpu  1 2\n"),                                 # too few fields
    ("\x00" * 5000, "intr 1 2 3\n"),                                # binary, and no cpu line
])
def test_counters_that_cannot_be_read_are_psutils_instead(tmp_path, meminfo, stat):
    (tmp_path / "meminfo").write_text(meminfo)
    (tmp_path / "stat").write_text(stat)
    counters = host._HostCounters(proc=str(tmp_path))
    assert counters.memory()[0] == host.psutil.virtual_memory().total
    assert counters.cpu_busy() is None
    assert 0.0 <= counters.cpu_busy() <= 1.0


def test_a_missing_proc_is_psutils_too(tmp_path):
    counters = host._HostCounters(proc=str(tmp_path / "none"))
    assert counters.memory()[0] == host.psutil.virtual_memory().total
    assert counters.cpu_busy() is None and counters._open == {}


def test_host_device_sample_degrades_when_psutil_fails(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no /proc here")

    monkeypatch.setattr(host, "_host_counters", host._HostCounters(proc=str(tmp_path / "none")))
    monkeypatch.setattr(host.psutil, "virtual_memory", broken)
    monkeypatch.setattr(host.psutil, "cpu_percent", broken)
    sample = host.host_device_sample(CACHED)
    assert sample.memory_total_bytes == CACHED.memory_total_bytes and sample.memory_used_bytes is None
    assert "no /proc here" in sample.why["memory_used_bytes"]
    assert sample.utilization_gpu is None and "no /proc here" in sample.why["utilization_gpu"]


def test_importing_the_probe_does_not_load_numpy():
    # numpy costs ~0.1 s; only a calibration needs it, never the monitor's start-up.
    code = "import sys, infermon.probes.host; assert 'numpy' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
