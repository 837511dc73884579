"""Textual's Linux driver with an input thread that sleeps until there is something to read.

Textual's own input thread wakes ten times a second (``select`` with a 0.1 s timeout) whether or
not a key was pressed: about 1.5 ms of CPU a second on the dashboard, a sixth of its whole budget
at 80×24. Here the thread blocks until the terminal has input or the driver stops (a pipe wakes
it), and sets a timeout only while the key parser waits for the rest of an escape sequence (a lone
Esc is a key once that wait is over).

What it writes goes through :class:`infermon.tui.sgr.SgrCoalescer` first: the same screen, with
style changes sent as differences (about half the bytes on an SSH link).

This leans on two details of Textual's key parser (``textual._xterm_parser``, and its pending
deadline ``_timeout_time``). Where a Textual release lacks them, the app keeps Textual's own driver
(:func:`driver_class`), or this thread polls as Textual's does.
"""

from __future__ import annotations

import os
import selectors
import threading
from codecs import getincrementaldecoder

from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

from infermon.tui.sgr import SgrCoalescer

_POLL_S = 0.1  # Textual's own interval, kept where the parser's deadline cannot be read
_UNKNOWN = object()


class _WakingEvent(threading.Event):
    """The driver's exit event: setting it also wakes the input thread's ``select`` (through a
    pipe this event owns)."""

    def __init__(self) -> None:
        super().__init__()
        self.read_fd, self._write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._lock = threading.Lock()
        self._closed = False

    def set(self) -> None:
        super().set()
        with self._lock:  # never a write to a closed descriptor: its number may be another file's now
            if self._closed:
                return
            try:
                os.write(self._write_fd, b"x")
            except BlockingIOError:  # the pipe is full: the thread has wake-ups pending anyway
                pass

    def drain(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                while os.read(self.read_fd, 512):
                    pass
            except BlockingIOError:  # drained: nothing more to read
                pass

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.read_fd)
                os.close(self._write_fd)


def parser_timeout(parser: object, now: float) -> float | None:
    """Seconds ``select`` may sleep: None (until input) unless the parser has a pending deadline
    (the rest of an escape sequence), then the time left to it; Textual's 0.1 s where the parser
    does not say."""
    due = getattr(parser, "_timeout_time", _UNKNOWN)
    if due is _UNKNOWN:
        return _POLL_S
    if due is None:
        return None
    return max(0.0, due - now)


class QuietLinuxDriver(LinuxDriver):
    """:class:`LinuxDriver` whose input thread wakes only for input, a pending key, or exit, and
    whose output states each style change as a difference."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.exit_event = self._wake = _WakingEvent()
        self._coalescer = SgrCoalescer()
        self._write_lock = threading.Lock()  # the coalescer remembers the style between writes

    def write(self, data: str) -> None:
        """Write ``data`` with its style changes coalesced (:mod:`infermon.tui.sgr`): the same
        screen in about half the bytes."""
        with self._write_lock:
            super().write(self._coalescer.feed(data))

    def run_input_thread(self) -> None:
        """Read the terminal and post its events until the driver stops."""
        fileno = self.fileno
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode
        selector = selectors.SelectSelector()  # as Textual's: select() works on every tty
        selector.register(fileno, selectors.EVENT_READ, "tty")
        selector.register(self._wake.read_fd, selectors.EVENT_READ, "wake")

        def post(events) -> None:
            for event in events:
                self.process_message(event)

        try:
            while not self.exit_event.is_set():
                for key, _mask in selector.select(parser_timeout(parser, get_time())):
                    if key.data == "wake":
                        self._wake.drain()
                        continue
                    raw = os.read(fileno, 4096)
                    if not raw:
                        # End of input (stdin is not a terminal): stop watching it, or select
                        # would report it readable forever and this thread would spin.
                        selector.unregister(fileno)
                        continue
                    post(parser.feed(decode(raw)))
                post(parser.tick())
            self._wake.drain()
            post(parser.tick())
        finally:
            selector.close()
            try:
                for _event in parser.feed(""):
                    pass
            except Exception:  # an unfinished sequence at exit: nothing to deliver
                pass

    def close(self) -> None:
        super().close()
        self._wake.close()


def driver_class(stock: type) -> type:
    """The driver the dashboard runs with: :class:`QuietLinuxDriver` where Textual would use its
    Linux driver, else Textual's choice (Windows, the web, a driver named in the environment)."""
    return QuietLinuxDriver if stock is LinuxDriver else stock
