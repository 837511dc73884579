"""Shared helpers: run the command line in-process and capture what a user would see."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass

import pytest

from infermon.cli.main import main

from infermon.testing.samples import LLAMA2_7B

# A suite started in the background of a script inherits SIGINT ignored (POSIX, for `cmd &` without
# job control), and so would every process it starts: the Ctrl-C tests would wait for processes
# that cannot hear it. Those tests are about Ctrl-C reaching infermon, so the session hears it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class CliResult:
    status: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def _priority_unchanged():
    """No test may leave the test session at another CPU priority: every process it starts after
    would inherit it (an in-process ``attach`` once left it at nice 19, and the busy vLLM server's
    tests starved)."""
    import os

    before = os.getpriority(os.PRIO_PROCESS, 0)
    yield
    after = os.getpriority(os.PRIO_PROCESS, 0)
    assert after == before, f"the test left the session's CPU priority at {after} (was {before})"


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``infermon ARGS…`` in-process at a fixed 100-column terminal."""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")

    def run(*args: str) -> CliResult:
        status = main(list(args))
        captured = capsys.readouterr()
        return CliResult(status, captured.out, captured.err)

    return run


@pytest.fixture
def llama2_config(tmp_path):
    path = tmp_path / "llama2" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps(LLAMA2_7B))
    return path


# ---------------------------------------------------------------- a real vLLM server, one per session


def pytest_collection_modifyitems(session, config, items):
    """Tests on the real vLLM server run last, and the server starts as soon as they are collected,
    so its warm-up (a minute or more) overlaps the rest of the suite."""
    wanting = [item for item in items if "vllm_server" in getattr(item, "fixturenames", ())]
    if not wanting:
        return
    items[:] = [item for item in items if item not in wanting] + wanting
    import vllm_fixture

    vllm_fixture.start_session_server()


@pytest.fixture(scope="session")
def vllm_server():
    """The session's ``vllm serve`` (see tests/vllm_fixture.py), ready; skipped only as the README says."""
    import vllm_fixture

    server = vllm_fixture.session_server()
    yield server
    vllm_fixture.stop_session_server()
