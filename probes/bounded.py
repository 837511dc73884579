"""Bounded reads of untrusted files and JSON: at most so many bytes, so deep, and only finite numbers.

Everything infermon reads from another process (an agent's record, /proc, an endpoint's body) or
from a file someone else may have written is read through these, so that a gigabyte, a FIFO, a
symlink to /dev/zero, ``Infinity`` or a document nested 100,000 deep is one clear reason instead of
a hang, a traceback or a figure that poisons every sum after it.
"""

from __future__ import annotations

import json
import math
import os
import stat

# Counters, byte counts and sizes that fit in 63 bits: anything larger is not a measurement.
MAX_INTEGER_DIGITS = 19


class BoundedReadError(ValueError):
    """The file or document is outside the bounds; the message says which, in a few words."""


def read_regular(path: str, max_bytes: int, dir_fd: int | None = None, uid: int | None = None) -> bytes:
    """The contents of the regular file ``path`` (relative to ``dir_fd`` if given), at most
    ``max_bytes``. A symlink, a FIFO, a device or a directory is refused before it is opened for
    reading (so nothing blocks and no device is touched), a file owned by someone other than
    ``uid`` (when given) is refused, and a larger file is refused rather than cut."""
    info = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    _check(info, max_bytes, uid)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise BoundedReadError("replaced while being read")
        _check(opened, max_bytes, uid)
        data = _read_up_to(fd, max_bytes + 1, 64 * 1024)  # one byte more tells a file that grew
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise BoundedReadError(f"larger than {max_bytes:,} bytes")
    return data


def _read_up_to(fd: int, limit: int, chunk_bytes: int) -> bytes:
    """At most ``limit`` bytes from ``fd``, in chunks, until end of file."""
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(chunk_bytes, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _check(info: os.stat_result, max_bytes: int, uid: int | None) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise BoundedReadError("a symlink")
    if not stat.S_ISREG(info.st_mode):
        raise BoundedReadError("not a regular file")
    if uid is not None and info.st_uid != uid:
        raise BoundedReadError("someone else's file")
    if info.st_size > max_bytes:
        raise BoundedReadError(f"larger than {max_bytes:,} bytes")


def read_proc(path: str, max_bytes: int) -> bytes:
    """Up to ``max_bytes`` of a /proc file (their sizes read as 0, so they are read in chunks)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        return _read_up_to(fd, max_bytes, 256 * 1024)
    finally:
        os.close(fd)


def nesting_depth(value) -> int:
    """How deep lists and dicts nest in ``value`` (a scalar is 0), walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return deepest


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BoundedReadError(f"number out of range ({text[:20]})")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise BoundedReadError(f"integer with {len(text.lstrip('-'))} digits")
    return int(text)


def _no_constant(name: str):
    raise BoundedReadError(f"non-finite number ({name})")


def _nan_float(text: str) -> float:
    return float(text)  # 1e400 overflows to inf: a field checker says which figure was bad


def _nan_constant(name: str) -> float:
    return math.nan


def loads(data: bytes | str, max_depth: int = 32, nonfinite_as_nan: bool = False):
    """JSON ``data`` as Python objects, refusing nesting deeper than ``max_depth``, ``NaN``,
    ``Infinity``, numbers that overflow a double (``1e400``) and integers over 19 digits. Raises
    :class:`BoundedReadError` (a ValueError) or ``ValueError`` for malformed JSON.

    ``nonfinite_as_nan``: keep such numbers as non-finite floats instead, for a reader that checks
    every field it uses and drops only the bad one (an agent record: one bad figure must not cost
    the counters beside it).

    The C parser itself stops at Python's recursion limit (a RecursionError, turned into the same
    one line); below that, the parsed value is measured."""
    try:
        value = json.loads(data, parse_constant=_nan_constant if nonfinite_as_nan else _no_constant,
                           parse_float=_nan_float if nonfinite_as_nan else _finite_float, parse_int=_bounded_int)
    except RecursionError:
        raise BoundedReadError(f"nested too deep (at most {max_depth})") from None
    opened = data.count(b"[" if isinstance(data, bytes) else "[") + data.count(b"{" if isinstance(data, bytes) else "{")
    if opened > max_depth:  # otherwise it cannot nest deeper than max_depth: no need to look
        depth = nesting_depth(value)
        if depth > max_depth:
            raise BoundedReadError(f"nested {depth} deep (at most {max_depth})")
    return value
