"""The host's own ceilings for CPU inference: DRAM bandwidth and peak FLOP/s, measured once per machine.

llama.cpp or torch on the CPU is bound by the host's memory bandwidth the way GPU decode is bound by
HBM, so MBU and the verdict need the host's ceilings. No datasheet table covers every CPU, DIMM
population and VM, so we measure them:

- bandwidth (B/s) = 2 × array bytes ÷ best copy time. A copy reads the source and writes the
  destination; counting 2 × size is the STREAM "copy" convention (a write-allocate cache would add a
  third read that we do not count). Arrays are sized ≫ the last-level cache so the copy hits DRAM,
  and the copy runs on several threads, because one core cannot saturate a multi-channel server.
- peak FLOP/s = 2 n³ ÷ best time of an n×n float32 matmul through numpy's BLAS, which is
  multi-threaded: the whole machine's peak, as llama.cpp and torch use every core.

Both are taken as the best of several repetitions within a time budget (``duration_s``).
Results are cached per host in ``$XDG_CACHE_HOME/infermon/host-calibration.json`` (or
``$INFERMON_CACHE_DIR``), keyed by a fingerprint (hostname, CPU model, logical CPUs, total memory),
so a home directory shared between machines never hands one machine another's figures.

Nothing here raises for an environmental problem (no numpy, no /proc, a read-only cache, a corrupt
cache file): figures are ``None`` and the ``source`` or ``why`` says why.
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import os
import platform
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import psutil

from infermon.probes.snapshot import DeviceSample, HostCeilings, evolve

NOT_CALIBRATED = "not calibrated: run `infermon calibrate`"
CACHE_FILE_NAME = "host-calibration.json"
OVERRIDE_KEYS = ("bandwidth_bytes_per_s", "peak_flops")

_CACHE_FORMAT = "infermon host calibration"
_CACHE_VERSION = 1

_PAGE = 4096
# Copy arrays: 4 × the last-level cache, within these bounds (bytes, SI).
_COPY_MIN_TARGET = 256_000_000
_COPY_MAX_TARGET = 1_000_000_000
# Below this the copy would mostly measure cache, so page-touching goes on past its soft deadline.
_COPY_FLOOR = 64_000_000
_TOUCH_CHUNK = 16 * 1024 * 1024
_MATMUL_MIN_N, _MATMUL_MAX_N = 256, 4096


# ---------------------------------------------------------------- host identity


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's name: ``model name`` in /proc/cpuinfo (x86), ``Hardware``/``Model`` (Arm boards),
    else what ``platform`` knows. Cached: it cannot change while we run, and a tick must stay cheap."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            found: dict[str, str] = {}
            for line in cpuinfo:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and key in ("model name", "Hardware", "Model", "cpu model") and value.strip():
                    found.setdefault(key, value.strip())
            for key in ("model name", "cpu model", "Hardware", "Model"):
                if key in found:
                    return found[key]
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _logical_cpus() -> int | None:
    try:
        return psutil.cpu_count(logical=True) or os.cpu_count()
    except Exception:  # psutil can fail in odd sandboxes; the count is optional
        return os.cpu_count()


def _usable_cpus() -> int:
    """CPUs this process may run on: a container's cpuset or ``taskset`` counts, not the host's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _memory_total() -> int | None:
    try:
        return int(psutil.virtual_memory().total)
    except Exception:
        return None


def _memory_available() -> int | None:
    try:
        return int(psutil.virtual_memory().available)
    except Exception:
        return None


def host_fingerprint() -> str:
    """``hostname|CPU model|logical CPUs|total memory bytes``: what makes cached figures this host's."""
    return "|".join(
        str(part) if part is not None else "?"
        for part in (socket.gethostname(), cpu_model(), _logical_cpus(), _memory_total())
    )


def _bare_ceilings(source: str) -> HostCeilings:
    return HostCeilings(None, None, source, memory_total_bytes=_memory_total(), cpu_count=_logical_cpus())


# ---------------------------------------------------------------- cache


_CACHE_MAX_BYTES = 1024 * 1024


def cache_path() -> Path:
    """``$INFERMON_CACHE_DIR/host-calibration.json``, else ``$XDG_CACHE_HOME/infermon/…``, else
    ``~/.cache/infermon/…``. A relative XDG_CACHE_HOME is ignored, as the XDG spec says."""
    override = os.environ.get("INFERMON_CACHE_DIR")
    if override:
        return Path(override) / CACHE_FILE_NAME
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "infermon" / CACHE_FILE_NAME


def _positive_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _optional_int(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _read_cache_file(path: Path) -> dict[str, Any] | None:
    """The file's ``hosts`` table, or None when it is missing, unreadable, not ours, or outside
    the bounds (a regular file of at most 1 MB, JSON nested at most 8 deep, finite numbers)."""
    from infermon.probes import bounded

    try:
        data = bounded.loads(bounded.read_regular(str(path), _CACHE_MAX_BYTES, uid=os.geteuid()), max_depth=8)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _CACHE_FORMAT or data.get("version") != _CACHE_VERSION:
        return None
    hosts = data.get("hosts")
    return hosts if isinstance(hosts, dict) else None


def load_cached() -> HostCeilings | None:
    """This host's cached calibration, or None: no file, a corrupt one, or no entry for this fingerprint."""
    hosts = _read_cache_file(cache_path())
    if hosts is None:
        return None
    entry = hosts.get(host_fingerprint())
    if not isinstance(entry, dict):
        return None
    bandwidth, flops = entry.get("bandwidth_bytes_per_s"), entry.get("peak_flops")
    source, memory, cpus = entry.get("source"), entry.get("memory_total_bytes"), entry.get("cpu_count")
    if not (_positive_finite(bandwidth) and _positive_finite(flops) and isinstance(source, str)):
        return None
    if not (_optional_int(memory) and _optional_int(cpus)):
        return None
    return HostCeilings(float(bandwidth), float(flops), source, memory_total_bytes=memory, cpu_count=cpus)


def save(ceilings: HostCeilings) -> str | None:
    """Cache ``ceilings`` as this host's calibration. Returns None when saved, else why not.

    Other hosts' entries in the file are kept (a shared home directory serves several machines).
    The write is atomic (a temporary file in the same folder, then rename), so a reader never sees
    half a file, and the file is mode 0600.
    """
    if not (_positive_finite(ceilings.bandwidth_bytes_per_s) and _positive_finite(ceilings.peak_flops)):
        return "nothing to cache: the calibration has no bandwidth or no FLOP/s figure"
    path = cache_path()
    hosts = _read_cache_file(path) or {}
    hosts[host_fingerprint()] = {
        "bandwidth_bytes_per_s": float(ceilings.bandwidth_bytes_per_s),
        "peak_flops": float(ceilings.peak_flops),
        "source": ceilings.source,
        "memory_total_bytes": ceilings.memory_total_bytes,
        "cpu_count": ceilings.cpu_count,
        "saved_at": time.time(),
    }
    text = json.dumps({"format": _CACHE_FORMAT, "version": _CACHE_VERSION, "hosts": hosts}, indent=1)
    temp_name = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{CACHE_FILE_NAME}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            if hasattr(os, "fchmod"):
                os.fchmod(out.fileno(), 0o600)  # mkstemp already does; a different umask or platform may not
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, path)
        temp_name = None
    except OSError as exc:
        return f"could not write {path}: {exc.strerror or exc}"
    finally:
        if temp_name is not None:
            try:
                os.unlink(temp_name)
            except OSError:
                pass
    return None


# ---------------------------------------------------------------- calibration


def _last_level_cache_bytes() -> int | None:
    """Sum of the distinct highest-level caches (sysfs): every L3 slice a multi-threaded copy can use."""
    root = Path("/sys/devices/system/cpu")
    best_level, slices = 0, {}
    try:
        for index in root.glob("cpu[0-9]*/cache/index[0-9]*"):
            try:
                level = int((index / "level").read_text())
                kind = (index / "type").read_text().strip()
                size_text = (index / "size").read_text().strip()
                shared = (index / "shared_cpu_list").read_text().strip()
            except (OSError, ValueError):
                continue
            if kind == "Instruction" or level < best_level:
                continue
            if level > best_level:
                best_level, slices = level, {}
            multiplier = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(size_text[-1:].upper(), 1)
            digits = size_text.rstrip("KMGkmg")
            if digits.isdigit():
                slices[shared] = int(digits) * multiplier
    except OSError:
        return None
    return sum(slices.values()) or None


class _OpenBlasThreads:
    """Get and set the thread count of the OpenBLAS that numpy loaded, through its C API.

    numpy offers no call for this; the library is found in /proc/self/maps (Linux). numpy's wheels
    ship scipy-openblas with prefixed, 64-bit-integer symbol names. ``None`` where it is not found.
    """

    _SYMBOLS = (
        ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
        ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
        ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
        ("openblas_get_num_threads", "openblas_set_num_threads"),
    )

    def __init__(self, get: Any, set_: Any) -> None:
        self._get, self._set = get, set_

    @classmethod
    def find(cls) -> _OpenBlasThreads | None:
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
        except OSError:
            return None
        for path in sorted(paths):
            try:
                library = ctypes.CDLL(path)
            except OSError:
                continue
            for get_name, set_name in cls._SYMBOLS:
                get, set_ = getattr(library, get_name, None), getattr(library, set_name, None)
                if get is not None and set_ is not None:
                    get.restype, get.argtypes = ctypes.c_int, []
                    set_.restype, set_.argtypes = None, [ctypes.c_int]
                    return cls(get, set_)
        return None

    def get(self) -> int:
        return int(self._get())

    def set(self, threads: int) -> None:
        self._set(int(threads))


def _blas_thread_note(blas: _OpenBlasThreads | None, requested: int | None) -> str:
    if blas is not None:
        count = blas.get()
        return f"{count} BLAS thread{'s' if count != 1 else ''}"
    env = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    note = f"BLAS threads from the environment: {env}" if env else "BLAS's default threads"
    return note + (f"; could not set {requested}" if requested else "")


def _copy_target_bytes() -> int:
    """4 × the last-level cache within [256 MB, 1 GB], but two arrays use at most ¼ of free memory."""
    cache = _last_level_cache_bytes()
    target = min(max(4 * cache if cache else _COPY_MIN_TARGET, _COPY_MIN_TARGET), _COPY_MAX_TARGET)
    available = _memory_available()
    if available:
        target = min(target, available // 8)
    return max(_PAGE, target // _PAGE * _PAGE)


def _measure_copy_bandwidth(np: Any, budget_s: float, workers: int) -> tuple[float, int, int]:
    """Best of copy and read-only bandwidth (B/s), the array size (bytes) and the worker count of
    the best copy (0 when the read-only pass won).

    Fresh pages cost a page fault each, which can take longer than the copies (VMs especially), so
    the arrays are touched chunk by chunk and only the part touched by 40% of the budget is used
    (but at least 64 MB when the budget allows twice over). Repetitions alternate between
    ``workers`` threads and one thread: on a small VM one thread can win, on a server many do.
    numpy releases the GIL while copying, so threads copy in parallel.
    """
    start = time.perf_counter()
    soft_touch_deadline, deadline = start + 0.4 * budget_s, start + budget_s
    target = _copy_target_bytes()
    src = np.empty(target, dtype=np.uint8)
    dst = np.empty(target, dtype=np.uint8)
    chunks: list[tuple[int, int]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Each worker first-touches the chunks it will later copy, so on NUMA hosts its pages tend
        # to land on its own node (threads are not pinned, so this is a tendency, not a promise).
        def touch(bounds: tuple[int, int]) -> None:
            src[bounds[0]:bounds[1]] = 1
            dst[bounds[0]:bounds[1]] = 0

        touched = 0
        while touched < target:
            batch = []
            for _ in range(workers):
                if touched >= target:
                    break
                batch.append((touched, min(touched + _TOUCH_CHUNK, target)))
                touched = batch[-1][1]
            list(pool.map(touch, batch))
            chunks.extend(batch)
            now = time.perf_counter()
            if now > deadline + budget_s or (now > soft_touch_deadline and touched >= min(target, _COPY_FLOOR)):
                break
        size = touched

        def copy_owned(worker: int) -> None:
            for begin, end in chunks[worker::workers]:
                np.copyto(dst[begin:end], src[begin:end])

        best_time, best_workers, repetition = math.inf, 1, 0
        while repetition < 2 or time.perf_counter() < deadline:
            parallel = workers > 1 and repetition % 2 == 0
            began = time.perf_counter()
            if parallel:
                list(pool.map(copy_owned, range(workers)))
            else:
                np.copyto(dst[:size], src[:size])
            elapsed = time.perf_counter() - began
            if elapsed < best_time:
                best_time, best_workers = elapsed, workers if parallel else 1
            repetition += 1
        copy_rate = 2 * size / best_time
        # Decode only reads weights and KV: a read-only pass (a float32 dot product of the two
        # arrays, which BLAS streams) is the ceiling that matters and often beats the copy.
        words = size // 4
        reads = src[: words * 4].view(np.float32), dst[: words * 4].view(np.float32)
        read_time = math.inf
        for _ in range(3):
            began = time.perf_counter()
            np.dot(*reads)
            read_time = min(read_time, time.perf_counter() - began)
        read_rate = 2 * words * 4 / read_time
    if read_rate > copy_rate:
        return read_rate, size, 0
    return copy_rate, size, best_workers


def _measure_matmul_flops(np: Any, budget_s: float) -> tuple[float, int]:
    """Best float32 matmul rate (FLOP/s = 2 n³ ÷ time) and the n it was reached at.

    n starts at 256 and doubles while two products (each at most 8× the previous one) still fit the
    time left, up to 4096 and ⅛ of free memory for the three matrices: small products mostly time
    BLAS's thread wake-ups, big ones exceed a short budget. Every product counts towards the best;
    the final n repeats until the budget is spent, at least twice.
    """
    deadline = time.perf_counter() + budget_s
    available = _memory_available()
    largest = _MATMUL_MAX_N if not available else min(_MATMUL_MAX_N, int(math.sqrt(available / 8 / (3 * 4))))
    best_rate, best_n, n = 0.0, _MATMUL_MIN_N, _MATMUL_MIN_N
    while True:
        # 0.5 keeps every partial sum exact and far from overflow or denormals, which would slow the FPU.
        a = np.full((n, n), 0.5, dtype=np.float32)
        out = np.empty((n, n), dtype=np.float32)
        repetition, product_time = 0, math.inf
        while True:
            began = time.perf_counter()
            np.matmul(a, a, out=out)
            elapsed = time.perf_counter() - began
            product_time = min(product_time, elapsed)
            repetition += 1
            if 2 * n**3 / elapsed > best_rate:
                best_rate, best_n = 2 * n**3 / elapsed, n
            remaining = deadline - time.perf_counter()
            # Two products at 2n must fit what is left, each at worst 8× this one.
            grow = 2 * n <= largest and 2 * 8 * product_time <= remaining
            if grow or (repetition >= 2 and remaining <= 0):
                break
        if not grow:
            return best_rate, best_n
        n *= 2


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def calibrate(duration_s: float = 2.0, threads: int | None = None) -> HostCeilings:
    """Measure this host's DRAM bandwidth (B/s) and float32 peak (FLOP/s) in about ``duration_s``.

    Half the time goes to the copy, the rest to the matmul; the whole stays under about 2 ×
    ``duration_s``. ``threads`` sets the copy's worker threads and BLAS's threads (default: every
    CPU this process may use for the copy, BLAS's own default for the matmul). A phase that fails
    (out of memory, no numpy) leaves its figure ``None`` and says why in ``source``.
    """
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number of seconds, not {duration_s!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer, not {threads!r}")
    try:
        # numpy costs ~0.1 s to import; only calibration needs it, not the monitor's start-up.
        import numpy as np
    except ImportError as exc:
        return _bare_ceilings(f"not calibrated: numpy is not importable ({exc})")

    start = time.perf_counter()
    workers = threads or _usable_cpus()
    bandwidth: float | None = None
    flops: float | None = None
    notes: list[str] = []

    try:
        bandwidth, size, best_workers = _measure_copy_bandwidth(np, 0.5 * duration_s, workers)
        if best_workers == 0:
            note = f"float32 dot product streaming two {_megabytes(size)} arrays (read-only)"
        else:
            note = (f"numpy copy of {_megabytes(size)} arrays ({_megabytes(2 * size)} moved per copy, "
                    f"best with {best_workers} thread{'s' if best_workers != 1 else ''})")
        cache = _last_level_cache_bytes()
        if cache and size < 2 * cache:
            note += f", under 2× the {_megabytes(cache)} last-level cache, so it may read high"
        notes.append(note)
    except (MemoryError, OSError, RuntimeError) as exc:
        notes.append(f"bandwidth not measured ({type(exc).__name__}: {exc})")

    blas = _OpenBlasThreads.find()
    previous_blas_threads = blas.get() if blas is not None else None
    try:
        if blas is not None and threads is not None:
            blas.set(threads)
        matmul_budget = max(start + duration_s - time.perf_counter(), 0.3 * duration_s)
        flops, n = _measure_matmul_flops(np, matmul_budget)
        notes.append(f"float32 matmul {n}³ ({_blas_thread_note(blas, threads)})")
    except (MemoryError, OSError, RuntimeError) as exc:
        notes.append(f"FLOP/s not measured ({type(exc).__name__}: {exc})")
    finally:
        if blas is not None and previous_blas_threads is not None:
            blas.set(previous_blas_threads)  # the process's other BLAS users keep their setting

    source = f"calibrated {date.today().isoformat()} on this host: " + ", ".join(notes)
    return HostCeilings(bandwidth, flops, source, memory_total_bytes=_memory_total(), cpu_count=_logical_cpus())


# ---------------------------------------------------------------- what the monitor asks for


def _validated_overrides(overrides: dict | None) -> dict[str, float]:
    """The user's figures: keys from ``OVERRIDE_KEYS``, positive finite numbers; None means not given.
    Bad keys or values are the caller's mistake and raise ValueError."""
    given: dict[str, float] = {}
    for key, value in (overrides or {}).items():
        if key not in OVERRIDE_KEYS:
            raise ValueError(f"unknown host override {key!r}; expected one of {', '.join(OVERRIDE_KEYS)}")
        if value is None:
            continue
        if not _positive_finite(value):
            raise ValueError(f"host override {key} must be a positive number, not {value!r}")
        given[key] = float(value)
    return given


_OVERRIDE_LABELS = {"bandwidth_bytes_per_s": "bandwidth", "peak_flops": "peak FLOP/s"}


def host_ceilings(overrides: dict | None = None, allow_calibration: bool = True) -> HostCeilings:
    """The host's ceilings: the user's ``overrides`` win, else this host's cached calibration, else a
    fresh calibration (saved for next time) when ``allow_calibration``, else ``None`` figures with
    :data:`NOT_CALIBRATED` as the source. A figure the user did not give comes from the same chain.
    """
    given = _validated_overrides(overrides)
    if len(given) == len(OVERRIDE_KEYS):
        base = _bare_ceilings("given by the user")
        return HostCeilings(given["bandwidth_bytes_per_s"], given["peak_flops"], base.source,
                            memory_total_bytes=base.memory_total_bytes, cpu_count=base.cpu_count)

    base = load_cached()
    if base is None and allow_calibration:
        base = calibrate()
        save(base)  # a cache we cannot write only costs a calibration next time
    if base is None:
        base = _bare_ceilings(NOT_CALIBRATED)
    if not given:
        return base

    (key, value), = given.items()
    other = next(k for k in OVERRIDE_KEYS if k != key)
    figures = {key: value, other: getattr(base, other)}
    source = f"{_OVERRIDE_LABELS[key]} given by the user; {_OVERRIDE_LABELS[other]}: {base.source}"
    return HostCeilings(figures["bandwidth_bytes_per_s"], figures["peak_flops"], source,
                        memory_total_bytes=base.memory_total_bytes, cpu_count=base.cpu_count)


class _HostCounters:
    """The host's memory and CPU-time counters, read each tick from ``/proc/meminfo`` and
    ``/proc/stat`` kept open (``os.pread`` from the start regenerates a /proc file, as ``top``
    reads it): a fifth of the CPU of psutil's ``virtual_memory`` and ``cpu_percent``, which open,
    read and parse the whole files each call. The figures are psutil's: memory available is
    ``MemAvailable``; busy time is all CPU time but idle and iowait (guest time is already in user
    time). Where /proc cannot be read (not Linux, an old kernel without ``MemAvailable``), psutil
    answers instead."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._open: dict[str, int] = {}
        self._cpu_before: tuple[int, int] | None = None  # (busy, total) clock ticks at the last call
        # psutil.cpu_percent(interval=None) measures since its previous call; the first call has no
        # previous one and returns a meaningless 0.0, which must not show as "idle".
        self._psutil_primed = False

    def _read(self, name: str, size: int) -> bytes | None:
        fd = self._open.get(name)
        try:
            if fd is None:
                fd = self._open[name] = os.open(os.path.join(self._proc, name), os.O_RDONLY | os.O_CLOEXEC)
            return os.pread(fd, size, 0)
        except OSError:
            if fd is not None:
                self._open.pop(name, None)
                try:
                    os.close(fd)
                except OSError:
                    pass
            return None

    def memory(self) -> tuple[int, int]:
        """(total, available) bytes."""
        data = self._read("meminfo", 1024)  # MemTotal, MemFree, MemAvailable are its first lines
        found: dict[bytes, int] = {}
        for line in (data or b"").split(b"\n", 8):
            key, _, value = line.partition(b":")
            if key in (b"MemTotal", b"MemAvailable"):
                try:
                    found[key] = int(value.split()[0]) * 1024
                except (ValueError, IndexError):
                    break
        if len(found) == 2:
            return found[b"MemTotal"], found[b"MemAvailable"]
        memory = psutil.virtual_memory()
        return int(memory.total), int(memory.available)

    def cpu_busy(self) -> float | None:
        """The busy fraction 0–1 of all CPUs since the previous call; ``None`` at the first."""
        data = self._read("stat", 256)  # its first line sums every CPU
        if data and data.startswith(b"cpu "):
            try:
                ticks = [int(word) for word in data.split(b"\n", 1)[0].split()[1:9]]
            except ValueError:
                ticks = []
            if len(ticks) >= 4:
                total = sum(ticks)  # user … steal; guest and guest_nice are counted in user and nice
                busy = total - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
                before, self._cpu_before = self._cpu_before, (busy, total)
                if before is None:
                    return None
                elapsed = total - before[1]
                return min(max((busy - before[0]) / elapsed, 0.0), 1.0) if elapsed > 0 else 0.0
        busy_percent = psutil.cpu_percent(interval=None)
        primed, self._psutil_primed = self._psutil_primed, True
        return min(max(busy_percent / 100.0, 0.0), 1.0) if primed else None


_host_counters = _HostCounters()

_NO_NVML = "host CPU: no NVML counters"
_HOST_WHY = {
    "uuid": "host CPU: no device UUID",
    "memory_tree_bytes": "host CPU: the tree's memory is its processes' RSS (see the process tree)",
    "utilization_memory": "host CPU: no memory-controller counter; bandwidth use is modeled from tokens/s",
    "dram_bandwidth_util": "host CPU: no memory-controller counter; bandwidth use is modeled from tokens/s",
    "gpm_supported": "host CPU: GPM is an NVIDIA GPU feature",
    **{name: _NO_NVML for name in (
        "sm_clock_mhz", "sm_clock_max_mhz", "memory_clock_mhz", "memory_clock_max_mhz", "power_w",
        "power_limit_w", "temperature_c", "pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s", "bus_width_bits",
        "tensor_util", "sm_util", "sm_occupancy")},
}


def host_device_sample(ceilings: HostCeilings) -> DeviceSample:
    """The host CPU as a device (``kind="host"``, index 0) for this tick.

    ``memory_used_bytes`` = total − available (``MemAvailable``, as psutil), i.e. what page cache
    could not give back.
    ``utilization_gpu`` holds the CPU's busy fraction 0–1 since the previous call (non-blocking);
    the first call has no previous one and reports ``None``. The bandwidth ceiling is not a bus
    width × clock figure, so ``derived_bandwidth_bytes_per_s`` stays ``None`` and points at
    ``ceilings``. Never raises: an unreadable figure is ``None`` with a reason.
    """
    why = dict(_HOST_WHY)
    why["derived_bandwidth_bytes_per_s"] = f"host CPU: no bus width or memory clock; ceiling: {ceilings.source}"

    memory_total = memory_used = None
    try:
        memory_total, available = _host_counters.memory()
        memory_used = memory_total - available
    except Exception as exc:  # psutil on an unusual platform or sandbox
        memory_total = ceilings.memory_total_bytes
        why["memory_used_bytes"] = f"host memory unreadable: {exc}"
        if memory_total is None:
            why["memory_total_bytes"] = f"host memory unreadable: {exc}"

    utilization = None
    try:
        utilization = _host_counters.cpu_busy()
        if utilization is None:
            why["utilization_gpu"] = "host CPU: utilisation needs two samples; this first one starts the count"
    except Exception as exc:
        why["utilization_gpu"] = f"host CPU utilisation unreadable: {exc}"

    # A copy of one sample with this tick's figures: building the frozen sample field by field
    # (thirty-odd of them) every tick cost several times that.
    return evolve(_host_sample_template(), memory_total_bytes=memory_total, memory_used_bytes=memory_used,
                  utilization_gpu=utilization, why=why)


@functools.lru_cache(maxsize=1)
def _host_sample_template() -> DeviceSample:
    return DeviceSample(index=0, kind="host", name=cpu_model(), why={})
