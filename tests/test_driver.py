"""The dashboard's input thread sleeps until a key comes (tui/driver.py), and keys still work."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from infermon.tui.driver import QuietLinuxDriver, driver_class, parser_timeout

SHOW = Path(__file__).parent / "show_dashboard.py"


def test_the_select_timeout_follows_the_key_parsers_deadline():
    assert parser_timeout(SimpleNamespace(_timeout_time=None), now=10.0) is None  # nothing pending: sleep
    assert parser_timeout(SimpleNamespace(_timeout_time=10.25), now=10.0) == pytest.approx(0.25)
    assert parser_timeout(SimpleNamespace(_timeout_time=9.0), now=10.0) == 0.0  # overdue: tick at once
    assert parser_timeout(object(), now=10.0) == 0.1  # a parser that does not say: Textual's own polling


def test_the_app_runs_the_quiet_driver_where_textual_would_run_its_linux_driver():
    from textual.drivers.linux_driver import LinuxDriver
    from textual.drivers.headless_driver import HeadlessDriver

    assert driver_class(LinuxDriver) is QuietLinuxDriver
    assert driver_class(HeadlessDriver) is HeadlessDriver


def _voluntary_switches(pid: int) -> dict[int, int]:
    counts = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as status:
                for line in status:
                    if line.startswith("voluntary_ctxt_switches:"):
                        counts[int(tid)] = int(line.split()[1])
        except OSError:  # the thread ended meanwhile
            pass
    return counts


def _read_for(fd: int, seconds: float) -> bytes:
    """What the dashboard writes to its terminal over ``seconds`` (read, so that it never blocks)."""
    out, end = b"", time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:  # the other side closed
                break
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the quiet driver replaces Textual's Linux driver")
def test_on_a_real_terminal_the_input_thread_sleeps_while_idle_and_keys_still_work():
    """At 1 Hz the other threads wake every second; the input thread does not wake at all while
    no key comes (Textual's own wakes ten times a second). Then `q` quits at once."""
    main, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color"}
    process = subprocess.Popen([sys.executable, str(SHOW), "0.5"], stdin=secondary, stdout=secondary,
                               stderr=secondary, env=env, start_new_session=True)
    os.close(secondary)
    try:
        shown = _read_for(main, 6.0)
        assert b"Throughput" in shown, shown[-500:]
        before = _voluntary_switches(process.pid)
        _read_for(main, 3.0)
        after = _voluntary_switches(process.pid)
        woke = {tid: after[tid] - before[tid] for tid in before if tid in after}
        assert len(woke) >= 3, woke  # the event loop, the writer, the sampler, the input thread
        assert min(woke.values()) == 0, f"every thread woke while idle: {woke}"
        assert max(woke.values()) > 0, woke  # the dashboard itself kept drawing
        os.write(main, b"q")
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            _read_for(main, 0.2)
        assert process.returncode == 0, process.returncode
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)
