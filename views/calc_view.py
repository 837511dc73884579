"""Views of a :class:`CalcResult`: the JSON object of DESIGN §5, a Rich table, and ``--explain``."""

from __future__ import annotations

import math

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from infermon.views.fmt import count, figure_table, percent, seconds, si
from infermon.model.calc import CalcResult
from infermon.model.dtypes import BYTES_PER_VALUE
from infermon.model.levers import Lever, Levers, batch_text
from infermon.model.gpu_table import GPUS
from infermon.model.loaders import LoadedModel, load_preset, preset_names
from infermon.model.params import count_params, seed_estimate_params
from infermon.model.figures import weight_bytes_read_per_step
from infermon.model.parallel import Parallelism, all_stage_figures, kv_heads_per_rank, stage_layers
from infermon.model.roofline import critical_batch, kv_budget_bytes

MODELED = "modeled"
DATASHEET = "datasheet"
GIVEN = "given"


def to_json(result: CalcResult) -> dict:
    """The ``calc --json`` object: plain numbers in base units (B, s, FLOP, FLOP/s).

    Always strict JSON: a figure that is n/a (weights that do not fit) or not a finite
    number is null, and ``why`` says why, keyed by its dotted path. ``warnings`` lists
    every plausibility problem, ``notes`` every choice made for the user.
    """
    fig, hw, ceil = result.figures, result.hardware, result.ceilings
    spec = fig.spec
    windows = sorted({w for w in spec.layer_windows if w is not None})
    data: dict = {
        "model": {
            "name": fig.name,
            "params_total": fig.params.total,
            "params_active": fig.params.active,
            "params_active_without_embedding": fig.params.active_without_embedding,
            "weight_bytes": fig.weight_bytes,
            "kv_bytes_per_token": fig.kv_bytes_per_token,
            "flops_per_token": fig.flops_per_token,
            "attention": {
                "kind": spec.attention_kind,
                "layers": spec.num_layers,
                "heads": spec.num_heads,
                "kv_heads": spec.num_kv_heads,
                "head_dim": spec.head_dim,
                "kv_lora_rank": spec.kv_lora_rank,
                "sliding_window": windows[0] if len(windows) == 1 else (windows or None),
                "sliding_window_layers": spec.sliding_layers,
                "flops_per_token": result.attention_flops_per_token,
            },
        },
        "gpu": {
            "name": hw.name,
            "count": hw.count,
            "memory_bytes": hw.memory_bytes,
            "bandwidth_bytes_per_s": hw.bandwidth_bytes_per_s,
            "peak_flops": hw.peak_flops,
        },
        "ceilings": {
            "ops_per_byte": ceil.ops_per_byte,
            "free_bytes_after_weights": ceil.free_bytes_after_weights,
            "kv_budget_bytes": ceil.kv_budget_bytes,
            "kv_capacity_tokens": ceil.kv_capacity_tokens,
            "max_sequences": ceil.max_sequences,
            "weights_time_per_token_s": ceil.weights_time_per_token_s,
            "decode_step_time_s": ceil.decode_step_time_s,
            "decode_tokens_per_s": ceil.decode_tokens_per_s,
            "prefill_time_per_token_s": ceil.prefill_time_per_token_s,
            "critical_batch": ceil.critical_batch,
            "bound": ceil.bound,
        },
    }
    par = result.options.parallel
    data["parallel"] = {
        "tp": par.tp,
        "pp": par.pp,
        "dp": par.dp,
        "gpus": par.gpus,
        "kv_heads_per_gpu": None if spec.is_mla else kv_heads_per_rank(spec.num_kv_heads, par.tp),
        "layers_per_gpu": max(len(r) for r in stage_layers(spec.num_layers, par.pp)),
        "weight_bytes_per_gpu": ceil.weight_bytes_per_gpu,
        "free_bytes_per_gpu": ceil.free_bytes_per_gpu,
        "kv_budget_bytes_per_gpu": ceil.kv_budget_bytes_per_gpu,
        "kv_bytes_per_token_per_gpu": ceil.kv_bytes_per_token_per_gpu,
    }
    why: dict[str, str] = {}
    for name, reason in result.na.items():
        if name in data["ceilings"]:
            data["ceilings"][name] = None
            why[f"ceilings.{name}"] = reason
    if result.generation is not None:
        data["generation"] = {
            "prefill_time_s": result.generation.prefill_time_s,
            "total_time_s": result.generation.total_time_s,
        }
    elif "generation" in result.na:
        data["generation"] = None
        why["generation"] = result.na["generation"]
    if result.achieved is not None:
        data["achieved"] = {
            "bandwidth_bytes_per_s": result.achieved.bandwidth_bytes_per_s,
            "flops_per_s": result.achieved.flops_per_s,
            "mbu": result.achieved.mbu,
            "mfu": result.achieved.mfu,
        }
    elif "achieved" in result.na:
        data["achieved"] = None
        why["achieved"] = result.na["achieved"]
    if ceil.max_sequences is None and result.options.context == 0:
        why["ceilings.max_sequences"] = "context 0: a sequence holds no KV yet, so the cache sets no limit"
    elif ceil.max_sequences is None:
        why["ceilings.max_sequences"] = "no --context given"
    if ceil.critical_batch is None and "ceilings.critical_batch" not in why:
        why["ceilings.critical_batch"] = ("FLOP peak unknown" if not hw.peak_flops else
                                          "decode never turns compute-bound at this context")
    if result.levers is not None:
        data["levers"] = levers_json(result.levers)
    data["warnings"] = list(dict.fromkeys((*spec.warnings, *result.warnings)))
    data["notes"] = list(result.notes)
    data = strict_json(data, why)
    data["why"] = why
    return data


LEVER_FIELDS = ("key", "name", "change", "batch", "context", "tokens_per_s", "latency_s", "ceiling", "gain",
                "kv_capacity_tokens", "expected_tokens_per_s", "expected_latency_s", "why", "formula")


def levers_json(found: Levers) -> dict:
    """The ``levers`` object: the baseline, the measured efficiency, and one entry per lever (base units)."""
    def one(lever: Lever) -> dict:
        return {name: getattr(lever, name) for name in LEVER_FIELDS}

    return {
        "baseline": one(found.baseline),
        "efficiency": found.efficiency,
        "efficiency_note": found.efficiency_note,
        "items": [one(lever) for lever in found.levers],
        "notes": list(found.notes),
    }


def print_levers(result: CalcResult, console: Console, explain: bool = False) -> None:
    """The levers as a table: each change, its modeled tokens/s and latency, the ceiling it meets."""
    if result.levers is not None:
        print_levers_table(result.levers, console, explain)


def print_levers_table(found: Levers, console: Console, explain: bool = False) -> None:
    """The levers table ``calc --levers`` and the live ``--once`` report print alike."""
    for renderable in levers_renderables(found, explain):
        console.print(renderable)


def levers_renderables(found: Levers, explain: bool = False) -> list:
    """The levers as Rich renderables: the table (each change, modeled tokens/s, gain, per-token latency,
    the ceiling it meets, and at the measured efficiency when there is one), then its notes."""
    base = found.baseline
    measured = found.efficiency is not None
    table = Table(title=f"Levers  at batch {batch_text(base.batch)}, context {count(base.context)}"
                  + (f": {base.tokens_per_s:,.1f} tokens/s modeled" if base.tokens_per_s else ""),
                  box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")
    table.add_column("lever", no_wrap=True)
    table.add_column("change", min_width=16)
    table.add_column("tokens/s", justify="right", no_wrap=True)
    table.add_column("× now", justify="right", no_wrap=True)
    table.add_column("per token", justify="right", no_wrap=True)
    table.add_column("stops at", no_wrap=True)
    if measured:
        table.add_column(f"at {found.efficiency:.0%} eff.", justify="right", no_wrap=True)
    for lever in (base, *found.levers):
        row = [lever.name, lever.change,
               f"{lever.tokens_per_s:,.1f}" if lever.tokens_per_s is not None else "n/a",
               f"{lever.gain:.2f}×" if lever.gain is not None else "—",
               seconds(lever.latency_s) if lever.latency_s is not None else "—",
               (lever.ceiling or "—").replace("_", " ")]
        if measured:
            row.append(f"{lever.expected_tokens_per_s:,.1f}" if lever.expected_tokens_per_s is not None else "—")
        table.add_row(*row)
    def note(text: str, style: str) -> Padding:
        return Padding(Text(text, style=style), (0, 0, 0, 2))  # wrapped lines keep the indent

    out: list = [table, note(found.efficiency_note, "dim")]
    for lever in found.levers:
        if lever.why:
            out.append(note(f"{lever.name}: {lever.why}", "dim"))
    for text in found.notes:
        out.append(note(f"note: {text}", "yellow"))
    if explain:
        out.append(Text("How the levers are computed", style="bold"))
        for lever in (base, *found.levers):
            if lever.formula:
                out.append(note(f"{lever.name}: {lever.formula}", ""))
    return out


def strict_json(value, why: dict[str, str], path: str = ""):
    """``value`` with every NaN or infinity replaced by null and its dotted path noted in ``why``.

    ``json.dumps(..., allow_nan=False)`` then never fails: no ``NaN``/``Infinity`` literal,
    which strict JSON readers reject, ever reaches the output.
    """
    if isinstance(value, float) and not math.isfinite(value):
        why[path] = f"not a finite number ({value!r}): the inputs overflow the arithmetic"
        return None
    if isinstance(value, dict):
        return {key: strict_json(item, why, f"{path}.{key}" if path else str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item, why, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def _source(hw_sources: dict[str, str], key: str) -> str:
    text = hw_sources.get(key, "unknown")
    if text.startswith("datasheet"):
        return DATASHEET
    if text.startswith("given"):
        return GIVEN
    return "n/a"


def _memory_note(hw) -> str:
    """Per GPU: the size NVML reports (and the datasheet's), or that the datasheet's had to do."""
    text = hw.sources.get("memory", "")
    per_gpu = " per GPU" if hw.count > 1 else ""
    if "reported by the driver" in text:
        return f"as NVML reports it{per_gpu}: " + text.split(": ", 2)[-1]
    if "no driver-reported size" in text:
        return f"datasheet size{per_gpu}: no NVML figure known"
    return ""


def _table(title: str):
    return figure_table(title, figure_width=25)


def print_report(loaded: LoadedModel, result: CalcResult, explain: bool = False, console: Console | None = None) -> None:
    """The human table: model, GPU, memory/KV, decode, prefill, generation, achieved."""
    console = console or Console()
    fig, hw, ceil, opts, step = result.figures, result.hardware, result.ceilings, result.options, result.step
    spec = fig.spec
    for warning in (*loaded.warnings, *(w for w in spec.warnings if w not in loaded.warnings), *result.warnings):
        console.print(Text(f"warning: {warning}", style="yellow"))
    for note in result.notes:
        console.print(Text(f"note: {note}", style="dim"))

    model = _table(f"Model  {fig.name}  ({loaded.source})")
    param_note = "given with --params (nominal)" if fig.params_overridden else "exact count"
    model.add_row("parameters, total", count(fig.params.total), MODELED, param_note)
    if fig.params.active != fig.params.total:
        parts = [f"{spec.experts_per_token} of {spec.num_experts} experts"]
        if spec.num_shared_experts:
            parts.append(f"{spec.num_shared_experts} shared")
        dense_layers = spec.moe_layers.count(False)
        if dense_layers:
            parts.append(f"{dense_layers} dense layers")
        model.add_row("parameters, active/token", count(fig.params.active), MODELED, " + ".join(parts))
        model.add_row("  without input embedding", count(fig.params.active_without_embedding), MODELED,
                      "the token table is gathered, one row per token")
    model.add_row("weight bytes", si(fig.weight_bytes, "B"),
                  "measured" if fig.weight_bytes_source.startswith("measured") else MODELED,
                  fig.weight_bytes_source.split(": ", 1)[-1])
    kv_note = f"{spec.attention_kind.upper()}, {fig.kv_dtype}"
    if spec.sliding_layers:
        windows = sorted({w for w in spec.layer_windows if w})
        kv_note += f"; {spec.sliding_layers}/{spec.num_layers} layers windowed at {', '.join(map(str, windows))}"
    model.add_row("KV bytes per token", f"{count(fig.kv_bytes_per_token)} B", MODELED, kv_note)
    model.add_row("FLOPs per token", si(fig.flops_per_token, "FLOP"), MODELED,
                  "2 × matmul params (no embedding gather)")
    if opts.context:
        model.add_row("attention FLOPs per token", si(result.attention_flops_per_token, "FLOP"), MODELED,
                      f"QKᵀ and AV at context {count(opts.context)}")
    console.print(model)

    par = opts.parallel
    gpu = _table(f"GPU  {hw.count} × {hw.name}" if hw.count > 1 else f"GPU  {hw.name}")
    if par.gpus > 1:
        gpu.add_row("split", _split_text(par), GIVEN, _split_note(spec, par))
    gpu.add_row("memory", si(hw.memory_bytes, "B"), _source(hw.sources, "memory"), _memory_note(hw))
    gpu.add_row("bandwidth", si(hw.bandwidth_bytes_per_s, "B/s"), _source(hw.sources, "bandwidth"), "")
    gpu.add_row(f"peak {hw.compute_dtype} (dense)", si(hw.peak_flops, "FLOP/s"), _source(hw.sources, "peak_flops"), "")
    ridge = f"{ceil.ops_per_byte:.1f} FLOP/B" if ceil.ops_per_byte else "n/a"
    gpu.add_row("ops:byte ridge", ridge, MODELED, "peak ÷ bandwidth")
    console.print(gpu)

    mem = _table("Memory and KV cache")
    free_note = "weights do not fit" if not ceil.fits else ""
    if par.gpus > 1:
        mem.add_row("weights per GPU", si(ceil.weight_bytes_per_gpu, "B"), MODELED,
                    "the fullest GPU: its share plus what every rank copies")
        mem.add_row("free per GPU", si(ceil.free_bytes_per_gpu, "B"), MODELED, free_note)
        free_note = f"over {par.gpus} GPUs"
    mem.add_row("free after weights", si(ceil.free_bytes_after_weights, "B"), MODELED, free_note)
    mem.add_row("KV budget", si(ceil.kv_budget_bytes, "B"), MODELED,
                f"× {opts.memory_utilization:g} utilization − {si(opts.reserve_bytes, 'B')} reserve")
    if par.gpus > 1:
        mem.add_row("KV bytes/token per GPU", f"{count(ceil.kv_bytes_per_token_per_gpu)} B", MODELED,
                    _kv_rank_note(spec, par, fig.kv_bytes_per_token, ceil.kv_bytes_per_token_per_gpu))
    mem.add_row("KV capacity", f"{count(ceil.kv_capacity_tokens)} tokens", MODELED,
                "the first GPU to fill bounds them all" if par.gpus > 1 else "")
    if ceil.max_sequences is not None:
        mem.add_row("sequences that fit", count(ceil.max_sequences), MODELED, f"at context {count(opts.context)}")
    elif opts.context == 0:
        mem.add_row("sequences that fit", "no KV limit", MODELED, "at context 0 a sequence holds no KV yet")
    console.print(mem)

    if not result.fits:
        reason = result.na["decode_tokens_per_s"]
        dec = _table(f"Decode  batch {opts.batch}, context {count(opts.context or 0)}")
        for label in ("time per token floor", "decode tokens/s", "critical batch"):
            dec.add_row(label, "n/a", "n/a", reason)
        console.print(dec)
        pre = _table("Prefill")
        pre.add_row("time per prompt token", "n/a", "n/a", reason)
        console.print(pre)
        print_levers(result, console, explain)
        if explain:
            print_explain(result, console)
        return

    dec = _table(f"Decode  batch {opts.batch}, context {count(opts.context or 0)}")
    floor = ceil.weights_time_per_token_s
    dec.add_row("time per token floor", seconds(floor), MODELED, f"weights ÷ bandwidth: {1 / floor:.1f} tokens/s")
    dec.add_row("step time", seconds(ceil.decode_step_time_s), MODELED,
                f"reads {si(step.bytes, 'B')}, {si(step.flops, 'FLOP')}")
    dec.add_row("decode tokens/s", f"{ceil.decode_tokens_per_s:,.1f}", MODELED, f"{ceil.bound}-bound")
    if ceil.critical_batch is not None:
        dec.add_row("critical batch", f"{ceil.critical_batch:,.1f}", MODELED, "where memory and compute time meet")
    elif hw.peak_flops:
        empty = critical_batch(fig, hw, 0, parallel=opts.parallel)
        note = "KV reads per sequence outgrow its FLOPs"
        if empty is not None:
            note += f"; {empty:,.1f} with an empty cache"
        dec.add_row("critical batch", "never", MODELED, note)
    else:
        dec.add_row("critical batch", "n/a", "n/a", "FLOP peak unknown")
    bound = Text(f"{ceil.bound}-bound", style="bold red" if ceil.bound == "memory" else "bold green")
    dec.add_row("bound", bound, MODELED, "")
    console.print(dec)

    pre = _table("Prefill")
    pre.add_row("time per prompt token", seconds(ceil.prefill_time_per_token_s), MODELED, "FLOPs per token ÷ peak")
    if result.generation is not None:
        g = result.generation
        pre.add_row(f"prefill of {count(g.prompt_tokens)} tokens", seconds(g.prefill_time_s), MODELED,
                    "max(compute, read weights once)")
        pre.add_row(f"decode of {count(g.output_tokens)} tokens", seconds(g.decode_time_s), MODELED,
                    f"batch {opts.batch}, cache growing from {count(g.prompt_tokens)}")
        pre.add_row("total generation time", seconds(g.total_time_s), MODELED, "prefill + decode")
    console.print(pre)

    if result.achieved is not None:
        a = result.achieved
        ach = _table(f"Achieved at {opts.tokens_per_s:,.1f} decode tokens/s")
        ach.add_row("bandwidth", si(a.bandwidth_bytes_per_s, "B/s"), MODELED, "steps/s × bytes per step")
        ach.add_row("FLOP/s", si(a.flops_per_s, "FLOP/s"), MODELED, "tokens/s × FLOPs per token")
        ach.add_row("MBU", percent(a.mbu), MODELED, "of peak bandwidth")
        ach.add_row("MFU", percent(a.mfu), MODELED, "of dense peak")
        console.print(ach)

    print_levers(result, console, explain)
    if explain:
        print_explain(result, console)


def print_explain(result: CalcResult, console: Console) -> None:
    """Each formula with the numbers substituted, the way the seed teaches it."""
    fig, hw, ceil, opts = result.figures, result.hardware, result.ceilings, result.options
    spec = fig.spec
    kv_width = BYTES_PER_VALUE[fig.kv_dtype]
    lines: list[str] = []
    if hw.peak_flops:
        lines.append(f"ops:byte = peak ÷ bandwidth = {si(hw.peak_flops, 'FLOP/s')} ÷ {si(hw.bandwidth_bytes_per_s, 'B/s')}"
                     f" = {ceil.ops_per_byte:.1f} FLOP/B — below it memory-bound, above it compute-bound")
    par = opts.parallel
    if par.gpus > 1:
        lines.extend(_explain_parallel(result))
    else:
        lines.append(f"free = memory − weights = {si(hw.memory_bytes, 'B')} − {si(fig.weight_bytes, 'B')}"
                     f" = {si(ceil.free_bytes_after_weights, 'B')}")
        lines.append(f"KV budget = max(0, memory × {opts.memory_utilization:g} − weights − {si(opts.reserve_bytes, 'B')})"
                     f" = {si(ceil.kv_budget_bytes, 'B')}")
    if spec.is_mla:
        lines.append(f"KV/token = layers × (kv_lora_rank + rope_dim) × bytes = {spec.num_layers} × "
                     f"({spec.kv_lora_rank} + {spec.qk_rope_head_dim}) × {kv_width:g} = {count(fig.kv_bytes_per_token)} B")
    else:
        lines.append(f"KV/token = 2 × layers × kv_heads × head_dim × bytes = 2 × {spec.num_layers} × {spec.num_kv_heads}"
                     f" × {spec.head_dim} × {kv_width:g} = {count(fig.kv_bytes_per_token)} B")
        seed_kv = 2 * 2 * spec.num_layers * spec.hidden_size
        if seed_kv != fig.kv_bytes_per_token:
            lines.append(f"  (the seed's 2·2·layers·d_model = {count(seed_kv)} B assumes MHA in fp16;"
                         f" this model needs {fig.kv_bytes_per_token / seed_kv:.2f}× that)")
    if par.gpus > 1:
        replicas = f"{par.dp} × " if par.dp > 1 else ""
        lines.append(f"KV capacity = {replicas}⌊budget per GPU ÷ KV/token per GPU⌋ = {replicas}⌊"
                     f"{ceil.kv_budget_bytes_per_gpu:,.0f} ÷ {ceil.kv_bytes_per_token_per_gpu:,.0f}⌋"
                     f" = {count(ceil.kv_capacity_tokens)} tokens")
    else:
        lines.append(f"KV capacity = ⌊budget ÷ KV/token⌋ = ⌊{ceil.kv_budget_bytes:,.0f} ÷ {fig.kv_bytes_per_token:,.0f}⌋"
                     f" = {count(ceil.kv_capacity_tokens)} tokens")
    if fig.kv_bytes_per_token == 524288:
        rounded = int(ceil.kv_budget_bytes / 1e9 / 0.00052)
        lines.append(f"  (the seed rounds 524,288 B to 0.00052 GB and so gets {rounded:,})")
    if ceil.max_sequences is not None:
        lines.append(f"sequences = ⌊budget ÷ KV per sequence at {count(opts.context)}⌋ = {count(ceil.max_sequences)}")
    floor = ceil.weights_time_per_token_s
    step = result.step
    cmp_text = seconds(step.compute_time_s) if step.compute_time_s is not None else "n/a"
    if not result.fits:
        lines.append(f"decode and prefill: n/a — {result.na['decode_tokens_per_s']}")
    elif par.gpus > 1:
        per_gpu_bw = hw.bandwidth_bytes_per_s / hw.count
        stages = all_stage_figures(fig, par)
        reads = " + ".join(si(weight_bytes_read_per_step(st, 1), "B") for st in stages)
        lines.append(f"time/token floor = Σ stages (weight bytes read per GPU ÷ GPU bandwidth) = ({reads})"
                     f" ÷ {si(per_gpu_bw, 'B/s')} = {seconds(floor)} → {1 / floor:.1f} tokens/s")
        micro = step.micro_batches
        lines.append(f"decode step: each of {par.dp} replica(s) runs {opts.batch / par.dp:g} sequences as {micro:g}"
                     f" micro-batch(es); per stage t = max((W_gpu + b·C·KV_gpu) ÷ BW_gpu, b·FLOPs_gpu ÷ peak_gpu)"
                     f" = {', '.join(seconds(st.time_s) for st in step.per_gpu)}; cycle = max(Σ t, m × max t)"
                     f" = {seconds(step.time_s)} → {step.tokens_per_s:,.1f} tokens/s at batch {opts.batch}"
                     " (communication not counted)")
    else:
        read = weight_bytes_read_per_step(fig, 1)
        lines.append(f"time/token floor = weight bytes read ÷ bandwidth = {si(read, 'B')}"
                     f" ÷ {si(hw.bandwidth_bytes_per_s, 'B/s')} = {seconds(floor)} → {1 / floor:.1f} tokens/s")
        lines.append(f"decode step = max((W + B·C·KV) ÷ BW, B·FLOPs ÷ peak) = max({seconds(step.memory_time_s)}, {cmp_text})"
                     f" = {seconds(step.time_s)} → {step.tokens_per_s:,.1f} tokens/s at batch {opts.batch}")
    if not result.fits:
        pass
    elif hw.peak_flops and par.gpus > 1:
        lines.append(f"prefill/token = Σ stages (FLOPs per token per GPU ÷ GPU peak) = "
                     f"({' + '.join(si(st.flops_per_token, 'FLOP') for st in all_stage_figures(fig, par))}) ÷ "
                     f"{si(hw.peak_flops / hw.count, 'FLOP/s')} = {seconds(ceil.prefill_time_per_token_s)}"
                     " (one prompt crosses the stages in turn)")
    elif hw.peak_flops:
        lines.append(f"prefill/token = FLOPs per token ÷ peak = {si(fig.flops_per_token, 'FLOP')} ÷ {si(hw.peak_flops, 'FLOP/s')}"
                     f" = {seconds(ceil.prefill_time_per_token_s)}")
    if result.generation is not None and result.generation.prompt_tokens:
        g = result.generation
        lines.append(f"prefill = {count(g.prompt_tokens)} × {seconds(ceil.prefill_time_per_token_s)} = {seconds(g.prefill_time_s)}"
                     " (or the weight read, if longer)")
        lines.append(f"total = prefill + Σ step times = {seconds(g.prefill_time_s)} + {seconds(g.decode_time_s)}"
                     f" = {seconds(g.total_time_s)}")
    if not fig.params_overridden:
        seed = seed_estimate_params(spec)
        exact = count_params(spec).total
        lines.append(f"seed's param estimate 12·L·d² = 12 × {spec.num_layers} × {spec.hidden_size}² = {count(seed)}"
                     f" vs exact {count(exact)} ({(seed - exact) / exact:+.1%})")
    console.print(Text("How these figures are computed", style="bold"))
    for line in lines:
        console.print(Text("  " + line))


def _split_text(par: Parallelism) -> str:
    text = f"TP {par.tp} × PP {par.pp}"
    return text + f" × DP {par.dp}" if par.dp > 1 else text


def _split_note(spec, par: Parallelism) -> str:
    notes = []
    if par.tp > 1:
        if spec.is_mla:
            notes.append("MLA latent whole on every rank")
        else:
            heads = kv_heads_per_rank(spec.num_kv_heads, par.tp)
            copies = f", each copied {par.tp // spec.num_kv_heads}×" if spec.num_kv_heads < par.tp else ""
            notes.append(f"{heads} of {spec.num_kv_heads} KV heads per rank{copies}")
    if par.pp > 1:
        notes.append(f"≤ {max(len(r) for r in stage_layers(spec.num_layers, par.pp))} of {spec.num_layers} layers per stage")
    return "; ".join(notes)


def _kv_rank_note(spec, par: Parallelism, whole: float, per_gpu: float) -> str:
    even = whole / (par.tp * par.pp)
    if per_gpu > even * 1.0001:
        return f"{per_gpu / even:.1f}× an even split ({count(even)} B): replicated across ranks"
    return "an even split of the layers and KV heads"


def _explain_parallel(result: CalcResult) -> list[str]:
    """The per-GPU arithmetic of a split deployment, stage by stage."""
    fig, hw, ceil, opts = result.figures, result.hardware, result.ceilings, result.options
    par, spec = opts.parallel, fig.spec
    lines = [f"split: TP {par.tp} × PP {par.pp} × {par.dp} replica(s) = {par.gpus} GPUs; per GPU memory "
             f"{si(hw.memory_bytes / hw.count, 'B')}, bandwidth {si(hw.bandwidth_bytes_per_s / hw.count, 'B/s')}"]
    kv_width = BYTES_PER_VALUE[fig.kv_dtype]
    if spec.is_mla:
        lines.append(f"KV/token per GPU = layers per stage × (kv_lora_rank + rope_dim) × bytes: the latent is not split"
                     f" by TP = {max(len(r) for r in stage_layers(spec.num_layers, par.pp))} × ({spec.kv_lora_rank} + "
                     f"{spec.qk_rope_head_dim}) × {kv_width:g} = {count(ceil.kv_bytes_per_token_per_gpu)} B")
    else:
        heads = kv_heads_per_rank(spec.num_kv_heads, par.tp)
        lines.append(f"KV/token per GPU = 2 × layers per stage × max(1, ⌈kv_heads ÷ TP⌉) × head_dim × bytes = 2 × "
                     f"{max(len(r) for r in stage_layers(spec.num_layers, par.pp))} × {heads} × {spec.head_dim} × "
                     f"{kv_width:g} = {count(ceil.kv_bytes_per_token_per_gpu)} B")
    for index, stage in enumerate(all_stage_figures(fig, par)):
        budget = kv_budget_bytes(hw.memory_bytes / hw.count, stage.weight_bytes, opts.memory_utilization,
                                 opts.reserve_bytes)
        lines.append(f"stage {index + 1} ({stage.spec.num_layers} layers): weights per GPU = (stage bytes ÷ {par.tp})"
                     f" + copies = {si(stage.weight_bytes, 'B')}; KV budget per GPU = max(0, memory × "
                     f"{opts.memory_utilization:g} − {si(stage.weight_bytes, 'B')} − {si(opts.reserve_bytes, 'B')}) = "
                     f"{si(budget, 'B')}")
    lines.append(f"free = Σ GPUs (memory − weights) = {si(ceil.free_bytes_after_weights, 'B')}; KV budget = Σ GPUs = "
                 f"{si(ceil.kv_budget_bytes, 'B')}")
    return lines


def print_gpus(console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="GPU table: memory as NVML reports it (MiB; calc uses this) and the datasheet's GB, "
                  "bandwidth GB/s, dense peaks TFLOP/s (SI units)", box=box.SIMPLE_HEAD)
    table.add_column("name", no_wrap=True)
    for col in ("NVML MiB", "sheet GB", "GB/s", "bf16", "fp16", "fp8", "int8"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("aliases", style="dim")
    unknown = False
    for gpu in GPUS:
        peaks = [f"{gpu.peak_flops[k] / 1e12:g}" if k in gpu.peak_flops else "—" for k in ("bf16", "fp16", "fp8", "int8")]
        if gpu.reported_memory_bytes is not None:
            reported = f"{gpu.reported_memory_bytes / 2**20:,.0f}"
        else:
            reported, unknown = "? *", True
        table.add_row(gpu.name, reported, f"{gpu.datasheet_memory_bytes / 1e9:g}",
                      f"{gpu.bandwidth_bytes_per_s / 1e9:g}", *peaks, ", ".join(gpu.aliases))
    console.print(table)
    if unknown:
        console.print(Text("* no NVML figure known: calc uses the datasheet size for this card", style="dim"))


def print_models(console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="Built-in model presets (params in billions; KV cache in bf16)", box=box.SIMPLE_HEAD)
    table.add_column("preset", no_wrap=True)
    for col in ("params", "active", "layers"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("attention", no_wrap=True)
    table.add_column("KV B/token", justify="right", no_wrap=True)
    wide = console.width >= 110
    if wide:
        table.add_column("Hugging Face id", style="dim", no_wrap=True)
    from infermon.model.figures import model_figures

    for name in preset_names():
        loaded = load_preset(name)
        if loaded is None:
            continue
        spec = loaded.spec
        fig = model_figures(spec, kv_dtype="bf16")
        row = [name, f"{fig.params.total / 1e9:.2f}", f"{fig.params.active / 1e9:.2f}", str(spec.num_layers),
               spec.attention_kind.upper(), count(fig.kv_bytes_per_token)]
        if wide:
            row.append(loaded.source.removeprefix("preset: ").removesuffix(" config.json"))
        table.add_row(*row)
    console.print(table)
