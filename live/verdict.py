"""The verdict: where the process sits against the roofline, and what would move it.

The finding (its numbers move every tick) and the advice (it rarely changes) are separate fields so
views colour and lay them out without parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass

from infermon.live.view import Verdict
from infermon.model.digits import sig3

# Below this many tokens/s the server counts as idle (counters can tick by a token or two from a
# finishing request).
IDLE_TOKENS_PER_S = 0.5
# Modeled and measured bandwidth "disagree" beyond this relative gap.
DISAGREEMENT = 0.25
# A modeled share of a peak above this is physically impossible (with some slack for datasheet rounding).
IMPOSSIBLE = 1.10
# The phase word describes the workload over this many seconds, not one tick: prompts arrive in
# bursts (a request's whole prompt is prefilled in one step), so the prompt ÷ generation ratio of a
# single 1-s tick swings across the 0.25 line between "decode" and "mixed" (29 flips in 74 ticks
# beside a loaded llama.cpp server) while the load itself does not change.
PHASE_WINDOW_S = 5.0
# The working phases in order of prompt ÷ generated tokens, and the ratios between them.
WORKING_PHASES = ("decode", "mixed", "prefill")
PHASE_BOUNDS = (0.25, 4.0)
# A phase once shown gives way only when the window's ratio is this far past the bound (20%): a load
# that sits near 0.25 (the bench's llama.cpp load: 0.24–0.27) keeps one word. Over those 74 ticks,
# the window alone left 11 flips, the window and this margin none.
PHASE_MARGIN = 0.2


@dataclass(frozen=True)
class VerdictInputs:
    """What the verdict reads: rates (tokens/s), shares (0–1), intensity and ridge (FLOP/B)."""

    generation: float | None
    prompt: float | None
    batch: float | None
    intensity: float | None
    ridge: float | None
    mbu: float | None
    mfu: float | None
    disagreement: float | None
    have_model: bool
    have_hardware: bool
    stale_for: float | None = None
    no_counters_why: str | None = None
    first_reading_of: str | None = None  # "the engine's" or "the agent's": counters read once so far
    agent_not_counting: str | None = None  # an agent runs but counts no tokens: why, in a sentence
    previous_phase: str | None = None  # the phase the verdict showed last tick
    # Mean generation and prompt rates (tokens/s) over the last PHASE_WINDOW_S of ticks that were
    # neither idle nor unknown, this one included; None: the phase is this tick's alone.
    recent_generation: float | None = None
    recent_prompt: float | None = None


def phase_of(generation: float | None, prompt: float | None) -> str:
    """idle, prefill, decode, mixed, or unknown (no token rate at all)."""
    if generation is None and prompt is None:
        return "unknown"
    gen, pre = generation or 0.0, prompt or 0.0
    if gen < IDLE_TOKENS_PER_S and pre < IDLE_TOKENS_PER_S:
        return "idle"
    if pre > PHASE_BOUNDS[1] * gen:
        return "prefill"
    if pre > PHASE_BOUNDS[0] * gen:
        return "mixed"
    return "decode"


def steady_phase(x: VerdictInputs) -> str:
    """The phase of this tick (:func:`phase_of`), except that a working tick (prefill, decode or
    mixed) takes the phase of the recent window's mean rates, when that is a working one too: idle
    and unknown show at once, and which kind of work it is is judged over PHASE_WINDOW_S. A working
    phase shown last tick stays until the window's prompt ÷ generated ratio is PHASE_MARGIN past the
    bound it would cross (above 0.30 to leave decode, below 0.20 to leave mixed for decode)."""
    phase = phase_of(x.generation, x.prompt)
    if phase in ("idle", "unknown") or x.recent_generation is None:
        return phase
    steady = phase_of(x.recent_generation, x.recent_prompt)
    if steady not in WORKING_PHASES:
        return phase
    previous = x.previous_phase
    if previous in WORKING_PHASES and steady != previous:
        ratio = (x.recent_prompt or 0.0) / x.recent_generation if x.recent_generation else float("inf")
        at = WORKING_PHASES.index(previous)
        if WORKING_PHASES.index(steady) > at:
            if ratio <= PHASE_BOUNDS[at] * (1 + PHASE_MARGIN):
                return previous
        elif ratio >= PHASE_BOUNDS[at - 1] * (1 - PHASE_MARGIN):
            return previous
    return steady


def bound_of(phase: str, intensity: float | None, ridge: float | None) -> str | None:
    """memory when the operating intensity is below the ridge, compute above it."""
    if intensity is not None and ridge is not None:
        return "memory" if intensity < ridge else "compute"
    if phase in ("decode", "mixed") and ridge is not None:
        return "memory"
    return None


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _about(value: float) -> str:
    """Two significant digits: the verdict states a size, not a reading that flickers every tick."""
    if value >= 100:
        return f"{round(value, -(len(str(int(value))) - 2)):,.0f}"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.1f}"


NO_COUNTERS_ADVICE = ("give --metrics-url, or load the agent (infermon attach PID, or start the script with "
                      "infermon run)")


def verdict(x: VerdictInputs) -> Verdict:
    """One finding and one piece of advice, from the figures of this tick (the phase word from the
    last few seconds: :func:`steady_phase`)."""
    phase = steady_phase(x)
    bound = bound_of(phase, x.intensity, x.ridge)
    if phase == "unknown":
        if x.first_reading_of:
            # Counters there, read once: a rate is a difference of two readings (none is "no counters").
            return Verdict(phase, None, f"starting: {x.first_reading_of} token counters read once so far",
                           "the rates show from the next sample", "neutral")
        if x.agent_not_counting:
            return Verdict(phase, None, x.agent_not_counting, "infermon keeps trying every interval", "warning")
        if x.no_counters_why:
            return Verdict(phase, None, f"no token counters: {x.no_counters_why}",
                           "infermon keeps trying every interval", "warning")
        return Verdict(phase, None, "no token counters: no engine metrics and no agent", NO_COUNTERS_ADVICE, "warning")
    stale = f" (no new reading for {x.stale_for:.0f} s)" if x.stale_for else ""
    if phase == "idle":
        return Verdict(phase, None, f"idle: no tokens generated or prefilled{stale}", "", "idle")
    if not x.have_model or not x.have_hardware:
        missing = "--model" if not x.have_model else "a known device (--gpu)"
        return Verdict(phase, bound, f"{phase}: {x.generation or 0:.1f} tokens/s generated{stale}",
                       f"give {missing} for the roofline", "neutral")
    over = [(name, share) for name, share in (("bandwidth", x.mbu), ("FLOP/s", x.mfu))
            if share is not None and share > IMPOSSIBLE]
    if over:
        name, share = max(over, key=lambda pair: pair[1])
        return Verdict(phase, bound, f"{phase}: the modeled {name} is {_pct(share)} of the device peak, which cannot be",
                       "the model, the batch or the device figures do not match this process (check --model, --gpu)",
                       "warning")
    advice_parts: list[str] = []
    if bound == "compute" or phase == "prefill":
        label = f"memory-bound {phase}" if bound == "memory" else ("compute-bound prefill" if phase == "prefill"
                                                                    else f"compute-bound {phase}")
        finding = label
        if x.intensity is not None and x.ridge is not None:
            finding += f": {_about(x.intensity)} FLOP/B vs ridge {sig3(x.ridge)}"
        if x.mfu is not None:
            finding += f" — {_pct(x.mfu)} of peak FLOP/s"
        if bound == "compute":
            advice_parts.append("more batch no longer helps: a faster device, lower precision (fp8) or fewer FLOPs per token")
        tone = "memory" if bound == "memory" else "compute"
    else:
        finding = f"memory-bound {phase}"
        details = []
        if x.batch:
            details.append(f"batch {x.batch:.0f}")
        if x.intensity is not None and x.ridge is not None:
            details.append(f"{_about(x.intensity)} FLOP/B vs ridge {sig3(x.ridge)}")
        if details:
            finding += ": " + ", ".join(details)
        if x.mbu is not None:
            finding += f" — {5 * round(x.mbu * 20):.0f}% of peak bandwidth"
            if x.mbu >= 0.8:
                advice_parts.append("near the ceiling: more concurrent requests, weight quantization or speculative "
                                    "decoding raise tokens/s")
            elif x.mbu < 0.3:
                advice_parts.append("far below the ceiling: per-step overheads dominate (scheduling, CPU, small batches)")
            else:
                advice_parts.append("more concurrent requests, weight quantization or speculative decoding raise tokens/s")
        tone = "memory"
    finding += stale
    if x.disagreement is not None and x.disagreement > DISAGREEMENT:
        advice_parts.append(f"modeled and measured bandwidth differ by {_pct(x.disagreement)}")
    return Verdict(phase, bound, finding, "; ".join(advice_parts), tone)
