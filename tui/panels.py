"""The dashboard's panels. Each one only draws the :class:`~infermon.live.view.LiveView` it is given.

Nothing here computes a figure: values, sources and reasons come from ``view.figures``; colours
come from the theme through each panel's component classes (``app.tcss``). Every row is fitted to
the panel's width (:mod:`infermon.tui.text`): nothing is cut inside a word.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult

from infermon.live.figure import MEASURED
from infermon.live.view import LiveView
from infermon.tui.plot import roofline_text
from infermon.tui.text import Columns, Row, bar, chart, fit
from infermon.tui.widgets import Body, Panel, Paragraph, Side, TableFormat
from infermon.views.fmt import ports_text, si, sig3, value_text

__all__ = ["PANELS", "Panel", "Paragraph", "Body", "ThroughputPanel", "RooflinePanel", "MemoryPanel",
           "DevicesPanel", "ProcessesPanel"]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above ``value``: a chart's scale that rarely moves."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def paged(values: tuple[float, ...], width: int) -> tuple[float, ...]:
    """The last values that fit ``width``, moving a quarter of the width at a time: the chart
    scrolls in steps, not every bucket (each scroll repaints every column)."""
    if len(values) <= width or width < 4:
        return values[-width:] if width > 0 else ()
    step = max(1, width // 4)
    start = -(-(len(values) - width) // step) * step
    return values[start:]


class Chart(Body):
    """A bar chart of recent values that takes the rows its panel has left (none: not drawn).

    Redrawn only when its values or its size change (the history moves once per bucket of
    samples); its scale is a round number and it scrolls a quarter of its width at a time.
    """

    DEFAULT_CSS = "Chart { height: 1fr; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._data: tuple = ((), "", "", "bold", "dim")

    def set(self, values: tuple[float, ...], unit: str, axis: str, style, dim) -> None:
        self._data = (values, unit, axis, style, dim)
        self._draw()

    def _draw(self) -> None:
        values, unit, axis, style, dim = self._data
        width, height = self.size
        rows: list[Text] = []
        if height >= 3 and width >= 10:
            shown = paged(values, width)
            top = nice_ceiling(max(shown, default=0.0))
            rows.append(Text(fit(f"{unit}, scale 0–{sig3(top)}" if shown else f"{unit}: no history yet", width), style=dim))
            scaled = tuple(v / top for v in shown)
            rows.extend(Text(line, style=style) for line in chart(scaled, width, height - 2, full_scale=1.0))
            rows.append(Text(fit(axis, width), style=dim))
        self.set_rows([(str(y), row) for y, row in enumerate(rows)])

    def on_resize(self) -> None:
        self._draw()


class ThroughputPanel(Panel):
    def __init__(self) -> None:
        super().__init__(1, "Throughput", id="throughput")

    def compose(self) -> ComposeResult:
        yield Body(id="throughput-rows")
        yield Chart(id="gen-chart")

    def show(self, view: LiveView) -> None:
        f, styles, width = view.figures, self.figure_styles(), self.text_width
        pairs = (("ttft", "TTFT p50/p95", f.ttft_p50_s, f.ttft_p95_s),
                 ("itl", "ITL p50/p95", f.inter_token_p50_s, f.inter_token_p95_s),
                 ("queue", "queue p50/p95", f.queue_time_p50_s, f.queue_time_p95_s))
        rows = [("gen", "generation", f.generation_tokens_per_s, None), ("prompt", "prompt", f.prompt_tokens_per_s, None),
                ("running", "running", f.requests_running, None), ("waiting", "waiting", f.requests_waiting, None),
                ("batch", "batch", f.batch, None), ("steps", "steps/s", f.steps_per_s, None),
                *[(line_id, label, p50, f"{value_text(p50)}/{value_text(p95)}") for line_id, label, p50, p95 in pairs],
                ("prefix", "prefix hits", f.prefix_cache_hit_rate, None)]
        columns = Columns.of([r[1:] for r in rows], width, styles)
        peak = view.trend.peak_generation_tokens_per_s
        notes = {"running": "requests", "waiting": "requests"}
        if f.generation_tokens_per_s.value is not None and peak:
            notes["gen"] = "; ".join(p for p in (f.generation_tokens_per_s.note, f"peak {sig3(peak)}") if p)
        for line_id, label, fig, value in rows:
            # p50 and p95 come from the same histogram: one source and one note.
            self.line(line_id).set(columns.row(label, fig, note=notes.get(line_id) if fig.value is not None else None,
                                               value=value))
        notes = "; ".join(view.notes)
        self.line("engine-note").set(Text(fit(notes, width), style=self.style("figure--warning")) if notes else "")
        trend = view.trend
        self.query_one(Chart).set(trend.generation, "generated tok/s",
                                  f"{trend.bucket}-sample means, {trend.bucket * view.interval_s:g} s a column → now",
                                  self.style("spark"), styles["note"])


class RooflinePanel(Panel):
    FIGURE_LINES = ("peak-bw", "peak-flops", "ridge", "ceiling", "critical", "bw-modeled", "bw-measured",
                    "bw-engine", "flops", "flops-engine", "mbu", "mfu", "intensity")
    # The engine's own estimates: most engines publish none, and then their lines give way when
    # rows are short (their reasons stay on the why screen).
    OPTIONAL = ("bw-engine", "flops-engine")

    def __init__(self) -> None:
        super().__init__(2, "Roofline", id="roofline")
        self._plot_key: tuple | None = None

    def compose(self) -> ComposeResult:
        with Side(id="roof-body"):
            yield Body(id="roof-figures")
            yield Body(id="roof-plot")

    def on_resize(self) -> None:
        # The plot goes beside the figures when there are rows to spare only that way.
        size = self.content_size
        self.set_class(size.height < len(self.FIGURE_LINES) + 6 and size.width >= 58 + 30, "-beside")
        super().on_resize()

    def show(self, view: LiveView) -> None:
        f, styles = view.figures, self.figure_styles()
        width = 56 if self.has_class("-beside") else self.text_width
        hw = view.hardware
        entries = [("peak bandwidth", f.peak_bandwidth_bytes_per_s), ("peak FLOP/s", f.peak_flops),
                   ("ridge", f.ops_per_byte), ("decode ceiling", f.decode_ceiling_tokens_per_s),
                   ("critical batch", f.critical_batch), ("bandwidth", f.bandwidth_modeled_bytes_per_s),
                   ("bandwidth", f.bandwidth_measured_bytes_per_s), ("bandwidth", f.bandwidth_engine_bytes_per_s),
                   ("FLOP/s", f.flops_modeled_per_s), ("FLOP/s", f.flops_engine_per_s), ("MBU", f.mbu),
                   ("MFU", f.mfu), ("intensity", f.operating_intensity)]
        columns = Columns.of([(label, fig, None) for label, fig in entries], width, styles)
        row = columns.row
        self.line("peak-bw").set(row("peak bandwidth", f.peak_bandwidth_bytes_per_s))
        self.line("peak-flops").set(row(f"peak {hw.compute_dtype}" if hw else "peak FLOP/s", f.peak_flops))
        self.line("ridge").set(row("ridge", f.ops_per_byte))
        self.line("ceiling").set(row("decode ceiling", f.decode_ceiling_tokens_per_s))
        self.line("critical").set(row("critical batch", f.critical_batch))
        self.line("bw-modeled").set(row("bandwidth", f.bandwidth_modeled_bytes_per_s))
        disagreement = f.bandwidth_disagreement.value
        self.line("bw-measured").set(row(
            "bandwidth", f.bandwidth_measured_bytes_per_s,
            note=f"differs {disagreement:.0%} from modeled" if disagreement and disagreement > 0.25 else None))
        short = self.content_size.height < len(self.FIGURE_LINES)  # the panel, figures and plot
        gap = f.bandwidth_vs_engine.value
        engine_bw = f.bandwidth_engine_bytes_per_s
        self.line("bw-engine").set("" if short and engine_bw.value is None else row(
            "bandwidth", engine_bw, note=f"modeled {gap:+.1%}" if gap is not None else None))
        self.line("flops").set(row("FLOP/s", f.flops_modeled_per_s))
        gap = f.flops_vs_engine.value
        engine_flops = f.flops_engine_per_s
        self.line("flops-engine").set("" if short and engine_flops.value is None else row(
            "FLOP/s", engine_flops, note=f"modeled {gap:+.1%}" if gap is not None else None))
        for line_id, label, fig, component in (("mbu", "MBU", f.mbu, "bar--bandwidth"), ("mfu", "MFU", f.mfu, "bar--compute")):
            self.line(line_id).set(columns.bar_row(label, fig, lambda cells, fig=fig, component=component: bar(
                fig.value, cells, style=self.style(component), empty_style=self.style("bar--empty"), eighths=False)))
        intensity = f.operating_intensity
        bound = view.verdict.bound
        self.line("intensity").set(row("intensity", intensity,
                                       note=f"{bound}-bound" if bound and intensity.value is not None else None))
        plot = self.query_one("#roof-plot", Body)
        size = plot.size
        bandwidth, peak, achieved = f.peak_bandwidth_bytes_per_s.value, f.peak_flops.value, f.flops_modeled_per_s.value
        # The point moves on a log grid: a change below a hundredth of a decade moves no cell.
        where = tuple(round(math.log10(v), 2) if v and v > 0 else None for v in (intensity.value, achieved))
        key = (size.width, size.height, bandwidth, peak, where)
        if key != self._plot_key:
            self._plot_key = key
            rows: list[Text] = []
            if size.width >= 12 and size.height >= 4:
                rows = roofline_text(size.width, size.height, bandwidth, peak, intensity.value, achieved).split("\n")
            plot.set_rows([(str(y), row) for y, row in enumerate(rows)])


class MemoryPanel(Panel):
    def __init__(self) -> None:
        super().__init__(3, "KV cache & memory", id="memory")

    def compose(self) -> ComposeResult:
        yield Body(id="memory-rows")

    def show(self, view: LiveView) -> None:
        f, styles, width = view.figures, self.figure_styles(), self.text_width
        entries = [("KV per token", f.kv_bytes_per_token), ("capacity", f.kv_capacity_tokens),
                   ("KV pool", f.kv_pool_bytes), ("usage", f.kv_usage), ("headroom", f.kv_headroom_tokens),
                   ("sequences fit", f.sequences_fit), ("preemptions", f.preemptions_total),
                   ("tree RSS", f.tree_rss_bytes), ("torch allocated", f.torch_allocated_bytes)]
        columns = Columns.of([(label, fig, None) for label, fig in entries], width, styles)
        row = columns.row

        self.line("kv-bytes").set(row("KV per token", f.kv_bytes_per_token))
        self.line("kv-capacity").set(row("capacity", f.kv_capacity_tokens))
        self.line("kv-pool").set(row("KV pool", f.kv_pool_bytes))
        usage = f.kv_usage
        full = (usage.value or 0) >= 0.9
        self.line("kv-usage").set(columns.bar_row("usage", usage, lambda cells: bar(
            usage.value, cells, style=self.style("bar--full" if full else "bar--usage"),
            empty_style=self.style("bar--empty"), eighths=False)))
        self.line("kv-headroom").set(row("headroom", f.kv_headroom_tokens))
        self.line("kv-fits").set(row("sequences fit", f.sequences_fit))
        rate = f.preemptions_per_s.value
        self.line("preempt").set(row("preemptions", f.preemptions_total, note=f"+{rate:.1f}/s" if rate else None))
        warning = f"KV cache {usage.value:.0%} full: new requests wait or preempt others" if full else ""
        self.line("kv-warning").set(Text(fit(warning, width), style=self.style("figure--warning")) if warning else "")
        gpus = [d for d in view.devices if d.kind == "gpu" and d.used_by_tree] or list(view.devices)
        for index in range(4):
            line = self.line(f"mem-{index}")
            if index < len(gpus) and not (index == 3 and len(gpus) > 4):
                d = gpus[index]
                used, total = d.memory_used_bytes, d.memory_total_bytes
                memory = Row().add(f"{'GPU ' + str(d.index) if d.kind == 'gpu' else 'host':<{columns.label}}",
                                   styles["label"])
                memory.add_text(bar(used / total if used is not None and total else None, 12,
                                    style=self.style("bar--usage"), empty_style=self.style("bar--empty")), drop=3)
                memory.add(f" {si(used, 'B')} / {si(total, 'B')} ")
                if d.memory_tree_bytes is not None:
                    memory.add(f"tree {si(d.memory_tree_bytes, 'B')} ", drop=1)
                memory.add(MEASURED, styles[MEASURED])
                line.set(memory.text(width))
            elif index == 3 and len(gpus) > 4:
                line.set(Text(f"… {len(gpus) - 3} more devices (4)", style=styles["note"]))
            else:
                line.set("")
        self.line("rss").set(row("tree RSS", f.tree_rss_bytes))
        torch = f.torch_allocated_bytes
        note = None
        if torch.value is not None:
            parts = [f"of {value_text(f.torch_reserved_bytes)} reserved"]
            if f.weight_bytes.value is not None:
                parts.append(f"weights {value_text(f.weight_bytes)}")
            if f.torch_cache_free.value is not None:
                parts.append(f"{value_text(f.torch_cache_free)} free in cache")
            if f.alloc_retries.value or f.ooms.value:
                parts.append(f"{value_text(f.alloc_retries)} retries, {value_text(f.ooms)} OOMs")
            note = ", ".join(parts)
        self.line("torch").set(row("torch allocated", torch, note=note))


def _device_name(d) -> str:
    return (d.name or "?").removeprefix("NVIDIA ").removeprefix("GeForce ")


class DevicesPanel(Panel):
    # Columns in the order they are given up when the panel is narrow (from the right).
    COLUMNS = ("#", "device", "util", "memory", "power W", "SM MHz", "temp", "PCIe↑↓", "NVLink↑↓", "throttle")

    def __init__(self) -> None:
        super().__init__(4, "Devices", id="devices")

    def compose(self) -> ComposeResult:
        self.table = TableFormat(self.COLUMNS, right=frozenset({"util", "memory", "SM MHz", "power W", "temp", "PCIe↑↓",
                                                                "NVLink↑↓"}), keep=frozenset({"#", "device", "util"}))
        yield Body(id="devices-rows")

    def show(self, view: LiveView) -> None:
        rows, styles = [], []
        na = "n/a"
        for d in view.devices:
            clocks = lambda now, top: na if now is None else (f"{now:.0f}/{top:.0f}" if top else f"{now:.0f}")  # noqa: E731
            used, total = d.memory_used_bytes, d.memory_total_bytes
            rows.append((
                ("*" if d.used_by_tree else " ") + (str(d.index) if d.kind == "gpu" else "host"),
                fit(_device_name(d), 20),
                na if d.utilization_gpu is None else f"{d.utilization_gpu * 100:.0f}%",
                na if used is None else f"{si(used, 'B')} / {si(total, 'B')}",
                na if d.power_w is None else (f"{d.power_w:.0f}/{d.power_limit_w:.0f}" if d.power_limit_w else f"{d.power_w:.0f}"),
                clocks(d.sm_clock_mhz, d.sm_clock_max_mhz),
                na if d.temperature_c is None else f"{d.temperature_c:.0f}°C",
                na if d.pcie_tx_bytes_per_s is None else f"{d.pcie_tx_bytes_per_s / 1e9:.1f} {(d.pcie_rx_bytes_per_s or 0) / 1e9:.1f}",
                "—" if d.nvlink_tx_bytes_per_s is None else f"{d.nvlink_tx_bytes_per_s / 1e9:.0f} {(d.nvlink_rx_bytes_per_s or 0) / 1e9:.0f}",
                ", ".join(d.throttle_reasons) or ("—" if d.kind == "gpu" else ""),
            ))
            styles.append("" if d.used_by_tree or d.kind == "host" else self.style("figure--note"))
        for index, text in enumerate(self.table.rows(rows, self.text_width, styles)):
            self.line(f"device-{index}").set(text)
        note = view.why.get("devices", "")
        self.line("devices-note").set(Text(
            fit(note or "* = used by the watched tree; all measured",
                self.text_width), style=self.style("figure--note")))


class ProcessesPanel(Panel):
    COLUMNS = ("pid", "role", "CPU%", "RSS", "GPU mem", "threads", "ports", "command")
    SORTS = ("CPU%", "RSS", "GPU mem", "pid")
    # Rows drawn in the full layout, where the panel is sized to its rows.
    FULL_LAYOUT_ROWS = 10

    def __init__(self) -> None:
        super().__init__(5, "Processes", id="processes")
        self.sort_index = 0

    def compose(self) -> ComposeResult:
        self.table = TableFormat(self.COLUMNS, right=frozenset({"pid", "CPU%", "RSS", "GPU mem", "threads"}),
                                 keep=frozenset({"pid", "role", "command"}), words=False)
        yield Body(id="processes-rows")

    @property
    def sort_column(self) -> str:
        return self.SORTS[self.sort_index]

    def cycle_sort(self) -> str:
        self.sort_index = (self.sort_index + 1) % len(self.SORTS)
        if self.last is not None:
            self.show(self.last)
        return self.sort_column

    def show(self, view: LiveView) -> None:
        subtitle = f"sorted by {self.sort_column} (o)"
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
        tree = view.tree
        keys = {
            "CPU%": lambda p: -(p.cpu_percent or 0.0),
            "RSS": lambda p: -(p.rss_bytes or 0),
            "GPU mem": lambda p: -(p.gpu_memory_bytes or 0),
            "pid": lambda p: p.pid,
        }
        processes = sorted(tree.processes if tree else (), key=lambda p: (keys[self.sort_column](p), p.pid))
        rows = [(
            str(p.pid),
            fit(p.role or p.name, 24),
            "n/a" if p.cpu_percent is None else f"{p.cpu_percent:.0f}",
            si(p.rss_bytes, "B"),
            si(p.gpu_memory_bytes, "B") if p.gpu_memory_bytes is not None else "",
            "" if p.threads is None else str(p.threads),
            fit(ports_text(p.listening_ports), 12),
            " ".join(p.cmdline),
        ) for p in processes[:500]]
        sized_to_rows = self.app.has_class("full") and self.screen.maximized is not self
        limit = self.FULL_LAYOUT_ROWS if sized_to_rows else max(2, self.content_size.height - 1)
        for index, text in enumerate(self.table.rows(rows, self.text_width, max_rows=limit,
                                                     more_style=self.style("figure--note"))):
            self.line(f"process-{index}").set(text)


PANELS: tuple[type[Panel], ...] = (ThroughputPanel, RooflinePanel, MemoryPanel, DevicesPanel, ProcessesPanel)
