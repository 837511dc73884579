"""The dashboard's panels. Each one only draws the :class:`LiveView` it is given."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from infermon.views.fmt import count, seconds, si
from infermon.live.derive import LiveView
from infermon.live.history import History
from infermon.tui.plot import roofline_text
from infermon.tui.text import bar, figure_row, sparkline

NA = "n/a"


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
    """A bordered panel with a number key and a title; may be maximised."""

    ALLOW_MAXIMIZE = True
    DEFAULT_CSS = """
    Panel { border: round $primary 60%; border-title-color: $text; padding: 0 1; height: 1fr; }
    Panel:focus-within { border: round $accent; }
    """

    def __init__(self, number: int, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.number = number
        self.title = title
        self.border_title = f"{number} {title}"
        self.add_class("panel")
        self.stale = False

    def show(self, view: LiveView, history: History) -> None:  # pragma: no cover - each panel overrides
        raise NotImplementedError


def _sig3(value: float) -> str:
    """Three significant digits (1,234 / 123 / 12.3 / 1.23): jitter in the 4th digit does not repaint."""
    if value >= 100:
        return f"{value:,.0f}" if value < 1000 else f"{round(value, -int(len(str(int(value)))) + 3):,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _sig2(value: float) -> str:
    """Two significant digits, for counts that only need their size (1,200 / 140 / 9.5)."""
    if value >= 10:
        digits = len(str(int(value)))
        return f"{round(value, -(digits - 2)):,.0f}"
    return f"{value:.1f}"


def _rate(value: float | None) -> str:
    return NA if value is None else f"{_sig3(value)} tok/s"


class ThroughputPanel(Panel):
    def __init__(self) -> None:
        super().__init__(1, "Throughput", id="throughput")
        self._latency_at: int | None = None

    def compose(self) -> ComposeResult:
        yield Line(id="gen")
        yield Line(id="gen-spark")
        yield Line(id="prompt")
        yield Line(id="prompt-spark")
        yield Line(id="requests")
        yield Line(id="ttft")
        yield Line(id="itl")
        yield Line(id="engine-note", classes="note")

    def show(self, view: LiveView, history: History) -> None:
        engine = view.snapshot.engine
        rates = view.rates
        peak = f"peak {_sig3(history.peak_generation)}" if history.peak_generation else ""
        gen_note = peak if rates.generation_tokens_per_s is not None else (engine.why.get("generation_tokens_total", "needs two samples") if engine else view.why.get("engine", "no engine metrics"))
        self.query_one("#gen", Line).set(figure_row("generation", _rate(rates.generation_tokens_per_s),
                                                    "measured" if rates.generation_tokens_per_s is not None else None, gen_note))
        spark_width = max(8, self.content_size.width - 16)
        self.query_one("#gen-spark", Line).set(Text(" " * 16) + sparkline(history.buckets(history.generation), spark_width, "bold cyan"))
        self.query_one("#prompt", Line).set(figure_row("prompt", _rate(rates.prompt_tokens_per_s),
                                                       "measured" if rates.prompt_tokens_per_s is not None else None))
        self.query_one("#prompt-spark", Line).set(Text(" " * 16) + sparkline(history.buckets(history.prompt), spark_width, "cyan"))
        if engine is not None and (engine.requests_running is not None or engine.batch is not None):
            running = engine.batch if engine.batch is not None else engine.requests_running
            waiting = "?" if engine.requests_waiting is None else f"{engine.requests_waiting:,.0f}"
            self.query_one("#requests", Line).set(figure_row("requests", f"{running:,.0f} / {waiting}", "measured",
                                                             "running / waiting"))
        else:
            self.query_one("#requests", Line).set(figure_row("requests", NA, None, "no running-requests figure"))
        # Percentiles over a minute need no 1 Hz repaint: every 5th sample.
        if self._latency_at is not None and history.samples - self._latency_at < 5:
            return self._notes(view, engine)
        self._latency_at = history.samples
        for line_id, which, label in (("#ttft", "ttft", "TTFT p50/p95"), ("#itl", "inter_token", "ITL p50/p95")):
            latency = history.latency(which)
            if latency is None or latency.p50 is None:
                reason = (engine.why.get(which) if engine else None) or "no histogram"
                self.query_one(line_id, Line).set(figure_row(label, NA, None, reason))
            else:
                self.query_one(line_id, Line).set(figure_row(label, f"{seconds(latency.p50)}/{seconds(latency.p95)}",
                                                             "measured", latency.window))
        self._notes(view, engine)

    def _notes(self, view: LiveView, engine) -> None:
        notes = list(view.rates.notes) + (list(engine.hints) if engine else [])
        self.query_one("#engine-note", Line).set(Text("; ".join(notes), style="yellow") if notes else "")


class RooflinePanel(Panel):
    def __init__(self) -> None:
        super().__init__(2, "Roofline", id="roofline")

    def compose(self) -> ComposeResult:
        with Horizontal(id="roof-body"):
            with Vertical(id="roof-figures"):
                for line_id in ("peak-bw", "peak-flops", "ridge", "ceiling", "critical", "bw-modeled",
                                "bw-measured", "flops", "mbu", "mfu", "intensity"):
                    yield Line(id=line_id)
            yield Static("", id="roof-plot")

    def show(self, view: LiveView, history: History) -> None:
        hw, a = view.hardware, view.analysis
        datasheet = "datasheet" if view.hardware_source and "datasheet" in view.hardware_source else "measured"
        q = self.query_one
        if hw is None:
            q("#peak-bw", Line).set(figure_row("peak bandwidth", NA, None, view.why.get("hardware", "")))
            q("#peak-flops", Line).set(figure_row("peak FLOP/s", NA, None))
        else:
            q("#peak-bw", Line).set(figure_row("peak bandwidth", si(hw.bandwidth_bytes_per_s, "B/s"), datasheet,
                                               f"× {hw.count}" if hw.count > 1 else ""))
            q("#peak-flops", Line).set(figure_row(f"peak {hw.compute_dtype}", si(hw.peak_flops, "FLOP/s"),
                                                  datasheet if hw.peak_flops else None,
                                                  "dense" if hw.peak_flops else view.why.get("hardware", "unknown")))
        q("#ridge", Line).set(figure_row("ridge", f"{a.ops_per_byte:,.1f} FLOP/B" if a.ops_per_byte else NA,
                                         "modeled" if a.ops_per_byte else None))
        ctx = f"ctx {_sig2(a.context_tokens)}" if a.context_tokens is not None else "ctx ?"
        q("#ceiling", Line).set(figure_row("decode ceiling", _rate(a.decode_ceiling_tokens_per_s),
                                           "modeled" if a.decode_ceiling_tokens_per_s else None,
                                           ctx if a.decode_ceiling_tokens_per_s else view.why.get("model", "")))
        crit = a.critical_batch
        q("#critical", Line).set(figure_row("critical batch", f"{crit:,.0f}" if crit else "never" if a.ops_per_byte and view.model else NA,
                                            "modeled" if crit or (a.ops_per_byte and view.model) else None,
                                            "compute-bound above it" if crit else ""))
        q("#bw-modeled", Line).set(figure_row("bandwidth", si(a.achieved_bandwidth_modeled_bytes_per_s, "B/s"),
                                              "modeled" if a.achieved_bandwidth_modeled_bytes_per_s is not None else None,
                                              a.why.get("achieved_bandwidth_modeled_bytes_per_s", "")))
        disagreement = f"differs {a.bandwidth_disagreement:.0%}" if a.bandwidth_disagreement and a.bandwidth_disagreement > 0.25 else ""
        q("#bw-measured", Line).set(figure_row("bandwidth", si(a.achieved_bandwidth_measured_bytes_per_s, "B/s"),
                                               "measured" if a.achieved_bandwidth_measured_bytes_per_s is not None else None,
                                               disagreement or a.why.get("achieved_bandwidth_measured_bytes_per_s", "")))
        q("#flops", Line).set(figure_row("FLOP/s", si(a.achieved_flops_per_s, "FLOP/s"),
                                         "modeled" if a.achieved_flops_per_s is not None else None))
        width = 24
        for line_id, label, value in (("#mbu", "MBU", a.mbu), ("#mfu", "MFU", a.mfu)):
            text = Text(f"{label:<16}", style="bold")
            text.append_text(bar(value, width, style="bold red" if label == "MBU" else "bold green", eighths=False))
            text.append(f" {'n/a' if value is None else f'{value * 100:.0f}%':>5}")
            q(line_id, Line).set(text)
        bound = f"{a.bound}-bound" if a.bound else ""
        q("#intensity", Line).set(figure_row("intensity", f"{_sig3(a.operating_intensity)} FLOP/B" if a.operating_intensity else NA,
                                             "modeled" if a.operating_intensity else None, bound))
        plot = self.query_one("#roof-plot", Static)
        size = plot.size
        if size.width >= 12 and size.height >= 4:
            text = roofline_text(size.width, size.height, hw.bandwidth_bytes_per_s if hw else None,
                                 hw.peak_flops if hw else None, a.operating_intensity, a.achieved_flops_per_s)
            if getattr(plot, "_last_plot", None) != text.plain:
                plot._last_plot = text.plain
                plot.update(text, layout=False)


class MemoryPanel(Panel):
    def __init__(self) -> None:
        super().__init__(3, "KV cache & memory", id="memory")

    def compose(self) -> ComposeResult:
        for line_id in ("kv-bytes", "kv-capacity", "kv-pool", "kv-usage", "kv-fits", "preempt", "kv-warning", "mem-0",
                        "mem-1", "mem-2", "mem-3", "torch"):
            yield Line(id=line_id)

    def show(self, view: LiveView, history: History) -> None:
        q = self.query_one
        fig, engine, a = view.model, view.snapshot.engine, view.analysis
        if fig is not None:
            q("#kv-bytes", Line).set(figure_row("KV per token", f"{count(fig.kv_bytes_per_token)} B", "modeled",
                                                f"{fig.spec.attention_kind.upper()}, {fig.kv_dtype}"))
        else:
            q("#kv-bytes", Line).set(figure_row("KV per token", NA, None, view.why.get("model", "model unknown")))
        engine_cap = engine.kv_capacity_tokens if engine else None
        config_cap = view.ceilings.kv_capacity_tokens if view.ceilings else None
        inside = view.inside_kv
        if inside is not None:
            # Under the agent: no KV pool, the caches grow in free memory (modeled, rule in --json).
            cap = inside.capacity_tokens
            q("#kv-capacity", Line).set(figure_row("capacity", count(cap) if cap is not None else NA,
                                                   "modeled" if cap is not None else None,
                                                   "tokens, from free memory" if cap is not None
                                                   else inside.why.get("kv_capacity_tokens", "")))
        else:
            q("#kv-capacity", Line).set(figure_row("capacity", f"{count(engine_cap)}" if engine_cap else NA,
                                                   "measured" if engine_cap else None,
                                                   f"config: {count(config_cap)} tokens" if config_cap else "tokens"))
        if engine_cap and fig is not None:
            q("#kv-pool", Line).set(figure_row("KV pool", si(engine_cap * fig.kv_bytes_per_token, "B"), "modeled",
                                               "engine capacity × KV per token"))
        elif inside is not None:
            q("#kv-pool", Line).set(figure_row("KV pool", NA, None, "none: the caches grow in free memory"))
        else:
            q("#kv-pool", Line).set(figure_row("KV pool", NA, None, "needs the engine's capacity and the model"))
        usage = engine.kv_usage if engine else None
        usage_source = "measured"
        if usage is None and inside is not None:
            usage, usage_source = inside.usage, "modeled"
        text = Text(f"{'usage':<16}", style="bold")
        text.append_text(bar(usage, 20, style="bold yellow" if (usage or 0) >= 0.9 else "bold", eighths=False))
        text.append(f" {'n/a' if usage is None else f'{usage * 100:.0f}%':>5} ")
        text.append(usage_source if usage is not None else (engine.why.get("kv_usage", "") if engine else ""), style="dim")
        q("#kv-usage", Line).set(text)
        if a.kv_headroom_tokens is not None and a.context_tokens:
            fits = f"{_sig2(a.kv_headroom_tokens / a.context_tokens)} more"
            note = f"at the average context {_sig2(a.context_tokens)}"
        else:
            fits, note = NA, a.why.get("kv_headroom_tokens", "needs KV usage and context")
        q("#kv-fits", Line).set(figure_row("sequences fit", fits, "modeled" if fits != NA else None, note))
        preempt = engine.preemptions_total if engine else None
        rate = view.rates.preemptions_per_s
        q("#preempt", Line).set(figure_row("preemptions", count(preempt) if preempt is not None else NA,
                                           "measured" if preempt is not None else None,
                                           f"+{rate:.1f}/s" if rate else (engine.why.get("preemptions_total", "") if engine else "")))
        warning = ""
        if usage is not None and usage >= 0.9:
            warning = f"KV cache {usage:.0%} full: new requests wait or preempt others"
        q("#kv-warning", Line).set(Text(warning, style="bold yellow") if warning else "")
        gpus = [d for d in view.snapshot.devices if d.kind == "gpu" and d.used_by_tree] or list(view.snapshot.devices)
        for index in range(4):
            line = q(f"#mem-{index}", Line)
            if index < len(gpus):
                d = gpus[index]
                label = f"GPU {d.index}" if d.kind == "gpu" else "host"
                tree = f"tree {si(d.memory_tree_bytes, 'B')}" if d.memory_tree_bytes is not None else ""
                used = d.memory_used_bytes
                total = d.memory_total_bytes
                row = Text(f"{label:<16}", style="bold")
                row.append_text(bar(used / total if used is not None and total else None, 12))
                row.append(f" {si(used, 'B')} / {si(total, 'B')} {tree}")
                line.set(row)
            elif index == len(gpus) and len(gpus) < len(view.snapshot.devices) and index == 3:
                line.set(Text(f"… {len(view.snapshot.devices) - len(gpus)} more devices", style="dim"))
            else:
                line.set("")
        agents = view.snapshot.agents
        with_torch = [a for a in agents if a.torch_reserved_bytes is not None]
        if with_torch:
            allocated = sum(a.torch_allocated_bytes or 0 for a in with_torch)
            reserved = sum(a.torch_reserved_bytes or 0 for a in with_torch)
            weights = sum(a.weights_bytes or 0 for a in with_torch)
            retries = sum(a.alloc_retries or 0 for a in with_torch)
            ooms = sum(a.ooms or 0 for a in with_torch)
            frag = 1 - allocated / reserved if reserved else None
            note = f"of {si(reserved, 'B')} reserved"
            if weights:
                note += f", weights {si(weights, 'B')}"
            if frag is not None:
                note += f", {frag:.0%} free in cache"
            if retries or ooms:
                note += f", {retries} retries, {ooms} OOMs"
            q("#torch", Line).set(figure_row("torch allocated", si(allocated, "B"), "measured", note))
        elif agents and view.inside_memory is not None and view.inside_memory.rss_bytes is not None:
            # A CPU run: no allocator to read, but the agent sees the process's memory.
            memory = view.inside_memory
            note = f"weights {si(memory.weights_bytes, 'B')}" if memory.weights_bytes else "no watched model"
            q("#torch", Line).set(figure_row("process RSS", si(memory.rss_bytes, "B"), "measured", note))
        elif agents:
            q("#torch", Line).set(figure_row("torch allocator", NA, None, agents[0].why.get("torch", "")))
        else:
            q("#torch", Line).set(figure_row("torch allocator", NA, None, "no agent (infermon run/attach)"))


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

    def set_rows(self, rows: list[tuple[str, ...]], styles: list[str] | None = None) -> None:
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
            self.rows[index].set(Text(self._format(cells), style=style))


class DevicesPanel(Panel):
    COLUMNS = ("#", "device", "util", "SM MHz", "power W", "temp", "PCIe↑↓", "NVLink↑↓", "throttle")

    def __init__(self) -> None:
        super().__init__(4, "Devices", id="devices")

    def compose(self) -> ComposeResult:
        yield RowTable(self.COLUMNS, right=frozenset({"util", "SM MHz", "power W", "temp", "PCIe↑↓", "NVLink↑↓"}))
        yield Line(id="devices-note")

    def show(self, view: LiveView, history: History) -> None:
        rows, styles = [], []
        for d in view.snapshot.devices:
            clocks = lambda now, top: NA if now is None else (f"{now:.0f}/{top:.0f}" if top else f"{now:.0f}")
            name = (d.name or "?").removeprefix("NVIDIA ").removeprefix("GeForce ")
            rows.append((
                ("*" if d.used_by_tree else " ") + (str(d.index) if d.kind == "gpu" else "host"),
                name[:20],
                NA if d.utilization_gpu is None else f"{d.utilization_gpu * 100:.0f}%",
                clocks(d.sm_clock_mhz, d.sm_clock_max_mhz),
                NA if d.power_w is None else (f"{d.power_w:.0f}/{d.power_limit_w:.0f}" if d.power_limit_w else f"{d.power_w:.0f}"),
                NA if d.temperature_c is None else f"{d.temperature_c:.0f}°C",
                NA if d.pcie_tx_bytes_per_s is None else f"{d.pcie_tx_bytes_per_s / 1e9:.1f} {(d.pcie_rx_bytes_per_s or 0) / 1e9:.1f}",
                "—" if d.nvlink_tx_bytes_per_s is None else f"{d.nvlink_tx_bytes_per_s / 1e9:.0f} {(d.nvlink_rx_bytes_per_s or 0) / 1e9:.0f}",
                ", ".join(d.throttle_reasons) or ("—" if d.kind == "gpu" else ""),
            ))
            styles.append("" if d.used_by_tree or d.kind == "host" else "dim")
        self.query_one(RowTable).set_rows(rows, styles)
        note = view.snapshot.why.get("devices", "")
        if not note and view.snapshot.devices and not any(d.used_by_tree for d in view.snapshot.devices if d.kind == "gpu"):
            if any(d.kind == "gpu" for d in view.snapshot.devices):
                note = "no GPU lists the process tree (in a container? run with --pid=host)"
        self.query_one("#devices-note", Line).set(
            Text(note or "* = used by the watched tree; PCIe and NVLink GB/s sent and received", style="dim"))


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
            self.show(self._last, None)
        return self.sort_column

    def show(self, view: LiveView, history: History | None) -> None:
        self._last = view
        subtitle = f"sorted by {self.sort_column} (o)"
        if self.border_subtitle != subtitle:
            self.border_subtitle = subtitle
        tree = view.snapshot.tree
        gpu_memory: dict[int, int] = {}
        for d in view.snapshot.devices:
            for proc in d.processes:
                if proc.used_bytes is not None:
                    gpu_memory[proc.pid] = gpu_memory.get(proc.pid, 0) + proc.used_bytes
        keys = {
            "CPU%": lambda p: -(p.cpu_percent or 0.0),
            "RSS": lambda p: -(p.rss_bytes or 0),
            "GPU mem": lambda p: -gpu_memory.get(p.pid, 0),
            "pid": lambda p: p.pid,
        }
        processes = sorted(tree.processes if tree else (), key=lambda p: (keys[self.sort_column](p), p.pid))
        width = max(20, self.content_size.width - 70) if self.content_size.width else 60
        rows = [(
            str(p.pid),
            (p.role or p.name)[:24],
            NA if p.cpu_percent is None else f"{p.cpu_percent:.0f}",
            si(p.rss_bytes, "B"),
            si(gpu_memory.get(p.pid), "B") if p.pid in gpu_memory else "",
            "" if p.threads is None else str(p.threads),
            ",".join(map(str, p.listening_ports))[:12],
            " ".join(p.cmdline)[:width],
        ) for p in processes[:200]]
        self.query_one(RowTable).set_rows(rows)


PANELS: tuple[type[Panel], ...] = (ThroughputPanel, RooflinePanel, MemoryPanel, DevicesPanel, ProcessesPanel)
