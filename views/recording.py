"""``--record FILE``: one JSON line per tick, and reading such a file back.

One encoding per tick. A *keyframe* line is the documented ``--once --json`` object itself
(``schema`` 2); the lines between keyframes hold only what changed since the line before
(``{"schema": 2, "delta": …}``), which keeps a sample of a 64-process tree to a few kilobytes.
A keyframe starts every recording and comes every :data:`KEYFRAME_EVERY` lines, so a damaged line
costs at most the lines up to the next keyframe, and ``head -n1 FILE | jq`` shows a whole tick.
``infermon replay FILE --json`` prints every tick whole.

The delta of two objects: a dict holds only the changed keys (recursively), with ``"~del"`` listing
removed ones; a list of objects that carry a ``pid``, an ``index`` or a ``key`` (the levers) is diffed per element
(``"~keyed"``, ``"~items"``, and ``"~order"`` when the order changed); anything else that changed is
written whole.
"""

from __future__ import annotations

import json
import math
import os
import stat
import statistics
from dataclasses import dataclass
from typing import Any

from infermon.live.view import SCHEMA, LiveView
from infermon.probes.plain import PlainError, from_plain
from infermon.views.live_json import dumps, finite, live_to_json

KEYFRAME_EVERY = 60
# Bounds on what a reader accepts from a file it did not write itself.
MAX_LINE = 8 * 1024 * 1024
MAX_FILE = 4 * 1024 ** 3
MAX_SAMPLES = 500_000
_SAME = object()
# Lists of objects diffed per element, by the field that names each: processes by pid, devices by
# index, levers by key.
_ID_KEYS = (("pid", int), ("index", int), ("key", str))


class RecordingError(ValueError):
    """A file that holds no usable recording; one line for the user."""


# ---------------------------------------------------------------- the delta


def _id_key(items: list) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key, kind in _ID_KEYS:
        ids = [i.get(key) for i in items]
        if all(isinstance(v, kind) and not isinstance(v, bool) for v in ids) and len(set(ids)) == len(ids):
            return key
    return None


def diff(old: Any, new: Any) -> Any:
    """What turns ``old`` into ``new`` under :func:`patch` (``_SAME`` when nothing changed)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = {}
        for key, value in new.items():
            change = diff(old[key], value) if key in old else value
            if change is not _SAME:
                out[key] = change
        removed = [key for key in old if key not in new]
        if removed:
            out["~del"] = removed
        return out if out else _SAME
    if isinstance(old, list) and isinstance(new, list):
        if old == new:
            return _SAME
        key = _id_key(new)
        if key is not None and _id_key(old) == key:
            before = {item[key]: item for item in old}
            items = {}
            for item in new:
                change = diff(before[item[key]], item) if item[key] in before else item
                if change is not _SAME:
                    items[str(item[key])] = change
            out: dict[str, Any] = {"~keyed": key, "~items": items}
            order = [item[key] for item in new]
            if order != [item[key] for item in old]:
                out["~order"] = order
            return out
        return new
    if type(old) is type(new) and old == new:
        return _SAME
    return new


def patch(old: Any, change: Any) -> Any:
    """Apply a :func:`diff` to ``old``."""
    if isinstance(change, dict) and isinstance(old, list) and "~keyed" in change:
        key = change["~keyed"]
        by_id = {str(item.get(key)): item for item in old if isinstance(item, dict)}
        order = change.get("~order") or [item.get(key) for item in old if isinstance(item, dict)]
        items = change.get("~items") or {}
        if not isinstance(order, list) or not isinstance(items, dict):
            raise ValueError("malformed list delta")
        out = []
        for ident in order:
            name = str(ident)
            if name in items:
                out.append(patch(by_id[name], items[name]) if name in by_id else items[name])
            elif name in by_id:
                out.append(by_id[name])
            else:
                raise ValueError(f"list delta names {key} {ident}, which no earlier line has")
        return out
    if isinstance(change, dict) and isinstance(old, dict):
        out = {key: value for key, value in old.items() if key not in (change.get("~del") or ())}
        for key, value in change.items():
            if key == "~del":
                continue
            out[key] = patch(old[key], value) if key in old else value
        return out
    return change


# ---------------------------------------------------------------- writing


class RecordingWriter:
    """Appends one line per tick to an open text file: a keyframe, then deltas."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self._last: dict | None = None
        self._since_key = 0

    def line_for(self, view: LiveView) -> str:
        current = live_to_json(view)
        if self._last is None or self._since_key >= KEYFRAME_EVERY - 1:
            self._last, self._since_key = current, 0
            return dumps(current)
        change = diff(self._last, current)
        self._last = current
        self._since_key += 1
        return dumps({"schema": SCHEMA, "delta": {} if change is _SAME else change})

    def write(self, view: LiveView) -> None:
        """Write and flush one line (a failure leaves the lines before it intact and raises OSError)."""
        self.handle.write(self.line_for(view) + "\n")
        self.handle.flush()

    def write_event(self, event: dict) -> None:
        self.handle.write(dumps(event) + "\n")
        self.handle.flush()
        # The next tick may come from another run appending to the same file: start it whole.
        self._last = None


def open_for_append(path: str):
    """Open ``path`` to append, refusing a symlink (O_NOFOLLOW) and anything but a regular file."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == getattr(__import__("errno"), "ELOOP", -1):
            raise RecordingError(f"{path} is a symbolic link: give the file itself") from None
        raise RecordingError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RecordingError(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8")


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Recording:
    path: str
    views: tuple[LiveView, ...]
    notices: tuple[str, ...]
    exit_note: str | None


def _open_for_reading(path: str):
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket?)"
        raise RecordingError(f"{path}: {kind}; a recording is a file written by --record")
    if info.st_size > MAX_FILE:
        os.close(fd)
        raise RecordingError(f"{path}: {info.st_size / 1e9:.1f} GB is more than a recording this tool reads "
                             f"({MAX_FILE / 1e9:.0f} GB)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def iter_ticks(path: str, notices: list[str]):
    """Each tick of ``path`` as its whole documented object (deltas applied), or an ``event`` dict.

    Damaged lines are skipped with a notice; after one, deltas are skipped until the next keyframe.
    """
    handle = _open_for_reading(path)
    current: dict | None = None
    with handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_LINE + 1), b""), start=1):
            if len(raw) > MAX_LINE:
                notices.append(f"line {number}: longer than {MAX_LINE // 2**20} MB (skipped)")
                while raw and not raw.endswith(b"\n"):
                    raw = handle.readline(MAX_LINE + 1)
                current = None
                continue
            if not raw.strip():
                continue
            try:
                record = finite(json.loads(raw))
            except (ValueError, UnicodeDecodeError):
                notices.append(f"line {number}: not JSON, corrupt or truncated (skipped)")
                current = None
                continue
            except RecursionError:
                notices.append(f"line {number}: nested too deeply (skipped)")
                current = None
                continue
            if not isinstance(record, dict):
                notices.append(f"line {number}: not a JSON object (skipped)")
                continue
            if "event" in record:
                yield record
                continue
            if record.get("schema") != SCHEMA:
                found = record.get("schema")
                notices.append(f"line {number}: schema {found!r}, not {SCHEMA} "
                               + ("(recorded by an older infermon; not readable by this one)" if found == 1 else "(skipped)"))
                current = None
                continue
            if "delta" in record:
                if current is None:
                    notices.append(f"line {number}: a change against a line that was skipped (skipped)")
                    continue
                try:
                    current = patch(current, record["delta"])
                except (ValueError, KeyError, TypeError, RecursionError) as exc:
                    notices.append(f"line {number}: unusable change ({exc}) (skipped)")
                    current = None
                    continue
            else:
                current = record
            yield current


def read_recording(path: str) -> Recording:
    """Every usable tick of ``path`` as a :class:`LiveView`."""
    views: list[LiveView] = []
    notices: list[str] = []
    exit_note = None
    for number, record in enumerate(iter_ticks(path, notices), start=1):
        if "event" in record:
            if record.get("event") == "exited":
                exit_note = str(record.get("why") or "the process exited")[:500]
            continue
        if len(views) >= MAX_SAMPLES:
            notices.append(f"more than {MAX_SAMPLES:,} samples: the rest is not read")
            break
        try:
            views.append(from_plain(LiveView, record))
        except (PlainError, TypeError, ValueError, KeyError, RecursionError) as exc:
            notices.append(f"tick {number}: unreadable ({str(exc)[:200]}) (skipped)")
    if not views:
        detail = f" ({notices[0]})" if notices else ""
        raise RecordingError(f"{path}: no usable samples: not an infermon recording?{detail}")
    return Recording(path=str(path), views=tuple(views), notices=tuple(notices), exit_note=exit_note)


# ---------------------------------------------------------------- summaries for replay --once and diff


def _stats(values: list[float]) -> dict:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "median": None, "max": None}
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "max": max(values)}


def _runs(views: tuple[LiveView, ...]) -> list[LiveView]:
    """The last view of each run in the file (a run's summary restarts when another run appends)."""
    ends = []
    for index, view in enumerate(views):
        following = views[index + 1] if index + 1 < len(views) else None
        if following is None or following.summary is None or view.summary is None or \
                following.summary.samples <= view.summary.samples:
            ends.append(view)
    return ends


def summarize(recording: Recording) -> dict:
    """The figures ``replay --once`` and ``diff`` report for one recording."""
    views = recording.views
    busy = [v for v in views if v.verdict.phase not in ("idle", "unknown")]

    def values(name: str, among=busy) -> list[float]:
        return [getattr(v.figures, name).value for v in among if getattr(v.figures, name).value is not None]

    runs = [v.summary for v in _runs(views) if v.summary is not None]
    generated = [s.generation_tokens for s in runs if s.generation_tokens is not None and s.generation_tokens >= 0]
    prompt = [s.prompt_tokens for s in runs if s.prompt_tokens is not None and s.prompt_tokens >= 0]
    span = sum(max(0.0, s.span_s) for s in runs)
    first, last = views[0], views[-1]
    bounds = [v.verdict.bound for v in busy if v.verdict.bound]
    models = sorted({v.model.name for v in views if v.model is not None})
    engines = sorted({v.engine.kind for v in views if v.engine is not None})
    headroom = values("kv_headroom_tokens", views)
    return {
        "file": recording.path,
        "samples": len(views),
        "skipped_lines": len(recording.notices),
        "runs": len(runs),
        "span_s": span,
        "start_time": first.time,
        "pid": first.tree.root_pid if first.tree else None,
        "engine": engines[0] if len(engines) == 1 else (", ".join(engines) or None),
        "model": last.model.name if last.model else None,
        "models": models,
        "engines": engines,
        "hardware": last.hardware.name if last.hardware else None,
        "busy_samples": len(busy),
        "generation_tokens": sum(generated) if generated else None,
        "prompt_tokens": sum(prompt) if prompt else None,
        "generation_tokens_per_s": _stats(values("generation_tokens_per_s")),
        "prompt_tokens_per_s": _stats(values("prompt_tokens_per_s")),
        "batch": _stats(values("batch")),
        "mbu": _stats(values("mbu")),
        "mfu": _stats(values("mfu")),
        "kv_usage": _stats(values("kv_usage", views)),
        "kv_headroom_tokens_min": min(headroom) if headroom else None,
        "memory_bound_share": bounds.count("memory") / len(bounds) if bounds else None,
        "exit": recording.exit_note,
    }
