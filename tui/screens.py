"""Modal screens: key help and the run summary."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
[b]Keys[/b]
  ?        this help
  q        quit (prints the run's perf summary)
  p        pause / resume the display (sampling goes on)
  r        reset peaks and the run summary
  t        next theme: dark, light, high-contrast, ansi (and yours)
  s        the run summary so far
  1 – 5    focus a panel: full screen when wide, shown alone when narrow
  Esc      back from a full-screen panel
  o        sort the processes (CPU%, RSS, GPU memory, pid)
  ctrl+p   command palette: every action by name

[b]Where the figures come from[/b]
  [green]measured[/green]   hardware or engine counters (NVML, GPM, /metrics, agent)
  [cyan]modeled[/cyan]    infermon's arithmetic (see `infermon calc --explain`)
  [blue]datasheet[/blue]  the GPU table's dense peaks
  n/a        not available: the note beside it says why

[b]Panels[/b]
  1 Throughput   tokens/s from counter deltas, requests, TTFT and
                 inter-token p50/p95
  2 Roofline     peaks, ridge, decode ceiling at this batch and context,
                 modeled and measured bandwidth, FLOP/s, MBU, MFU, and
                 where the process sits on the roofline
  3 KV & memory  KV bytes per token, capacity, usage, headroom,
                 preemptions, per-GPU memory and the torch allocator
  4 Devices      utilisation, clocks, power, temperature, PCIe, throttling
  5 Processes    the watched tree: roles, CPU%, RSS, GPU memory, ports
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 76; max-width: 100%; height: auto; max-height: 90%;
                                   border: round $accent; background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text.from_markup(HELP))


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
            yield Static(self.text)
