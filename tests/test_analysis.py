"""The derivation layer on hand-built snapshots: modeled bandwidth, MBU, MFU, intensity, verdict, KV."""

from dataclasses import replace

import pytest

from infermon.testing import scripted
from infermon.live.derive import Deriver
from infermon.live.verdict import VerdictInputs, verdict
from infermon.model.config import spec_from_config
from infermon.model.figures import model_figures, weight_bytes_read_per_step
from infermon.model.kv import attention_flops_per_token
from infermon.model.work import head_flops_per_token
from infermon.probes.snapshot import EngineSample, HostCeilings, ProcessInfo, ProcessTree, Snapshot

from infermon.testing.samples import LLAMA2_7B


def a10_snapshot(i: float, generated: float, prompt: float, running: float, usage: float | None,
                 capacity: int | None, steps: float | None = None, url: str = "http://127.0.0.1:8000/metrics",
                 **engine) -> Snapshot:
    """A vLLM-like server of Llama-2-7B on a host whose peaks are the A10's (600 GB/s, 125 TFLOP/s)."""
    root = ProcessInfo(pid=10, ppid=1, name="python", cmdline=("vllm", "serve", "llama-2-7b"), rss_bytes=1_000)
    tree = ProcessTree(root_pid=10, processes=(root,), framework="vllm", model_argument="llama-2-7b")
    sample = EngineSample(kind="vllm", url=url, generation_tokens_total=generated, prompt_tokens_total=prompt,
                          requests_running=running, batch=running, kv_usage=usage, kv_capacity_tokens=capacity,
                          **engine)
    if steps is not None:
        sample = replace(sample, steps_total=steps)
    host = HostCeilings(bandwidth_bytes_per_s=600e9, peak_flops=125e12, source="given on the command line",
                        memory_total_bytes=24_000_000_000)
    return Snapshot(time=1000.0 + i, monotonic=i, interval_s=1.0, tree=tree, engine=sample, host=host)


def fig():
    return model_figures(spec_from_config(LLAMA2_7B))


def test_memory_bound_decode_figures_follow_the_formulas():
    deriver = Deriver("llama-2-7b")
    deriver.update(a10_snapshot(0, 0, 0, 3, 3000 / 13000, 13000))
    view = deriver.update(a10_snapshot(1, 60, 0, 3, 3000 / 13000, 13000))
    f, model = view.figures, fig()
    context = 1000.0
    expected_bw = 60 / 3 * weight_bytes_read_per_step(model, 3) + 60 * context * model.kv_bytes_per_token
    assert f.context_tokens.value == pytest.approx(context)
    assert f.bandwidth_modeled_bytes_per_s.value == pytest.approx(expected_bw)
    assert f.mbu.value == pytest.approx(expected_bw / 600e9)
    flops = 60 * (model.flops_per_token + attention_flops_per_token(model.spec, 1000))
    assert f.flops_modeled_per_s.value == pytest.approx(flops)
    assert f.operating_intensity.value == pytest.approx(flops / expected_bw)
    assert f.kv_headroom_tokens.value == pytest.approx(10000)
    assert f.sequences_fit.value == pytest.approx(10)
    assert view.verdict.bound == "memory"
    assert view.verdict.finding.startswith("memory-bound decode: batch 3")
    assert "vs ridge 208" in view.verdict.finding and "of peak bandwidth" in view.verdict.finding
    assert f.peak_bandwidth_bytes_per_s.source == "given"


def test_prompt_tokens_compute_no_logits():
    deriver = Deriver("llama-2-7b")
    deriver.update(a10_snapshot(0, 0, 0, 1, 0.0, 13000))
    view = deriver.update(a10_snapshot(1, 0, 1000, 1, 0.0, 13000))
    model = fig()
    assert view.figures.flops_modeled_per_s.value == pytest.approx(1000 * (model.flops_per_token - head_flops_per_token(model)))
    assert view.verdict.phase == "prefill"



def test_the_phase_word_holds_while_prompts_arrive_in_bursts():
    """Prompts are prefilled in bursts: 100 tokens/s generated with 10 and 30 prompt tokens in
    turn is a decode load (0.2 prompt per generated token), though each tick alone reads decode
    (0.1), then mixed (0.3), then decode. The phase word is judged over the last 5 s, and a word
    shown stays until the ratio is 20% past the bound; idle shows at once, and a lasting change of
    load shows within the window."""
    deriver = Deriver("llama-2-7b")
    generated = prompt = 0.0
    deriver.update(a10_snapshot(0, generated, prompt, 3, 0.2, 13000))
    phases = []
    for i in range(1, 13):
        generated += 100
        prompt += 30 if i % 2 == 0 else 10
        phases.append(deriver.update(a10_snapshot(i, generated, prompt, 3, 0.2, 13000)).verdict.phase)
    assert phases == ["decode"] * 12
    changed = []
    for i in range(13, 18):  # now 60 prompt tokens every second: 0.6 per generated token
        generated, prompt = generated + 100, prompt + 60
        changed.append(deriver.update(a10_snapshot(i, generated, prompt, 3, 0.2, 13000)).verdict.phase)
    assert changed[-1] == "mixed", changed
    # Near the bound, the word shown stays: 0.22 prompt per generated token is still "mixed" after
    # mixed (a fall below 0.20 would make it decode), and 0.28 still "decode" after decode.
    near = []
    for i in range(18, 28):
        generated, prompt = generated + 100, prompt + 22
        near.append(deriver.update(a10_snapshot(i, generated, prompt, 3, 0.2, 13000)).verdict.phase)
    assert near == ["mixed"] * 10, near
    for i in range(28, 34):
        generated, prompt = generated + 100, prompt + 10
        deriver.update(a10_snapshot(i, generated, prompt, 3, 0.2, 13000))
    assert deriver.update(a10_snapshot(34, generated + 100, prompt + 10, 3, 0.2, 13000)).verdict.phase == "decode"
    generated, prompt = generated + 100, prompt + 10
    near = []
    for i in range(35, 45):
        generated, prompt = generated + 100, prompt + 28
        near.append(deriver.update(a10_snapshot(i, generated, prompt, 3, 0.2, 13000)).verdict.phase)
    assert near == ["decode"] * 10, near
    for i in range(45, 51):  # the counters stop: idle as soon as the rates say so (a short pause is held)
        view = deriver.update(a10_snapshot(i, generated, prompt, 0, 0.0, 13000))
        if not view.figures.generation_tokens_per_s.value:
            break
    assert view.verdict.phase == "idle" and not view.figures.prompt_tokens_per_s.value
    # After idle, a new burst is judged on its own: a prompt alone is prefill at once.
    assert deriver.update(a10_snapshot(i + 1, generated, prompt + 2000, 1, 0.0, 13000)).verdict.phase == "prefill"

def test_engine_step_counter_beats_the_sampled_batch():
    deriver = Deriver("llama-2-7b")
    first = a10_snapshot(0, 0, 0, 8, 0.1, 13000)
    deriver.update(replace(first, engine=replace(first.engine, steps_total=0.0, step_tokens_total=0.0)))
    # 100 steps of 5 sequences each, though 8 requests were running at both sampling instants.
    second = a10_snapshot(1, 500, 0, 8, 0.1, 13000)
    view = deriver.update(replace(second, engine=replace(second.engine, steps_total=100.0, step_tokens_total=500.0)))
    assert view.figures.batch.value == pytest.approx(5)
    assert view.figures.steps_per_s.value == pytest.approx(100)
    assert view.figures.tokens_per_step.value == pytest.approx(5)


def test_headroom_is_na_while_the_engine_reports_no_usage():
    deriver = Deriver("llama-2-7b")
    deriver.update(a10_snapshot(0, 0, 0, 2, None, 4096))
    view = deriver.update(a10_snapshot(1, 40, 0, 2, None, 4096))
    f = view.figures
    assert f.kv_capacity_tokens.value == 4096 and f.kv_capacity_tokens.source == "engine-reported"
    assert f.kv_headroom_tokens.value is None and f.kv_headroom_tokens.source == "n/a"
    assert f.kv_headroom_tokens.why
    assert f.bandwidth_modeled_bytes_per_s.note.startswith("weights only")


def test_a_source_that_did_not_publish_keeps_its_rate_and_is_never_idle():
    deriver = Deriver("llama-2-7b")
    deriver.update(a10_snapshot(0, 0, 0, 2, 0.1, 13000, source_time=0.0))
    deriver.update(a10_snapshot(1, 100, 0, 2, 0.1, 13000, source_time=1.0))
    # The next tick sees the same reading (the source has not published since).
    held = deriver.update(a10_snapshot(2, 100, 0, 2, 0.1, 13000, source_time=1.0))
    assert held.figures.generation_tokens_per_s.value == pytest.approx(100)
    assert held.verdict.phase != "idle"
    # When it publishes, the rate is over its own clock: 200 tokens in its 2 s, not 200 in one tick.
    after = deriver.update(a10_snapshot(3, 300, 0, 2, 0.1, 13000, source_time=3.0))
    assert after.figures.generation_tokens_per_s.value == pytest.approx(100)
    assert after.summary.generation_tokens == 300


def test_an_engine_that_stops_answering_is_held_then_stale_and_says_so():
    deriver = Deriver("llama-2-7b")
    deriver.update(a10_snapshot(0, 0, 0, 2, 0.1, 13000))
    deriver.update(a10_snapshot(1, 100, 0, 2, 0.1, 13000))
    down = a10_snapshot(2, 100, 0, 2, 0.1, 13000)
    down = replace(down, engine=EngineSample(kind="vllm", url=down.engine.url, why={"engine": "timed out after 0.8 s"}))
    held = deriver.update(down)
    assert held.figures.generation_tokens_per_s.value == pytest.approx(100)
    assert not held.figures.generation_tokens_per_s.stale
    for i in range(3, 7):
        view = deriver.update(replace(down, monotonic=float(i), time=1000.0 + i))
    assert view.figures.generation_tokens_per_s.stale
    assert view.verdict.phase != "idle" and "no new reading" in view.verdict.finding


def test_an_engine_that_never_answered_names_the_url_not_give_metrics_url():
    deriver = Deriver("llama-2-7b")
    snap = a10_snapshot(0, 0, 0, 2, 0.1, 13000, url="http://10.0.0.5:8000/metrics")
    snap = replace(snap, engine=EngineSample(kind="vllm", url=snap.engine.url, why={"engine": "timed out after 0.8 s"}))
    view = deriver.update(snap)
    view = deriver.update(replace(snap, monotonic=1.0))
    assert view.verdict.phase == "unknown"
    assert "http://10.0.0.5:8000/metrics" in view.verdict.finding and "timed out" in view.verdict.finding
    assert "--metrics-url" not in view.verdict.text


def test_unknown_model_says_why():
    deriver = Deriver()
    snap = a10_snapshot(0, 0, 0, 1, 0.1, 100)
    snap = replace(snap, tree=replace(snap.tree, model_argument=None))
    deriver.update(snap)
    view = deriver.update(replace(a10_snapshot(1, 40, 0, 1, 0.1, 100), tree=snap.tree))
    assert view.figures.mbu.value is None and "model" in view.figures.mbu.why
    assert "--model" in view.verdict.advice


def test_verdicts_in_words():
    common = dict(batch=1, intensity=None, ridge=208.0, mbu=None, mfu=None, disagreement=None, have_model=True,
                  have_hardware=True)
    assert verdict(VerdictInputs(generation=0.0, prompt=0.0, **common)).finding.startswith("idle")
    assert verdict(VerdictInputs(generation=None, prompt=None, **common)).finding.startswith("no token counters")
    first = verdict(VerdictInputs(generation=None, prompt=None, first_reading_of="the engine's", **common))
    assert first.finding == "starting: the engine's token counters read once so far" and first.tone == "neutral"
    prefill = verdict(VerdictInputs(generation=5.0, prompt=5000.0, **{**common, "intensity": 900.0}))
    assert prefill.finding.startswith("compute-bound prefill") and prefill.tone == "compute"
    off = verdict(VerdictInputs(generation=5000.0, prompt=0.0, **{**common, "mbu": 8.0}))
    assert "cannot be" in off.finding and "--model" in off.advice
    differ = verdict(VerdictInputs(generation=40.0, prompt=0.0, **{**common, "mbu": 0.5, "disagreement": 0.4}))
    assert "differ by 40%" in differ.advice and differ.tone == "memory"


@pytest.mark.parametrize("ridge", [3.44, 295.2, 1234.5, 0.5])
def test_the_verdicts_ridge_reads_as_the_ridge_row_does(ridge):
    from infermon.live.figure import figure
    from infermon.views.fmt import value_text

    shown = value_text(figure(ridge, "FLOP/B", "modeled")).removesuffix(" FLOP/B")
    for generation, prompt, intensity in ((40.0, 0.0, ridge / 2), (5.0, 5000.0, ridge * 4)):  # decode, prefill
        finding = verdict(VerdictInputs(generation=generation, prompt=prompt, batch=2, intensity=intensity,
                                        ridge=ridge, mbu=0.5, mfu=0.4, disagreement=None, have_model=True,
                                        have_hardware=True)).finding
        assert f"vs ridge {shown} " in finding + " ", finding


def test_scripted_views_are_consistent_end_to_end():
    view = scripted.views(6)[-1]
    assert view.verdict.finding.startswith("memory-bound decode")
    assert view.figures.mbu_measured.value == pytest.approx(0.45)


def test_rates_over_a_counter_coarser_than_the_interval():
    from infermon.live.rates import SourceRates

    rates = SourceRates(1.0)
    # A slow device: 4 tokens every 2 s, read every second.
    readings = [(0.0, 0), (1.0, 4), (2.0, 4), (3.0, 8), (4.0, 8), (5.0, 12)]
    seen = [rates.update(t, {"generation": v}, now=t)["generation"] for t, v in readings]
    assert seen[0].per_s is None
    # A pause between increases is held, not zero; the next increase is spread over the time since the last.
    assert seen[2].held and "between increases" in seen[2].why
    assert seen[3].per_s == 2.0 and not seen[3].held  # 4 tokens over the 2 s since the last increase
    assert seen[4].per_s == 2.0 and seen[4].held and seen[4].delta == 0
    assert seen[5].per_s == 2.0
    assert sum(r.delta or 0 for r in seen) == 12  # totals stay exact
    # A pause well past the usual gap is a real zero.
    for t in (6.0, 7.0, 8.0, 9.0):
        last = rates.update(t, {"generation": 12}, now=t)["generation"]
    assert last.per_s == 0.0 and not last.held


def test_the_engines_own_speculative_decoding_sets_the_speculative_lever():
    deriver = Deriver("llama-2-7b")
    spec = dict(spec_drafts_total=0.0, spec_draft_tokens_total=0.0, spec_accepted_tokens_total=0.0)
    deriver.update(a10_snapshot(0, 0, 0, 2, 0.1, 13000, **spec))
    # 100 drafts of 4 tokens, 240 accepted: 60% of draft tokens.
    view = deriver.update(a10_snapshot(1, 300, 0, 2, 0.1, 13000, spec_drafts_total=100.0,
                                       spec_draft_tokens_total=400.0, spec_accepted_tokens_total=240.0))
    assert view.figures.spec_acceptance_rate.value == pytest.approx(0.6)
    assert view.figures.spec_acceptance_rate.source == "engine-reported"
    lever = next(item for item in view.levers.levers if item.key == "speculative")
    assert "engine-reported" in lever.change and "k=4" in lever.change


def test_the_first_tick_says_the_counters_were_read_once_never_that_there_are_none():
    """A rate is the difference of two readings: on the first tick the engine (or the agent) has
    answered, and the verdict once said "no engine metrics and no agent" all the same."""
    from infermon.testing import scripted

    first, second = scripted.views(2)
    assert first.verdict.finding.startswith("starting: the engine's") and "no agent" not in first.verdict.finding
    assert first.figures.generation_tokens_per_s.value is None
    assert second.verdict.finding.startswith("memory-bound")
    # Nothing answered at all: that is still said so.
    assert scripted.views(1, with_engine=False)[0].verdict.finding.startswith("no token counters")


def test_an_engine_without_token_counters_is_named_not_called_absent():
    from infermon.live.derive import Deriver
    from infermon.probes.snapshot import evolve
    from infermon.testing import scripted

    deriver = Deriver()
    views = [deriver.update(evolve(s, engine=evolve(s.engine, generation_tokens_total=None, prompt_tokens_total=None)))
             for s in scripted.snapshots(2)]
    assert views[1].verdict.finding == "no token counters: the source does not report it", views[1].verdict
