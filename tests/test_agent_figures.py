"""The monitor's side of what the agent sees inside: records parsed and checked, agents merged
into the engine block, KV capacity under the agent (GPU and CPU rules), and the views."""

import json
import time
from pathlib import Path

import pytest

import infermon.probes.agent as agent
from infermon.live.derive import LiveModel
from infermon.live.inside import KV_CAPACITY_RULE_CPU, KV_CAPACITY_RULE_GPU, agent_kv, agent_memory
from infermon.probes.agent_channel import engine_from_agents, merge_histograms, read_agents
from infermon.probes.snapshot import AgentSample, DeviceSample, HostCeilings, ProcessInfo, ProcessTree, Snapshot
from infermon.views.live_json import live_to_json

from infermon.testing import samples


@pytest.fixture
def channel(tmp_path, monkeypatch):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    agent.ensure_channel()
    return Path(agent.channel_dir())


def histogram(values):
    h = agent._Histogram()
    for value in values:
        h.observe(value)
    return h.plain()


def record(pid, **fields):
    base = {"protocol": 1, "pid": pid, "time": time.time(), "monotonic": time.monotonic(), "seq": 3,
            "final": False, "interval_s": 1.0, "generation_tokens_total": 100, "prompt_tokens_total": 40,
            "decode_steps_total": 25, "batch": 4, "max_batch": 4, "kv_tokens_resident": 480,
            "kv_bytes_resident": 480 * 1024, "kv_source": "cache", "rss_bytes": 2_000_000_000,
            "weights_bytes": 1_000_000, "counting": "hooks", "requests_total": 8,
            "ttft": histogram([0.02, 0.03, 0.05]), "inter_token": histogram([0.004] * 10),
            "models": [{"name": "m", "weights_bytes": 1_000_000, "params": 250_000, "batch": 4,
                        "kv_tokens_resident": 480, "generation_tokens_total": 100}]}
    base.update(fields)
    return base


def write(pid, data):
    Path(agent.record_path(pid)).write_text(json.dumps(data))


def test_a_record_is_read_with_its_clocks_kv_latencies_and_memory(channel):
    write(21, record(21))
    [sample] = read_agents({21}).agents
    assert sample.monotonic is not None and sample.seq == 3 and sample.final is False
    assert sample.kv_tokens_resident == 480 and sample.kv_source == "cache" and sample.kv_bytes_resident == 480 * 1024
    assert sample.rss_bytes == 2_000_000_000 and sample.requests_total == 8
    assert sample.ttft.count == 3 and sample.ttft.sum == pytest.approx(0.10)
    assert sample.inter_token.buckets[-1][1] == 10
    assert sample.models[0].name == "m" and sample.models[0].kv_tokens_resident == 480


@pytest.mark.parametrize("bad", [
    {"kv_tokens_resident": -5}, {"kv_tokens_resident": "many"}, {"kv_source": "guess"},
    {"ttft": {"le": [0.1, 0.05], "cumulative": [1, 2], "sum": 0.1, "count": 2}},     # bounds not increasing
    {"ttft": {"le": [0.1, 0.2], "cumulative": [3, 2], "sum": 0.1, "count": 3}},      # counts decreasing
    {"ttft": {"le": [0.1], "cumulative": [1], "sum": -1.0, "count": 1}},             # negative sum
    {"ttft": {"le": list(range(1, 300)), "cumulative": [0] * 299, "sum": 0, "count": 0}},  # too many buckets
    {"rss_bytes": 1e400}, {"models": "lots"}, {"seq": True},
])
def test_a_bad_inside_figure_is_dropped_with_a_reason_not_the_record(channel, bad):
    data = record(22)
    data.update(bad)
    Path(agent.record_path(22)).write_text(json.dumps(data).replace("Infinity", "1e400"))
    reading = read_agents({22})
    [sample] = reading.agents  # the counters still count
    assert sample.generation_tokens_total == 100
    name = next(iter(bad))
    if name in ("kv_tokens_resident", "kv_source"):
        assert sample.kv_tokens_resident is None and "kv_tokens_resident" in sample.why
    elif name == "ttft":
        assert sample.ttft is None and "ttft" in sample.why
    elif name == "rss_bytes":
        assert sample.rss_bytes is None and "rss_bytes" in sample.why
    elif name == "models":
        assert sample.models == ()
    else:
        assert sample.seq is None


def test_final_records_are_read_for_exited_pids_and_removed_once_read(channel):
    write(31, record(31, final=True))
    write(32, record(32))                       # not final, and its pid is gone: not read
    write(33, record(33, final=True, time=time.time() - 3600))   # a final record of long ago
    reading = read_agents(set(), exited={31, 32, 33}, consume_final=False)
    assert [a.pid for a in reading.agents] == [31] and "earlier process" in reading.why[33]
    assert Path(agent.record_path(31)).exists()
    reading = read_agents(set(), exited={31}, consume_final=True)
    assert [a.final for a in reading.agents] == [True]
    assert not Path(agent.record_path(31)).exists()


def test_agents_become_one_engine_block_with_kv_and_merged_latencies(channel):
    write(41, record(41))
    write(42, record(42, kv_tokens_resident=20, generation_tokens_total=50, batch=1,
                     ttft=histogram([0.5]), inter_token=histogram([0.002, 0.003])))
    write(43, record(43, kv_tokens_resident=None, kv_source=None, generation_tokens_total=0, batch=0))
    agents = read_agents({41, 42, 43}).agents
    engine = engine_from_agents(agents)
    assert engine.kind == "agent" and engine.generation_tokens_total == 150 and engine.batch == 5
    assert engine.kv_tokens_resident == 500      # what the agents that see a cache hold
    assert engine.ttft.count == 3 + 1 + 3 and engine.ttft.sum == pytest.approx(0.1 + 0.5 + 0.1)
    assert engine.inter_token.count == 10 + 2 + 10
    assert engine.kv_capacity_tokens is None and "modeled" in engine.why["kv_capacity_tokens"]
    nothing = engine_from_agents((agents[2],))
    assert nothing.kv_tokens_resident is None and "kv_tokens_resident" in nothing.why
    assert merge_histograms([agents[0].ttft, None]).count == 3


def sample_of(pid=1, **fields):
    base = dict(pid=pid, time=time.time(), interval_s=1.0, generation_tokens_total=0.0, prompt_tokens_total=0.0,
                decode_steps_total=0.0, batch=2, max_batch=2)
    base.update(fields)
    return AgentSample(**base)


def host_device(total, used):
    return DeviceSample(index=0, kind="host", memory_total_bytes=total, memory_used_bytes=used)


def test_kv_capacity_on_a_cpu_is_available_host_memory_over_kv_bytes_per_token():
    kv = agent_kv((sample_of(kv_tokens_resident=1000, kv_source="cache"),), (host_device(64 * 2**30, 24 * 2**30),),
                  kv_bytes_per_token=131072)
    assert kv.resident_tokens == 1000 and kv.rule == KV_CAPACITY_RULE_CPU
    assert kv.capacity_tokens == pytest.approx(40 * 2**30 / 131072 + 1000)
    assert kv.usage == pytest.approx(1000 / kv.capacity_tokens)


def test_kv_capacity_on_a_gpu_is_what_the_allocator_could_still_hold():
    gpu = sample_of(kv_tokens_resident=4096, kv_source="cache", device_free_bytes=10 * 2**30,
                    torch_reserved_bytes=30 * 2**30, torch_allocated_bytes=28 * 2**30, device_total_bytes=80 * 2**30)
    kv = agent_kv((gpu,), (), kv_bytes_per_token=2**17)
    assert kv.rule == KV_CAPACITY_RULE_GPU
    assert kv.capacity_tokens == pytest.approx((10 + 2) * 2**30 / 2**17 + 4096)


def test_kv_capacity_that_would_rest_on_an_unknown_is_na_with_its_reason():
    unseen = sample_of(why={"kv_tokens_resident": "no watched model returned a KV cache"})
    kv = agent_kv((unseen,), (host_device(64 * 2**30, 24 * 2**30),), kv_bytes_per_token=131072)
    assert kv.capacity_tokens is None and kv.resident_tokens is None
    assert "resident" in kv.why["kv_capacity_tokens"] and "KV cache" in kv.why["kv_tokens_resident"]
    assert agent_kv((sample_of(kv_tokens_resident=5, kv_source="cache"),), (), None).why["kv_capacity_tokens"]


def test_memory_from_inside_on_a_cpu_is_never_all_na():
    memory = agent_memory((sample_of(rss_bytes=3 * 10**9, weights_bytes=10**9,
                                     why={"torch": "CUDA not initialised in this process (CPU run, or not yet)"}),))
    assert memory.rss_bytes == 3 * 10**9 and memory.weights_bytes == 10**9
    assert memory.torch_allocated_bytes is None and "CUDA not initialised" in memory.why["torch_allocated_bytes"]


def test_the_figures_under_the_agent_have_context_headroom_and_a_modeled_capacity():
    """Two ticks of an agent-watched CPU process: the one derivation layer fills the resident KV
    tokens, the context, the capacity (modeled, with its rule), headroom, sequences that fit, the
    decode ceiling at that context and the weights; --once --json carries them as figures."""
    config = dict(samples.LLAMA2_7B, _name_or_path="llama-2-7b")
    tree = ProcessTree(root_pid=1, processes=(ProcessInfo(pid=1, ppid=None, name="python", cmdline=("python",),
                                                          rss_bytes=20 * 10**9),), framework="python")
    host = HostCeilings(bandwidth_bytes_per_s=50e9, peak_flops=1e12, source="given", memory_total_bytes=256 * 2**30)
    live = LiveModel()
    view = None
    for tick in range(2):
        agents = (sample_of(time=1000.0 + tick, generation_tokens_total=100.0 * tick, decode_steps_total=25.0 * tick,
                            batch=4, model_config=config, params=6_738_415_616, kv_tokens_resident=4 * 512,
                            kv_source="cache", rss_bytes=20 * 10**9, weights_bytes=13 * 10**9),)
        snapshot = Snapshot(time=1000.0 + tick, monotonic=10.0 + tick, interval_s=1.0, tree=tree,
                            devices=(host_device(256 * 2**30, 56 * 2**30),), engine=engine_from_agents(agents),
                            host=host, agents=agents)
        view = live.update(snapshot)
    f = live_to_json(view)["figures"]
    kv_per_token = f["kv_bytes_per_token"]["value"]
    assert f["kv_resident_tokens"]["value"] == 2048 and f["kv_resident_tokens"]["source"] == "measured"
    assert f["context_tokens"]["value"] == 512
    assert f["kv_capacity_tokens"]["source"] == "modeled" and "host memory" in f["kv_capacity_tokens"]["note"]
    assert f["kv_capacity_tokens"]["value"] == pytest.approx(200 * 2**30 / kv_per_token + 2048)
    assert f["kv_headroom_tokens"]["value"] == pytest.approx(200 * 2**30 / kv_per_token)
    assert f["sequences_fit"]["value"] == pytest.approx(200 * 2**30 / kv_per_token / 512)
    assert f["kv_usage"]["value"] > 0 and "ctx 512" in f["decode_ceiling_tokens_per_s"]["note"]
    assert f["weight_bytes"]["value"] == 13 * 10**9 and f["weight_bytes"]["source"] == "measured"


def test_under_the_agent_an_unseen_cache_makes_kv_figures_na_never_zero():
    config = dict(samples.LLAMA2_7B, _name_or_path="llama-2-7b")
    tree = ProcessTree(root_pid=1, processes=(ProcessInfo(pid=1, ppid=None, name="python", cmdline=("python",)),),
                       framework="python")
    live = LiveModel()
    view = None
    for tick in range(2):
        agents = (sample_of(time=1000.0 + tick, generation_tokens_total=100.0 * tick, batch=4, model_config=config,
                            params=1, why={"kv_tokens_resident": "no watched model returned a KV cache"}),)
        snapshot = Snapshot(time=1000.0 + tick, monotonic=10.0 + tick, interval_s=1.0, tree=tree,
                            devices=(host_device(256 * 2**30, 56 * 2**30),), engine=engine_from_agents(agents),
                            host=HostCeilings(50e9, 1e12, "given", 256 * 2**30), agents=agents)
        view = live.update(snapshot)
    f = view.figures
    for name in ("kv_resident_tokens", "context_tokens", "kv_capacity_tokens", "kv_headroom_tokens", "sequences_fit"):
        assert getattr(f, name).value is None and getattr(f, name).source == "n/a", name
    assert "KV cache" in f.kv_resident_tokens.why and "resident" in f.kv_capacity_tokens.why
