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

The response is read here rather than by ``http.client``: a GET is one cached request written on
an open socket, and the answer's status line, headers and body (by Content-Length, chunked, or
until the server closes) are cut out of what arrives. That is a third of ``http.client``'s CPU
for the same answer (``http.client`` builds the request header by header and reads every header
through the ``email`` package), and a monitor pays it twice a second. Its limits are
``http.client``'s: 64 KiB of headers, 100 of them.
"""

from __future__ import annotations

import functools
import http.client
import socket
import ssl
import time
import urllib.parse
from typing import NamedTuple
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
    timed_out: bool = False  # no (whole) answer within the time given: slow, not absent


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


_MAX_HEAD_BYTES = 64 * 1024  # status line and headers together (http.client allows 64 KiB a line)
_MAX_HEADERS = 100  # as http.client


class _Wire:
    """One open connection: its socket and what has arrived on it but was not consumed yet.

    Every read waits at most until the request's deadline, so a server that trickles one byte
    at a time cannot hold a tick past its timeout."""

    def __init__(self, origin: tuple[str, str, int], deadline: float, timeout_s: float) -> None:
        scheme, host, port = origin
        self.timeout_s = timeout_s
        sock = socket.create_connection((host, port), timeout=self._left(deadline))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = _tls_context().wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.buffer = bytearray()
        default = 443 if scheme == "https" else 80
        name = f"[{host}]" if ":" in host else host
        self.host_header = name if port == default else f"{name}:{port}"
        self._requests: dict[str, bytes] = {}

    def _left(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {_fmt_seconds(self.timeout_s)}")
        return remaining

    def close(self) -> None:
        self.sock.close()

    def send_get(self, target: str, deadline: float) -> None:
        request = self._requests.get(target)
        if request is None:
            lines = [f"GET {target} HTTP/1.1", f"Host: {self.host_header}",
                     *(f"{name}: {value}" for name, value in _HEADERS.items())]
            request = self._requests[target] = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.sock.settimeout(self._left(deadline))
        self.sock.sendall(request)

    def receive(self, deadline: float) -> bytes:
        """What the next socket read gives (b"" once the server has closed)."""
        self.sock.settimeout(self._left(deadline))
        if _QUICKACK is not None:
            # Acknowledge at once: a server that writes its headers and its body in two sends
            # without TCP_NODELAY holds the body until our ACK, which Linux delays by up to 40 ms
            # on a kept-alive connection (not on a new one). Not sticky, so before every read.
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass  # a socket that refuses it reads as before, only slower with such servers
        return self.sock.recv(_CHUNK_BYTES)

    def fill(self, deadline: float) -> bool:
        """Read once more into the buffer; False when the server has closed."""
        data = self.receive(deadline)
        self.buffer += data
        return bool(data)

    def take(self, count: int) -> bytes:
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def line(self, deadline: float, limit: int) -> bytes:
        """The next CRLF-ended line, without its end."""
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                return self.take(end + 2)[:-2]
            if len(self.buffer) > limit:
                raise http.client.LineTooLong("line")
            if not self.fill(deadline):
                raise http.client.IncompleteRead(bytes(self.buffer))


class _Head:
    """A response's status line and headers (names in lower case); its body still on the wire."""

    def __init__(self, status: int, version: str, headers: dict[str, str]) -> None:
        self.status = status
        self.version = version
        self.headers = headers


def _read_head(wire: _Wire, deadline: float) -> _Head:
    """The status line and headers of the next response (interim 1xx answers skipped)."""
    while True:
        while b"\r\n\r\n" not in wire.buffer:
            if len(wire.buffer) > _MAX_HEAD_BYTES:
                raise http.client.LineTooLong("header block")
            if not wire.fill(deadline):
                if not wire.buffer:
                    raise http.client.RemoteDisconnected("closed without a response")
                raise _CutHead()
        end = wire.buffer.index(b"\r\n\r\n")
        lines = wire.take(end + 4)[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not (parts[1].isdigit() and len(parts[1]) == 3):
            raise http.client.BadStatusLine(lines[0][:80])
        status = int(parts[1])
        if len(lines) - 1 > _MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
        headers: dict[str, str] = {}
        last = None
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and last is not None:  # an obsolete folded continuation
                headers[last] += " " + line.strip()
                continue
            name, colon, value = line.partition(":")
            if not colon:
                continue  # not a header: skipped, as http.client does
            last = name.strip().lower()
            headers[last] = value.strip()
        if 100 <= status < 200 and status != 101:
            continue  # an interim answer: the real one follows
        return _Head(status, parts[0], headers)


def _keeps_alive(head: _Head) -> bool:
    tokens = {token.strip().lower() for token in head.headers.get("connection", "").split(",")}
    if head.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _read_body(wire: _Wire, head: _Head, deadline: float, max_bytes: int) -> tuple[bytes | None, str | None, bool]:
    """(body, why it was refused, whether the connection can carry the next request)."""
    if head.status in (204, 304):
        return b"", None, _keeps_alive(head)
    if "chunked" in head.headers.get("transfer-encoding", "").lower():
        return _read_chunked(wire, deadline, max_bytes) + (_keeps_alive(head),)
    declared = head.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise http.client.HTTPException(f"bad Content-Length {declared[:20]!r}")
        length = int(declared)
        if length > max_bytes:
            return None, f"response larger than {_fmt_bytes(max_bytes)} ({_fmt_bytes(length)} declared)", False
        while len(wire.buffer) < length:
            if not wire.fill(deadline):
                got = len(wire.buffer)
                return None, f"response cut short: got {_fmt_bytes(got)}, {_fmt_bytes(length)} announced", False
        return wire.take(length), None, _keeps_alive(head)
    # No length: the body ends when the server closes the connection.
    while len(wire.buffer) <= max_bytes:
        if not wire.fill(deadline):
            return wire.take(len(wire.buffer)), None, False
    return None, f"response larger than {_fmt_bytes(max_bytes)}", False


def _read_chunked(wire: _Wire, deadline: float, max_bytes: int) -> tuple[bytes | None, str | None]:
    chunks: list[bytes] = []
    size = 0
    while True:
        size_line = wire.line(deadline, 1024).split(b";", 1)[0].strip()
        try:
            length = int(size_line, 16)
        except ValueError:
            length = -1
        if length < 0 or not size_line.isalnum():  # int() also takes "-1", "+a", "a_b"
            raise http.client.HTTPException(f"bad chunk size {size_line[:20]!r}")
        if length == 0:
            while wire.line(deadline, _MAX_HEAD_BYTES):  # trailers, up to the empty line
                pass
            return b"".join(chunks), None
        size += length
        if size > max_bytes:
            return None, f"response larger than {_fmt_bytes(max_bytes)}"
        while len(wire.buffer) < length + 2:
            if not wire.fill(deadline):
                raise http.client.IncompleteRead(bytes(wire.buffer))
        chunks.append(wire.take(length))
        if wire.take(2) != b"\r\n":
            raise http.client.HTTPException("chunk not ended by CRLF")


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # loads the CA store: ~20 ms, so once per process


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _Address(NamedTuple):
    scheme: str
    hostname: str | None
    origin: tuple[str, str | None, int]  # (scheme, host, port): one kept-alive connection each
    target: str  # what the request line asks for: the path and the query


@functools.lru_cache(maxsize=64)
def _address(url: str) -> _Address:
    """``url`` parsed once and kept: a probe asks for the same few URLs every tick, and
    ``urlsplit``'s host and port are parsed again at each use. Raises ValueError for a port that
    is not one, as ``SplitResult.port`` does (a failure is not kept)."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port
    origin = (parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))
    return _Address(parts.scheme, parts.hostname, origin,
                    (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))

# Failures of a kept-alive connection the server closed while it sat idle: the request is sent
# again once, on a new connection (never after any of the answer arrived).
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class _CutHead(Exception):
    """The server closed the connection in the middle of a response's status line or headers."""


class _ForeignRedirect(Exception):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def _reason_for(exc: BaseException, timeout_s: float) -> str:
    """A short human reason for a failed request."""
    if isinstance(exc, _CutHead):
        return "connection closed in the middle of the response's headers"
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


class Connections:
    """Keep-alive HTTP(S) connections, one per origin (scheme, host, port), reused from one GET to
    the next: a monitor asks the same engine for the same pages every tick, and a new TCP (or TLS)
    connection for each costs more than the request (about 1.3 ms of CPU against 0.2 ms here).

    For one thread at a time (an engine probe's). A connection is kept only after an answer was
    read to its end; any failure, a redirect or an error status closes it."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str, int], _Wire] = {}
        # The request already sent on an origin's connection by prime(), its answer not yet read.
        self._sent: dict[tuple[str, str, int], str] = {}

    def close(self) -> None:
        # May be called from another thread while a GET is under way (the app closing): take the
        # connections in one step, then close them; that GET fails with a reason, never raises.
        connections, self._open, self._sent = list(self._open.values()), {}, {}
        for connection in connections:
            try:
                connection.close()
            except OSError:
                pass  # already broken: nothing left to release

    def _drop(self, origin: tuple[str, str, int]) -> None:
        self._sent.pop(origin, None)
        connection = self._open.pop(origin, None)
        if connection is not None:
            connection.close()

    def _send(self, origin: tuple[str, str, int], target: str, deadline: float,
              timeout_s: float) -> tuple[_Wire, _Head]:
        """The connection and the response's status and headers for GET ``target`` (its body
        still to read)."""
        sent = self._sent.pop(origin, None)
        if sent is not None and sent != target:
            self._drop(origin)  # its next bytes answer another request
        wire = self._open.get(origin)
        for attempt in range(2):
            reused = wire is not None
            try:
                if wire is None:
                    wire = self._open[origin] = _Wire(origin, deadline, timeout_s)
                if not (reused and attempt == 0 and sent == target):
                    wire.send_get(target, deadline)
                return wire, _read_head(wire, deadline)
            except _STALE:
                self._drop(origin)
                if not reused or attempt:
                    raise
                wire = None  # the server closed it while idle: once more, on a new one
            except BaseException:
                self._drop(origin)
                raise
        raise AssertionError("unreachable")

    def prime(self, url: str, timeout_s: float = 1.0) -> None:
        """Send GET ``url`` now on the kept-alive connection to its origin, if there is one, so the
        server answers while the caller does other work; the next :meth:`get` of ``url`` reads that
        answer (a monitor's tick reads ``/proc`` meanwhile, and needs no thread to wait on the
        engine). Opens nothing and never raises: anything that goes wrong is left to ``get``."""
        try:
            origin, target = _address(url)[2:]
        except ValueError:
            return
        wire = self._open.get(origin)
        if wire is None or origin in self._sent:
            return
        try:
            wire.send_get(target, time.monotonic() + max(timeout_s, 0.001))
        except Exception:  # a broken connection: get() opens a new one
            self._drop(origin)
            return
        self._sent[origin] = target

    def get(self, url: str, timeout_s: float = 1.0, max_bytes: int = DEFAULT_MAX_BYTES,
            expect: str | None = None) -> FetchResult:
        """GET ``url`` within ``timeout_s`` seconds overall, reading at most ``max_bytes`` (see :func:`fetch`)."""
        start = time.monotonic()
        deadline = start + max(timeout_s, 0.001)

        def failed(why: str, status: int | None = None, content_type: str | None = None,
                   timed_out: bool = False) -> FetchResult:
            return FetchResult(False, status, None, content_type, time.monotonic() - start, why, timed_out=timed_out)

        try:
            address = _address(url)
        except ValueError as exc:
            return failed(f"bad URL: {exc}")
        if address.scheme not in ("http", "https") or not address.hostname:
            return failed(f"bad URL {url!r}: need http://host:port/path")
        origin = address.origin
        current = url
        status = None
        for _ in range(_MAX_REDIRECTS + 1):
            head = None
            kept = False
            try:
                target = _address(current).target  # a redirect's URL: same origin, checked below
                wire, head = self._send(origin, target, deadline, timeout_s)
                answered = time.monotonic() - start
                status = head.status
                content_type = head.headers.get("content-type")
                location = head.headers.get("location")
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
                body, why, kept = _read_body(wire, head, deadline, max_bytes)
                if why:
                    return failed(why, status, content_type)
            except Exception as exc:  # a probe never raises: every failure becomes a reason
                return failed(_reason_for(exc, timeout_s), getattr(head, "status", None),
                              timed_out=isinstance(exc, (TimeoutError, socket.timeout)))
            finally:
                if not kept:
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
