"""Modal screens: key help, the "why" of every figure, and the run summary."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from infermon.live.view import LiveView
from infermon.views.live_report import SECTIONS, figure_rows
from infermon.tui.widgets import SafeStatic

HELP = """\
[b]Keys[/b]
  ?        this help
  w        why: every figure with its source and its whole note or reason
  l        levers: what batch, quantization, context, speculative decoding
           or more GPUs would do to tokens/s here, and the ceiling each meets
  q        quit (prints the run's perf summary)
  p        pause / resume the display (sampling goes on)
  r        reset peaks and the run summary
  t        next theme: dark, light, high-contrast, ansi (and yours)
  s        the run summary so far
  0        the overview (below the full layout)
  1 – 5    a panel: full screen in the full layout, else in place of the
           overview (80×24) or below it (from 28 rows)
  Esc      back from a full-screen panel, or to the overview
  o        sort the processes (CPU%, RSS, GPU memory, pid)
  ctrl+p   command palette: every action by name

[b]Where the figures come from[/b] (the same words in every view)
  [$success]measured[/]         counted by infermon or the hardware: NVML, GPM,
                   psutil, the in-process agent, a host calibration
  [$secondary]engine-reported[/]  the engine's own /metrics
  [$primary]modeled[/]          infermon's arithmetic (`infermon calc --explain`)
  [$accent]datasheet[/]        the GPU table's dense peaks
  [$accent]given[/]            a figure you passed on the command line
  [$text-muted]n/a[/]              not available: the reason stands in its place
  A note or reason too long for its row ends with … at a word: `w` shows
  it whole, and so does `infermon --pid PID --once`.

[b]Layouts[/b]
  120×34 and up   every panel at once
  below, 28 rows  the overview with one panel below it (1 – 5 pick it)
  below that      the overview; 1 – 5 show a panel in its place, 0 or Esc
                  return

[b]Panels[/b]
  0 Overview     the whole answer: tokens/s, bandwidth vs peak (MBU),
                 FLOP/s vs peak (MFU), intensity vs ridge, decode ceiling,
                 KV usage and headroom, requests, one line per device
  1 Throughput   tokens/s from counter deltas, requests, batch, steps/s,
                 TTFT, inter-token and queue p50/p95, the tokens/s chart
  2 Roofline     peaks, ridge, decode ceiling at this batch and context,
                 modeled, measured and the engine's bandwidth and FLOP/s,
                 MBU, MFU, and where the process sits on the roofline
  3 KV & memory  KV bytes per token, capacity, usage, headroom, sequences
                 that fit, preemptions, per-GPU memory, torch allocator
  4 Devices      utilisation, memory, power, clocks, temperature, PCIe,
                 NVLink, throttling
  5 Processes    the watched tree: roles, CPU%, RSS, GPU memory, ports
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 78; max-width: 100%; height: auto; max-height: 100%;
                                   border: round $accent; background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(HELP)


def why_renderables(view: LiveView | None) -> list:
    """The verdict, every figure (label, value, source, whole note or reason: the rows ``--once``
    prints) and the reasons for whole sections."""
    if view is None:
        return [Text("no sample yet", style="dim")]
    out: list = [Text(view.verdict.finding, style="bold")]
    if view.verdict.advice:
        out.append(Text(view.verdict.advice, style="italic"))
    for warning in view.warnings:
        out.append(Text(f"warning: {warning}", style="yellow"))
    for note in view.notes:
        out.append(Text(f"note: {note}"))
    for title, rows in SECTIONS:
        table = Table(title=title, title_justify="left", title_style="bold", show_header=False, box=None,
                      pad_edge=False, expand=True)
        table.add_column("figure", style="bold", no_wrap=True)
        table.add_column("value", justify="right", no_wrap=True)
        table.add_column("source", no_wrap=True)
        table.add_column("note", style="dim", ratio=1, overflow="fold")
        for label, value, source, note in figure_rows(view, rows):
            table.add_row(label, value, source, note)
        out.append(Text(""))
        out.append(table)
    if view.why:
        out.append(Text(""))
        out.append(Text("Sections", style="bold"))
        for key, reason in view.why.items():
            out.append(Text(f"{key}: {reason}", style="dim"))
    return out


class WhyScreen(ModalScreen[None]):
    """Every figure of the current view with its whole note or reason, wrapped, never cut."""

    BINDINGS = [Binding("escape,q,w", "app.pop_screen", "close")]
    DEFAULT_CSS = """
    WhyScreen { align: center middle; }
    WhyScreen > VerticalScroll { width: 100%; max-width: 120; height: 100%; border: round $accent;
                                 background: $surface; padding: 0 1; }
    """

    def __init__(self, view: LiveView | None) -> None:
        super().__init__()
        self.view = view

    def compose(self) -> ComposeResult:
        scroll = VerticalScroll()
        scroll.border_title = "why: every figure, its source and its whole note (Esc closes)"
        with scroll:
            for renderable in why_renderables(self.view):
                yield SafeStatic(renderable)


LEVERS_HELP = ("Each row is the modeled decode tokens/s if one thing changed at today's batch and context; "
               "'× now' compares it with today's modeled figure, 'stops at' names the ceiling it runs into, and "
               "the last column applies the efficiency measured now (measured ÷ modeled) to every lever.")


class LeversScreen(ModalScreen[None]):
    """What would change tokens/s at this operating point: every lever, quantified, kept current."""

    BINDINGS = [Binding("escape,q,l", "app.pop_screen", "close")]
    DEFAULT_CSS = """
    LeversScreen { align: center middle; }
    LeversScreen > VerticalScroll { width: 100%; max-width: 120; height: 100%; border: round $accent;
                                    background: $surface; padding: 0 1; }
    """

    def __init__(self, view: LiveView | None) -> None:
        super().__init__()
        self.view = view
        self._body = SafeStatic("")
        self.shown = None

    def compose(self) -> ComposeResult:
        scroll = VerticalScroll()
        scroll.border_title = "levers: what would change tokens/s here (Esc closes)"
        with scroll:
            yield self._body
            yield Static(Text(LEVERS_HELP, style="dim"))

    def on_mount(self) -> None:
        self.show(self.view)

    def show(self, view: LiveView | None) -> None:
        """Redraw for a new view (the app calls this while the screen is open)."""
        from rich.console import Group

        from infermon.views.calc_view import levers_renderables

        self.view = view
        if view is None:
            self._body.update(Text("no sample yet", style="dim"))
        elif view.levers is None:
            self._body.update(Text(f"levers n/a: {view.why.get('levers', 'no operating point yet')}", style="dim"))
        else:
            self.shown = Group(Text(view.verdict.finding, style="bold"), *levers_renderables(view.levers))
            self._body.update(self.shown)


class SummaryScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,s", "app.pop_screen", "close")]
    DEFAULT_CSS = """
    SummaryScreen { align: center middle; }
    SummaryScreen > VerticalScroll { width: 90; max-width: 100%; height: auto; max-height: 90%;
                                      border: round $accent; background: $surface; padding: 0 1; }
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield SafeStatic(self.text)
