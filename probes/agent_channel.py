"""The monitor's side of the agent channel: read the records the tree's agents published.

A process's agent publishes in its own user's channel (``$XDG_RUNTIME_DIR/infermon`` or
``<tmp>/infermon-<uid>``, as its environment says, or a private fallback directory when that one
was squatted). Only directories owned by that user, closed to others and no symlinks are read,
each opened once with O_NOFOLLOW; only regular files of that user, no symlinks, at most 64 KB,
nested at most 32 deep, with finite numbers. A record is data, never code. Garbage, half-written,
stale or foreign files are skipped with a reason, never raised: one bad record never stops the
monitor. Root reads other users' channels this way too, read-only.
"""

from __future__ import annotations

import errno
import math
import os
import time
from dataclasses import dataclass

from infermon.probes import bounded
from infermon.probes.agent import PROTOCOL, channel_dir, channel_problem, fallback_channels, fallback_prefix
from infermon.probes.snapshot import AgentModel, AgentSample, EngineSample, Histogram

MAX_RECORD_BYTES = 64 * 1024
MAX_RECORD_DEPTH = 32
# A record older than this many of its intervals belongs to an agent that stopped.
STALE_INTERVALS = 5
# Where a process's agent publishes is looked up again after this long (s).
LOCATION_TTL_S = 10.0
MAX_ENVIRON_BYTES = 1024 * 1024
# Counters and byte counts beyond this are not measurements (2^63).
MAX_COUNT = float(2**63)
# Data errors a record can cause while it is checked and turned into a sample: each skips that
# record with a reason. Programming errors (NameError, ImportError…) are not caught.
RECORD_ERRORS = (OSError, ValueError, TypeError, ArithmeticError, RecursionError, LookupError, AttributeError)
# A final record (left at exit) older than this belongs to an earlier process (s).
FINAL_RECORD_MAX_AGE_S = 60.0


@dataclass(frozen=True)
class ChannelReading:
    agents: tuple[AgentSample, ...]
    why: dict[int, str]  # pid → why its record was skipped (0: the channel itself)
    notices: tuple[str, ...] = ()  # channels refused (squatted, open to others, symlinks)


def _check_directory(path: str, uid: int | None = None) -> str | None:
    problem = channel_problem(path, uid)
    if problem is None:
        return None
    if problem.endswith("does not exist"):
        return "no agent channel yet"
    return f"agent channel {problem}: refused"


def _open_directory(path: str, uid: int) -> int:
    """A descriptor of the channel ``path`` (no symlink followed), checked on the open directory
    itself: ``uid``'s, closed to others. Raises OSError or ValueError with the reason."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    info = os.fstat(fd)
    problem = None
    if info.st_uid != uid:
        problem = f"{path} belongs to another user (uid {info.st_uid})"
    elif info.st_mode & 0o077:
        problem = f"{path} is open to other users (mode {oct(info.st_mode & 0o777)})"
    if problem:
        os.close(fd)
        raise ValueError(problem)
    return fd


def _why_unusable(path: str, exc: Exception) -> str:
    if isinstance(exc, OSError):
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
            return f"{path} is a symlink"
        if exc.errno == errno.ENOTDIR:
            return f"{path} is not a directory"
        return f"{path} is unusable ({exc.strerror or exc})"
    return str(exc)


def _read_record(name: str, dir_fd: int | None = None, uid: int | None = None) -> dict:
    """One record, bounded: a regular file of ``uid`` (default ours), no symlink, ≤ 64 KB, JSON
    nested ≤ 32 deep. A non-finite number stays one (NaN): the checks below refuse the record when
    it is a field everything relies on, and drop only that figure, with a reason, otherwise."""
    data = bounded.read_regular(name, MAX_RECORD_BYTES, dir_fd=dir_fd, uid=os.getuid() if uid is None else uid)
    record = bounded.loads(data, MAX_RECORD_DEPTH, nonfinite_as_nan=True)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def _number(record: dict, key: str, required: bool = False, positive: bool = False) -> None:
    value = record.get(key)
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} is not a number")
    if not -MAX_COUNT < value < MAX_COUNT or (positive and value <= 0):
        raise ValueError(f"{key} is out of range ({value:.3g})")


def _check_record(record: dict) -> None:
    """The fields everything after relies on: a finite wall-clock time, a sane interval, counters
    that fit in 63 bits (a NaN fails each range check)."""
    _number(record, "time", required=True, positive=True)
    _number(record, "interval_s", positive=True)
    for key in ("generation_tokens_total", "prompt_tokens_total", "decode_steps_total", "batch", "max_batch",
                "weights_bytes", "params", "errors"):
        _number(record, key)
    config = record.get("model_config")
    if config is not None and not isinstance(config, dict):
        raise ValueError("model_config is not an object")


def _int(value, default=None):
    """A count: a finite number from 0 to 2^63, else ``default``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < MAX_COUNT:
        return int(value)
    return default


def _all_finite(value) -> bool:
    """No NaN or infinity anywhere in a parsed JSON value (bounded in depth by the reader)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return True


def _sample(record: dict, pid: int) -> AgentSample:
    if record.get("protocol") != PROTOCOL:
        raise ValueError(f"agent protocol {record.get('protocol')!r}, expected {PROTOCOL}")
    if record.get("pid") != pid:
        raise ValueError("record names another pid")
    torch = record.get("torch") if isinstance(record.get("torch"), dict) else {}
    devices = [d for d in torch.get("devices") or [] if isinstance(d, dict)]

    def total(key):
        values = [_int(d.get(key)) for d in devices]
        values = [v for v in values if v is not None]
        return sum(values) if values else None

    why = {}
    if not devices:
        why["torch"] = str(torch.get("why") or "no torch.cuda allocator figures")
    config = record.get("model_config") if isinstance(record.get("model_config"), dict) else None
    if config is not None and not _all_finite(config):
        config, why["model_config"] = None, "the model's config in the record holds a non-finite number: not used"
    return AgentSample(
        pid=pid, time=float(record.get("time") or 0.0), interval_s=float(record.get("interval_s") or 1.0),
        generation_tokens_total=float(_int(record.get("generation_tokens_total"), 0)),
        prompt_tokens_total=float(_int(record.get("prompt_tokens_total"), 0)),
        decode_steps_total=float(_int(record.get("decode_steps_total"), 0)),
        batch=_int(record.get("batch"), 0), max_batch=_int(record.get("max_batch"), 0),
        weights_bytes=_int(record.get("weights_bytes")),
        torch_allocated_bytes=total("allocated_bytes"), torch_reserved_bytes=total("reserved_bytes"),
        torch_active_bytes=total("active_bytes"), torch_peak_allocated_bytes=total("peak_allocated_bytes"),
        torch_peak_reserved_bytes=total("peak_reserved_bytes"), alloc_retries=total("alloc_retries"),
        ooms=total("ooms"), device_free_bytes=_int(torch.get("device_free_bytes")),
        device_total_bytes=_int(torch.get("device_total_bytes")),
        hf_generate_hooked=bool(record.get("hf_generate_hooked")), errors=_int(record.get("errors"), 0),
        params=_int(record.get("params")),
        model_config=config, why=why,
        **_inside_figures(record, why))


# -- what the agent sees inside the process: clocks, KV cache, latencies, memory -----------------


def _count(value) -> int | None:
    """A finite, non-negative integer count, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return int(value)


def _seconds(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _agent_histogram(value) -> Histogram | None:
    """The agent's cumulative latency histogram (``le`` bounds in s, ``cumulative`` counts, ``sum``,
    ``count``), checked: bounds finite and increasing, counts never decreasing, at most 200
    buckets. Anything else is None."""
    if not isinstance(value, dict):
        return None
    bounds, counts = value.get("le"), value.get("cumulative")
    total, count = _seconds(value.get("sum")), _count(value.get("count"))
    if not isinstance(bounds, list) or not isinstance(counts, list) or len(bounds) != len(counts):
        return None
    if not bounds or len(bounds) > 200 or total is None or count is None:
        return None
    buckets, previous_bound, previous_count = [], 0.0, 0
    for bound, cumulative in zip(bounds, counts):
        bound, cumulative = _seconds(bound), _count(cumulative)
        if bound is None or cumulative is None or bound <= previous_bound or cumulative < previous_count:
            return None
        buckets.append((bound, float(cumulative)))
        previous_bound, previous_count = bound, cumulative
    if count < previous_count:
        return None
    return Histogram(buckets=tuple(buckets), sum=total, count=float(count))


def _agent_models(value) -> tuple[AgentModel, ...]:
    if not isinstance(value, list):
        return ()
    models = []
    for entry in value[:16]:
        if not isinstance(entry, dict):
            continue
        models.append(AgentModel(
            name=str(entry.get("name") or "?")[:200], alive=bool(entry.get("alive", True)),
            weights_bytes=_count(entry.get("weights_bytes")), params=_count(entry.get("params")),
            batch=_count(entry.get("batch")) or 0, kv_tokens_resident=_count(entry.get("kv_tokens_resident")),
            kv_bytes_resident=_count(entry.get("kv_bytes_resident")),
            generation_tokens_total=float(_count(entry.get("generation_tokens_total")) or 0),
            prompt_tokens_total=float(_count(entry.get("prompt_tokens_total")) or 0)))
    return tuple(models)


def _inside_figures(record: dict, why: dict) -> dict:
    """The fields of an agent record beyond the token counters, each checked; a missing or bad one
    is None, with its reason added to ``why``."""
    monotonic = record.get("monotonic")
    monotonic = float(monotonic) if isinstance(monotonic, (int, float)) and not isinstance(monotonic, bool) \
        and math.isfinite(monotonic) else None
    kv_source = record.get("kv_source") if record.get("kv_source") in ("cache", "reported") else None
    kv_tokens = _count(record.get("kv_tokens_resident")) if kv_source else None
    if kv_tokens is None:
        why["kv_tokens_resident"] = str(record.get("kv_why") or "the agent reports no KV cache")[:200]
    rss = _count(record.get("rss_bytes"))
    if rss is None:
        why["rss_bytes"] = str(record.get("rss_why") or "the agent reports no process RSS")[:200]
    ttft, inter_token = _agent_histogram(record.get("ttft")), _agent_histogram(record.get("inter_token"))
    for name, value in (("ttft", ttft), ("inter_token", inter_token)):
        if value is None:
            why[name] = "the agent's latency histogram is missing or malformed"
    counting = record.get("counting") if record.get("counting") in ("hooks", "reported") else None
    return dict(monotonic=monotonic, seq=_count(record.get("seq")), final=record.get("final") is True,
                requests_total=_count(record.get("requests_total")), counting=counting,
                kv_tokens_resident=kv_tokens, kv_bytes_resident=_count(record.get("kv_bytes_resident")),
                kv_source=kv_source if kv_tokens is not None else None, models=_agent_models(record.get("models")),
                ttft=ttft, inter_token=inter_token, rss_bytes=rss)


def merge_histograms(histograms) -> Histogram | None:
    """The sum of cumulative histograms with the same bounds (the agents' over a process tree);
    None if there are none or their bounds differ."""
    histograms = [h for h in histograms if h is not None]
    if not histograms:
        return None
    bounds = [b for b, _ in histograms[0].buckets]
    if any([b for b, _ in h.buckets] != bounds for h in histograms[1:]):
        return None
    counts = [sum(h.buckets[i][1] for h in histograms) for i in range(len(bounds))]
    return Histogram(buckets=tuple(zip(bounds, counts)), sum=sum(h.sum for h in histograms),
                     count=sum(h.count for h in histograms))


def process_owner(pid: int) -> int | None:
    """The effective uid of ``pid`` (whose agent writes as that user), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Uid:"):
                    return int(line.split()[2])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _environ(pid: int) -> dict[str, str]:
    """The variables of ``pid``'s environment that place its channel (bounded read; {} if unreadable)."""
    try:
        data = bounded.read_proc(f"/proc/{pid}/environ", MAX_ENVIRON_BYTES)
    except OSError:
        return {}
    wanted = {}
    for entry in data.split(b"\0"):
        name, _, value = entry.partition(b"=")
        if name in (b"XDG_RUNTIME_DIR", b"TMPDIR", b"TEMP", b"TMP"):
            wanted[name.decode()] = value.decode("utf-8", "replace")
    return wanted


def _temp_root(environ: dict[str, str]) -> str:
    """The temp directory Python's tempfile picks in that environment (the first that exists)."""
    for candidate in [environ.get(k) for k in ("TMPDIR", "TEMP", "TMP")] + ["/tmp", "/var/tmp", "/usr/tmp"]:
        if candidate and os.path.isabs(candidate) and os.path.isdir(candidate):
            return candidate
    return "/tmp"


def temp_root_of(pid: int) -> str:
    """The temp directory ``pid``'s Python would use (its TMPDIR, TEMP or TMP, else /tmp)."""
    return _temp_root(_environ(pid))


def _own_channels() -> list[str]:
    import tempfile

    return [channel_dir(), os.path.join(tempfile.gettempdir(), f"infermon-{os.getuid()}")]


def _environment_channels(pid: int) -> tuple[int, tuple[str, ...]]:
    """(uid, channels its own environment names) for ``pid``: ``$XDG_RUNTIME_DIR/infermon`` and
    ``<its tmp>/infermon-<uid>``."""
    uid = process_owner(pid)
    if uid is None:
        uid = os.getuid()
    environ = _environ(pid)
    places = []
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        places.append(os.path.join(runtime, "infermon"))
    places.append(os.path.join(_temp_root(environ), f"infermon-{uid}"))
    return uid, tuple(places)


_locations: dict[int, tuple[float, int, tuple[str, ...]]] = {}


def channels_of(pid: int, own: list[str] | None = None) -> tuple[int, tuple[str, ...]]:
    """(uid, shared channels) where ``pid``'s agent publishes: ours first when it is our process
    (it inherited our environment, as under ``infermon run``), then what its own environment
    names (looked up once per LOCATION_TTL_S: /proc/PID/environ is read then). ``own``: our
    channels, when the caller has them already."""
    now = time.monotonic()
    known = _locations.get(pid)
    if known is not None and now - known[0] < LOCATION_TTL_S:
        uid, places = known[1], known[2]
    else:
        if len(_locations) > 4096:
            _locations.clear()
        uid, places = _environment_channels(pid)
        _locations[pid] = (now, uid, places)
    if uid == os.getuid():
        places = tuple(dict.fromkeys((own if own is not None else _own_channels()) + list(places)))
    return uid, places


_fallback_scans: dict[tuple[str, int], tuple[float, list[str]]] = {}


def _fallbacks_cached(parent: str, uid: int) -> list[str]:
    """:func:`fallback_channels`, listed again only every LOCATION_TTL_S (a temp dir may be large)."""
    now = time.monotonic()
    known = _fallback_scans.get((parent, uid))
    if known is None or now - known[0] >= (LOCATION_TTL_S if known[1] else 1.0):  # none yet: soon again
        known = _fallback_scans[(parent, uid)] = (now, fallback_channels(parent, uid))
    return known[1]


class _Channels:
    """The channel directories of one reading, each checked and opened once."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, int], int | None] = {}
        self.notices: list[str] = []
        self.fallbacks: dict[tuple[str, int], list[str]] = {}
        self.listed: dict[int, set[str]] = {}

    def descriptor(self, path: str, uid: int) -> int | None:
        key = (path, uid)
        if key not in self.open:
            try:
                self.open[key] = _open_directory(path, uid)
            except FileNotFoundError:
                self.open[key] = None
            except (OSError, ValueError) as exc:
                self.open[key] = None
                notice = f"agent channel {_why_unusable(path, exc)}: refused"
                if os.path.basename(path) == f"infermon-{uid}":
                    # Agents that found it so publish in private directories of their own beside it.
                    self.fallbacks[key] = _fallbacks_cached(os.path.dirname(path), uid)
                    notice += (f"; agents publish in private directories instead "
                               f"({os.path.join(os.path.dirname(path), fallback_prefix(uid))}…)")
                self.notices.append(notice)
        return self.open[key]

    def names(self, fd: int) -> set[str]:
        """The entries of an open channel, listed once per reading: one listing instead of a failed
        lookup per process of the tree."""
        if fd not in self.listed:
            try:
                self.listed[fd] = set(os.listdir(fd))
            except OSError:
                self.listed[fd] = set()
        return self.listed[fd]

    def places(self, shared: tuple[str, ...], uid: int) -> list[tuple[str, int]]:
        """(path, descriptor) of every usable channel among ``shared`` and their fallbacks."""
        found = []
        for path in shared:
            fd = self.descriptor(path, uid)
            if fd is not None:
                found.append((path, fd))
            for fallback in self.fallbacks.get((path, uid), ()):
                fd = self.descriptor(fallback, uid)
                if fd is not None:
                    found.append((fallback, fd))
        return found

    def close(self) -> None:
        for fd in self.open.values():
            if fd is not None:
                os.close(fd)
        self.open.clear()


def _fresh(sample: AgentSample, now: float) -> str | None:
    """Why a record is not that of a running agent, or None when it is."""
    if now - sample.time > STALE_INTERVALS * max(sample.interval_s, 0.05) + 2:
        return "agent record is stale (agent stopped?)"
    if sample.time - now > 60:
        return "agent record is dated in the future"
    return None


def _lookup(pids, channel: str | None, now: float | None, keep_location: bool = False, exited=(),
            consume_final: bool = False, looked: list | None = None):
    now = time.time() if now is None else now
    channels = _Channels()
    agents, why, where = [], {}, {}
    own = _own_channels() if channel is None else None
    gone = set(exited) - set(pids)
    try:
        for pid in sorted(set(pids) | gone):
            if channel is not None:
                uid, shared = os.getuid(), (channel,)
            else:
                uid, shared = channels_of(pid, own)
            best, best_at, reason = None, None, None
            name = f"agent-{pid}.json"
            for path, fd in channels.places(shared, uid):
                if name not in channels.names(fd):
                    continue
                try:
                    record = _read_record(name, dir_fd=fd, uid=uid)
                    _check_record(record)
                    sample = _sample(record, pid)
                except FileNotFoundError:
                    continue
                except RECORD_ERRORS as exc:
                    # A half-written file cannot appear (the agent renames complete files into place),
                    # so anything unreadable here is garbage or someone else's: skip it and say so.
                    reason = f"agent record skipped: {exc}"
                    continue
                if sample.final:
                    if now - sample.time > FINAL_RECORD_MAX_AGE_S:
                        reason = reason or "agent record is a final one left by an earlier process"
                        continue
                elif pid in gone:
                    continue
                else:
                    stale = _fresh(sample, now)
                    if stale:
                        reason = reason or stale
                        continue
                if best is None or sample.time > best.time:
                    best, best_at = sample, (path, fd, uid)
            if best is None:
                if reason:
                    why[pid] = reason
                continue
            agents.append(best)
            where[pid] = (best_at[0], best_at[2])
            # The monitor removes a final record once read; another user's is left alone (root only
            # reads their channels: their next agent sweeps it a minute later).
            if best.final and consume_final and best_at[2] == os.getuid():
                try:
                    os.unlink(name, dir_fd=best_at[1])
                except OSError:
                    pass
    finally:
        if looked is not None:
            looked.extend(path for path, _uid in channels.open)
        channels.close()
    notices = tuple(dict.fromkeys(channels.notices))
    if not agents and notices and 0 not in why:
        why[0] = notices[0]
    reading = ChannelReading(tuple(agents), why, notices)
    return (reading, where) if keep_location else reading


def read_agents(pids, channel: str | None = None, now: float | None = None, exited=(),
                consume_final: bool = False) -> ChannelReading:
    """Records of the agents among ``pids`` (skipping stale, foreign or garbled ones, with reasons).

    ``channel``: read only that directory (as ours). Otherwise each pid's agent is looked for
    where it publishes: see :func:`channels_of`, plus the private fallback directories when a
    shared channel was refused. ``exited``: pids seen before that are gone now; only the final
    record their agent left at exit is read for them. ``consume_final``: remove a final record of
    ours once read (the monitor does; a record nobody reads is removed by the next agent to start,
    a minute later). Never raises for anything a record or a directory holds."""
    return _lookup(pids, channel, now, exited=exited, consume_final=consume_final)


# A channel directory changed this recently may change again within its timestamp's granularity,
# unseen: a reading of it is not kept (s).
SETTLED_AFTER_S = 2.0


def _stamps(paths: tuple[str, ...], now: float) -> tuple | None:
    """What each directory is (device, inode, mode, owner, last change; None where it is missing),
    or None when one changed less than SETTLED_AFTER_S ago."""
    stamps = []
    for path in paths:
        try:
            info = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            stamps.append(None)
            continue
        except OSError:
            return None
        if now - info.st_mtime_ns / 1e9 < SETTLED_AFTER_S:
            return None
        stamps.append((info.st_dev, info.st_ino, info.st_mode, info.st_uid, info.st_mtime_ns))
    return tuple(stamps)


class AgentWatch:
    """:func:`read_agents` for one monitor, tick after tick.

    While no agent publishes in the tree (a server watched through its own metrics), every tick's
    reading finds nothing: opening, checking and listing each channel directory for that was a
    sixteenth of a tick's CPU. A reading that found no record, with no notice, is given again as
    long as every directory it looked in is unchanged since (one ``stat`` each): an agent that
    starts publishing renames its record into one of them, which changes it. Anything else (an
    agent found, a channel refused, pids gone) reads afresh every tick.
    """

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._kept: tuple | None = None  # (pids, paths, stamps, reading)

    def read(self, pids, exited=(), consume_final: bool = False) -> ChannelReading:
        pids = frozenset(pids)
        kept = self._kept
        if kept is not None and not exited and kept[0] == pids:
            stamps = _stamps(kept[1], self._clock())
            if stamps is not None and stamps == kept[2]:
                return kept[3]
        looked: list[str] = []
        reading = _lookup(pids, None, None, exited=exited, consume_final=consume_final, looked=looked)
        self._kept = None
        # Kept only when nothing was there at all: a record's reason (stale, skipped, dated ahead)
        # may change with the clock alone, with no change to its directory.
        if not reading.agents and not reading.notices and not exited and not any(
                "record" in why for why in reading.why.values()):
            paths = tuple(dict.fromkeys(looked))
            stamps = _stamps(paths, self._clock())
            if stamps is not None:
                self._kept = (pids, paths, stamps, reading)
        return reading


def find_agent(pid: int, now: float | None = None) -> tuple[AgentSample | None, str | None, str | None]:
    """(sample, channel directory, why not) for ``pid``'s running agent: a record that is fresh,
    valid and not a final one left at exit. A stale record is no running agent."""
    reading, where = _lookup({pid}, None, now, keep_location=True)
    for sample in reading.agents:
        if not sample.final:
            return sample, where[pid][0], None
        return None, None, "its agent has exited"
    return None, None, reading.why.get(pid) or reading.why.get(0)


def engine_from_agents(agents: tuple[AgentSample, ...]) -> EngineSample | None:
    """The agents' counters as an engine sample (kind ``agent``): sums over the tree's processes.

    Resident KV tokens are the sum of what the agents report (None, with a reason, when none
    does); the latency histograms are the agents' merged. The agent sees no KV pool: its
    capacity is modeled from free memory by the derivation layer."""
    if not agents:
        return None
    batch = sum(a.batch for a in agents)
    why = {"requests_waiting": "the agent sees no request queue",
           "kv_usage": "the agent sees the tokens its caches hold, not a KV pool's share",
           "kv_capacity_tokens": "the agent sees no KV pool: capacity is modeled from free memory",
           "preemptions_total": "the agent sees no scheduler"}
    resident = [a.kv_tokens_resident for a in agents if a.kv_tokens_resident is not None]
    if not resident:
        why["kv_tokens_resident"] = next((a.why["kv_tokens_resident"] for a in agents if "kv_tokens_resident" in a.why),
                                         "the agent reports no KV cache")
    ttft = merge_histograms([a.ttft for a in agents])
    inter_token = merge_histograms([a.inter_token for a in agents])
    if ttft is None or ttft.count == 0:
        ttft, why["ttft"] = None, "the agent has timed no generate() call or agent.request() yet"
    if inter_token is None or inter_token.count == 0:
        inter_token, why["inter_token"] = None, "the agent has timed no second token yet"
    return EngineSample(
        kind="agent", url=None,
        generation_tokens_total=sum(a.generation_tokens_total for a in agents),
        prompt_tokens_total=sum(a.prompt_tokens_total for a in agents),
        requests_running=float(batch), batch=float(batch),
        kv_tokens_resident=float(sum(resident)) if resident else None,
        ttft=ttft, inter_token=inter_token, why=why)


def request_stop(pid: int) -> None:
    """Ask ``pid``'s running agent to stop: an empty marker file it polls (data, not code), made
    in the channel its record is in, with O_NOFOLLOW and O_EXCL, owned by the agent's user."""
    sample, channel, why = find_agent(pid)
    if sample is None:
        raise LookupError(why or "no running agent")
    uid = process_owner(pid)
    uid = os.getuid() if uid is None else uid
    fd = _open_directory(channel, uid)
    try:
        name = f"agent-{pid}.stop"
        try:
            marker = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        except FileExistsError:
            return
        try:
            if uid != os.getuid():  # root stopping another user's agent: the marker is theirs to remove
                os.fchown(marker, uid, os.fstat(fd).st_gid)
        finally:
            os.close(marker)
    finally:
        os.close(fd)
