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
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 8_000_000
_CHUNK_BYTES = 64 * 1024
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


class _ForeignRedirect(Exception):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


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


class _DeadlineMixin:
    deadline: float
    timeout_s: float

    def _arm(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {_fmt_seconds(self.timeout_s)}")
        self.timeout = remaining  # connect() uses it for socket.create_connection
        self.response_class = functools.partial(
            _DeadlineResponse, deadline=self.deadline, timeout_s=self.timeout_s)


class _DeadlineConnection(_DeadlineMixin):
    """An HTTP(S) connection whose connect and every read share one deadline."""

    def __init__(self, *args, deadline: float, timeout_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deadline, self.timeout_s = deadline, timeout_s

    def connect(self) -> None:
        self._arm()
        super().connect()


class _DeadlineHTTPConnection(_DeadlineConnection, http.client.HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


class _DeadlineHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, deadline: float, timeout_s: float) -> None:
        super().__init__()
        self._conn = functools.partial(_DeadlineHTTPConnection, deadline=deadline, timeout_s=timeout_s)

    def http_open(self, req):
        return self.do_open(self._conn, req)


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()  # loads the CA store: ~20 ms, so once per process


class _DeadlineHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, deadline: float, timeout_s: float) -> None:
        super().__init__(context=_tls_context())
        self._conn = functools.partial(_DeadlineHTTPSConnection, deadline=deadline, timeout_s=timeout_s)

    def https_open(self, req):
        return self.do_open(self._conn, req, context=self._context)


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = _MAX_REDIRECTS

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if (old.scheme, old.hostname, old.port) != (new.scheme, new.hostname, new.port):
            raise _ForeignRedirect(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(scheme: str, deadline: float, timeout_s: float) -> urllib.request.OpenerDirector:
    # ProxyHandler({}) replaces the default one that reads *_proxy from the environment.
    # Redirects never change scheme, so the URL's scheme is the only one needing a handler.
    transport = (_DeadlineHTTPSHandler if scheme == "https" else _DeadlineHTTPHandler)(deadline, timeout_s)
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), transport, _SameOriginRedirects())


def _reason_for(exc: BaseException, timeout_s: float) -> str:
    """A short human reason for a failed request."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        inner = exc.reason
        if isinstance(inner, BaseException):
            return _reason_for(inner, timeout_s)
        if isinstance(inner, str) and "timed out" in inner:
            return f"timed out after {_fmt_seconds(timeout_s)}"
        return f"request failed: {inner}"
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


def fetch(url: str, timeout_s: float = 1.0, max_bytes: int = DEFAULT_MAX_BYTES,
          expect: str | None = None) -> FetchResult:
    """GET ``url`` within ``timeout_s`` seconds overall, reading at most ``max_bytes``.

    ``expect`` = ``"prometheus"`` or ``"json"`` also turns a 200 whose body is plainly
    something else (an HTML page, say) into a failure with that reason.
    """
    start = time.monotonic()
    deadline = start + max(timeout_s, 0.001)

    def failed(why: str, status: int | None = None, content_type: str | None = None) -> FetchResult:
        return FetchResult(False, status, None, content_type, time.monotonic() - start, why)

    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        return failed(f"bad URL: {exc}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return failed(f"bad URL {url!r}: need http://host:port/path")

    resp = None
    try:
        request = urllib.request.Request(url, headers=_HEADERS, method="GET")
        resp = _opener(parts.scheme, deadline, timeout_s).open(request)
        answered = time.monotonic() - start
        status = resp.status
        content_type = resp.headers.get("Content-Type")
        body, why = _read_body(resp, deadline, max_bytes)
        if why:
            return failed(why, status, content_type)
    except urllib.error.HTTPError as exc:
        exc.close()
        return failed(f"HTTP {exc.code}", exc.code, exc.headers.get("Content-Type") if exc.headers else None)
    except Exception as exc:  # a probe never raises: every failure becomes a reason
        return failed(_reason_for(exc, timeout_s), getattr(resp, "status", None))
    finally:
        if resp is not None:
            resp.close()

    sniffers = {"prometheus": sniff_not_prometheus, "json": sniff_not_json}
    if expect in sniffers:
        why = sniffers[expect](body, content_type)
        if why:
            return failed(why, status, content_type)
    return FetchResult(True, status, body, content_type, time.monotonic() - start, None, answered)
