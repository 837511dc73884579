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
    assert said == "the agent in pid 42 counts no tokens: no tokens counted: no module here is called"
    # Without the agent's words: an engine's worker cannot be counted; a script has no model yet.
    assert "flattened token ids" in agents_not_counting((agent(),), in_engine=True)
    assert "yet" in agents_not_counting((agent(),), in_engine=False)


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


def _derive_agent_ticks(deriver, readings):
    """One view per (wall time, monotonic, tokens so far) reading of one agent."""
    from infermon.probes.snapshot import Snapshot

    views = []
    for tick, (wall, monotonic, tokens) in enumerate(readings):
        sample = agent(params=1_000_000, weights_bytes=2_000_000, time=wall, monotonic=monotonic,
                       generation_tokens_total=tokens, decode_steps_total=tokens)
        views.append(deriver.update(Snapshot(time=1000.0 + tick, monotonic=100.0 + tick, interval_s=1.0, tree=None,
                                             devices=(), engine=None, host=None, why={}, agents=(sample,))))
    return views


def test_agent_rates_use_its_monotonic_clock_when_the_wall_clock_steps_back():
    from infermon.live.derive import Deriver

    # The wall clock is set back 30 s between the second and third records (NTP, a user):
    # the agent's monotonic clock is what its counters are differenced over.
    readings = [(5000.0, 50.0, 0.0), (5001.0, 51.0, 40.0), (4972.0, 52.0, 80.0), (4973.0, 53.0, 120.0)]
    views = _derive_agent_ticks(Deriver(), readings)
    assert [v.figures.generation_tokens_per_s.value for v in views[1:]] == [40.0, 40.0, 40.0]
    assert views[0].verdict.finding.startswith("starting: the agent's"), views[0].verdict
    assert views[-1].summary.generation_tokens == 120.0


def test_a_run_counts_the_tokens_made_before_its_first_sample():
    from infermon.live.derive import Deriver

    readings = [(5000.0, 50.0, 27.0), (5001.0, 51.0, 67.0)]
    assert _derive_agent_ticks(Deriver(count_from_start=True), readings)[-1].summary.generation_tokens == 67.0
    # Watching a process someone else started, the total counts from the first sample.
    assert _derive_agent_ticks(Deriver(), readings)[-1].summary.generation_tokens == 40.0


def test_an_agent_that_counts_no_tokens_still_says_where_its_gauges_came_from():
    """Its request gauges are the agent's own measurement: never "engine-reported" (no engine answered),
    and a batch taken from them never shows a value beside "n/a"."""
    from infermon.live.derive import Deriver
    from infermon.live.figure import MEASURED
    from infermon.probes.snapshot import Snapshot

    deriver = Deriver()
    view = None
    for tick in range(3):
        sample = agent(time=5000.0 + tick, monotonic=50.0 + tick, batch=1, max_batch=1)
        view = deriver.update(Snapshot(time=1000.0 + tick, monotonic=100.0 + tick, interval_s=1.0, tree=None,
                                       devices=(), engine=None, host=None, agents=(sample,),
                                       why={"engine": "no engine /metrics found: 8000 connection refused"}))
    f = view.figures
    assert f.generation_tokens_per_s.value is None and f.generation_tokens_per_s.source == "n/a"
    assert f.requests_running.value == 1 and f.requests_running.source == MEASURED
    assert f.batch.value is None or f.batch.source == MEASURED, f.batch
