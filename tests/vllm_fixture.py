"""A real vLLM server (vLLM's CPU build) for end-to-end tests, steady load on it, and its own counters.

vLLM lives in its own virtual environment, ``.vllm-venv`` in the checkout (``./run-tests``
installs it with tests/vllm/install_vllm.py; ``INFERMON_VLLM_VENV`` names another). The model
is a random-weight Llama with grouped-query attention and a tokenizer trained locally
(tests/vllm/make_model.py), built once into the venv folder.

The server runs in its own process group, with ``--enable-mfu-metrics``, on a free loopback
port. ``stop()`` ends the whole group (SIGTERM, then SIGKILL): the fixture calls it whatever
happens, an ``atexit`` hook calls it if the interpreter exits first, and the kernel sends the
API server SIGTERM should the test process die without either (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("INFERMON_VLLM_VENV") or ROOT / ".vllm-venv")
MODEL_NAME = "tiny-llama"
ENV_SKIP = "INFERMON_SKIP_VLLM"
ENV_REQUIRE = "INFERMON_REQUIRE_VLLM"
# Cold start on 2 busy cores: torch.compile warm-up alone took over two minutes once.
READY_TIMEOUT_S = float(os.environ.get("INFERMON_VLLM_READY_TIMEOUT") or 900)


def vllm_binary() -> Path | None:
    """The ``vllm`` CLI of the separate environment, or None when it is not installed."""
    binary = VENV / "bin" / "vllm"
    return binary if binary.exists() and (VENV / ".infermon-vllm-installed").exists() else None


def model_dir() -> Path:
    """The tiny model, built on first use (a minute or so) by the vLLM environment's Python."""
    folder = VENV / MODEL_NAME
    if not (folder / ".infermon-model-complete").exists():
        subprocess.run([str(VENV / "bin" / "python"), str(ROOT / "tests" / "vllm" / "make_model.py"), str(folder)],
                       check=True, capture_output=True, timeout=900)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies (Linux prctl)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class VllmServer:
    """``vllm serve`` on 127.0.0.1 in its own process group; ``stop()`` ends the group."""

    def __init__(self, model: Path, log: Path, extra_args: tuple[str, ...] = ("--enable-mfu-metrics",)) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1",
                   TRANSFORMERS_OFFLINE="1", VLLM_LOGGING_LEVEL="INFO")
        env.pop("PYTHONPATH", None)  # nothing of the test environment leaks into vLLM's
        self.argv = [str(VENV / "bin" / "vllm"), "serve", str(model), "--served-model-name", MODEL_NAME,
                     "--host", "127.0.0.1", "--port", str(self.port), "--max-model-len", "2048",
                     "--dtype", "float32", *extra_args]
        self._log_handle = open(log, "wb")
        self.process = subprocess.Popen(self.argv, stdout=self._log_handle, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, cwd=str(model.parent),
                                        start_new_session=True, preexec_fn=_die_with_parent)
        self.pgid = self.process.pid  # start_new_session: the group is led by the server
        atexit.register(self.stop)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with status {self.process.returncode}; log: {self.log}\n"
                                   + self.log_tail())
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"vllm serve not ready after {timeout_s:.0f} s; log: {self.log}\n" + self.log_tail())

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def group_pids(self) -> list[int]:
        """Every live process of the server's group (the API server, engine core, workers, helpers)."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as handle:
                        data = handle.read()
                    fields = data[data.rindex(b")") + 2:].split()
                    if int(fields[2]) == self.pgid and fields[0] != b"Z":
                        pids.append(int(entry))
                except (OSError, ValueError, IndexError):
                    continue
        return pids

    def stop(self) -> None:
        """SIGTERM the whole group, SIGKILL what is left after 20 s; idempotent."""
        if self._log_handle.closed and not self.group_pids():
            return
        for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if self.process.poll() is not None and not self.group_pids():
                    break
                time.sleep(0.1)
            else:
                continue
            break
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log_handle.close()

    def __enter__(self) -> "VllmServer":
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------- the server's own counters


def scrape(url: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=timeout_s) as response:
        return response.read().decode()


def families(text: str) -> dict[str, list]:
    """Sample name → [(labels, value)], parsed with prometheus_client (not infermon's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def total(parsed: dict[str, list], name: str) -> float:
    """Σ of every series of ``name`` (one engine here; several finished reasons add up)."""
    return sum(value for _, value in parsed.get(name, []))


def histogram(parsed: dict[str, list], base: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) of a histogram, +Inf included."""
    buckets = [(float(labels["le"]), value) for labels, value in parsed.get(base + "_bucket", [])]
    return sorted(buckets)


@dataclass
class Tape:
    """The server's /metrics, scraped every ``every_s`` by a thread: (wall time, monotonic time, parsed),
    stamped at the middle of each request; ``spans`` holds when each request began and ended
    (wall, wall, monotonic, monotonic): the server wrote its counters somewhere in between."""

    url: str
    every_s: float = 0.25
    points: list[tuple[float, float, dict]] = field(default_factory=list)
    spans: list[tuple[float, float, float, float]] = field(default_factory=list)
    missed: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            before, wall_before = time.monotonic(), time.time()
            try:
                text = scrape(self.url)
                after, wall_after = time.monotonic(), time.time()
                # The counters are read somewhere inside the request: take its midpoint.
                mid = (before + after) / 2
                self.points.append((wall_after - (after - mid), mid, families(text)))
                self.spans.append((wall_before, wall_after, before, after))
            except OSError as error:  # kept for a failing test's message: a gap in the tape
                self.missed.append((wall_before, repr(error)))
            self._stop.wait(self.every_s)

    def __enter__(self) -> "Tape":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait_past(self, when: float, clock: int = 1, timeout_s: float = 30.0) -> None:
        """Until the tape holds a scrape that began after ``when`` (a loaded server answers slowly)."""
        began = 0 if clock == 0 else 2
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.spans and self.spans[-1][began] > when:
                return
            time.sleep(0.05)
        raise TimeoutError(f"no scrape of the server after {when} within {timeout_s:.0f} s")

    def around(self, start: float, end: float) -> list[dict]:
        """Every scrape (parsed) that can have read the server between wall times ``start`` and
        ``end``: those whose request overlapped the window, plus the last that ended before it and
        the first that began after it. Never empty once :meth:`wait_past` ``end`` has returned (a
        loaded server can take seconds to answer one scrape, so a midpoint stamp may fall outside a
        short window)."""
        pairs = list(zip(self.points, self.spans))
        inside = [p[2] for p, span in pairs if span[0] <= end and span[1] >= start]
        before = [p[2] for p, span in pairs if span[1] < start][-1:]
        after = [p[2] for p, span in pairs if span[0] > end][:1]
        return before + inside + after

    def counter_at(self, name: str, when: float, clock: int = 1) -> float:
        """``name`` at time ``when`` (clock 1 monotonic, 0 wall), linear between the two scrapes around it."""
        points = [(p[clock], total(p[2], name)) for p in self.points]
        for (t0, v0), (t1, v1) in zip(points, points[1:]):
            if t0 <= when <= t1:
                return v0 + (v1 - v0) * (when - t0) / (t1 - t0) if t1 > t0 else v1
        raise ValueError(f"{when} is outside the tape ({points[0][0] if points else None}–"
                         f"{points[-1][0] if points else None})")

    def counter_bounds(self, name: str, when: float, clock: int = 1) -> tuple[float, float]:
        """(lowest, highest) ``name`` can have been at ``when``, whatever the server's timing: a
        counter never falls, so it was at least what any scrape that had ended by ``when`` read,
        and at most what any scrape that began after ``when`` read. (A loaded server answers
        /metrics late; a midpoint stamp can then put a jump on the wrong side of an instant.)"""
        began, ended = (0, 1) if clock == 0 else (2, 3)
        done = [total(p[2], name) for p, span in zip(self.points, self.spans) if span[ended] <= when]
        later = [total(p[2], name) for p, span in zip(self.points, self.spans) if span[began] >= when]
        if not done or not later:
            raise ValueError(f"{when} is outside the tape")
        return max(done), min(later)

    def rate_bounds(self, name: str, start: float, end: float, clock: int = 1) -> tuple[float, float]:
        """(lowest, highest) Δ``name`` / Δt the server can have had between two instants."""
        low_start, high_start = self.counter_bounds(name, start, clock)
        low_end, high_end = self.counter_bounds(name, end, clock)
        return (low_end - high_start) / (end - start), (high_end - low_start) / (end - start)

    def rate(self, name: str, start: float, end: float, clock: int = 1) -> float:
        """Δ``name`` / Δt between two instants of the tape."""
        return (self.counter_at(name, end, clock) - self.counter_at(name, start, clock)) / (end - start)


# ---------------------------------------------------------------- load


class Load:
    """``clients`` threads posting /v1/completions back to back (``ignore_eos``: exactly
    ``max_tokens`` tokens each), until stopped. Counts what the server answered."""

    def __init__(self, url: str, clients: int = 3, max_tokens: int = 96, prompt_words: int = 24) -> None:
        self.url = url
        self.clients = clients
        self.max_tokens = max_tokens
        self.prompt = " ".join(["infermon measures the decode rate of a served model"] * (prompt_words // 8 + 1))
        self.completed = 0
        self.completion_tokens = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]
        self._lock = threading.Lock()

    def _client(self, index: int) -> None:
        deadline = time.monotonic() + 1800  # bounded: a forgotten load stops by itself
        sequence = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            sequence += 1
            # Lengths differ by client so the requests do not all end on the same step.
            body = json.dumps({"model": MODEL_NAME, "prompt": f"{index}.{sequence} {self.prompt}",
                               "max_tokens": self.max_tokens + 8 * index, "ignore_eos": True,
                               "temperature": 0.0}).encode()
            request = urllib.request.Request(self.url + "/v1/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=300) as response:
                    answer = json.loads(response.read())
                with self._lock:
                    self.completed += 1
                    self.completion_tokens += int(answer["usage"]["completion_tokens"])
            except Exception as exc:  # recorded, and the test says so
                if not self._stop.is_set():
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(0.5)

    def start(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=300)

    def __enter__(self) -> "Load":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for(predicate, timeout_s: float, every_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()


if __name__ == "__main__":  # handy for trying it by hand: start a server and print its URL and pids
    binary = vllm_binary()
    if binary is None:
        sys.exit(f"vLLM is not installed in {VENV} (python3 tests/vllm/install_vllm.py {VENV})")
    with VllmServer(model_dir(), Path("/tmp/infermon-vllm.log")) as server:
        print(server.url, server.group_pids(), flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


# ---------------------------------------------------------------- one server per test session

_session: dict = {}


def skip_reason() -> str | None:
    """Why the vLLM tests do not run here, or None. Missing vLLM is an error when required (CI)."""
    if os.environ.get(ENV_SKIP) == "1":
        return f"{ENV_SKIP}=1"
    if vllm_binary() is None:
        if os.environ.get(ENV_REQUIRE) == "1":
            return None  # session_server() raises: CI must not skip
        return f"vLLM's CPU build is not installed in {VENV} (./run-tests installs it; {ENV_SKIP}=1 skips)"
    return None


def start_session_server() -> None:
    """Build the model and start the server in the background (idempotent; never raises)."""
    if _session or skip_reason() is not None or vllm_binary() is None or os.environ.get("INFERMON_VLLM_SERVER"):
        return

    started = threading.Event()
    done = threading.Event()

    def start() -> None:
        try:
            log = Path(os.environ.get("TMPDIR", "/tmp")) / f"infermon-vllm-{os.getpid()}.log"
            _session["server"] = VllmServer(model_dir(), log)
        except BaseException as exc:  # reported by session_server()
            _session["error"] = exc
        started.set()
        # PR_SET_PDEATHSIG fires when the *thread* that started the server ends: this one lives
        # until the session stops the server (or the test process dies, and the server with it).
        done.wait()

    thread = threading.Thread(target=start, name="vllm-start", daemon=True)
    _session.update(thread=thread, started=started, done=done)
    thread.start()


class ExistingServer:
    """A ``vllm serve`` someone else started (``INFERMON_VLLM_SERVER=http://127.0.0.1:PORT``, for
    working on these tests without a new start each run): found by the pid listening on its port."""

    def __init__(self, url: str) -> None:
        import psutil

        self.url = url.rstrip("/")
        self.port = int(self.url.rsplit(":", 1)[1])
        pids = [c.pid for c in psutil.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port and c.pid]
        if not pids:
            raise RuntimeError(f"nothing listens on port {self.port}")
        self.process = psutil.Process(pids[0])
        self.pgid = os.getpgid(self.process.pid)

    group_pids = VllmServer.group_pids

    def stop(self) -> None:
        pass


def session_server() -> VllmServer:
    """The session's server, ready: pytest skips when the README's variable says so, fails when
    vLLM is required (INFERMON_REQUIRE_VLLM=1) but missing or broken."""
    import pytest

    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    if vllm_binary() is None:
        pytest.fail(f"vLLM is required here ({ENV_REQUIRE}=1) but not installed in {VENV}")
    if "ready" in _session:
        return _session["ready"]
    if os.environ.get("INFERMON_VLLM_SERVER"):
        _session["ready"] = ExistingServer(os.environ["INFERMON_VLLM_SERVER"])
        return _session["ready"]
    if "failed" in _session:
        pytest.fail(_session["failed"])
    start_session_server()
    _session["started"].wait()
    try:
        if "error" in _session:
            raise _session["error"]
        server = _session["server"]
        server.wait_ready()
    except Exception as exc:
        _session["failed"] = f"the vLLM server did not start: {type(exc).__name__}: {exc}"
        stop_session_server()
        pytest.fail(_session["failed"])
    _session["ready"] = server
    return server


def stop_session_server() -> None:
    server = _session.get("server")
    if server is not None:
        server.stop()
    if "done" in _session:
        _session["done"].set()
