"""The dashboard's panels. Each one only draws the :class:`~infermon.live.view.LiveView` it is given.

Nothing here computes a figure: values, sources and reasons come from ``view.figures``; colours
come from the theme through each panel's component classes (``app.tcss``).
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static

from infermon.live.figure import DATASHEET, ENGINE, GIVEN, MEASURED, MODELED, NA
from infermon.live.view import LiveView
from infermon.tui.plot import roofline_text
from infermon.tui.text import bar, figure_row, sparkline
from infermon.views.fmt import note_text, si, sig3, value_text

SOURCE_CLASSES = {MEASURED: "source--measured", ENGINE: "source--engine", MODELED: "source--modeled",
                  DATASHEET: "source--datasheet", GIVEN: "source--given", NA: "source--na"}


class Line(Static):
    """A one-line figure that repaints only itself, and only when its text changes.

    Over SSH every repainted cell costs bytes: a fixed-size line needs no
    layout pass (which would repaint its neighbours too).
    """

    DEFAULT_CSS = "Line { height: 1; width: 1fr; }"
    FIXED_HEIGHT = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__("", *args, **kwargs)
        self._shown: Text | None = None

    def set(self, text: Text | str) -> None:
        text = Text(text) if isinstance(text, str) else text
        if self._shown is None or text != self._shown or text.spans != self._shown.spans:
            relayout = not self.FIXED_HEIGHT and (self._shown is None or self._rows(text) != self._rows(self._shown))
            self._shown = text
            # A layout pass repaints the whole screen: only when the text needs another number of rows.
            self.update(text, layout=relayout)

    def _rows(self, text: Text) -> int:
        width = max(1, self.content_size.width or 80)
        return max(1, -(-text.cell_len // width))


class Paragraph(Line):
    """A Line whose height follows its text (the verdict)."""

    DEFAULT_CSS = "Paragraph { height: auto; width: 1fr; }"
    FIXED_HEIGHT = False


class Panel(Vertical):
    """A bordered panel with a number key and a title; may be maximised.

    Subclasses list their figure lines in ``compose`` and draw them in :meth:`show`; ``line(id)``
    gives the cached widget.
    """

    ALLOW_MAXIMIZE = True
    COMPONENT_CLASSES = {*SOURCE_CLASSES.values(), "figure--label", "figure--note", "figure--warning",
                         "bar--bandwidth", "bar--compute", "bar--usage", "bar--full", "bar--empty", "spark"}

    def __init__(self, number: int, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.number = number
        self.title = title
        self.border_title = f"{number} {title}"
        self.add_class("panel")
        self.stale = False
        self._lines: dict[str, Line] = {}

    def on_mount(self) -> None:
        self._lines = {line.id: line for line in self.query(Line) if line.id}

    def line(self, line_id: str) -> Line:
        return self._lines.get(line_id) or self.query_one(f"#{line_id}", Line)

    def style(self, component: str) -> Style:
        return self.get_component_rich_style(component, partial=True)

    def figure_styles(self) -> dict[str, Style]:
        styles = {source: self.style(cls) for source, cls in SOURCE_CLASSES.items()}
        styles["label"] = self.style("figure--label")
        styles["note"] = self.style("figure--note")
        return styles

    def show(self, view: LiveView) -> None:  # pragma: no cover - each panel overrides
        raise NotImplementedError


class ThroughputPanel(Panel):
    ROWS = (("gen", "generation", "generation_tokens_per_s"), ("prompt", "prompt", "prompt_tokens_per_s"))

    def __init__(self) -> None:
        super().__init__(1, "Throughput", id="throughput")

    def compose(self) -> ComposeResult:
        for line_id in ("gen", "gen-spark", "prompt", "prompt-spark", "requests", "steps", "ttft", "itl", "queue",
                        "prefix", "engine-note"):
            yield Line(id=line_id)

    def show(self, view: LiveView) -> None:
        f, styles = view.figures, self.figure_styles()
        peak = view.trend.peak_generation_tokens_per_s
        gen_note = None
        if f.generation_tokens_per_s.value is not None and peak:
            gen_note = f"peak {sig3(peak)}"
            if f.generation_tokens_per_s.note:
                gen_note = f"{f.generation_tokens_per_s.note}; {gen_note}"
        self.line("gen").set(figure_row("generation", f.generation_tokens_per_s, styles, note=gen_note))
        spark_width = max(8, self.content_size.width - 16)
        spark = self.style("spark")
        self.line("gen-spark").set(Text(" " * 16) + sparkline(view.trend.generation, spark_width, spark))
        self.line("prompt").set(figure_row("prompt", f.prompt_tokens_per_s, styles))
        self.line("prompt-spark").set(Text(" " * 16) + sparkline(view.trend.prompt, spark_width, spark))
        running, waiting = f.requests_running, f.requests_waiting
        self.line("requests").set(figure_row("requests", running, styles, note="running / waiting",
                                             value=f"{value_text(running)} / {value_text(waiting)}"))
        batch_note = f"batch {value_text(f.batch)}" if f.batch.value is not None else None
        self.line("steps").set(figure_row("steps/s", f.steps_per_s, styles,
                                          note=f"{batch_note}; {note_text(f.steps_per_s)}".strip("; ") if batch_note else None))
        for line_id, label, p50, p95 in (("ttft", "TTFT p50/p95", f.ttft_p50_s, f.ttft_p95_s),
                                         ("itl", "ITL p50/p95", f.inter_token_p50_s, f.inter_token_p95_s),
                                         ("queue", "queue p50/p95", f.queue_time_p50_s, f.queue_time_p95_s)):
            self.line(line_id).set(_pair_row(label, p50, p95, styles))
        self.line("prefix").set(figure_row("prefix hits", f.prefix_cache_hit_rate, styles))
        notes = list(view.notes)
        self.line("engine-note").set(Text("; ".join(notes), style=self.style("figure--warning")) if notes else "")


def _pair_row(label: str, p50, p95, styles) -> Text:
    """p50/p95 on one line: they come from the same histogram, so one source and one note."""
    return figure_row(label, p50, styles, value=f"{value_text(p50)}/{value_text(p95)}")


class RooflinePlot(Widget):
    """The log-log roofline with the operating point; redrawn when its figures or its size change."""

    point: reactive[tuple | None] = reactive(None, layout=False)

    def render(self) -> Text:
        if self.point is None or self.size.width < 12 or self.size.height < 4:
            return Text("")
        bandwidth, peak, intensity, flops = self.point
        return roofline_text(self.size.width, self.size.height, bandwidth, peak, intensity, flops)


class RooflinePanel(Panel):
    def __init__(self) -> None:
        super().__init__(2, "Roofline", id="roofline")

    def compose(self) -> ComposeResult:
        with Horizontal(id="roof-body"):
            with Vertical(id="roof-figures"):
                for line_id in ("peak-bw", "peak-flops", "ridge", "ceiling", "critical", "bw-modeled",
                                "bw-measured", "bw-engine", "flops", "flops-engine", "mbu", "mfu", "intensity"):
                    yield Line(id=line_id)
            yield RooflinePlot(id="roof-plot")

    def show(self, view: LiveView) -> None:
        f, styles = view.figures, self.figure_styles()
        hw = view.hardware
        self.line("peak-bw").set(figure_row("peak bandwidth", f.peak_bandwidth_bytes_per_s, styles))
        self.line("peak-flops").set(figure_row(f"peak {hw.compute_dtype}" if hw else "peak FLOP/s", f.peak_flops, styles))
        self.line("ridge").set(figure_row("ridge", f.ops_per_byte, styles))
        self.line("ceiling").set(figure_row("decode ceiling", f.decode_ceiling_tokens_per_s, styles))
        self.line("critical").set(figure_row("critical batch", f.critical_batch, styles))
        self.line("bw-modeled").set(figure_row("bandwidth", f.bandwidth_modeled_bytes_per_s, styles))
        disagreement = f.bandwidth_disagreement.value
        self.line("bw-measured").set(figure_row(
            "bandwidth", f.bandwidth_measured_bytes_per_s, styles,
            note=f"differs {disagreement:.0%} from modeled" if disagreement and disagreement > 0.25 else None))
        gap = f.bandwidth_vs_engine.value
        self.line("bw-engine").set(figure_row("bandwidth", f.bandwidth_engine_bytes_per_s, styles,
                                              note=f"modeled {gap:+.1%}" if gap is not None else None))
        self.line("flops").set(figure_row("FLOP/s", f.flops_modeled_per_s, styles))
        gap = f.flops_vs_engine.value
        self.line("flops-engine").set(figure_row("FLOP/s", f.flops_engine_per_s, styles,
                                                 note=f"modeled {gap:+.1%}" if gap is not None else None))
        for line_id, label, fig, component in (("mbu", "MBU", f.mbu, "bar--bandwidth"), ("mfu", "MFU", f.mfu, "bar--compute")):
            text = Text(f"{label:<16}", style=styles["label"])
            text.append_text(bar(fig.value, 24, style=self.style(component), empty_style=self.style("bar--empty"),
                                 eighths=False))
            text.append(f" {value_text(fig):>6} ")
            text.append(fig.source, style=styles.get(fig.source))
            self.line(line_id).set(text)
        intensity = f.operating_intensity
        bound = view.verdict.bound
        self.line("intensity").set(figure_row("intensity", intensity, styles,
                                              note=f"{bound}-bound" if bound and intensity.value is not None else None))
        self.query_one(RooflinePlot).point = (f.peak_bandwidth_bytes_per_s.value, f.peak_flops.value, intensity.value,
                                              f.flops_modeled_per_s.value)


class MemoryPanel(Panel):
    def __init__(self) -> None:
        super().__init__(3, "KV cache & memory", id="memory")

    def compose(self) -> ComposeResult:
        for line_id in ("kv-bytes", "kv-capacity", "kv-pool", "kv-usage", "kv-headroom", "kv-fits", "preempt",
                        "kv-warning", "mem-0", "mem-1", "mem-2", "mem-3", "rss", "torch"):
            yield Line(id=line_id)

    def show(self, view: LiveView) -> None:
        f, styles = view.figures, self.figure_styles()
        self.line("kv-bytes").set(figure_row("KV per token", f.kv_bytes_per_token, styles))
        self.line("kv-capacity").set(figure_row("capacity", f.kv_capacity_tokens, styles))
        self.line("kv-pool").set(figure_row("KV pool", f.kv_pool_bytes, styles))
        usage = f.kv_usage
        text = Text(f"{'usage':<16}", style=styles["label"])
        full = (usage.value or 0) >= 0.9
        text.append_text(bar(usage.value, 20, style=self.style("bar--full" if full else "bar--usage"),
                             empty_style=self.style("bar--empty"), eighths=False))
        text.append(f" {value_text(usage):>6} ")
        text.append(usage.source if usage.value is not None else note_text(usage), style=styles.get(usage.source))
        self.line("kv-usage").set(text)
        self.line("kv-headroom").set(figure_row("headroom", f.kv_headroom_tokens, styles))
        self.line("kv-fits").set(figure_row("sequences fit", f.sequences_fit, styles))
        rate = f.preemptions_per_s.value
        self.line("preempt").set(figure_row("preemptions", f.preemptions_total, styles,
                                            note=f"+{rate:.1f}/s" if rate else None))
        warning = f"KV cache {usage.value:.0%} full: new requests wait or preempt others" if full else ""
        self.line("kv-warning").set(Text(warning, style=self.style("figure--warning")) if warning else "")
        gpus = [d for d in view.devices if d.kind == "gpu" and d.used_by_tree] or list(view.devices)
        for index in range(4):
            line = self.line(f"mem-{index}")
            if index < len(gpus):
                d = gpus[index]
                label = f"GPU {d.index}" if d.kind == "gpu" else "host"
                tree = f"tree {si(d.memory_tree_bytes, 'B')}" if d.memory_tree_bytes is not None else ""
                used, total = d.memory_used_bytes, d.memory_total_bytes
                row = Text(f"{label:<16}", style=styles["label"])
                row.append_text(bar(used / total if used is not None and total else None, 12,
                                    style=self.style("bar--usage"), empty_style=self.style("bar--empty")))
                row.append(f" {si(used, 'B')} / {si(total, 'B')} {tree} ")
                row.append(MEASURED, style=styles[MEASURED])
                line.set(row)
            elif index == len(gpus) and len(gpus) < len(view.devices) and index == 3:
                line.set(Text(f"… {len(view.devices) - len(gpus)} more devices", style=styles["note"]))
            else:
                line.set("")
        self.line("rss").set(figure_row("tree RSS", f.tree_rss_bytes, styles))
        torch = f.torch_allocated_bytes
        if torch.value is not None:
            parts = [f"of {value_text(f.torch_reserved_bytes)} reserved"]
            if f.weight_bytes.value is not None:
                parts.append(f"weights {value_text(f.weight_bytes)}")
            if f.torch_cache_free.value is not None:
                parts.append(f"{value_text(f.torch_cache_free)} free in cache")
            if f.alloc_retries.value or f.ooms.value:
                parts.append(f"{value_text(f.alloc_retries)} retries, {value_text(f.ooms)} OOMs")
            self.line("torch").set(figure_row("torch allocated", torch, styles, note=", ".join(parts)))
        else:
            self.line("torch").set(figure_row("torch allocated", torch, styles))


class RowTable(Vertical):
    """A table drawn as one :class:`Line` per row: a changed cell repaints only its row.

    (A DataTable repaints the whole table for one changed cell, which at 1 Hz is
    most of an SSH link's budget.) Column widths only grow, so rows never shift.
    """

    DEFAULT_CSS = "RowTable { height: auto; }"

    def __init__(self, columns: tuple[str, ...], right: frozenset[str] = frozenset(), **kwargs) -> None:
        super().__init__(**kwargs)
        self.columns = columns
        self.right = right
        self.widths = [len(c) for c in columns]
        self.rows: list[Line] = []

    def compose(self) -> ComposeResult:
        yield Line(classes="table-header")

    def _format(self, cells: tuple[str, ...]) -> str:
        out = []
        for column, cell, width in zip(self.columns, cells, self.widths):
            out.append(cell.rjust(width) if column in self.right else cell.ljust(width))
        return "  ".join(out).rstrip()

    def set_rows(self, rows: list[tuple[str, ...]], styles: list[Style | str] | None = None) -> None:
        for cells in rows:
            self.widths = [max(w, len(c)) for w, c in zip(self.widths, cells)]
        self.query_one(".table-header", Line).set(Text(self._format(self.columns), style="bold"))
        while len(self.rows) < len(rows):
            line = Line()
            self.rows.append(line)
            self.mount(line)
        while len(self.rows) > len(rows):
            self.rows.pop().remove()
        for index, cells in enumerate(rows):
            style = styles[index] if styles else ""
            self.rows[index].set(Text(self._format(cells), style=style, no_wrap=True, overflow="ellipsis"))


class DevicesPanel(Panel):
    COLUMNS = ("#", "device", "util", "SM MHz", "power W", "temp", "PCIe↑↓", "NVLink↑↓", "throttle")

    def __init__(self) -> None:
        super().__init__(4, "Devices", id="devices")

    def compose(self) -> ComposeResult:
        yield RowTable(self.COLUMNS, right=frozenset({"util", "SM MHz", "power W", "temp", "PCIe↑↓", "NVLink↑↓"}))
        yield Line(id="devices-note")

    def show(self, view: LiveView) -> None:
        rows, styles = [], []
        na = "n/a"
        for d in view.devices:
            clocks = lambda now, top: na if now is None else (f"{now:.0f}/{top:.0f}" if top else f"{now:.0f}")
            name = (d.name or "?").removeprefix("NVIDIA ").removeprefix("GeForce ")
            rows.append((
                ("*" if d.used_by_tree else " ") + (str(d.index) if d.kind == "gpu" else "host"),
                name[:20],
                na if d.utilization_gpu is None else f"{d.utilization_gpu * 100:.0f}%",
                clocks(d.sm_clock_mhz, d.sm_clock_max_mhz),
                na if d.power_w is None else (f"{d.power_w:.0f}/{d.power_limit_w:.0f}" if d.power_limit_w else f"{d.power_w:.0f}"),
                na if d.temperature_c is None else f"{d.temperature_c:.0f}°C",
                na if d.pcie_tx_bytes_per_s is None else f"{d.pcie_tx_bytes_per_s / 1e9:.1f} {(d.pcie_rx_bytes_per_s or 0) / 1e9:.1f}",
                "—" if d.nvlink_tx_bytes_per_s is None else f"{d.nvlink_tx_bytes_per_s / 1e9:.0f} {(d.nvlink_rx_bytes_per_s or 0) / 1e9:.0f}",
                ", ".join(d.throttle_reasons) or ("—" if d.kind == "gpu" else ""),
            ))
            styles.append("" if d.used_by_tree or d.kind == "host" else self.style("figure--note"))
        self.query_one(RowTable).set_rows(rows, styles)
        note = view.why.get("devices", "")
        self.line("devices-note").set(
            Text(note or "* = used by the watched tree; PCIe and NVLink GB/s sent and received; measured (NVML)",
                 style=self.style("figure--note")))


class ProcessesPanel(Panel):
    COLUMNS = ("pid", "role", "CPU%", "RSS", "GPU mem", "threads", "ports", "command")
    SORTS = ("CPU%", "RSS", "GPU mem", "pid")

    def __init__(self) -> None:
        super().__init__(5, "Processes", id="processes")
        self.sort_index = 0
        self._last: LiveView | None = None

    def compose(self) -> ComposeResult:
        yield RowTable(self.COLUMNS, right=frozenset({"pid", "CPU%", "RSS", "GPU mem", "threads"}))

    @property
    def sort_column(self) -> str:
        return self.SORTS[self.sort_index]

    def cycle_sort(self) -> str:
        self.sort_index = (self.sort_index + 1) % len(self.SORTS)
        self.border_subtitle = f"sorted by {self.sort_column} (o)"
        if self._last is not None:
            self.show(self._last)
        return self.sort_column

    def show(self, view: LiveView) -> None:
        self._last = view
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
        width = max(20, self.content_size.width - 70) if self.content_size.width else 60
        rows = [(
            str(p.pid),
            (p.role or p.name)[:24],
            "n/a" if p.cpu_percent is None else f"{p.cpu_percent:.0f}",
            si(p.rss_bytes, "B"),
            si(p.gpu_memory_bytes, "B") if p.gpu_memory_bytes is not None else "",
            "" if p.threads is None else str(p.threads),
            ",".join(map(str, p.listening_ports))[:12],
            " ".join(p.cmdline)[:width],
        ) for p in processes[:200]]
        self.query_one(RowTable).set_rows(rows)


PANELS: tuple[type[Panel], ...] = (ThroughputPanel, RooflinePanel, MemoryPanel, DevicesPanel, ProcessesPanel)
