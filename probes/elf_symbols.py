"""Addresses of exported functions in another process, from its ELF files and its memory map.

attach has gdb call three functions in the target (libc's ``mmap``, and CPython's
``Py_AddPendingCall`` and ``PyRun_SimpleString``). gdb stops the whole process while it works, and
reading libc's and libpython's symbol tables once attached kept a vLLM worker stopped for 0.4 s on
a quiet host and for several seconds on a busy one (gdb waits for the CPU like anyone). The
addresses are found here instead, before gdb attaches: each function's value in its file's dynamic
symbol table (``.dynsym``, what the dynamic linker itself reads), plus the address the file is
mapped at in the target (``/proc/PID/maps``). gdb then calls the addresses and reads no symbols.

Only the dynamic symbol table and its string table are read (64-bit little-endian ELF); anything
else (a 32-bit or big-endian file, a stripped or unreadable one) gives no address, and attach falls
back to gdb's own symbol lookup.
"""

from __future__ import annotations

import os
import re
import stat
import struct

_SHT_DYNSYM = 11
_PT_LOAD = 1
_MAX_TABLE_BYTES = 64 * 1024 * 1024
_MAX_MAPS_BYTES = 16 * 1024 * 1024


def dynamic_symbols(path: str, wanted: frozenset[str]) -> tuple[dict[str, int], int] | None:
    """(name → value in the file of each ``wanted`` symbol defined in ``.dynsym``, the lowest
    ``PT_LOAD`` virtual address), or None where the file is not a readable 64-bit little-endian ELF."""
    try:
        # The path comes from the target's map and may have been swapped since for something that
        # is not a file (a FIFO would block the open forever): regular files only, opened without
        # waiting.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            header = handle.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return None
            (phoff, shoff) = struct.unpack_from("<QQ", header, 32)
            phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", header, 54)
            if phentsize < 56 or shentsize < 64 or phnum > 4096 or shnum > 65535:
                return None
            handle.seek(phoff)
            programs = handle.read(phentsize * phnum)
            loads = [struct.unpack_from("<IIQQ", programs, index * phentsize)
                     for index in range(len(programs) // phentsize)]
            lowest = min((vaddr for kind, _flags, _offset, vaddr in loads if kind == _PT_LOAD), default=None)
            if lowest is None:
                return None
            handle.seek(shoff)
            sections = handle.read(shentsize * shnum)
            found: dict[str, int] = {}
            for index in range(len(sections) // shentsize):
                kind = struct.unpack_from("<I", sections, index * shentsize + 4)[0]
                if kind != _SHT_DYNSYM:
                    continue
                offset, size, link, _info, _align, entsize = struct.unpack_from("<QQIIQQ", sections, index * shentsize + 24)
                if link >= len(sections) // shentsize or entsize < 24 or size > _MAX_TABLE_BYTES:
                    return None
                str_offset, str_size = struct.unpack_from("<QQ", sections, link * shentsize + 24)
                if str_size > _MAX_TABLE_BYTES:
                    return None
                handle.seek(offset)
                table = handle.read(size)
                handle.seek(str_offset)
                names = handle.read(str_size)
                for start in range(0, len(table) - entsize + 1, entsize):
                    name_at, _st_info, _other, shndx, value = struct.unpack_from("<IBBHQ", table, start)
                    if not value or not shndx:
                        continue  # undefined here (imported from another library)
                    end = names.find(b"\0", name_at)
                    name = names[name_at:end if end >= 0 else None].decode("ascii", "replace")
                    if name in wanted:
                        found.setdefault(name, value)
            return found, lowest
    except (OSError, struct.error, ValueError):
        return None


def mapped_files(pid: int) -> dict[str, int]:
    """Each file mapped in ``pid`` → the lowest address it is mapped at (``/proc/PID/maps``)."""
    from infermon.probes.bounded import read_proc

    lowest: dict[str, int] = {}
    maps = read_proc(f"/proc/{pid}/maps", _MAX_MAPS_BYTES).decode("utf-8", "replace")
    for line in maps.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/"):
            start = int(parts[0].partition("-")[0], 16)
            path = parts[5].strip()
            if path not in lowest or start < lowest[path]:
                lowest[path] = start
    return lowest


def resolve(pid: int, libraries: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Addresses in ``pid`` of functions by the pattern of the file that exports them
    (``{r"/libc[.]so": ("mmap",)}``); the executable is tried too when no file matches. Functions
    not found are left out."""
    try:
        files = mapped_files(pid)
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return {}
    root = f"/proc/{pid}/root"  # the target's own files, also inside a container
    addresses: dict[str, int] = {}
    for pattern, names in libraries.items():
        candidates = [path for path in files if re.search(pattern, path)] or [exe]
        for path in candidates:
            if path not in files:
                continue
            local = root + path if os.path.exists(root + path) else path
            read = dynamic_symbols(local, frozenset(names))
            if read is None:
                continue
            symbols, lowest_vaddr = read
            # A shared object (and a PIE) is loaded at some base: its lowest segment starts at the
            # lowest address mapped from the file; a fixed executable's bias is 0.
            bias = files[path] - (lowest_vaddr & ~0xFFF)
            for name in names:
                if name in symbols and name not in addresses:
                    addresses[name] = bias + symbols[name]
    return addresses
