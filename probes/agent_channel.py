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
import os
import time
from dataclasses import dataclass

from infermon.probes import bounded
from infermon.probes.agent import PROTOCOL, channel_dir, channel_problem, fallback_channels, fallback_prefix
from infermon.probes.snapshot import AgentSample, EngineSample

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
    nested ≤ 32 deep with finite numbers only."""
    data = bounded.read_regular(name, MAX_RECORD_BYTES, dir_fd=dir_fd, uid=os.getuid() if uid is None else uid)
    record = bounded.loads(data, MAX_RECORD_DEPTH)
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
    that fit in 63 bits. (Non-finite numbers never parse at all.)"""
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
        model_config=record.get("model_config") if isinstance(record.get("model_config"), dict) else None, why=why)


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


def _lookup(pids, channel: str | None, now: float | None, keep_location: bool = False):
    now = time.time() if now is None else now
    channels = _Channels()
    agents, why, where = [], {}, {}
    own = _own_channels() if channel is None else None
    try:
        for pid in sorted(pids):
            if channel is not None:
                uid, shared = os.getuid(), (channel,)
            else:
                uid, shared = channels_of(pid, own)
            best, reason = None, None
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
                stale = _fresh(sample, now)
                if stale:
                    reason = reason or stale
                    continue
                if best is None or sample.time > best.time:
                    best = sample
                    where[pid] = (path, uid)
            if best is not None:
                agents.append(best)
            elif reason:
                why[pid] = reason
    finally:
        channels.close()
    notices = tuple(dict.fromkeys(channels.notices))
    if not agents and notices and 0 not in why:
        why[0] = notices[0]
    reading = ChannelReading(tuple(agents), why, notices)
    return (reading, where) if keep_location else reading


def read_agents(pids, channel: str | None = None, now: float | None = None) -> ChannelReading:
    """Records of the agents among ``pids`` (skipping stale, foreign or garbled ones, with reasons).

    ``channel``: read only that directory (as ours). Otherwise each pid's agent is looked for
    where it publishes: see :func:`channels_of`, plus the private fallback directories when a
    shared channel was refused. Never raises for anything a record or a directory holds."""
    return _lookup(pids, channel, now)


def find_agent(pid: int, now: float | None = None) -> tuple[AgentSample | None, str | None, str | None]:
    """(sample, channel directory, why not) for ``pid``'s running agent: a record that is fresh,
    valid and not a final one left at exit. A stale record is no running agent."""
    reading, where = _lookup({pid}, None, now, keep_location=True)
    for sample in reading.agents:
        if not getattr(sample, "final", False):
            return sample, where[pid][0], None
        return None, None, "its agent has exited"
    return None, None, reading.why.get(pid) or reading.why.get(0)


def engine_from_agents(agents: tuple[AgentSample, ...]) -> EngineSample | None:
    """The agents' counters as an engine sample (kind ``agent``): sums over the tree's processes."""
    if not agents:
        return None
    batch = sum(a.batch for a in agents)
    return EngineSample(
        kind="agent", url=None,
        generation_tokens_total=sum(a.generation_tokens_total for a in agents),
        prompt_tokens_total=sum(a.prompt_tokens_total for a in agents),
        requests_running=float(batch), batch=float(batch),
        why={"requests_waiting": "the agent sees no request queue", "kv_usage": "the agent sees no KV cache",
             "kv_capacity_tokens": "the agent sees no KV cache", "preemptions_total": "the agent sees no scheduler",
             "ttft": "the agent measures no latencies", "inter_token": "the agent measures no latencies"})


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
