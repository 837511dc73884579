"""The monitor's side of the agent channel: read the records the tree's agents published.

Only files that are ours, in our 0700 directory, and no symlinks are read; a record is
data (bounded JSON), never code. Garbage, half-written or foreign files are skipped with a
reason, never raised.
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from dataclasses import dataclass

from infermon.probes.agent import PROTOCOL, channel_dir, record_path, stop_path
from infermon.probes.snapshot import AgentModel, AgentSample, EngineSample, Histogram

MAX_RECORD_BYTES = 64 * 1024
# A record older than this many of its intervals belongs to an agent that stopped.
STALE_INTERVALS = 5
# A final record (left at exit) older than this belongs to an earlier process (s).
FINAL_RECORD_MAX_AGE_S = 60.0


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
        model_config=record.get("model_config") if isinstance(record.get("model_config"), dict) else None, why=why,
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


def read_agents(pids, channel: str | None = None, now: float | None = None, exited=(),
                consume_final: bool = False) -> ChannelReading:
    """Records of the agents among ``pids`` (skipping stale, foreign or garbled ones, with reasons).

    ``exited``: pids seen before that are gone now; only the final record their agent left at exit
    is read for them. ``consume_final``: remove a final record once read (the monitor does; a
    record nobody reads is removed by the next agent to start, a minute later)."""
    channel = channel or channel_dir()
    problem = _check_directory(channel)
    if problem:
        return ChannelReading((), {0: problem})
    now = time.time() if now is None else now
    agents, why = [], {}
    gone = set(exited) - set(pids)
    for pid in sorted(set(pids) | gone):
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
        if sample.final:
            if now - sample.time > FINAL_RECORD_MAX_AGE_S:
                why[pid] = "agent record is a final one left by an earlier process"
                continue
            if consume_final:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        elif pid in gone:
            continue
        elif now - sample.time > STALE_INTERVALS * max(sample.interval_s, 0.05) + 2:
            why[pid] = "agent record is stale (agent stopped?)"
            continue
        agents.append(sample)
    return ChannelReading(tuple(agents), why)


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


def request_stop(pid: int, channel: str | None = None) -> None:
    """Ask ``pid``'s agent to stop: an empty marker file it polls (data, not code)."""
    from infermon.probes.agent import ensure_channel

    channel = ensure_channel(channel)
    path = stop_path(pid, channel)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.close(fd)
