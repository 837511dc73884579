"""What the agent sees inside the process, checked against the script's own count and clock:
exact token counts of Hugging Face generate() (batch, early stops, streaming, several models),
the resident KV tokens of the cache the model returned, time to first token and inter-token
latency, the plain-loop reporting API, memory, and the final record at exit."""

import gc
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import infermon.probes.agent as agent  # noqa: E402
from infermon.model.histogram import quantile  # noqa: E402
from infermon.probes.agent_channel import read_agents  # noqa: E402

from infermon.testing import hf_tiny  # noqa: E402
from infermon.testing import tiny_generate  # noqa: E402

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def channel(tmp_path, monkeypatch):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    yield Path(agent.channel_dir())
    agent.stop()


def record_now():
    return json.loads(Path(agent.record_path(os.getpid())).read_text())


def final_record():
    """Stop the agent: its final record holds everything counted (no interval is lost)."""
    agent.stop()
    record = record_now()
    assert record["final"] is True
    return record


def wait_record(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    record = None
    while time.monotonic() < deadline:
        try:
            record = record_now()
            if check(record):
                return record
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"no matching record; last: {record and {k: record.get(k) for k in ('kv_tokens_resident', 'generation_tokens_total')}}")


# ------------------------------------------------------------------------------ exact counts


def test_batch_generate_counts_each_sequence_until_its_eos_not_the_padding(channel):
    model = hf_tiny.tiny_llama()
    assert agent.start(60.0)  # one record now, the next one final: it alone must carry the counts
    ids = hf_tiny.prompts(3, 7)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding: not prompt tokens
    mask[2, :1] = 0
    with torch.no_grad():
        first = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                               logits_processor=hf_tiny.stop_at(7, [3, None, 5]))
        second = model.generate(hf_tiny.prompts(2, 5, seed=1), max_new_tokens=6, do_sample=False,
                                logits_processor=hf_tiny.stop_at(5, [None, None]))
    # generate() pads sequences that stopped early: counting forward calls would say 3 × 10 + 2 × 6.
    assert first[0, 7 + 3:].tolist() == [hf_tiny.PAD] * 7
    script = hf_tiny.generated_tokens(first, 7) + hf_tiny.generated_tokens(second, 5)
    assert script == 3 + 10 + 5 + 2 * 6
    record = final_record()
    assert record["generation_tokens_total"] == script
    assert record["prompt_tokens_total"] == int(mask.sum()) + 2 * 5
    assert record["requests_total"] == 5
    assert record["counting"] == "hooks" and record["hf_generate_hooked"] is True
    [model_entry] = record["models"]
    assert model_entry["name"] == "tiny-llama" and model_entry["generation_tokens_total"] == script
    assert model_entry["weights_bytes"] == sum(p.numel() * p.element_size() for p in model.parameters())


def test_streaming_with_text_iterator_streamer_counts_every_token(channel):
    from transformers import TextIteratorStreamer

    model = hf_tiny.tiny_llama()
    agent.start(60.0)
    streamer = TextIteratorStreamer(hf_tiny.word_tokenizer(), skip_prompt=True)
    result = {}

    def run():
        with torch.no_grad():
            result["output"] = model.generate(hf_tiny.prompts(1, 5), max_new_tokens=20, do_sample=False,
                                              streamer=streamer, logits_processor=hf_tiny.stop_at(5, [12]))

    thread = threading.Thread(target=run)
    thread.start()
    text = "".join(streamer)  # the script consumes the stream as a server would
    thread.join(60)
    assert text.split() and hf_tiny.generated_tokens(result["output"], 5) == 12
    record = final_record()
    assert record["generation_tokens_total"] == 12
    assert record["ttft"]["count"] == 1 and record["inter_token"]["count"] == 11


def test_several_models_in_one_process_count_apart_and_together(channel):
    llama, gpt2 = hf_tiny.tiny_llama(), hf_tiny.tiny_gpt2()
    agent.start(60.0)
    counts = {}

    def run(model, name, batch, stops):
        total = 0
        with torch.no_grad():
            for call in range(3):
                output = model.generate(hf_tiny.prompts(batch, 6, seed=call), max_new_tokens=8, do_sample=False,
                                        logits_processor=hf_tiny.stop_at(6, stops))
                total += hf_tiny.generated_tokens(output, 6)
        counts[name] = total

    threads = [threading.Thread(target=run, args=(llama, "tiny-llama", 2, [4, None])),
               threading.Thread(target=run, args=(gpt2, "tiny-gpt2", 3, [None, 2, 7]))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    record = final_record()
    assert counts == {"tiny-llama": 3 * (4 + 8), "tiny-gpt2": 3 * (8 + 2 + 7)}
    assert record["generation_tokens_total"] == sum(counts.values())
    assert {m["name"]: m["generation_tokens_total"] for m in record["models"]} == counts
    assert record["watched_modules"] == 2
    assert record["ttft"]["count"] == 3 * 2 + 3 * 3


# ------------------------------------------------------------------------------ KV cache


def test_resident_kv_tokens_are_the_returned_caches_length_at_every_step(channel):
    model = hf_tiny.tiny_llama()
    agent.start(0.05)
    seen = []

    class EveryStep(hf_tiny.Clock):
        def put(self, value):
            super().put(value)
            kv, _ = agent._current()._kv()
            seen.append(kv["kv_tokens_resident"])

    with torch.no_grad():
        output = model.generate(hf_tiny.prompts(2, 6), max_new_tokens=5, do_sample=False, streamer=EveryStep(),
                                logits_processor=hf_tiny.stop_at(6, [None, None]), return_dict_in_generate=True)
    # Each step's tokens reach the streamer after the forward call that appended their K and V:
    # the prompt's 6, then one more per step (the last token generated is never fed back).
    assert seen[1:] == [2 * (6 + step) for step in range(5)]
    cache = output.get("cache") if output.get("cache") is not None else output.get("past_key_values")
    expected = cache.get_seq_length() * 2
    assert expected == 2 * (6 + 5 - 1)
    layers = getattr(cache, "layers", [])
    cache_bytes = sum(t.numel() * t.element_size() for layer in layers for t in (layer.keys, layer.values))
    record = wait_record(lambda r: r["kv_tokens_resident"] == expected)
    assert record["kv_source"] == "cache"
    if layers:
        assert record["kv_bytes_resident"] == cache_bytes
    # The script lets the cache go: nothing is resident any more.
    del output, cache, layers
    gc.collect()
    wait_record(lambda r: r["kv_tokens_resident"] == 0)


def test_a_static_cache_is_read_off_the_scripts_thread(channel):
    model = hf_tiny.tiny_llama()
    agent.start(0.05)
    with torch.no_grad():
        try:
            output = model.generate(hf_tiny.prompts(2, 4), max_new_tokens=3, do_sample=False,
                                    cache_implementation="static", return_dict_in_generate=True,
                                    logits_processor=hf_tiny.stop_at(4, [None, None]))
        except Exception as exc:  # a transformers without static caches on this model
            pytest.skip(f"static cache unavailable: {exc}")
    cache = output.get("cache") if output.get("cache") is not None else output.get("past_key_values")
    assert cache.is_compileable
    expected = int(cache.get_seq_length()) * 2
    wait_record(lambda r: r["kv_tokens_resident"] == expected)


# ------------------------------------------------------------------------------ latencies


def rank_neighbours(values, q):
    """The observations at either side of rank q × n: any q-quantile of them lies between the two."""
    ordered = sorted(values)
    rank = q * len(ordered)
    return ordered[max(0, math.ceil(rank) - 1)], ordered[min(len(ordered) - 1, math.floor(rank))]


def test_rank_neighbours_straddle_a_gap_between_clusters():
    assert rank_neighbours([0.005] * 4 + [0.12] * 4, 0.5) == (0.005, 0.12)
    assert rank_neighbours([1, 2, 3], 0.5) == (2, 2)


def test_time_to_first_token_and_inter_token_latency_follow_the_scripts_clock(channel):
    model = hf_tiny.tiny_llama(layers=4)
    agent.start(60.0)
    ttft, itl = [], []  # the script's own clock: (seconds, sequences)
    with torch.no_grad():
        for call in range(4):
            clock = hf_tiny.Clock()
            began = time.perf_counter()
            model.generate(hf_tiny.prompts(2, 16, seed=call), max_new_tokens=12, do_sample=False, streamer=clock,
                           logits_processor=hf_tiny.stop_at(16, [6, None]))
            ttft += [clock.times[0] - began] * 2
            for step in range(1, len(clock.times)):
                running = 1 if step >= 6 else 2  # the first sequence's sixth token was its EOS
                itl += [clock.times[step] - clock.times[step - 1]] * running
    record = final_record()
    sample = read_agents({os.getpid()}).agents[0]
    assert record["ttft"]["count"] == len(ttft) == 8
    assert record["inter_token"]["count"] == len(itl) == 4 * (5 + 11)
    # Both clocks time the same instants, microseconds apart: the sums agree closely.
    assert record["ttft"]["sum"] == pytest.approx(sum(ttft), rel=0.05, abs=2e-3 * len(ttft))
    assert record["inter_token"]["sum"] == pytest.approx(sum(itl), rel=0.05, abs=5e-4 * len(itl))
    # Percentiles read from the histogram, as the monitor does: within one bucket (×1.5) of the
    # observations either side of the median's rank. (Not of their mean: on a busy machine the calls'
    # first tokens come in two clusters, say 5 ms and 120 ms, and halfway between them no observation
    # lies; a histogram puts the median at the edge of the lower one, as Prometheus does.)
    for histogram, values in ((sample.ttft, ttft), (sample.inter_token, itl)):
        buckets = list(histogram.buckets) + [(float("inf"), histogram.count)]
        below, above = rank_neighbours(values, 0.5)
        assert below / 1.6 <= quantile(buckets, 0.5) <= above * 1.6


def test_plain_loop_reports_requests_tokens_and_kv_through_the_api(channel):
    model = tiny_generate.TinyDecoder().eval()
    agent.start(60.0)
    agent.watch(model)
    ttft, itl = [], []
    with torch.no_grad():
        for round_index in range(3):
            request = agent.request(3, prompt_tokens=3 * 8)
            began = time.perf_counter()
            logits = model(torch.randint(0, 256, (3, 8)))
            request.tokens()
            last = time.perf_counter()
            ttft += [last - began] * 3
            agent.kv_tokens(3 * 8)
            for step in range(5):
                logits = model(logits[:, -1].argmax(-1, keepdim=True))
                request.tokens()
                now = time.perf_counter()
                itl += [now - last] * 3
                last = now
                agent.kv_tokens(3 * (9 + step))
            request.finish()
    record = final_record()
    assert record["counting"] == "reported"  # the hooks saw the same tokens: counted once
    assert record["generation_tokens_total"] == 3 * 3 * 6
    assert record["prompt_tokens_total"] == 3 * 3 * 8
    assert record["decode_steps_total"] == 3 * 5 and record["batch"] == 3
    assert record["kv_tokens_resident"] == 3 * 13 and record["kv_source"] == "reported"
    assert record["ttft"]["count"] == 9 and record["inter_token"]["count"] == 45
    assert record["ttft"]["sum"] == pytest.approx(sum(ttft), rel=0.05, abs=1e-3 * len(ttft))
    assert record["inter_token"]["sum"] == pytest.approx(sum(itl), rel=0.05, abs=1e-3 * len(itl))


# ------------------------------------------------------------------------------ memory


def test_process_rss_and_the_models_weight_bytes(channel):
    import psutil

    model = hf_tiny.tiny_llama()
    agent.start(0.05)
    agent.watch(model)
    record = wait_record(lambda r: r["watched_modules"] == 1)
    rss = psutil.Process().memory_info().rss
    assert record["rss_bytes"] == pytest.approx(rss, rel=0.2)
    assert record["weights_bytes"] == sum(p.numel() * p.element_size() for p in model.parameters())
    assert record["torch"]["why"].startswith("CUDA not initialised")  # and no CUDA context was made
    assert not torch.cuda.is_initialized()


# ------------------------------------------------------------------------------ one agent, two copies


def test_the_copy_infermon_run_loads_and_the_package_share_one_agent(channel, monkeypatch):
    from infermon.probes.bootstrap import make_bootstrap

    folder = make_bootstrap()
    monkeypatch.syspath_prepend(folder)
    loaded = importlib.import_module("infermon_agent")
    try:
        assert loaded.start(60.0)
        assert agent.running() and agent.start()  # the package sees the running agent, starts none
        agent.kv_tokens(7)
        agent.count_tokens(5)
        assert loaded._agent.reported_kv == 7 and loaded._agent.counters.generation_tokens == 5
        agent.stop()
        assert not loaded.running()
        record = record_now()
        assert record["final"] and record["generation_tokens_total"] == 5
    finally:
        loaded.stop()
        sys.modules.pop("infermon_agent", None)


# ------------------------------------------------------------------------------ exit


def test_sigterm_leaves_a_final_record_with_every_token(channel, tmp_path):
    script = tmp_path / "script.py"
    ready = tmp_path / "ready"
    script.write_text(
        "import sys, time\n"
        "import infermon.probes.agent as agent\n"
        "agent.start(60.0)\n"
        "from infermon.testing import hf_tiny\n"
        "model = hf_tiny.tiny_llama()\n"
        "out = model.generate(hf_tiny.prompts(2, 5), max_new_tokens=9, do_sample=False,\n"
        "                     logits_processor=hf_tiny.stop_at(5, [4, None]))\n"
        f"open({str(ready)!r}, 'w').write(str(hf_tiny.generated_tokens(out, 5)))\n"
        "time.sleep(120)\n")
    process = subprocess.Popen([sys.executable, str(script)], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() or not ready.read_text():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == -signal.SIGTERM  # it still dies of the signal
    finally:
        process.kill()
    record = json.loads(Path(agent.record_path(process.pid)).read_text())
    assert record["final"] is True
    assert record["generation_tokens_total"] == int(ready.read_text()) == 4 + 9


def test_a_forked_child_leaves_the_parents_record_alone(channel, tmp_path):
    script = tmp_path / "fork.py"
    script.write_text(
        "import os, sys, time, json\n"
        "import infermon.probes.agent as agent\n"
        "agent.start(0.05)\n"
        "agent.count_tokens(5)\n"
        "time.sleep(0.3)\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    agent.count_tokens(100)  # the child starts an agent of its own, under its own pid\n"
        "    sys.exit(0)              # and its exit (atexit) must not write the parent's final record\n"
        "os.waitpid(child, 0)\n"
        "time.sleep(0.3)\n"
        "record = json.load(open(agent.record_path(os.getpid())))\n"
        "print(json.dumps([record['final'], record['generation_tokens_total']]))\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                            env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [False, 5]


def test_run_record_total_equals_the_scripts_own_count(channel, tmp_path):
    """`infermon run --record` on a transformers generate() loop: the recording ends with the
    script's own total (the agent's final record), and its figures show the KV cache, latencies and
    memory seen from inside, with their sources."""
    from infermon.views.recording import read_recording

    recording, count = tmp_path / "run.jsonl", tmp_path / "count"
    env = {**os.environ, "COLUMNS": "120"}
    result = subprocess.run([sys.executable, "-m", "infermon.cli.main", "run", "--record", str(recording),
                             "--interval", "0.3", "--host-bandwidth", "25GB/s", "--host-flops", "100GFLOPS", "--",
                             # 40 calls: about 2 s of generate(), several ticks (8 took 0.5 s, and under a
                             # loaded suite no tick of 0.3 s once landed inside one)
                             sys.executable, str(TESTS / "hf_generate.py"), "--calls", "40", "--new", "48",
                             "--count-file", str(count)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    views = read_recording(str(recording)).views
    last = views[-1]
    assert not last.alive
    # The agent's final record reached the recording: its total is the script's, to the token.
    [inside] = last.agents
    assert inside.final and inside.generation_tokens_total == int(count.read_text())
    assert last.summary.generation_tokens == int(count.read_text())
    assert not os.listdir(agent.channel_dir())  # the monitor removed the final record it read
    # While generate() ran, its cache was resident: context, capacity and headroom rest on it.
    busy = [v for v in views if (v.figures.kv_resident_tokens.value or 0) > 0]
    assert busy, "no tick saw a generate() call in flight"
    f = busy[-1].figures
    assert f.kv_resident_tokens.source == "measured" and f.context_tokens.value > 0
    assert f.kv_capacity_tokens.source == "modeled" and "host memory" in f.kv_capacity_tokens.note
    assert f.kv_headroom_tokens.value > 0 and f.sequences_fit.value > 0
    assert last.figures.ttft_p50_s.value > 0 and last.figures.inter_token_p50_s.source == "measured"
    # The model's weights as the agent counts them (in memory while the model lives), and the RSS.
    assert f.weight_bytes.value == busy[-1].agents[0].weights_bytes > 0 and f.weight_bytes.source == "measured"
    assert busy[-1].agents[0].rss_bytes > 0 and f.tree_rss_bytes.value > 0
    assert last.summary.weights_bytes == f.weight_bytes.value and last.summary.max_rss_bytes > 0
