"""A tiny loopback HTTP server that plays an inference engine for the tests.

``MetricsServer(text, advance={"vllm:generation_tokens_total": 1000})`` serves
``text`` at ``/metrics``; scrape k (0, 1, 2, …) shows each named sample at its
fixture value + k × step, so counters move between two scrapes by exactly the
step. ``slots=`` serves ``/slots`` (a list, or a function of the /slots request
number), ``json_routes=`` other JSON endpoints (``/props``, ``/info``, …).

Misbehaviour, per path (``mode`` for ``/metrics``, ``modes={"/slots": "501"}``
for others), switchable while running via ``set_mode``:

==================  ==================================================================
``ok``              the content
``404`` ``500``     that status (``501`` with llama-server's "not supported" body)
``html``            200 with an HTML page
``garbage``         200 text/plain that is not Prometheus text
``truncated``       Content-Length of the whole body, half of it sent, then close
``huge``            100 MB of metric lines, streamed without a Content-Length
``huge_declared``   the same with a Content-Length header
``slow``            waits ``delay_s`` before answering
``trickle``         headers, then one body byte every 0.2 s for ``delay_s``
``close``           closes the connection without a word
``redirect``        302 to the same path on another host (127.0.0.2)
==================  ==================================================================

``keep_alive=True`` answers in HTTP/1.1 and keeps each connection open for the next request
(``connections`` counts those accepted); ``requests_per_connection=n`` then closes a connection
after its n-th answer without saying so, as a server whose keep-alive timeout ran out would.

Everything is bounded: slow answers wake when the server stops, streams end
when the client hangs up or the server stops, and the server stops itself
after ``max_lifetime_s`` in case a test forgets. Use it as a context manager.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SAMPLE_LINE = re.compile(r"^(?P<name>[^\s{#]+)(?P<labels>\{[^}]*\})?(?P<space>\s+)(?P<value>\S+)(?P<rest>.*)$")
_NOT_SUPPORTED = {
    "/metrics": "This server does not support metrics endpoint. Start it with `--metrics`",
    "/slots": "This server does not support slots endpoint. Start it with `--slots`",
}


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def advance_text(text: str, advance: Mapping[str, float], k: int) -> str:
    """``text`` with every sample named in ``advance`` raised by k × its step."""
    if not advance or k == 0:
        return text
    out = []
    for line in text.splitlines(keepends=True):
        match = _SAMPLE_LINE.match(line.rstrip("\n"))
        if match and match["name"] in advance:
            value = float(match["value"]) + k * advance[match["name"]]
            line = f"{match['name']}{match['labels'] or ''}{match['space']}{value!r}{match['rest']}\n"
        out.append(line)
    return "".join(out)


class _QuietServer(ThreadingHTTPServer):
    """A client that drops its kept-alive connection (the monitor closing, a test's reset) is
    ordinary here: no traceback on stderr for it; anything else is still printed."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class MetricsServer:
    def __init__(self, metrics: str | None = None, *, advance: Mapping[str, float] | None = None,
                 slots: list | Callable[[int], Any] | None = None,
                 json_routes: Mapping[str, Any] | None = None,
                 mode: str = "ok", modes: Mapping[str, str] | None = None,
                 delay_s: float = 3.0, huge_bytes: int = 100_000_000,
                 max_lifetime_s: float = 60.0, keep_alive: bool = False,
                 requests_per_connection: int | None = None) -> None:
        self.metrics = metrics
        self.advance = dict(advance or {})
        self.slots = slots
        self.json_routes = dict(json_routes or {})
        self.modes = {"/metrics": mode, **(modes or {})}
        self.delay_s = min(delay_s, 10.0)  # bounded whatever a test asks
        self.huge_bytes = huge_bytes
        self.max_lifetime_s = max_lifetime_s
        self.requests: list[str] = []  # paths, in arrival order
        self.keep_alive = keep_alive
        self.requests_per_connection = requests_per_connection
        self.connections = 0  # accepted
        self.bytes_streamed = 0
        self._served = {"/metrics": 0, "/slots": 0}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._port: int | None = None

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> "MetricsServer":
        owner = self

        class Handler(_Handler):
            server_owner = owner
            protocol_version = "HTTP/1.1" if owner.keep_alive else "HTTP/1.0"

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._port = self._httpd.server_address[1]  # still known after close, for assertions
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"metrics-server-{self.port}", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.max_lifetime_s, self.close)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._httpd is None:
                return
            httpd, self._httpd = self._httpd, None
        self._stop.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        assert self._port is not None, "use MetricsServer as a context manager"
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return self.url + "/metrics"

    def set_mode(self, mode: str, path: str = "/metrics") -> None:
        self.modes[path] = mode

    def count(self, path: str) -> int:
        return sum(1 for p in self.requests if p == path)

    # -------------------------------------------------------------- content

    def next_metrics(self) -> bytes | None:
        if self.metrics is None:
            return None
        with self._lock:
            k = self._served["/metrics"]
            self._served["/metrics"] += 1
        return advance_text(self.metrics, self.advance, k).encode()

    def next_slots(self) -> bytes | None:
        if self.slots is None:
            return None
        with self._lock:
            k = self._served["/slots"]
            self._served["/slots"] += 1
        payload = self.slots(k) if callable(self.slots) else self.slots
        return json.dumps(payload).encode()


class _Handler(BaseHTTPRequestHandler):
    server_owner: MetricsServer
    protocol_version = "HTTP/1.0"  # a body without Content-Length ends when we close

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def setup(self) -> None:
        super().setup()
        self.answered = 0
        with self.server_owner._lock:
            self.server_owner.connections += 1

    def do_GET(self) -> None:
        owner = self.server_owner
        path = self.path.split("?", 1)[0]
        owner.requests.append(path)
        mode = owner.modes.get(path, "ok")
        try:
            self._answer(owner, path, mode)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # the client gave up: exactly what a bounded client should do
        self.answered += 1
        if owner.requests_per_connection is not None and self.answered >= owner.requests_per_connection:
            self.close_connection = True  # and no "Connection: close" said: the client finds out

    def _answer(self, owner: MetricsServer, path: str, mode: str) -> None:
        if mode == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "slow":
            owner._stop.wait(owner.delay_s)
            if owner._stop.is_set():
                return
            mode = "ok"
        if mode in ("404", "500"):
            self._send(int(mode), b'{"detail":"Not Found"}' if mode == "404" else b"Internal Server Error",
                       "application/json" if mode == "404" else "text/plain")
            return
        if mode == "501":
            message = _NOT_SUPPORTED.get(path, "not supported")
            body = {"error": {"code": 501, "message": message, "type": "not_supported_error"}}
            self._send(501, json.dumps(body).encode(), "application/json; charset=utf-8")
            return
        if mode == "html":
            self._send(200, b"<!DOCTYPE html><html><head><title>Chat</title></head><body>hi</body></html>\n",
                       "text/html; charset=utf-8")
            return
        if mode == "garbage":
            self._send(200, b"this is { not prometheus text at all\n", "text/plain")
            return
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.2:{owner.port}{path}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode in ("huge", "huge_declared"):
            self._stream_huge(owner, declared=mode == "huge_declared")
            return
        body, content_type = self._content(owner, path)
        if body is None:
            self._send(404, b'{"detail":"Not Found"}', "application/json")
        elif mode == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        elif mode == "trickle":
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(int(owner.delay_s / 0.2)):
                if owner._stop.wait(0.2) or i >= len(body):
                    return
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
        else:
            self._send(200, body, content_type)

    def _content(self, owner: MetricsServer, path: str) -> tuple[bytes | None, str]:
        if path == "/metrics":
            return owner.next_metrics(), METRICS_TYPE
        if path == "/slots":
            return owner.next_slots(), "application/json; charset=utf-8"
        if path in owner.json_routes:
            return json.dumps(owner.json_routes[path]).encode(), "application/json"
        return None, "application/json"

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream_huge(self, owner: MetricsServer, declared: bool) -> None:
        self.close_connection = True  # without a Content-Length, the body ends when the connection does
        self.send_response(200)
        self.send_header("Content-Type", METRICS_TYPE)
        if declared:
            self.send_header("Content-Length", str(owner.huge_bytes))
        self.end_headers()
        line = b'vllm:num_requests_running{engine="0",model_name="m"} 1.0\n'
        chunk = line * (1_000_000 // len(line))  # ~1 MB, built once
        sent = 0
        while sent < owner.huge_bytes and not owner._stop.is_set():
            piece = chunk[: owner.huge_bytes - sent]
            self.wfile.write(piece)
            sent += len(piece)
            owner.bytes_streamed = sent
