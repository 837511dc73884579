"""The readable ``--once`` report: what the process is doing against its ceilings.

It renders the :class:`~infermon.live.view.LiveView` and computes nothing: every row is a figure of
``view.figures`` written by :func:`~infermon.views.fmt.value_text`, with its source and its note or
reason, exactly as the dashboard and the JSON carry them.
"""

from __future__ import annotations

from rich import box
from rich.console import Console, RenderHook
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from infermon.live.view import LiveView
from infermon.views.fmt import figure_table, note_text, ports_text, printable, si, source_text, value_text

# (section title, [(label, figure name)]) in the order the report prints them.
SECTIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Throughput", (
        ("generation tokens/s", "generation_tokens_per_s"),
        ("prompt tokens/s", "prompt_tokens_per_s"),
        ("requests running", "requests_running"),
        ("requests waiting", "requests_waiting"),
        ("batch", "batch"),
        ("steps/s", "steps_per_s"),
        ("tokens per step", "tokens_per_step"),
        ("TTFT p50", "ttft_p50_s"),
        ("TTFT p95", "ttft_p95_s"),
        ("inter-token p50", "inter_token_p50_s"),
        ("inter-token p95", "inter_token_p95_s"),
        ("queue time p50", "queue_time_p50_s"),
        ("queue time p95", "queue_time_p95_s"),
        ("prefix-cache hits", "prefix_cache_hit_rate"),
        ("draft acceptance", "spec_acceptance_rate"),
    )),
    ("Roofline", (
        ("peak bandwidth", "peak_bandwidth_bytes_per_s"),
        ("peak FLOP/s", "peak_flops"),
        ("ops:byte ridge", "ops_per_byte"),
        ("bytes per step", "bytes_per_step"),
        ("bandwidth (modeled)", "bandwidth_modeled_bytes_per_s"),
        ("bandwidth (measured)", "bandwidth_measured_bytes_per_s"),
        ("bandwidth (engine's)", "bandwidth_engine_bytes_per_s"),
        ("modeled vs engine's", "bandwidth_vs_engine"),
        ("FLOP/s (modeled)", "flops_modeled_per_s"),
        ("FLOP/s (engine's)", "flops_engine_per_s"),
        ("modeled vs engine's", "flops_vs_engine"),
        ("MBU", "mbu"),
        ("MBU (measured)", "mbu_measured"),
        ("MFU", "mfu"),
        ("operating intensity", "operating_intensity"),
        ("decode ceiling", "decode_ceiling_tokens_per_s"),
        ("critical batch", "critical_batch"),
    )),
    ("KV cache & memory", (
        ("KV bytes per token", "kv_bytes_per_token"),
        ("KV capacity", "kv_capacity_tokens"),
        ("KV pool", "kv_pool_bytes"),
        ("KV usage", "kv_usage"),
        ("KV resident", "kv_resident_tokens"),
        ("mean context", "context_tokens"),
        ("KV headroom", "kv_headroom_tokens"),
        ("sequences that fit", "sequences_fit"),
        ("preemptions", "preemptions_total"),
        ("preemptions/s", "preemptions_per_s"),
        ("weights", "weight_bytes"),
        ("tree RSS (host)", "tree_rss_bytes"),
        ("tree GPU memory", "tree_gpu_memory_bytes"),
        ("torch allocated", "torch_allocated_bytes"),
        ("torch reserved", "torch_reserved_bytes"),
        ("torch cache free", "torch_cache_free"),
        ("alloc retries", "alloc_retries"),
        ("OOMs", "ooms"),
    )),
)


def figure_rows(view: LiveView, rows: tuple[tuple[str, str], ...]) -> list[tuple[str, str, str, str]]:
    """(label, value, source, note) for each named figure: what every text view prints."""
    out = []
    for label, name in rows:
        fig = getattr(view.figures, name)
        out.append((label, value_text(fig), source_text(fig), note_text(fig)))
    return out


class _Printable:
    """A renderable's lines with control characters in their text shown as U+FFFD (line ends and
    rich's own control segments kept): command lines, names and notes come from the watched
    process, and must not drive the reader's terminal."""

    def __init__(self, renderable) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options):
        for segment in console.render(self.renderable, options):
            if segment.control is None and segment.text != "\n":
                segment = Segment("\n".join(map(printable, segment.text.split("\n"))), segment.style)
            yield segment


class _PrintableHook(RenderHook):
    def process_renderables(self, renderables: list) -> list:
        return [_Printable(renderable) for renderable in renderables]


def print_live_report(view: LiveView, console: Console | None = None) -> None:
    console = console or Console()
    console.push_render_hook(_PrintableHook())
    try:
        _print_live_report(view, console)
    finally:
        console.pop_render_hook()


def _print_live_report(view: LiveView, console: Console) -> None:
    tree = view.tree
    for warning in view.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    head = Text()
    head.append(f"pid {tree.root_pid if tree else '?'}", style="bold")
    engine = view.engine
    head.append(f"  {engine.kind}{' ' + engine.version if engine and engine.version else ''}" if engine
                else f"  {tree.framework if tree else 'unknown'}")
    if view.model is not None:
        head.append(f"  model {view.model.name}")
    if view.hardware is not None:
        hw = view.hardware
        head.append(f"  on {hw.count} × {hw.name}" if hw.count > 1 else f"  on {hw.name}")
    head.append(f"  interval {view.interval_s:g} s", style="dim")
    console.print(head)
    root = tree.root if tree else None
    if root is not None:
        console.print(Text(" ".join(root.cmdline)[:300], style="dim"))
    style = {"memory": "bold red", "compute": "bold green", "warning": "bold yellow"}.get(view.verdict.tone, "bold")
    console.print(Text(view.verdict.finding, style=style))
    if view.verdict.advice:
        console.print(Text(view.verdict.advice, style="italic"))

    for title, rows in SECTIONS:
        if title == "Throughput" and engine is not None:
            title += f"  ({engine.kind}{' at ' + engine.url if engine.url else ''})"
        table = figure_table(title, figure_width=22, value_width=16, source_width=15)
        for label, value, source, note in figure_rows(view, rows):
            table.add_row(label, value, source, note)
        if title.startswith("Throughput"):
            for note in view.notes:
                table.add_row("note", "", "", note)
        console.print(table)

    if view.levers is not None:
        from infermon.views.calc_view import print_levers_table

        print_levers_table(view.levers, console)
    elif "levers" in view.why:
        console.print(Text(f"Levers: n/a ({view.why['levers']})", style="dim"))

    dev = Table(title="Devices", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, expand=True)
    for col in ("#", "device", "util", "memory used", "tree", "power", "temp", "note"):
        dev.add_column(col, no_wrap=col != "note", justify="right" if col not in ("device", "note") else "left")
    for d in view.devices:
        note = ", ".join(d.throttle_reasons) or ("; ".join(f"{k}: {v}" for k, v in list(d.why.items())[:1]))
        dev.add_row(str(d.index) if d.kind == "gpu" else "host", d.name or "?",
                    "n/a" if d.utilization_gpu is None else f"{d.utilization_gpu * 100:.1f}%",
                    f"{si(d.memory_used_bytes, 'B')} / {si(d.memory_total_bytes, 'B')}",
                    "yes" if d.used_by_tree else "", f"{d.power_w:.0f} W" if d.power_w is not None else "",
                    f"{d.temperature_c:.0f} °C" if d.temperature_c is not None else "", note)
    if not view.devices:
        dev.add_row("", "none", "", "", "", "", "", view.why.get("devices", ""))
    elif "devices" in view.why:
        dev.add_row("", "GPUs", "", "", "", "", "", view.why["devices"])
    console.print(dev)

    procs = Table(title="Processes", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, expand=True)
    for col in ("pid", "role", "CPU%", "RSS", "GPU mem", "ports"):
        procs.add_column(col, no_wrap=True, justify="right" if col in ("pid", "CPU%", "RSS", "GPU mem") else "left")
    # One line per process: the command takes the width left and is cut, never the figures.
    procs.add_column("command", no_wrap=True, overflow="ellipsis", ratio=1, min_width=8)
    for p in (tree.processes if tree else ()):
        procs.add_row(str(p.pid), p.role or p.name, f"{p.cpu_percent:.0f}" if p.cpu_percent is not None else "",
                      si(p.rss_bytes, "B"), si(p.gpu_memory_bytes, "B") if p.gpu_memory_bytes is not None else "",
                      ports_text(p.listening_ports), " ".join(p.cmdline)[:120])
    console.print(procs)
    for key, reason in view.why.items():
        if key not in ("engine", "devices", "levers"):
            console.print(Text(f"{key}: {reason}", style="dim"))
