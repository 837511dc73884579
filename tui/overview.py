"""The overview: the whole answer on one 80×24 screen, each figure with its source.

Generation and prompt tokens/s, requests running/waiting; achieved bandwidth against the peak
(MBU) and FLOP/s against the peak (MFU); operating intensity against the ridge; the decode ceiling
at the current batch and context; KV usage and headroom; one line per device (utilisation,
memory, power). It is the first screen whenever the terminal is smaller than the full layout;
the panels are one key away (their numbers head the sections). Rows drop their least important
parts (bars, peaks, notes) to fit the width; nothing is cut inside a word.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult

from infermon.live.figure import MEASURED, Figure
from infermon.live.view import LiveView
from infermon.tui.text import Row, bar, fit, rich_text, sparkline
from infermon.tui.widgets import Body, Panel
from infermon.views.fmt import note_text, si, sig3, source_text, value_text

LABEL = 10
VALUE = 12
SECTIONS = ((1, "Throughput"), (2, "Roofline"), (3, "KV cache"), (4, "Devices"))
# Rows of figures without the device lines and headings.
FIGURE_ROWS = 9
# Device lines in the overview when it is sized to its content (above a panel).
DEVICE_LINES_STACKED = 4
# Lines shown when rows are left over, most useful first: what would change tokens/s, latency, the
# batch the engine steps at, memory, then the KV pool's size and the requests it pushed out.
EXTRA_LINES = ("o-lever", "o-latency", "o-batch", "o-memory", "o-capacity")
# Levers that need more hardware are on the levers screen, not offered as the best one.
MORE_HARDWARE = ("tensor_parallel",)


def _sw(*figures: Figure) -> int:
    return max((len(source_text(f)) for f in figures if f.value is not None), default=7)


class Overview(Panel):
    """Panel 0. ``headings``: the section rules with their panel keys (shown when rows allow)."""

    def __init__(self) -> None:
        super().__init__(0, "Overview", id="overview")
        self.headings = True

    def compose(self) -> ComposeResult:
        yield Body(id="overview-rows")

    # ------------------------------------------------------------------ sizing

    def _rows_left(self, view: LiveView) -> int:
        rows = self.content_size.height or 24
        used = FIGURE_ROWS - (0 if view.figures.bandwidth_measured_bytes_per_s.value is not None else 1)
        return rows - used - (4 if self.headings else 0)

    def _extra_rows(self, view: LiveView) -> int:
        """Rows for the optional lines (the best lever, then the latencies) once every device has its
        line: only when the overview has the screen."""
        if not self.app.has_class("narrow"):
            return 0
        return min(len(EXTRA_LINES), max(0, self._rows_left(view) - max(1, len(view.devices))))

    def _device_room(self, view: LiveView) -> int:
        """Device lines that fit: all the rows left when the overview has the screen, else a few."""
        if self.app.has_class("narrow"):
            return max(1, self._rows_left(view) - self._extra_rows(view))
        return DEVICE_LINES_STACKED

    def _set_headings(self, view: LiveView) -> None:
        want = False
        if self.app.has_class("narrow"):
            rows = self.content_size.height or 24
            devices = max(1, len(view.devices))
            want = rows >= FIGURE_ROWS + 4 + devices
        self.headings = want

    # ------------------------------------------------------------------ drawing

    def show(self, view: LiveView) -> None:
        styles, width = self.figure_styles(), self.text_width
        self._set_headings(view)
        f = view.figures
        extras = EXTRA_LINES[: self._extra_rows(view)]
        # Each row is built again only when what it shows changed (see Panel.kept_line).
        self._heading(1, styles, width)
        self._throughput(view, styles, width)
        if "o-latency" in extras:
            self.kept_line("o-latency", (width, f.ttft_p50_s, f.inter_token_p50_s),
                           lambda: self._latency(f, styles, width))
        if "o-batch" in extras:
            self.kept_line("o-batch", (width, f.batch, f.steps_per_s),
                           lambda: self._two("batch", f.batch, "at", f.steps_per_s, styles, width))
        self._heading(2, styles, width)
        self._roofline(view, styles, width)
        if "o-lever" in extras:
            self.kept_line("o-lever", (width, view.levers, view.verdict.bound, view.why.get("levers")),
                           lambda: self._best_lever(view, styles, width))
        self._heading(3, styles, width)
        self._kv(f, styles, width)
        if "o-capacity" in extras:
            self.kept_line("o-capacity", (width, f.kv_capacity_tokens, f.preemptions_total),
                           lambda: self._two("capacity", f.kv_capacity_tokens, "preemptions", f.preemptions_total,
                                             styles, width))
        if "o-memory" in extras:
            self.kept_line("o-memory", (width, f.weight_bytes, f.tree_rss_bytes),
                           lambda: self._two("weights", f.weight_bytes, "tree RSS", f.tree_rss_bytes, styles, width))
        self._heading(4, styles, width)
        self._devices(view, styles, width)

    def _heading(self, number: int, styles, width: int) -> None:
        if self.headings:
            head = f"── {number} {dict(SECTIONS)[number]} "
            self.kept_line(f"h-{number}", (width,),
                           lambda: rich_text(head + "─" * max(0, width - len(head)), style=styles["heading"]))

    def _start(self, label: str, fig: Figure, styles, sw: int, value: str | None = None) -> tuple[Row, list[str]]:
        """A row opening with ``label value source`` (or ``label n/a`` and its reason, kept for the end)."""
        row = Row().add(f"{label:<{LABEL}} ", styles["label"])
        reasons: list[str] = []
        if fig.value is None:
            row.add(f"{'n/a':>{VALUE}}")
            reasons.append(note_text(fig))
        else:
            row.add(f"{value if value is not None else value_text(fig):>{VALUE}} ")
            row.add(f"{source_text(fig):<{sw}}", styles.get(fig.source))
        return row, reasons

    def _pair(self, row: Row, word: str, fig: Figure, styles, reasons: list[str], drop: int = 0) -> None:
        """`` word value source`` (or `` word n/a``, its reason kept for the end of the row)."""
        if fig.value is None:
            row.add(f"  {word} n/a", drop=drop)
            if drop == 0:
                reasons.append(note_text(fig))
            return
        row.add(f"  {word} {value_text(fig)} ", drop=drop)
        row.add(source_text(fig), styles.get(fig.source), drop=drop)

    @staticmethod
    def _end(row: Row, reasons: list[str], styles) -> None:
        text = "; ".join(dict.fromkeys(r for r in reasons if r))
        if text:
            row.add("  " + text, styles["note"], note=True)

    def _throughput(self, view: LiveView, styles, width: int) -> None:
        f = view.figures
        sw = _sw(f.generation_tokens_per_s, f.prompt_tokens_per_s, f.requests_running)
        peak = view.trend.peak_generation_tokens_per_s
        for line_id, label, fig, history, with_peak in (
                ("o-gen", "generation", f.generation_tokens_per_s, view.trend.generation, True),
                ("o-prompt", "prompt", f.prompt_tokens_per_s, view.trend.prompt, False)):
            self.kept_line(line_id, (width, sw, fig, history, peak if with_peak else None),
                           lambda label=label, fig=fig, history=history, with_peak=with_peak:
                           self._rate_row(label, fig, history, peak if with_peak else None, sw, styles, width))
        self.kept_line("o-requests", (width, sw, f.requests_running, f.requests_waiting),
                       lambda: self._requests_row(f.requests_running, f.requests_waiting, sw, styles, width))

    def _rate_row(self, label: str, fig: Figure, history, peak: float | None, sw: int, styles, width: int) -> Text:
        row, reasons = self._start(label, fig, styles, sw)
        if fig.value is not None:
            peak_text = f"  peak {sig3(peak)}" if peak else ""
            room = min(40, width - (LABEL + 1 + VALUE + 1 + sw) - len(peak_text) - 2)
            if room >= 6 and history:
                row.add_text(Text("  ") + sparkline(history, room, self.style("spark")), drop=2)
            row.add(peak_text, styles["note"], drop=1)
            if fig.note:
                row.add("  " + fig.note, styles["note"], note=True)
        self._end(row, reasons, styles)
        return row.text(width)

    def _requests_row(self, running: Figure, waiting: Figure, sw: int, styles, width: int) -> Text:
        row, reasons = self._start("requests", running, styles, sw,
                                   value=f"{value_text(running)} / {value_text(waiting)}")
        if running.value is not None:
            if waiting.value is not None and waiting.source != running.source:
                row.add(f" / {source_text(waiting)}", styles.get(waiting.source))
            row.add("  running / waiting", styles["note"], drop=1)
        self._end(row, reasons, styles)
        return row.text(width)

    def _roofline(self, view: LiveView, styles, width: int) -> None:
        f = view.figures
        sw = _sw(f.bandwidth_modeled_bytes_per_s, f.bandwidth_measured_bytes_per_s, f.flops_modeled_per_s,
                 f.operating_intensity, f.decode_ceiling_tokens_per_s)
        for line_id, label, achieved, share, share_word, peak, component in (
                ("o-bw", "bandwidth", f.bandwidth_modeled_bytes_per_s, f.mbu, "MBU", f.peak_bandwidth_bytes_per_s,
                 "bar--bandwidth"),
                ("o-bw-measured", "bandwidth", f.bandwidth_measured_bytes_per_s, f.mbu_measured, "MBU",
                 f.peak_bandwidth_bytes_per_s, "bar--bandwidth"),
                ("o-flops", "FLOP/s", f.flops_modeled_per_s, f.mfu, "MFU", f.peak_flops, "bar--compute")):
            if line_id == "o-bw-measured" and achieved.value is None:
                continue  # n/a on a host or an older GPU: the reason is in panel 2
            self.kept_line(line_id, (width, sw, achieved, share, peak),
                           lambda label=label, achieved=achieved, share=share, share_word=share_word, peak=peak,
                           component=component: self._share_row(label, achieved, share, share_word, peak, component,
                                                                sw, styles, width))
        self.kept_line("o-intensity", (width, sw, f.operating_intensity, f.ops_per_byte, view.verdict.bound),
                       lambda: self._intensity_row(f.operating_intensity, f.ops_per_byte, view.verdict.bound, sw,
                                                   styles, width))
        self.kept_line("o-ceiling", (width, sw, f.decode_ceiling_tokens_per_s),
                       lambda: self._ceiling_row(f.decode_ceiling_tokens_per_s, sw, styles, width))

    def _share_row(self, label: str, achieved: Figure, share: Figure, share_word: str, peak: Figure, component: str,
                   sw: int, styles, width: int) -> Text:
        row, reasons = self._start(label, achieved, styles, sw)
        if achieved.value is not None:
            self._pair(row, share_word, share, styles, reasons)
            if share.value is not None:
                row.add_text(Text("  ") + bar(share.value, 10, style=self.style(component),
                                              empty_style=self.style("bar--empty"), eighths=False), drop=3)
        self._pair(row, "of" if achieved.value is not None else "peak", peak, styles, reasons, drop=2)
        self._end(row, reasons, styles)
        return row.text(width)

    def _intensity_row(self, intensity: Figure, ridge: Figure, bound: str | None, sw: int, styles, width: int) -> Text:
        row, reasons = self._start("intensity", intensity, styles, sw)
        self._pair(row, "ridge", ridge, styles, reasons, drop=0 if intensity.value is not None else 2)
        if bound and intensity.value is not None:
            row.add(f"  {bound}-bound", styles["note"], drop=1)
        self._end(row, reasons, styles)
        return row.text(width)

    def _ceiling_row(self, ceiling: Figure, sw: int, styles, width: int) -> Text:
        row, reasons = self._start("ceiling", ceiling, styles, sw)
        if ceiling.value is not None and ceiling.note:
            row.add(f"  decode at {ceiling.note}", styles["note"], note=True)
        self._end(row, reasons, styles)
        return row.text(width)

    def _latency(self, f, styles, width: int) -> Text:
        ttft, itl = f.ttft_p50_s, f.inter_token_p50_s
        row, reasons = self._start("TTFT p50", ttft, styles, _sw(ttft))
        self._pair(row, "ITL p50", itl, styles, reasons)
        if ttft.value is not None and ttft.note and itl.value is not None:  # a reason outranks the window
            row.add(f"  {ttft.note}", styles["note"], drop=1)
        self._end(row, reasons, styles)
        return row.text(width)

    def _two(self, label: str, first: Figure, word: str, second: Figure, styles, width: int) -> Text:
        row, reasons = self._start(label, first, styles, _sw(first))
        self._pair(row, word, second, styles, reasons)
        if first.value is not None and first.note:
            row.add(f"  {first.note}", styles["note"], drop=1)
        self._end(row, reasons, styles)
        return row.text(width)

    def _best_lever(self, view: LiveView, styles, width: int) -> Text:
        """The lever that would raise tokens/s most here (all of them: ``l``)."""
        row = Row().add(f"{'best lever':<{LABEL}} ", styles["label"])
        found = view.levers
        pulled = [lever for lever in (found.levers if found else ())
                  if lever.gain and lever.tokens_per_s and lever.key not in MORE_HARDWARE]
        if found and pulled and max(lever.gain for lever in pulled) < 1.01:
            pulled, bound = [], f" ({view.verdict.bound}-bound)" if view.verdict.bound else ""
            view_why = f"none helps without more GPUs{bound}"
        else:
            view_why = view.why.get("levers", "no lever applies at this operating point")
        if not pulled:
            reason = view_why
            row.add(f"{'n/a':>{VALUE}}")
            row.add("  " + reason, styles["note"], note=True)
            return row.text(width)
        best = max(pulled, key=lambda lever: lever.gain)
        row.add(f"{best.name} {best.gain:.2f}× ")
        row.add("modeled", styles.get("modeled"))
        row.add(f"  {sig3(best.tokens_per_s)} tok/s", drop=2)
        if best.ceiling:
            row.add(f"  stops at {best.ceiling.replace('_', ' ')}", styles["note"], drop=1)
        row.add("  (l: all)", styles["note"], drop=3)
        return row.text(width)

    def _kv(self, f, styles, width: int) -> None:
        self.kept_line("o-kv", (width, f.kv_usage, f.kv_headroom_tokens, f.kv_capacity_tokens),
                       lambda: self._kv_row(f, styles, width))

    def _kv_row(self, f, styles, width: int) -> Text:
        usage, headroom = f.kv_usage, f.kv_headroom_tokens
        sw = _sw(usage)
        row, reasons = self._start("KV usage", usage, styles, sw)
        if usage.value is not None:
            full = usage.value >= 0.9
            row.add_text(Text("  ") + bar(usage.value, 10, style=self.style("bar--full" if full else "bar--usage"),
                                          empty_style=self.style("bar--empty"), eighths=False), drop=3)
        if headroom.value is not None:
            row.add(f"  headroom {value_text(headroom)} tokens ")
            row.add(source_text(headroom), styles.get(headroom.source))
            self._pair(row, "of", f.kv_capacity_tokens, styles, [], drop=2)
        else:
            row.add("  headroom n/a")
            reasons.append(note_text(headroom))
        self._end(row, reasons, styles)
        return row.text(width)

    def _devices(self, view: LiveView, styles, width: int) -> None:
        devices = sorted(view.devices, key=lambda d: (not d.used_by_tree, d.kind != "gpu", d.index))
        room = self._device_room(view)
        rows: list[Text] = []
        if not devices:
            rows.append(Text(fit(view.why.get("devices", "no devices"), width), style=styles["note"]))
        shown = devices if len(devices) <= room else devices[: room - 1]
        for d in shown:
            rows.append(self._device_row(d, styles, width))
        if len(shown) < len(devices):
            rows.append(Text(f"… {len(devices) - len(shown)} more devices (4)", style=styles["note"]))
        for index, text in enumerate(rows):
            self.line(f"o-device-{index}").set(text)

    def _device_row(self, d, styles: dict[str, Style], width: int) -> Text:
        na = "n/a"
        label = ("*" if d.used_by_tree else " ") + (f"GPU {d.index}" if d.kind == "gpu" else "host")
        row = Row().add(f"{label:<{LABEL}} ", styles["label"])
        name = (d.name or "?").removeprefix("NVIDIA ").removeprefix("GeForce ")
        row.add(f"{fit(name, 16):<16} ", drop=2)
        util = na if d.utilization_gpu is None else f"{d.utilization_gpu * 100:.0f}%"
        row.add(f"{util:>4} util")
        used, total = d.memory_used_bytes, d.memory_total_bytes
        row.add(f"  {si(used, 'B')} / {si(total, 'B')}" if used is not None else "  memory n/a")
        if d.power_w is not None:
            row.add(f"  {d.power_w:.0f} W")
            if d.power_limit_w:
                row.add(f" / {d.power_limit_w:.0f} W", drop=1)
        else:
            row.add("  power n/a", drop=1)
        row.add("  ")
        row.add(MEASURED, styles[MEASURED])
        return row.text(width)
