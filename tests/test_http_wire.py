"""The HTTP reader (probes/http.py) on answers the metrics fixtures never give: chunked bodies,
bodies that end when the server closes, interim answers, folded and excess headers, TLS."""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading

import pytest

from infermon.probes import http
from infermon.probes.http import Connections, fetch


class CannedServer:
    """Answers each request on a connection with the next of ``answers`` (raw bytes), then
    closes the connection when told (``None`` in the list) or when the answers run out."""

    def __init__(self, answers: list[bytes | None], tls: ssl.SSLContext | None = None) -> None:
        self.answers = list(answers)
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._tls = tls
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self._tls is not None:
                try:
                    conn = self._tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    conn.close()
                    continue
            with conn, contextlib.suppress(OSError):  # a client that hung up: on to the next one
                while self.answers:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        data = conn.recv(4096)
                        if not data:
                            break
                        request += data
                    if not request:
                        break
                    self.requests.append(request)
                    answer = self.answers.pop(0)
                    if answer is None:
                        break
                    conn.sendall(answer)
                    if self.answers and self.answers[0] is None:
                        self.answers.pop(0)
                        break

    def close(self) -> None:
        self._listener.close()

    def __enter__(self) -> "CannedServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"


def test_a_chunked_body_is_put_together_and_the_connection_kept():
    chunked = OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n world!\r\n0\r\nX-Trailer: 1\r\n\r\n"
    plain = OK_HEAD + b"Content-Length: 2\r\n\r\nok"
    with CannedServer([chunked, plain]) as server:
        connections = Connections()
        first = connections.get(f"http://127.0.0.1:{server.port}/metrics", 1.0)
        second = connections.get(f"http://127.0.0.1:{server.port}/metrics", 1.0)
        connections.close()
    assert (first.ok, first.body, second.body) == (True, b"hello world!", b"ok")
    assert server.connections == 1
    request = server.requests[0].decode()
    assert request.startswith("GET /metrics HTTP/1.1\r\n") and f"Host: 127.0.0.1:{server.port}\r\n" in request
    assert "Accept-Encoding: identity" in request


def test_a_body_without_a_length_ends_when_the_server_closes():
    answer = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nvllm:x 1\n"
    with CannedServer([answer, None, OK_HEAD + b"Content-Length: 2\r\n\r\nok"]) as server:
        connections = Connections()
        first = connections.get(f"http://127.0.0.1:{server.port}/", 1.0)
        second = connections.get(f"http://127.0.0.1:{server.port}/", 1.0)
        connections.close()
    assert first.body == b"vllm:x 1\n" and second.body == b"ok"
    assert server.connections == 2  # an answer framed by the close is never followed by another


def test_interim_answers_and_folded_headers_are_read_as_http_client_reads_them():
    answer = (b"HTTP/1.1 100 Continue\r\n\r\n" + OK_HEAD +
              b"X-Folded: a\r\n b\r\nContent-Length: 3\r\n\r\nabc")
    with CannedServer([answer]) as server:
        got = fetch(f"http://127.0.0.1:{server.port}/", 1.0)
    assert got.ok and got.status == 200 and got.body == b"abc"
    assert got.content_type == "text/plain; version=0.0.4"


@pytest.mark.parametrize("answer, reason", [
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP server (bad status line)"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "connection closed in the middle of the response's headers"),
    (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n", "malformed HTTP response"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000, "malformed HTTP response"),
    (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed HTTP response"),
    (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n-1\r\nab\r\n0\r\n\r\n", "malformed HTTP response"),
    (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n+2\r\nab\r\n0\r\n\r\n", "malformed HTTP response"),
    (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n9\r\nabc", "cut short"),
    (OK_HEAD + b"Content-Length: many\r\n\r\n", "malformed HTTP response"),
    (OK_HEAD + b"Content-Length: 10\r\n\r\nabc", "response cut short: got 3 B, 10 B announced"),
    (OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"ffffffff\r\n", "response larger than"),
])
def test_a_malformed_answer_is_a_reason(answer, reason):
    with CannedServer([answer, None]) as server:
        got = fetch(f"http://127.0.0.1:{server.port}/", 1.0)
    assert not got.ok and reason in got.why, got.why


def test_an_answer_over_the_limit_without_a_length_is_refused():
    with CannedServer([b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 5000, None]) as server:
        got = fetch(f"http://127.0.0.1:{server.port}/", 1.0, max_bytes=1000)
    assert not got.ok and got.why == "response larger than 1 kB"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_is_verified_and_read(tmp_path, monkeypatch):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    with CannedServer([OK_HEAD + b"Content-Length: 2\r\n\r\nok", None], tls=server_tls) as server:
        refused = fetch(f"https://127.0.0.1:{server.port}/", 2.0)  # a certificate nobody vouches for
    assert not refused.ok and "TLS error" in refused.why
    trusting = ssl.create_default_context(cafile=str(cert))
    monkeypatch.setattr(http, "_tls_context", lambda: trusting)
    with CannedServer([OK_HEAD + b"Content-Length: 2\r\n\r\nok"], tls=server_tls) as server:
        got = fetch(f"https://127.0.0.1:{server.port}/metrics", 2.0)
    assert got.ok and got.body == b"ok"


def _answer(body: bytes) -> bytes:
    return OK_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body


def _wait(predicate, seconds: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_a_primed_request_is_sent_once_and_its_answer_read_by_the_next_get():
    """prime() sends on the kept connection at once (the engine answers while the tick reads
    /proc); the next get() reads that answer instead of asking again. Without a kept connection
    it opens nothing."""
    with CannedServer([_answer(b"one"), _answer(b"two"), _answer(b"three")]) as server:
        connections = Connections()
        url = f"http://127.0.0.1:{server.port}/metrics"
        connections.prime(url)
        assert connections.get(url).body == b"one"
        assert len(server.requests) == 1  # the prime before any connection sent nothing
        connections.prime(url)
        assert _wait(lambda: len(server.requests) == 2)  # asked before get() ...
        assert connections.get(url).body == b"two"  # ... and get() reads that answer
        assert len(server.requests) == 2
        assert connections.get(url).body == b"three"
        assert server.connections == 1 and len(server.requests) == 3
        connections.close()


def test_a_primed_request_for_another_page_is_not_taken_for_the_answer():
    with CannedServer([_answer(b"first"), _answer(b"for /a"), _answer(b"for /b")]) as server:
        connections = Connections()
        base = f"http://127.0.0.1:{server.port}"
        assert connections.get(base + "/a").body == b"first"
        connections.prime(base + "/a")
        assert _wait(lambda: len(server.requests) == 2)  # /a is being answered on the first connection
        assert connections.get(base + "/b").body == b"for /b"
        assert server.connections == 2  # the connection holding /a's answer was dropped
        assert server.requests[-1].startswith(b"GET /b ")
        connections.close()


def test_a_primed_request_on_a_connection_the_server_closed_is_asked_again():
    with CannedServer([_answer(b"one"), None, _answer(b"two")]) as server:
        connections = Connections()
        url = f"http://127.0.0.1:{server.port}/metrics"
        assert connections.get(url).body == b"one"
        assert _wait(lambda: server.connections == 1)
        connections.prime(url)
        got = connections.get(url)
        assert got.ok and got.body == b"two", got.why
        connections.close()
