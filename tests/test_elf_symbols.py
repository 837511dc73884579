"""Addresses of the functions attach calls, found from the target's ELF files and memory map,
are the addresses the target's own dynamic linker resolved."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys

import pytest

from infermon.probes.elf_symbols import dynamic_symbols, resolve
from infermon.probes.inject import CALLED, gdb_script

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF and /proc/PID/maps")

REPORT = ("import ctypes, json; f = lambda x: ctypes.cast(x, ctypes.c_void_p).value; "
          "print(json.dumps({'mmap': f(ctypes.CDLL(None).mmap), 'Py_AddPendingCall': f(ctypes.pythonapi.Py_AddPendingCall), "
          "'PyRun_SimpleString': f(ctypes.pythonapi.PyRun_SimpleString)}), flush=True); import time; time.sleep(30)")


def _what_the_process_resolved(python: str) -> tuple[subprocess.Popen, dict[str, int]]:
    import json

    child = subprocess.Popen([python, "-c", REPORT], stdout=subprocess.PIPE, text=True)
    return child, json.loads(child.stdout.readline())


@pytest.mark.parametrize("python", sorted({sys.executable, *(p for p in (shutil.which("python3"), "/usr/bin/python3")
                                                            if p and os.path.exists(p))}))
def test_addresses_match_what_the_target_resolved(python):
    """Another process (a shared libpython, or a statically linked one where the executable exports
    the C API): the same three addresses its own ctypes sees."""
    child, expected = _what_the_process_resolved(python)
    try:
        assert resolve(child.pid, CALLED) == expected
    finally:
        child.kill()
        child.wait()


def test_gdb_calls_the_addresses_and_reads_no_symbols_when_all_are_known():
    addresses = {"mmap": 0x7F0000001000, "Py_AddPendingCall": 0x7F0000002000, "PyRun_SimpleString": 0x7F0000003000}
    script = gdb_script("print(1)", addresses)
    assert "sharedlibrary" not in script
    assert "0x7f0000001000)(0, 4096" in script and "0x7f0000002000)((int (*)(void*))0x7f0000003000" in script
    partial = gdb_script("print(1)", {"mmap": 0x7F0000001000})
    assert "sharedlibrary" in partial and ")Py_AddPendingCall)" in partial  # one missing: gdb finds them all


def test_files_that_are_not_64_bit_little_endian_elf_give_nothing(tmp_path):
    for name, data in (("empty", b""), ("text", b"#!/bin/sh\necho hi\n"), ("elf32", b"\x7fELF\x01\x01" + b"\0" * 58),
                       ("truncated", b"\x7fELF\x02\x01" + b"\0" * 10)):
        path = tmp_path / name
        path.write_bytes(data)
        assert dynamic_symbols(str(path), frozenset({"mmap"})) is None, name
    assert dynamic_symbols(str(tmp_path / "missing"), frozenset({"mmap"})) is None
    fifo = tmp_path / "libc.so.6"  # a mapped library swapped for a FIFO: no open that waits forever
    os.mkfifo(fifo)
    assert dynamic_symbols(str(fifo), frozenset({"mmap"})) is None
    assert dynamic_symbols(str(tmp_path), frozenset({"mmap"})) is None  # a directory
    assert resolve(2**22 + 12345, CALLED) == {}  # no such process


def test_own_process():
    own = resolve(os.getpid(), CALLED)
    assert own["PyRun_SimpleString"] == ctypes.cast(ctypes.pythonapi.PyRun_SimpleString, ctypes.c_void_p).value
