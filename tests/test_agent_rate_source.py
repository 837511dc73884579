"""The agent's token counters are a rate only where no engine endpoint answers and the agent counts.

An agent in a process whose model it cannot see (a vLLM worker calls its model with flattened token
ids) counts nothing: its 0 must never read as the process's rate. A real process with the agent
running and no model stands in for that worker here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from infermon.probes.sampler import agent_counts_tokens, agents_not_counting
from infermon.probes.snapshot import AgentSample

HOST = ["--host-bandwidth", "25GB/s", "--host-flops", "100GFLOPS"]


def agent(**changes) -> AgentSample:
    values = dict(pid=42, time=0.0, interval_s=1.0, generation_tokens_total=0.0, prompt_tokens_total=0.0,
                  decode_steps_total=0.0, batch=0, max_batch=0)
    values.update(changes)
    return AgentSample(**values)


def test_which_agents_are_a_rate_source():
    assert not agent_counts_tokens(agent())
    assert agent_counts_tokens(agent(params=25_000_000, weights_bytes=100_000_000))  # watches a model
    assert agent_counts_tokens(agent(generation_tokens_total=12.0))  # counts by hand (count_tokens)
    said = agents_not_counting((agent(why={"tokens": "no tokens counted: no module here is called"}),))
    assert said.startswith("the agent in pid 42 counts no tokens: no tokens counted") and "torch" in said


def test_an_agent_that_sees_no_model_is_no_rate():
    code = "import time; import infermon.probes.agent as a; a.start(0.2); time.sleep(60)"
    target = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        data = None
        while time.monotonic() < deadline:
            result = subprocess.run([sys.executable, "-m", "infermon.cli.main", "--pid", str(target.pid), "--once",
                                     "--json", "--interval", "0.5", *HOST], capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            data = json.loads(result.stdout)
            if "agent" in data["why"]:
                break
            time.sleep(0.3)
        assert data["engine"] is None, data["engine"]  # no "agent" engine reading 0 tokens/s
        assert "counts no tokens" in data["why"]["agent"], data["why"]
        assert "token ids" in data["why"]["agent"]
        rate = data["figures"]["generation_tokens_per_s"]
        assert rate["value"] is None and rate["source"] == "n/a" and rate["why"], rate
    finally:
        target.kill()
        target.wait()
