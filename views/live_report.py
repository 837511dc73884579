"""The readable ``--once`` report: what the process is doing against its ceilings."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from infermon.views.fmt import count, figure_table, percent, si
from infermon.live.derive import LiveView

MEASURED, MODELED = "measured", "modeled"


def _table(title: str):
    return figure_table(title, figure_width=24)


def _value(value, fmt, reason: str | None):
    if value is None:
        return "n/a", "n/a", reason or ""
    return fmt(value), None, None


def print_live_report(view: LiveView, warnings: tuple[str, ...] = (), console: Console | None = None) -> None:
    console = console or Console()
    snap = view.snapshot
    tree = snap.tree
    for warning in warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    root = tree.root if tree else None
    head = Text()
    head.append(f"pid {tree.root_pid if tree else '?'}", style="bold")
    head.append(f"  {tree.framework if tree else 'unknown'}")
    if view.model is not None:
        head.append(f"  model {view.model.name}")
    if view.hardware is not None:
        head.append(f"  on {view.hardware.count} × {view.hardware.name}" if view.hardware.count > 1 else f"  on {view.hardware.name}")
    head.append(f"  interval {snap.interval_s:g} s", style="dim")
    console.print(head)
    if root is not None:
        console.print(Text(" ".join(root.cmdline)[:300], style="dim"))

    verdict = view.analysis.verdict
    console.print(Text(verdict, style="bold red" if "memory-bound" in verdict else "bold"))

    engine = snap.engine
    thr = _table(f"Throughput  ({engine.kind} at {engine.url})" if engine else "Throughput")
    if engine is None:
        thr.add_row("engine metrics", "n/a", "n/a", view.why.get("engine", snap.why.get("engine", "")))
    else:
        ew = engine.why
        rows = [
            ("generation tokens/s", view.rates.generation_tokens_per_s, lambda v: f"{v:,.1f}", ew.get("generation_tokens_total", "needs two samples")),
            ("prompt tokens/s", view.rates.prompt_tokens_per_s, lambda v: f"{v:,.1f}", ew.get("prompt_tokens_total", "needs two samples")),
            ("requests running", engine.requests_running, lambda v: f"{v:,.0f}", ew.get("requests_running")),
            ("requests waiting", engine.requests_waiting, lambda v: f"{v:,.0f}", ew.get("requests_waiting")),
            ("generated (total)", engine.generation_tokens_total, count, ew.get("generation_tokens_total")),
        ]
        for label, value, fmt, reason in rows:
            text, source, note = _value(value, fmt, reason)
            thr.add_row(label, text, source or MEASURED, note or "")
        for note in (*view.rates.notes, *engine.hints):
            thr.add_row("note", "", "", note)
    console.print(thr)

    a = view.analysis
    roof = _table("Roofline")
    hw = view.hardware
    if hw is not None:
        roof.add_row("peak bandwidth", si(hw.bandwidth_bytes_per_s, "B/s"), "datasheet" if "datasheet" in (view.hardware_source or "") else "measured" if "calibrated" in (view.hardware_source or "") else MODELED, view.hardware_source or "")
        roof.add_row(f"peak {hw.compute_dtype} FLOP/s", si(hw.peak_flops, "FLOP/s"), "datasheet" if hw.peak_flops and "datasheet" in (view.hardware_source or "") else ("n/a" if hw.peak_flops is None else "measured"), "" if hw.peak_flops else view.why.get("hardware", ""))
    else:
        roof.add_row("device ceilings", "n/a", "n/a", view.why.get("hardware", ""))
    roof.add_row("ops:byte ridge", f"{a.ops_per_byte:,.1f} FLOP/B" if a.ops_per_byte else "n/a", MODELED, "")
    bw_mod, bw_meas = a.achieved_bandwidth_modeled_bytes_per_s, a.achieved_bandwidth_measured_bytes_per_s
    roof.add_row("bandwidth (modeled)", si(bw_mod, "B/s"), MODELED if bw_mod is not None else "n/a", a.why.get("achieved_bandwidth_modeled_bytes_per_s", "steps/s × bytes per step"))
    roof.add_row("bandwidth (measured)", si(bw_meas, "B/s"), MEASURED if bw_meas is not None else "n/a", a.why.get("achieved_bandwidth_measured_bytes_per_s", "GPM DRAM bandwidth"))
    roof.add_row("FLOP/s", si(a.achieved_flops_per_s, "FLOP/s"), MODELED if a.achieved_flops_per_s is not None else "n/a", "tokens/s × FLOPs per token")
    roof.add_row("MBU", percent(a.mbu), MODELED if a.mbu is not None else "n/a", "of peak bandwidth")
    roof.add_row("MFU", percent(a.mfu), MODELED if a.mfu is not None else "n/a", a.why.get("mfu", "of dense peak"))
    roof.add_row("operating intensity", f"{a.operating_intensity:,.1f} FLOP/B" if a.operating_intensity else "n/a", MODELED, f"{a.bound}-bound" if a.bound else "")
    roof.add_row("decode ceiling", f"{a.decode_ceiling_tokens_per_s:,.1f} tok/s" if a.decode_ceiling_tokens_per_s else "n/a", MODELED, "at this batch and context")
    console.print(roof)

    kv = _table("KV cache")
    if view.model is not None:
        kv.add_row("KV bytes per token", f"{count(view.model.kv_bytes_per_token)} B", MODELED, view.model.kv_dtype)
    if engine is not None:
        kv.add_row("usage", percent(engine.kv_usage), MEASURED if engine.kv_usage is not None else "n/a", engine.why.get("kv_usage", ""))
        kv.add_row("capacity (engine)", f"{count(engine.kv_capacity_tokens)} tokens" if engine.kv_capacity_tokens else "n/a", MEASURED if engine.kv_capacity_tokens else "n/a", engine.why.get("kv_capacity_tokens", ""))
    if view.ceilings is not None:
        kv.add_row("capacity (config)", f"{count(view.ceilings.kv_capacity_tokens)} tokens", MODELED, "from free memory after weights")
    kv.add_row("headroom", f"{count(a.kv_headroom_tokens)} tokens" if a.kv_headroom_tokens is not None else "n/a", MODELED if a.kv_headroom_tokens is not None else "n/a", a.why.get("kv_headroom_tokens", ""))
    console.print(kv)

    dev = Table(title="Devices", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, expand=True)
    for col in ("#", "device", "util", "memory used", "tree", "power", "temp", "note"):
        dev.add_column(col, no_wrap=col != "note", justify="right" if col not in ("device", "note") else "left")
    for d in snap.devices:
        note = ", ".join(d.throttle_reasons) or ("; ".join(f"{k}: {v}" for k, v in list(d.why.items())[:1]))
        dev.add_row(str(d.index) if d.kind == "gpu" else "host", d.name or "?", percent(d.utilization_gpu),
                    f"{si(d.memory_used_bytes, 'B')} / {si(d.memory_total_bytes, 'B')}",
                    "yes" if d.used_by_tree else "", f"{d.power_w:.0f} W" if d.power_w is not None else "",
                    f"{d.temperature_c:.0f} °C" if d.temperature_c is not None else "", note)
    if not snap.devices:
        dev.add_row("", "none", "", "", "", "", "", snap.why.get("devices", ""))
    elif "devices" in snap.why:
        dev.add_row("", "GPUs", "", "", "", "", "", snap.why["devices"])
    console.print(dev)

    procs = Table(title="Processes", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, expand=True)
    for col in ("pid", "role", "CPU%", "RSS", "ports", "command"):
        procs.add_column(col, no_wrap=col != "command", justify="right" if col in ("pid", "CPU%", "RSS") else "left", overflow="ellipsis")
    for p in (tree.processes if tree else ()):
        procs.add_row(str(p.pid), p.role or p.name, f"{p.cpu_percent:.0f}" if p.cpu_percent is not None else "",
                      si(p.rss_bytes, "B"), ",".join(map(str, p.listening_ports)), " ".join(p.cmdline)[:120])
    console.print(procs)
    for key, reason in view.why.items():
        if key not in ("engine", "devices"):
            console.print(Text(f"{key}: {reason}", style="dim"))
