"""The monitor's side of the agent channel: read the records the tree's agents published.

Only files that are ours, in our 0700 directory, and no symlinks are read; a record is
data (bounded JSON), never code. Garbage, half-written or foreign files are skipped with a
reason, never raised.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass

from infermon.probes.agent import PROTOCOL, channel_dir, record_path, stop_path
from infermon.probes.snapshot import AgentSample, EngineSample

MAX_RECORD_BYTES = 64 * 1024
# A record older than this many of its intervals belongs to an agent that stopped.
STALE_INTERVALS = 5


@dataclass(frozen=True)
class ChannelReading:
    agents: tuple[AgentSample, ...]
    why: dict[int, str]  # pid → why its record was skipped


def _check_directory(path: str) -> str | None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "no agent channel yet"
    except OSError as exc:
        return f"agent channel unreadable: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a plain directory: refused"
    if info.st_uid != os.getuid():
        return f"{path} belongs to another user: refused"
    if info.st_mode & 0o077:
        return f"{path} is open to other users: refused"
    return None


def _read_record(path: str) -> dict:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_uid != os.getuid():
            raise ValueError("someone else's file")
        if info.st_size > MAX_RECORD_BYTES:
            raise ValueError("record too large")
        data = os.read(fd, MAX_RECORD_BYTES + 1)
    finally:
        os.close(fd)
    record = json.loads(data)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def _int(value, default=None):
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else default


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
    if not record.get("watched_modules") and isinstance(record.get("counting"), str):
        why["tokens"] = record["counting"][:300]
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


def read_agents(pids, channel: str | None = None, now: float | None = None) -> ChannelReading:
    """Records of the agents among ``pids`` (skipping stale, foreign or garbled ones, with reasons)."""
    channel = channel or channel_dir()
    problem = _check_directory(channel)
    if problem:
        return ChannelReading((), {0: problem})
    now = time.time() if now is None else now
    agents, why = [], {}
    for pid in sorted(pids):
        path = record_path(pid, channel)
        try:
            record = _read_record(path)
            sample = _sample(record, pid)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, TypeError, UnicodeDecodeError) as exc:
            # A half-written file cannot appear (the agent renames complete files into place), so
            # anything unreadable here is garbage or someone else's: skip it and say so.
            why[pid] = f"agent record skipped: {exc}"
            continue
        if now - sample.time > STALE_INTERVALS * max(sample.interval_s, 0.05) + 2:
            why[pid] = "agent record is stale (agent stopped?)"
            continue
        agents.append(sample)
    return ChannelReading(tuple(agents), why)


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


def request_stop(pid: int, channel: str | None = None) -> None:
    """Ask ``pid``'s agent to stop: an empty marker file it polls (data, not code)."""
    from infermon.probes.agent import ensure_channel

    channel = ensure_channel(channel)
    path = stop_path(pid, channel)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.close(fd)
