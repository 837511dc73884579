"""Reading a ``--record`` file back: the views it holds, and notices for lines it had to skip."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, replace

from infermon.live.derive import LiveView
from infermon.probes.plain import PlainError, from_plain

MAX_LINE = 16 * 1024 * 1024


class RecordingError(ValueError):
    """A file that holds no usable recording; one line for the user."""


@dataclass(frozen=True)
class Recording:
    path: str
    views: tuple[LiveView, ...]
    notices: tuple[str, ...]
    exit_note: str | None


def read_recording(path: str) -> Recording:
    """Every usable line of ``path``; corrupt or truncated lines are skipped with a notice."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc.strerror})") from None
    views: list[LiveView] = []
    notices: list[str] = []
    exit_note = None
    model = None
    with handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE + 1), b""), start=1):
            if len(raw) > MAX_LINE:
                notices.append(f"line {number}: longer than 16 MB (skipped)")
                handle.readline()
                continue
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                notices.append(f"line {number}: not JSON, corrupt or truncated (skipped)")
                continue
            if not isinstance(record, dict):
                notices.append(f"line {number}: not a JSON object (skipped)")
                continue
            if record.get("event") == "exited":
                exit_note = str(record.get("why") or "the process exited")
                continue
            data = record.get("replay")
            if not isinstance(data, dict):
                notices.append(f"line {number}: no replay data (skipped)")
                continue
            try:
                view = from_plain(LiveView, data)
            except (PlainError, TypeError, ValueError, KeyError) as exc:
                notices.append(f"line {number}: unreadable ({exc}) (skipped)")
                continue
            if data.get("model_unchanged") and view.model is None:
                view = replace(view, model=model)
            model = view.model
            views.append(view)
    if not views:
        detail = f" ({notices[0]})" if notices else ""
        raise RecordingError(f"{path}: no usable samples: not an infermon recording?{detail}")
    return Recording(path=str(path), views=tuple(views), notices=tuple(notices), exit_note=exit_note)


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "median": None, "max": None}
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "max": max(values)}


def summarize(recording: Recording) -> dict:
    """The figures ``replay --once --json`` and ``diff`` report for one recording."""
    from infermon.live.summary import SummaryAccumulator

    accumulator = SummaryAccumulator()
    for view in recording.views:
        accumulator.add(view)
    summary = accumulator.summary()
    busy = [v for v in recording.views if v.analysis.phase not in ("idle", "unknown")]
    gen = [v.rates.generation_tokens_per_s for v in busy if v.rates.generation_tokens_per_s is not None]
    prompt = [v.rates.prompt_tokens_per_s for v in busy if v.rates.prompt_tokens_per_s is not None]
    mbu = [v.analysis.mbu for v in busy if v.analysis.mbu is not None]
    mfu = [v.analysis.mfu for v in busy if v.analysis.mfu is not None]
    kv = [v.snapshot.engine.kv_usage for v in recording.views if v.snapshot.engine and v.snapshot.engine.kv_usage is not None]
    headroom = [v.analysis.kv_headroom_tokens for v in recording.views if v.analysis.kv_headroom_tokens is not None]
    batch = [v.snapshot.engine.batch for v in busy if v.snapshot.engine and v.snapshot.engine.batch is not None]
    first, last = recording.views[0], recording.views[-1]
    bounds = [v.analysis.bound for v in busy if v.analysis.bound]
    return {
        "file": recording.path,
        "samples": len(recording.views),
        "skipped_lines": len(recording.notices),
        "span_s": last.snapshot.monotonic - first.snapshot.monotonic,
        "start_time": first.snapshot.time,
        "pid": first.snapshot.tree.root_pid if first.snapshot.tree else None,
        "engine": first.snapshot.engine.kind if first.snapshot.engine else None,
        "model": last.model.name if last.model else None,
        "hardware": last.hardware.name if last.hardware else None,
        "busy_samples": len(busy),
        "generation_tokens": summary.generation_tokens,
        "prompt_tokens": summary.prompt_tokens,
        "generation_tokens_per_s": _stats(gen),
        "prompt_tokens_per_s": _stats(prompt),
        "batch": _stats(batch),
        "mbu": _stats(mbu),
        "mfu": _stats(mfu),
        "kv_usage": _stats(kv),
        "kv_headroom_tokens_min": min(headroom) if headroom else None,
        "memory_bound_share": bounds.count("memory") / len(bounds) if bounds else None,
        "exit": recording.exit_note,
    }
