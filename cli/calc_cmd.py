"""``infermon calc``: size a deployment from a model config and a GPU, without a GPU."""

from __future__ import annotations

import argparse
import json
import math

from infermon.cli.errors import UserError
from infermon.model.calc import CalcOptions, CalcResult, calculate
from infermon.model.dtypes import DTYPES, DTypeError, normalize_dtype
from infermon.model.gpu import GpuLookupError, combine, lookup_gpu
from infermon.model.levers import DEFAULT_ACCEPTANCE, DEFAULT_DRAFT_COST, DEFAULT_DRAFT_TOKENS, Speculation
from infermon.model.loaders import LoadedModel, ModelLoadError, load_model
from infermon.model.parallel import Parallelism
from infermon.model.serving import serve
from infermon.model.roofline import DEFAULT_MEMORY_UTILIZATION, DEFAULT_RESERVE_BYTES
from infermon.model.units import QuantityError, parse_bandwidth, parse_bytes, parse_count, parse_flops

EXAMPLE = "infermon calc --model llama-3.1-8b --gpu a10 --context 4096"


# What calc accepts: generous beyond any real deployment, but finite and far from overflow,
# so that 1e308, 1e-300 or a 5000-digit number is one clear line instead of inf/0 figures.
LIMITS: dict[str, tuple[float, float]] = {
    "--params": (1.0, 1e15),
    "--gpu-memory": (1e6, 1e15),
    "--gpu-bandwidth": (1e6, 1e16),
    "--gpu-flops": (1e6, 1e20),
    "--reserve-bytes": (0.0, 1e15),
    "--tokens-per-s": (1e-6, 1e12),
    "--batch": (1, 10_000_000),
    "--context": (0, 1_000_000_000),
    "--prompt-tokens": (0, 1_000_000_000),
    "--output-tokens": (0, 1_000_000_000),
    "--tp": (1, 65_536),
    "--pp": (1, 65_536),
    "--gpus": (1, 65_536),
    "--spec-tokens": (1, 64),
    "--memory-utilization": (0.01, 1.0),
}


def _shown(text: str) -> str:
    """The user's text for an error line: quoted, and cut short if it is absurdly long."""
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _within(value: float, what: str, text: str) -> None:
    low, high = LIMITS[what]
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{what} must be between {low:g} and {high:g}, not {_shown(text)}")


def _quantity(parser_fn, what: str):
    def parse(text: str) -> float:
        try:
            value = parser_fn(text)
        except QuantityError as exc:
            raise argparse.ArgumentTypeError(f"{what}: {exc}") from None
        _within(value, what, text)
        return value
    parse.__name__ = what
    return parse


def _positive_int(what: str):
    def parse(text: str) -> int:
        try:
            value = parse_count(text)
        except QuantityError:
            raise argparse.ArgumentTypeError(f"{what} must be a positive integer, not {_shown(text)}") from None
        if value != int(value) or value < 1:
            raise argparse.ArgumentTypeError(f"{what} must be a positive integer, not {_shown(text)}")
        _within(value, what, text)
        return int(value)
    parse.__name__ = what
    return parse


def _non_negative_int(what: str):
    def parse(text: str) -> int:
        try:
            value = parse_count(text, allow_zero=True)
        except QuantityError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number ≥ 0, not {_shown(text)}") from None
        if value != int(value):
            raise argparse.ArgumentTypeError(f"{what} must be a whole number ≥ 0, not {_shown(text)}")
        _within(value, what, text)
        return int(value)
    parse.__name__ = what
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"memory utilization must be a number in (0, 1], not {_shown(text)}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"memory utilization must be in (0, 1], not {_shown(text)}")
    _within(value, "--memory-utilization", text)
    return value


def _share(what: str, low: float, high: float, low_open: bool):
    def parse(text: str) -> float:
        try:
            value = float(text) if len(text) <= 40 else math.nan
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (low < value if low_open else low <= value) and value <= high
        if not ok:
            bound = "(" if low_open else "["
            raise argparse.ArgumentTypeError(f"{what} must be a number in {bound}{low:g}, {high:g}], not {_shown(text)}")
        return value
    parse.__name__ = what
    return parse


_acceptance = _share("--acceptance", 0.0, 1.0, low_open=False)
_draft_cost = _share("--draft-cost", 0.0, 10.0, low_open=True)


def _dtype(text: str) -> str:
    try:
        return normalize_dtype(text)
    except DTypeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calc",
        help="size a model on a GPU: roofline ceilings, KV capacity, time per token",
        description="Ceilings of a model on a GPU from the model's config and the GPU's datasheet. "
        "All figures are modeled (our arithmetic); GPU figures come from the datasheet table.",
        epilog=f"example: {EXAMPLE}",
    )
    model = p.add_argument_group("model")
    model.add_argument("--model", "-m", metavar="M",
                       help="config.json, a checkpoint folder, a cached Hugging Face id, a .gguf file, or a preset name")
    model.add_argument("--params", type=_quantity(parse_count, "--params"), metavar="N",
                       help="use a nominal parameter count instead of the exact one (e.g. 7e9 or 7B)")
    model.add_argument("--dtype", type=_dtype, metavar="D",
                       help=f"weight dtype: {', '.join(DTYPES)} (default: the checkpoint's torch_dtype / quantization_config)")
    model.add_argument("--kv-dtype", type=_dtype, metavar="D", help="KV-cache dtype (default: the activation dtype)")
    gpu = p.add_argument_group("GPU")
    gpu.add_argument("--gpu", "-g", metavar="NAME", help='NVML name ("NVIDIA A10") or alias ("a10", "h100-sxm")')
    gpu.add_argument("--tp", type=_positive_int("--tp"), metavar="T",
                     help="tensor-parallel ranks: weights and KV heads split T ways (KV copied once T > KV heads)")
    gpu.add_argument("--pp", type=_positive_int("--pp"), metavar="P",
                     help="pipeline-parallel stages: layers split P ways")
    gpu.add_argument("--gpus", type=_positive_int("--gpus"), metavar="N",
                     help="N identical GPUs: alone, a shorthand for --tp N; with --tp/--pp, the rest are "
                     "data-parallel replicas (N = tp × pp × replicas)")
    gpu.add_argument("--gpu-memory", type=_quantity(parse_bytes, "--gpu-memory"), metavar="BYTES",
                     help="memory per GPU, e.g. 24GB or 24e9 (overrides the table)")
    gpu.add_argument("--gpu-bandwidth", type=_quantity(parse_bandwidth, "--gpu-bandwidth"), metavar="B/S",
                     help="memory bandwidth per GPU, e.g. 600GB/s or 600e9")
    gpu.add_argument("--gpu-flops", type=_quantity(parse_flops, "--gpu-flops"), metavar="FLOP/S",
                     help="dense peak per GPU, e.g. 125TFLOPS or 125e12")
    load = p.add_argument_group("workload")
    load.add_argument("--batch", "-b", type=_positive_int("--batch"), default=1, metavar="B",
                      help="concurrent sequences per decode step (default 1)")
    load.add_argument("--context", "-c", type=_non_negative_int("--context"), metavar="C",
                      help="tokens in each sequence's cache; 0 is an empty cache (default: none, weights only)")
    load.add_argument("--memory-utilization", type=_fraction, default=DEFAULT_MEMORY_UTILIZATION, metavar="F",
                      help=f"share of GPU memory the server may use, like vLLM's gpu_memory_utilization (default {DEFAULT_MEMORY_UTILIZATION})")
    load.add_argument("--reserve-bytes", type=_quantity(lambda t: parse_bytes(t, allow_zero=True), "--reserve-bytes"),
                      default=DEFAULT_RESERVE_BYTES, metavar="BYTES",
                      help="memory kept for activations, CUDA context and graphs (default 1GB)")
    load.add_argument("--prompt-tokens", type=_non_negative_int("--prompt-tokens"), metavar="P",
                      help="add prefill time of a P-token prompt and the total time of a request")
    load.add_argument("--output-tokens", type=_non_negative_int("--output-tokens"), metavar="N",
                      help="tokens generated per request (with --prompt-tokens)")
    load.add_argument("--tokens-per-s", type=_quantity(parse_count, "--tokens-per-s"), metavar="X",
                      help="a measured decode rate: adds achieved bandwidth, FLOP/s, MBU and MFU")
    lev = p.add_argument_group("levers (with --levers)")
    lev.add_argument("--levers", action="store_true",
                     help="what would change tokens/s at --batch and --context: batch, weight and KV formats, "
                     "context, speculative decoding, tensor parallelism; with --tokens-per-s, adjusted by the "
                     "measured efficiency")
    lev.add_argument("--spec-tokens", type=_positive_int("--spec-tokens"), default=DEFAULT_DRAFT_TOKENS, metavar="K",
                     help=f"speculative decoding: draft tokens per step (default {DEFAULT_DRAFT_TOKENS})")
    lev.add_argument("--acceptance", type=_acceptance, metavar="A",
                     help=f"speculative decoding: chance a draft token is accepted, 0-1 (default {DEFAULT_ACCEPTANCE}, "
                     "assumed)")
    lev.add_argument("--draft-model", metavar="M", help="the draft model (as --model): its own step time is used")
    lev.add_argument("--draft-cost", type=_draft_cost, default=DEFAULT_DRAFT_COST, metavar="R",
                     help=f"without --draft-model: a draft step as a share of the target's (default "
                     f"{DEFAULT_DRAFT_COST}, assumed)")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object (base units) instead of the table")
    out.add_argument("--explain", action="store_true", help="show each formula with the numbers substituted")
    out.add_argument("--list-gpus", action="store_true", help="list the GPU table and exit")
    out.add_argument("--list-models", action="store_true", help="list the built-in model presets and exit")
    p.set_defaults(handler=run)


def resolve(args: argparse.Namespace) -> tuple[LoadedModel, CalcResult]:
    """Load the model and GPU named by ``args`` and run the arithmetic; raises :class:`UserError`."""
    if not args.model:
        raise UserError(f"calc: --model is required (e.g. {EXAMPLE})")
    try:
        loaded = load_model(args.model)
    except ModelLoadError as exc:
        raise UserError(str(exc)) from None
    gpu = None
    if args.gpu:
        try:
            gpu = lookup_gpu(args.gpu)
        except GpuLookupError as exc:
            raise UserError(str(exc)) from None
    elif None in (args.gpu_memory, args.gpu_bandwidth, args.gpu_flops):
        raise UserError("calc: name a --gpu, or give all of --gpu-memory, --gpu-bandwidth and --gpu-flops")
    parallel = _parallelism(args, loaded.spec.num_layers)
    served = serve(loaded, set(gpu.peak_flops) if gpu else None, gpu_name=gpu.name if gpu else "this GPU",
                   dtype=args.dtype, kv_dtype=args.kv_dtype, params_override=args.params)
    fig = served.figures
    hw = combine(gpu, parallel.gpus, served.compute_dtype, args.gpu_memory, args.gpu_bandwidth, args.gpu_flops)
    if gpu is not None and hw.peak_flops is None:
        raise UserError(f"calc: {gpu.name} has no dense {hw.compute_dtype} peak in the table; give --gpu-flops")
    options = CalcOptions(
        batch=args.batch,
        context=args.context,
        memory_utilization=args.memory_utilization,
        reserve_bytes=args.reserve_bytes,
        prompt_tokens=args.prompt_tokens,
        output_tokens=args.output_tokens,
        tokens_per_s=args.tokens_per_s,
        parallel=parallel,
        levers=args.levers,
        speculation=_speculation(args, gpu) if args.levers else None,
    )
    return loaded, calculate(fig, hw, options, notes=served.notes)


def _speculation(args: argparse.Namespace, gpu) -> Speculation:
    """--spec-tokens/--acceptance/--draft-model/--draft-cost as a :class:`Speculation` (what is assumed, said so)."""
    draft = None
    if args.draft_model:
        try:
            loaded = load_model(args.draft_model)
        except ModelLoadError as exc:
            raise UserError(f"--draft-model: {exc}") from None
        draft = serve(loaded, set(gpu.peak_flops) if gpu else None, kv_dtype=args.kv_dtype).figures
    acceptance = DEFAULT_ACCEPTANCE if args.acceptance is None else args.acceptance
    return Speculation(draft_tokens=args.spec_tokens, acceptance=acceptance,
                       acceptance_source="assumed" if args.acceptance is None else "given",
                       draft=draft, draft_cost=args.draft_cost)


def _parallelism(args: argparse.Namespace, layers: int) -> Parallelism:
    """--tp/--pp/--gpus as a :class:`Parallelism`; raises :class:`UserError` on a split that cannot be."""
    try:
        if args.gpus is None:
            parallel = Parallelism(tp=args.tp or 1, pp=args.pp or 1)
        else:
            parallel = Parallelism.for_gpus(args.gpus, args.tp, args.pp)
    except ValueError as exc:
        raise UserError(f"calc: {exc}") from None
    if parallel.pp > layers:
        raise UserError(f"calc: --pp {parallel.pp} is more pipeline stages than the model's {layers} layers")
    return parallel


def run(args: argparse.Namespace) -> int:
    from infermon.views import calc_view

    if args.list_gpus:
        calc_view.print_gpus()
        return 0
    if args.list_models:
        calc_view.print_models()
        return 0
    loaded, result = resolve(args)
    if args.json:
        print(json.dumps(calc_view.to_json(result), indent=2, allow_nan=False))
        return 0
    calc_view.print_report(loaded, result, explain=args.explain)
    return 0
