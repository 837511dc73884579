"""One bounded HTTP GET, for scraping an engine's ``/metrics`` and friends.

``fetch`` never raises and never takes longer than ``timeout_s`` overall:
connecting, sending, the status line, the headers and every body read share
one deadline, and each socket read waits at most for what is left of it, so
a server that trickles one byte at a time cannot hold us past the timeout.
The body is read in chunks of at most 64 KiB and cut off at ``max_bytes``.

Other rules, because we watch someone else's server and must stay harmless:

- no proxies: ``*_proxy`` in the environment is ignored (the engine runs on this
  machine; an ``http_proxy`` must not route ``127.0.0.1`` through a corporate proxy);
- redirects are followed only to the same scheme, host and port, at most 3;
- an engine probe keeps its connection open between ticks (:class:`Connections`), so a tick's
  scrape is one request on an open socket rather than a new connection each time;
- we ask for the classic text format (``text/plain; version=0.0.4``) and no
  compression, so prometheus_client servers never answer in OpenMetrics.

Every failure becomes ``ok=False`` plus a short human reason in ``why``.
"""

from __future__ import annotations

import functools
import http.client
import io
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 8_000_000
_CHUNK_BYTES = 64 * 1024
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux
_MAX_REDIRECTS = 3
_HEADERS = {
    # prometheus_client servers answer OpenMetrics to clients that accept it, and the parser
    # we use reads only the classic format: ask for that one.
    "Accept": "text/plain;version=0.0.4;q=1.0, */*;q=0.1",
    "Accept-Encoding": "identity",
    "User-Agent": "infermon",
}


@dataclass(frozen=True)
class FetchResult:
    """What one GET gave. ``status`` is the HTTP status when one arrived; ``body`` is set
    only when ``ok``; ``elapsed_s`` is wall time from start to the last byte or failure;
    ``answered_s`` from start to the response's headers (a server writes its counters before it
    answers, so reading the body adds nothing to their age)."""

    ok: bool
    status: int | None
    body: bytes | None
    content_type: str | None
    elapsed_s: float
    why: str | None = None
    answered_s: float | None = None


def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds >= 0.1 else f"{seconds * 1000:.0f} ms"


def _fmt_bytes(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000} MB"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} MB"
    if n >= 1_000:
        return f"{n / 1e3:.0f} kB"
    return f"{n} B"


class _DeadlineRaw(io.RawIOBase):
    """Reads the socket's own file object, but each read waits at most until the deadline."""

    def __init__(self, socket_file, sock: socket.socket, deadline: float, timeout_s: float) -> None:
        super().__init__()
        self._file = socket_file  # holds a reference on the socket, so it stays open while we read
        self._sock = sock
        self._deadline = deadline
        self._timeout_s = timeout_s

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {_fmt_seconds(self._timeout_s)}")
        self._sock.settimeout(remaining)
        if _QUICKACK is not None:
            # Acknowledge at once: a server that writes its headers and its body in two sends
            # without TCP_NODELAY holds the body until our ACK, which Linux delays by up to 40 ms
            # on a kept-alive connection (not on a new one). Not sticky, so before every read.
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass  # a socket that refuses it reads as before, only slower with such servers
        return self._file.readinto(buffer)

    def close(self) -> None:
        self._file.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """``HTTPResponse`` whose reads go through ``_DeadlineRaw``, so the status line and
    the headers are bounded by the deadline as well as the body."""

    def __init__(self, sock, *args, deadline: float, timeout_s: float, **kwargs) -> None:
        super().__init__(sock, *args, **kwargs)
        socket_file = self.fp.detach()  # detach, not close: closing would drop the socket
        self.fp = io.BufferedReader(_DeadlineRaw(socket_file, sock, deadline, timeout_s), _CHUNK_BYTES)


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # loads the CA store: ~20 ms, so once per process


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Failures of a kept-alive connection the server closed while it sat idle: the request is sent
# again once, on a new connection (never after any of the answer arrived).
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class _ForeignRedirect(Exception):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def _reason_for(exc: BaseException, timeout_s: float) -> str:
    """A short human reason for a failed request."""
    if isinstance(exc, _ForeignRedirect):
        return f"redirected to another host ({exc.target}); not followed"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"timed out after {_fmt_seconds(timeout_s)}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed without a response"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "connection reset by the server"
    if isinstance(exc, http.client.IncompleteRead):
        return "response cut short (connection closed mid-body)"
    if isinstance(exc, http.client.BadStatusLine):
        return "not an HTTP server (bad status line)"
    if isinstance(exc, http.client.HTTPException):
        return f"malformed HTTP response ({type(exc).__name__})"
    if isinstance(exc, socket.gaierror):
        return "cannot resolve host"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, ValueError):
        return f"bad URL: {exc}"
    return f"{type(exc).__name__}: {exc}"


def sniff_not_prometheus(body: bytes, content_type: str | None) -> str | None:
    """Why a 200 body is clearly not Prometheus text (HTML, JSON), or None if it may be."""
    head = body[:512].lstrip().lower()
    ctype = (content_type or "").lower()
    if "html" in ctype or head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<")):
        return "not Prometheus text (looks like HTML)"
    if "json" in ctype or head.startswith((b"{", b"[")):
        return "not Prometheus text (looks like JSON)"
    return None


def sniff_not_json(body: bytes, content_type: str | None) -> str | None:
    """Why a 200 body is clearly not JSON (HTML, plain text), or None if it may be."""
    head = body[:512].lstrip().lower()
    if head.startswith((b"{", b"[")):
        return None
    if "html" in (content_type or "").lower() or head.startswith(b"<"):
        return "not JSON (looks like HTML)"
    return "not JSON"


def _read_body(resp, deadline: float, max_bytes: int) -> tuple[bytes | None, str | None]:
    declared = resp.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        return None, f"response larger than {_fmt_bytes(max_bytes)} ({_fmt_bytes(int(declared))} declared)"
    chunks: list[bytes] = []
    size = 0
    while True:
        # read1 returns after at most one socket read, so the deadline is checked between reads
        chunk = resp.read1(_CHUNK_BYTES)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            return None, f"response larger than {_fmt_bytes(max_bytes)}"
        chunks.append(chunk)
        if time.monotonic() >= deadline:
            raise TimeoutError("deadline")
    left = getattr(resp, "length", None)  # bytes still owed under Content-Length
    if left:
        return None, f"response cut short: got {_fmt_bytes(size)}, {_fmt_bytes(size + left)} announced"
    return b"".join(chunks), None


class Connections:
    """Keep-alive HTTP(S) connections, one per origin (scheme, host, port), reused from one GET to
    the next: a monitor asks the same engine for the same pages every tick, and a new TCP (or TLS)
    connection for each costs more than the request (about 1.3 ms of CPU against 0.2 ms here).

    For one thread at a time (an engine probe's). A connection is kept only after an answer was
    read to its end; any failure, a redirect or an error status closes it."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str, int], http.client.HTTPConnection] = {}

    def close(self) -> None:
        # May be called from another thread while a GET is under way (the app closing): take the
        # connections in one step, then close them; that GET fails with a reason, never raises.
        connections, self._open = list(self._open.values()), {}
        for connection in connections:
            try:
                connection.close()
            except OSError:
                pass  # already broken: nothing left to release

    def _drop(self, origin: tuple[str, str, int]) -> None:
        connection = self._open.pop(origin, None)
        if connection is not None:
            connection.close()

    def _send(self, origin: tuple[str, str, int], target: str, deadline: float,
              timeout_s: float) -> http.client.HTTPResponse:
        """The response's status and headers for GET ``target`` (its body still to read)."""
        connection = self._open.get(origin)
        for attempt in range(2):
            reused = connection is not None
            if connection is None:
                scheme, host, port = origin
                if scheme == "https":
                    connection = http.client.HTTPSConnection(host, port, context=_tls_context())
                else:
                    connection = http.client.HTTPConnection(host, port)
                self._open[origin] = connection
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {_fmt_seconds(timeout_s)}")
            connection.timeout = remaining  # connect() uses it
            if connection.sock is not None:
                connection.sock.settimeout(remaining)
            connection.response_class = functools.partial(_DeadlineResponse, deadline=deadline, timeout_s=timeout_s)
            try:
                connection.request("GET", target, headers=_HEADERS)
                return connection.getresponse()
            except _STALE:
                self._drop(origin)
                if not reused or attempt:
                    raise
                connection = None  # the server closed it while idle: once more, on a new one
            except BaseException:
                self._drop(origin)
                raise
        raise AssertionError("unreachable")

    def get(self, url: str, timeout_s: float = 1.0, max_bytes: int = DEFAULT_MAX_BYTES,
            expect: str | None = None) -> FetchResult:
        """GET ``url`` within ``timeout_s`` seconds overall, reading at most ``max_bytes`` (see :func:`fetch`)."""
        start = time.monotonic()
        deadline = start + max(timeout_s, 0.001)

        def failed(why: str, status: int | None = None, content_type: str | None = None) -> FetchResult:
            return FetchResult(False, status, None, content_type, time.monotonic() - start, why)

        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            return failed(f"bad URL: {exc}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return failed(f"bad URL {url!r}: need http://host:port/path")
        origin = (parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))
        current = url
        status = None
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urllib.parse.urlsplit(current)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            resp = None
            complete = False
            try:
                resp = self._send(origin, target, deadline, timeout_s)
                answered = time.monotonic() - start
                status = resp.status
                content_type = resp.headers.get("Content-Type")
                location = resp.headers.get("Location")
                if status in _REDIRECTS and location:
                    following = urllib.parse.urljoin(current, location)
                    new = urllib.parse.urlsplit(following)
                    new_origin = (new.scheme, new.hostname, new.port or (443 if new.scheme == "https" else 80))
                    if new_origin != origin:
                        raise _ForeignRedirect(following)
                    current = following
                    continue
                if not 200 <= status < 300:
                    return failed(f"HTTP {status}", status, content_type)
                body, why = _read_body(resp, deadline, max_bytes)
                if why:
                    return failed(why, status, content_type)
                complete = True
            except Exception as exc:  # a probe never raises: every failure becomes a reason
                return failed(_reason_for(exc, timeout_s), getattr(resp, "status", None))
            finally:
                if resp is not None:
                    resp.close()
                if not complete:
                    self._drop(origin)  # what is left unread would be the next answer's start
            sniffers = {"prometheus": sniff_not_prometheus, "json": sniff_not_json}
            if expect in sniffers:
                why = sniffers[expect](body, content_type)
                if why:
                    return failed(why, status, content_type)
            return FetchResult(True, status, body, content_type, time.monotonic() - start, None, answered)
        return failed(f"HTTP {status}: more than {_MAX_REDIRECTS} redirects", status)


def fetch(url: str, timeout_s: float = 1.0, max_bytes: int = DEFAULT_MAX_BYTES,
          expect: str | None = None) -> FetchResult:
    """GET ``url`` within ``timeout_s`` seconds overall, reading at most ``max_bytes``, on a
    connection of its own (:class:`Connections` keeps them between GETs).

    ``expect`` = ``"prometheus"`` or ``"json"`` also turns a 200 whose body is plainly
    something else (an HTML page, say) into a failure with that reason.
    """
    connections = Connections()
    try:
        return connections.get(url, timeout_s, max_bytes, expect)
    finally:
        connections.close()
