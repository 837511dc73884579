"""The whole sizing computation behind ``infermon calc``: model × GPU × options → one result."""

from __future__ import annotations

from dataclasses import dataclass, field

from infermon.model.dtypes import compute_dtype
from infermon.model.figures import ModelFigures, weight_bytes_read_per_step
from infermon.model.gpu import Hardware
from infermon.model.kv import attention_flops_per_token, kv_bytes_per_sequence
from infermon.model.levers import Levers, OperatingPoint, Speculation, levers
from infermon.model.parallel import Parallelism
from infermon.model.plausibility import does_not_fit_reason, warnings as plausibility_warnings
from infermon.model.roofline import (
    Achieved,
    Ceilings,
    DecodeStep,
    achieved,
    ceilings,
    generation_time_s,
    prefill_time_s,
)


@dataclass(frozen=True)
class CalcOptions:
    """What the user asked for; counts are plain integers, bytes in B."""

    batch: int = 1
    context: int | None = None
    memory_utilization: float = 0.90
    reserve_bytes: float = 1.0e9
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    tokens_per_s: float | None = None
    parallel: Parallelism = Parallelism()
    levers: bool = False
    speculation: Speculation | None = None


@dataclass(frozen=True)
class Generation:
    """One request the seed's way: prefill time and prefill + decode time (s)."""

    prompt_tokens: int
    output_tokens: int
    prefill_time_s: float
    decode_time_s: float
    total_time_s: float


@dataclass(frozen=True)
class CalcResult:
    figures: ModelFigures
    hardware: Hardware
    options: CalcOptions
    ceilings: Ceilings
    step: DecodeStep
    attention_flops_per_token: float
    kv_bytes_per_sequence: float | None
    weight_bytes_read_at_batch: float
    generation: Generation | None
    achieved: Achieved | None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    na: dict[str, str] = field(default_factory=dict)
    levers: Levers | None = None

    @property
    def fits(self) -> bool:
        """Whether the weights fit; when not, the figures named in ``na`` are not numbers but n/a."""
        return "decode_tokens_per_s" not in self.na


# Figures that only exist if the model can run: n/a, with the reason, when the weights do not fit.
RUNNING_FIGURES = ("weights_time_per_token_s", "decode_step_time_s", "decode_tokens_per_s",
                   "prefill_time_per_token_s", "critical_batch", "bound")


def pick_compute_dtype(fig: ModelFigures, available: set[str]) -> str:
    """The dtype whose dense peak applies to this model's matmuls (see :func:`compute_dtype`).

    bf16 on a GPU without a bf16 tensor path (T4, V100) takes the fp16 peak: the same
    width, and what an engine falls back to there.
    """
    dtype = compute_dtype(fig.weight_format.dtype, fig.activation_dtype, available)
    if dtype == "bf16" and "bf16" not in available and "fp16" in available:
        return "fp16"
    return dtype


def calculate(fig: ModelFigures, hw: Hardware, options: CalcOptions, *, notes: tuple[str, ...] = (),
              warnings: tuple[str, ...] = ()) -> CalcResult:
    """Run every formula for one model on one hardware setup.

    ``notes``/``warnings`` are carried to the views, followed by the plausibility warnings
    (:func:`infermon.model.plausibility.warnings`). Weights that do not fit make the running
    figures (``RUNNING_FIGURES``, generation, achieved) n/a: ``na`` maps each to the reason.
    """
    par = options.parallel
    ceil, step = ceilings(fig, hw, options.batch, options.context, options.memory_utilization, options.reserve_bytes,
                          parallel=par)
    generation = None
    if options.prompt_tokens is not None or options.output_tokens is not None:
        prompt = options.prompt_tokens or 0
        output = options.output_tokens or 0
        prefill = prefill_time_s(fig, hw, prompt, parallel=par) if prompt else 0.0
        decode = generation_time_s(fig, hw, prompt, output, options.batch, parallel=par)
        generation = Generation(prompt, output, prefill, decode, prefill + decode)
    reached = None
    if options.tokens_per_s is not None:
        reached = achieved(fig, hw, options.tokens_per_s, options.batch, options.context or 0, parallel=par)
    na: dict[str, str] = {}
    reason = does_not_fit_reason(fig, hw, par)
    if reason:
        na = {name: reason for name in RUNNING_FIGURES}
        if generation is not None:
            na["generation"], generation = reason, None
        if reached is not None:
            na["achieved"], reached = reason, None
    moves = None
    if options.levers:
        point = OperatingPoint(batch=options.batch, context=options.context or 0,
                               measured_tokens_per_s=options.tokens_per_s, parallel=par,
                               memory_utilization=options.memory_utilization, reserve_bytes=options.reserve_bytes)
        moves = levers(fig, hw, point, options.speculation)
    found = plausibility_warnings(
        fig, hw, context=options.context, batch=options.batch,
        kv_capacity_tokens=ceil.kv_capacity_tokens if options.context and not reason else None,
        mbu=reached.mbu if reached else None, mfu=reached.mfu if reached else None, parallel=par)
    return CalcResult(
        figures=fig,
        hardware=hw,
        options=options,
        ceilings=ceil,
        step=step,
        attention_flops_per_token=attention_flops_per_token(fig.spec, options.context or 0),
        kv_bytes_per_sequence=(kv_bytes_per_sequence(fig.spec, fig.kv_dtype, options.context)
                               if options.context is not None else None),
        weight_bytes_read_at_batch=weight_bytes_read_per_step(fig, options.batch),
        generation=generation,
        achieved=reached,
        notes=tuple(notes),
        warnings=tuple(warnings) + found,
        na=na,
        levers=moves,
    )
