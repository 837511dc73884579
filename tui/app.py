"""The live dashboard: header, verdict, five panels; sampling and deriving happen off the event loop.

A sampling thread asks the :class:`ViewSource` for one view per interval (the derivation layer runs
there: rates, percentiles, history and the run summary are finished before a view reaches the
app) and posts it in a :class:`ViewReady` message; a newer message replaces an older one still
queued, so a slow terminal never builds a backlog. The app keeps its state in reactives; widgets
only draw.
"""

from __future__ import annotations

import gc
import threading
import time

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.reactive import var
from textual.widgets import Static

from infermon.live.summary import format_summary
from infermon.live.view import LiveView
from infermon.tui.overview import Overview
from infermon.tui.panels import (DevicesPanel, MemoryPanel, Panel, Paragraph, ProcessesPanel, RooflinePanel,
                                 ThroughputPanel)
from infermon.tui.screens import HelpScreen, LeversScreen, SummaryScreen, WhyScreen
from infermon.tui.sources import ViewSource
from infermon.tui.text import fit, rich_text
from infermon.tui.widgets import Backdrop, Column, KeptLines, KeyBar, PanelRow, SafeStatic
from infermon.views.fmt import printable

# The full layout (every panel at once) from this size up.
FULL_WIDTH = 120
FULL_HEIGHT = 34
# Below the full layout, from this height the overview has one panel below it ("split");
# below it the overview has the screen and the panels replace it one at a time ("narrow").
SPLIT_HEIGHT = 28
# Below this nothing fits: the screen says so until the terminal grows again.
MIN_WIDTH = 60
MIN_HEIGHT = 16
# Kept for callers that knew the old name of the threshold.
NARROW_WIDTH, NARROW_HEIGHT = FULL_WIDTH, FULL_HEIGHT
PANEL_TITLES = ((1, "Throughput"), (2, "Roofline"), (3, "KV cache & memory"), (4, "Devices"), (5, "Processes"))
TAB_TITLES = {0: "Overview", 1: "Throughput", 2: "Roofline", 3: "KV & memory", 4: "Devices", 5: "Processes"}
# The panel below the overview until a number key picks another.
DEFAULT_PANEL = 1
LAYOUTS = ("full", "split", "narrow", "tiny")
REPLAY_ACTIONS = frozenset({"replay_faster", "replay_slower", "replay_seek", "replay_to"})
TONES = ("memory", "compute", "warning", "idle", "neutral")


class ViewReady(Message):
    """A new view; supersedes such a message still in the queue (history and the summary were
    accumulated in the sampling thread, so a skipped view loses nothing)."""

    def __init__(self, view: LiveView) -> None:
        super().__init__()
        self.view = view

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ViewReady)


class HeaderBar(KeptLines, SafeStatic):
    """The one-line header; its state word is coloured by the theme (``app.tcss``). The compositor
    renders every child of the screen in each frame (they are all clipped by the screen, which
    every change overlaps): the header gives its kept line again unless it changed."""

    COMPONENT_CLASSES = {"state--ok", "state--attention", "state--bad", "header--dim"}


class SourceEnded(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def _duration(seconds: float) -> str:
    """Minutes at most: a header that changed every second would repaint every second."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m" if minutes else "<1m"


class InfermonApp(App[None]):
    """``infermon --pid PID``: where the process sits against the roofline, right now.

    Layouts by terminal size: ``full`` (every panel), ``split`` (the overview with one panel below
    it), ``narrow`` (the overview, or one panel in its place), ``tiny`` (a notice). ``0``–``5``
    pick the overview or a panel; in the full layout a number maximises its panel.
    """

    TITLE = "infermon"
    CSS_PATH = "app.tcss"
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help"),
        Binding("w", "why", "why"),
        Binding("l", "levers", "levers"),
        Binding("p", "toggle_pause", "pause"),
        Binding("r", "reset_peaks", "reset"),
        Binding("t", "next_theme", "theme", show=False),
        Binding("s", "summary", "summary"),
        Binding("o", "sort_processes", "sort", show=False),
        Binding("plus,equals_sign", "replay_faster", "faster"),
        Binding("minus", "replay_slower", "slower"),
        Binding("left", "replay_seek(-10)", "back 10", show=False),
        Binding("right", "replay_seek(10)", "forward 10", show=False),
        Binding("shift+left", "replay_seek(-60)", "back 60", show=False),
        Binding("shift+right", "replay_seek(60)", "forward 60", show=False),
        Binding("home", "replay_to(0)", "start", show=False),
        Binding("end", "replay_to(-1)", "end", show=False),
        Binding("escape", "restore", "restore", show=False),
        *[Binding(str(n), f"focus_panel({n})", f"panel {n}", show=False) for n in range(0, 6)],
    ]

    # App state. ``var``: changing it runs its watcher and nothing else (a plain reactive would
    # repaint the whole screen on every sample).
    paused: var[bool] = var(False, init=False)
    ended: var[str | None] = var(None, init=False)
    current_panel: var[int] = var(0, init=False)
    layout_name: var[str] = var("", init=False)
    latest: var[LiveView | None] = var(None, init=False, always_update=True)

    def __init__(self, source: ViewSource, theme: str | None = None, themes: list | None = None,
                 target: str = "", notices: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.source = source
        self.target = target
        self.last_alive: LiveView | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._extra_themes = themes or []
        self._initial_theme = theme
        self._notices = notices
        self._drawn: LiveView | None = None
        self._gc_freeze_asked = False
        self._gc_frozen = False
        self._header_shown: tuple | None = None
        self._tabs_shown: tuple | None = None
        self._panels: list[Panel] = []
        self._header: HeaderBar | None = None
        self._overview: Overview | None = None
        self._width = 80

    # ------------------------------------------------------------------ layout

    def get_driver_class(self):
        stock = super().get_driver_class()
        try:
            from infermon.tui.driver import driver_class
        except ImportError:  # a Textual without the key parser the quiet driver builds on
            return stock
        return driver_class(stock)

    def get_default_screen(self) -> Backdrop:
        return Backdrop(id="_default")

    def compose(self) -> ComposeResult:
        # Widgets drawn every tick are kept here once, not looked up per tick.
        self._header = HeaderBar("", id="header")
        self._verdict = Paragraph(id="verdict", blank_above=True)
        self._advice = Paragraph(id="advice")
        self._tabs = Static("", id="tabs")
        self._overview = Overview()
        throughput, roofline, memory = ThroughputPanel(), RooflinePanel(), MemoryPanel()
        devices, processes = DevicesPanel(), ProcessesPanel()
        self._panels = [throughput, roofline, memory, devices, processes]
        yield self._header
        yield self._verdict
        yield self._advice
        yield self._overview
        yield self._tabs
        with PanelRow(id="panels"):
            with Column(id="left", classes="column"):
                yield throughput
                yield memory
            with Column(id="right", classes="column"):
                yield roofline
                yield devices
                yield processes
        yield Static(f"terminal too small: infermon needs at least {MIN_WIDTH}×{MIN_HEIGHT}", id="too-small")
        yield KeyBar()

    def on_mount(self) -> None:
        from infermon.themes import BUILTIN

        for theme in (*BUILTIN, *self._extra_themes):
            self.register_theme(theme)
        self.theme = self._initial_theme or ("user" if any(t.name == "user" for t in self._extra_themes) else "dark")
        self._apply_size()
        self._verdict.set(Text("waiting for the first samples…", style="dim"))
        self._thread = threading.Thread(target=self._sample_loop, name="infermon-sampler", daemon=True)
        self._thread.start()
        if self._notices:
            more = f" (+{len(self._notices) - 1} more)" if len(self._notices) > 1 else ""
            self.notify(f"{self._notices[0]}{more}", title="recording", severity="warning", timeout=8, markup=False)

    def on_resize(self, event) -> None:
        self._apply_size(event.size)

    @staticmethod
    def layout_for(width: int, height: int) -> str:
        """The layout a terminal of this size gets."""
        if width < MIN_WIDTH or height < MIN_HEIGHT:
            return "tiny"
        if width >= FULL_WIDTH and height >= FULL_HEIGHT:
            return "full"
        return "split" if height >= SPLIT_HEIGHT else "narrow"

    def _apply_size(self, size=None) -> None:
        size = size or self.size
        self._width = size.width
        self.layout_name = self.layout_for(size.width, size.height)
        self._set_header()
        self._set_tabs()

    def watch_layout_name(self) -> None:
        self._arrange()

    def watch_current_panel(self) -> None:
        self._arrange()

    def shown_panel(self) -> int:
        """The panel shown alone (split and narrow layouts): 0 is the overview."""
        if self.layout_name == "split":
            return self.current_panel or DEFAULT_PANEL
        return self.current_panel

    def _arrange(self) -> None:
        """Classes that select the layout (``app.tcss``), the tab line, then draw what became visible."""
        for name in LAYOUTS:
            self.set_class(self.layout_name == name, name)
        shown = self.shown_panel()
        single = self.layout_name in ("split", "narrow")
        self.set_class(single and shown != 0, "-panel")
        for panel in self._panels:
            panel.set_class(panel.number == shown, "-current")
        for column in self.query(".column"):
            column.set_class(any(p.number == shown for p in column.query(Panel)), "-current")
        self._set_tabs()
        self._show_again()

    def _set_tabs(self) -> None:
        if not self._panels:
            return
        shown = self.shown_panel()
        numbers = range(1, 6) if self.layout_name == "split" else range(0, 6)
        key = (tuple(numbers), shown, self._width)
        if key == self._tabs_shown:
            return
        self._tabs_shown = key
        tabs = Text(no_wrap=True, end="")
        for number in numbers:
            style = "reverse bold" if number == shown else "dim"
            tabs.append(f" {number} {TAB_TITLES[number]} ", style=style)
        if tabs.cell_len > max(1, self._width - 2):
            tabs = Text(no_wrap=True, end="")
            for number in numbers:
                tabs.append(f" {number} ", style="reverse bold" if number == shown else "dim")
            tabs.append(f" {TAB_TITLES[shown]}", style="bold")
        self._tabs.update(tabs, layout=False)

    # ------------------------------------------------------------------ sampling (thread)

    def _sample_loop(self) -> None:
        interval = self.source.interval_s
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                view = self.source.next_view()
            except Exception as exc:  # one bad reading must never stop the sampling
                if self._stop.is_set():
                    return  # the app is closing and has interrupted the source: not a failure
                try:
                    self.call_from_thread(self.notify, f"sampling failed this tick: {type(exc).__name__}: {exc}",
                                          severity="warning", timeout=4, markup=False)
                except Exception:  # the app closed meanwhile (its loop cancels the call)
                    return
                view = False
            if view is None:
                self.post_message(SourceEnded("end of the recording" if self.source.kind == "replay" else "no more data"))
                return
            if view is not False:
                self.post_message(ViewReady(view))
                if not view.alive:
                    return
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
            if time.monotonic() - next_at > interval:
                next_at = time.monotonic()  # fell behind (suspended laptop): do not burst to catch up

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = True) -> None:
        """A toast that never lets a control character reach the terminal (it shows as U+FFFD) and
        never fails on its markup: text that is not valid markup is shown as it is. Our own toasts
        that carry text from outside (a recording's file name, a theme's name, an exception's words
        about what an endpoint sent) pass ``markup=False``; Textual's own keep their markup.
        Thread-safe, as Textual's is."""
        message, title = printable(str(message)), printable(str(title))
        if markup:
            from textual.content import Content

            try:
                Content.from_markup(message)
            except Exception:  # invalid markup: the words as they are
                markup = False
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def _freeze_startup_objects(self) -> None:
        """Leave what exists once the first view is on screen out of every later garbage collection.

        Modules, widgets, styles and caches (about 95,000 objects) live as long as the app. Python's
        full collection walks them all: about 70 ms of CPU on a loaded 2-core host each time one
        comes (one came within a measured minute, as much CPU in that minute as the derivation's).
        Frozen, a full collection walks only what was made since. Objects are still freed by
        reference counting; only a cycle among the frozen ones would stay, and they are the app's
        own. Unfrozen when the app ends (never frozen if it ended first)."""
        if self._stop.is_set():
            return
        gc.collect()
        gc.freeze()
        self._gc_frozen = True

    def on_unmount(self) -> None:
        if self._gc_frozen:
            gc.unfreeze()
            self._gc_frozen = False
        # The thread ends before the source closes: a tick in progress never meets a closed probe.
        self._stop.set()
        self.source.interrupt()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, 2 * self.source.interval_s))
        self.source.close()

    # ------------------------------------------------------------------ state

    def on_view_ready(self, message: ViewReady) -> None:
        self.latest = message.view

    def watch_latest(self, view: LiveView | None) -> None:
        if view is None or not self.screen_stack or self._exit_renderables:
            return  # a view that arrives while the app closes is not drawn
        if view.alive:
            self.last_alive = view
        if not self.paused:
            self._draw(view)
            if isinstance(self.screen, LeversScreen):
                self.screen.show(self.last_alive or view)
        else:
            self._set_header()

    def on_source_ended(self, message: SourceEnded) -> None:
        self.ended = message.reason

    def watch_ended(self) -> None:
        self._set_header()

    def watch_paused(self, paused: bool) -> None:
        if not paused and self.latest is not None:
            self._drawn = None
            self._draw(self.latest)
        else:
            self._set_header()

    # ------------------------------------------------------------------ drawing

    def _draw(self, view: LiveView) -> None:
        self._set_header()
        # After the process exits, its last figures stay on screen.
        view = self.last_alive or view
        if view is self._drawn:
            return
        self._drawn = view
        if not self._gc_freeze_asked:
            self._gc_freeze_asked = True
            self.call_after_refresh(self._freeze_startup_objects)
        verdict = view.verdict
        for tone in TONES:
            self._verdict.set_class(verdict.tone == tone, f"-{tone}")
        self._verdict.set(rich_text(verdict.finding))
        self._advice.set(rich_text(verdict.advice) if verdict.advice else "")
        for panel in self._all_panels():
            if self._visible(panel):
                panel.stale = False
                panel.draw(view)
            else:
                panel.stale = True  # drawn when it is shown again

    def _all_panels(self) -> list[Panel]:
        return ([self._overview] if self._overview is not None else []) + self._panels

    def _visible(self, panel: Panel) -> bool:
        """Hidden panels (another layout, another panel picked or maximised) are not drawn: it costs CPU."""
        layout = self.layout_name
        if layout == "tiny":
            return False
        if panel is self._overview:
            return layout == "split" or (layout == "narrow" and self.current_panel == 0)
        maximized = self.screen.maximized
        if maximized is not None and maximized is not panel:
            return False
        return layout == "full" or panel.number == self.shown_panel()

    def _show_again(self) -> None:
        """Draw panels that were hidden when the last view came."""
        view = self.last_alive or self.latest
        if view is None:
            return
        for panel in self._all_panels():
            if panel.stale and self._visible(panel):
                panel.stale = False
                panel.draw(view)

    def _set_header(self) -> None:
        if self._header is None or not self._header.is_mounted or not self.screen_stack:
            return
        width = max(20, self._width - 2)
        word, component = self._state()
        parts = self._header_parts()
        key = (word, component, parts, width)
        if key == self._header_shown:
            return
        self._header_shown = key
        header = self._header
        text = Text(word, style=header.get_component_rich_style(component) if header.is_mounted else "bold",
                    no_wrap=True, end="")
        text.append("  infermon", style="bold")
        # What is watched, least important last: dropped from the end until it fits.
        room = width - text.cell_len - 2
        kept: list[str] = []
        for part in parts:
            joined = " · ".join([*kept, part])
            if len(joined) <= room:
                kept.append(part)
            elif not kept:
                kept.append(fit(part, room))
                break
            else:
                break
        if kept:
            text.append("  " + " · ".join(kept), style="dim" if self.latest is None else "")
        header.update(text, layout=False)

    def _state(self) -> tuple[str, str]:
        """(text, component class) of the state word."""
        view = self.latest
        if self.source.kind == "replay":
            position = self.source.position()
            if self.source.paused:
                return f"❚❚ replay {position}", "state--attention"
            if self.source.at_end:
                return f"■ end of recording {position}", "state--attention"
            return f"▶ replay {position}", "state--ok"
        if self.paused:
            return "❚❚ paused", "state--attention"
        if view is not None and not view.alive:
            return "✕ exited", "state--bad"
        if self.ended:
            return f"■ {self.ended}", "state--attention"
        # An endpoint that stopped answering, or none found where no agent stands in (a script
        # under infermon run has no endpoint to reach: its agent counts, or says why not yet).
        if view is not None and "engine" in view.why and (view.engine is not None or not view.agents):
            return "⚠ engine unreachable", "state--attention"
        return f"● {self.source.kind}", "state--ok"

    def _header_parts(self) -> tuple[str, ...]:
        """What is watched, most important first (the state word goes before it, always shown)."""
        view = self.latest
        if view is None:
            return (self.target, "starting…") if self.target else ("starting…",)
        tree = view.tree
        parts = [f"pid {tree.root_pid}" if tree else self.target]
        engine = view.engine
        if engine is not None and engine.kind:
            parts.append(engine.kind + (f" {engine.version}" if engine.version else ""))
        elif tree is not None:
            parts.append(tree.framework)
        parts.append(view.model.name if view.model else "model ?")
        hw = view.hardware
        if hw is not None:
            name = hw.name.removeprefix("NVIDIA ")
            parts.append(f"{hw.count}× {name}" if hw.count > 1 else name)
        root = tree.root if tree else None
        if root is not None and root.create_time:
            parts.append(f"up {_duration(view.time - root.create_time)}")
        parts.append(f"every {view.interval_s:g} s")
        return tuple(parts)

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Replay keys exist only in a replay (hidden from the footer and inert elsewhere)."""
        if action in REPLAY_ACTIONS:
            return self.source.kind == "replay"
        return True

    def action_replay_faster(self) -> None:
        self.notify(f"speed {self.source.faster():g}×", timeout=1)
        self._set_header()

    def action_replay_slower(self) -> None:
        self.notify(f"speed {self.source.slower():g}×", timeout=1)
        self._set_header()

    def action_replay_seek(self, samples: int) -> None:
        self.source.seek(samples)
        self._set_header()

    def action_replay_to(self, index: int) -> None:
        self.source.seek(to=index if index >= 0 else len(self.source.views) - 1)
        self._set_header()

    def action_toggle_pause(self) -> None:
        if self.source.kind == "replay":
            # In a replay, pause means the playback.
            self.source.toggle_pause()
            self._set_header()
            return
        self.paused = not self.paused

    def action_reset_peaks(self) -> None:
        if self.source.reset_peaks():
            self.notify("peaks and the run summary restart with the next sample", timeout=2)
        else:
            self.notify("a recording's peaks and summary are as recorded", timeout=2)

    def action_next_theme(self) -> None:
        from infermon.themes import theme_names

        names = theme_names(next((t for t in self._extra_themes if t.name == "user"), None))
        current = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(current + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2, markup=False)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_why(self) -> None:
        view = self.last_alive or self.latest
        self.push_screen(WhyScreen(view))

    def action_levers(self) -> None:
        self.push_screen(LeversScreen(self.last_alive or self.latest))

    def action_summary(self) -> None:
        self.push_screen(SummaryScreen(self.summary_text()))

    def action_sort_processes(self) -> None:
        column = self.query_one(ProcessesPanel).cycle_sort()
        self.notify(f"processes sorted by {column}", timeout=2)

    def action_focus_panel(self, number: int) -> None:
        """0–5: the overview or a panel on its own (split, narrow); a panel full screen (full layout)."""
        if self.layout_name != "full":
            if self.screen.maximized is not None:
                self.screen.minimize()
            self.current_panel = number
            return
        if number == 0:
            self.action_restore()
            return
        panel = next(p for p in self._panels if p.number == number)
        if self.screen.maximized is panel:
            self.screen.minimize()
        else:
            self.screen.maximize(panel, container=False)
        self._show_again()

    def action_restore(self) -> None:
        """Esc: back from a full-screen panel, or to the overview."""
        if self.screen.maximized is not None:
            self.screen.minimize()
            self._show_again()
        elif self.layout_name == "narrow" and self.current_panel:
            self.current_panel = 0

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("Pause / resume", "Freeze the display (sampling goes on)", self.action_toggle_pause)
        yield SystemCommand("Reset peaks", "Reset peak figures and the run summary", self.action_reset_peaks)
        yield SystemCommand("Next theme", "Cycle dark, light, high-contrast, ansi (and user)", self.action_next_theme)
        yield SystemCommand("Run summary", "The perf summary of the run so far", self.action_summary)
        yield SystemCommand("Key help", "Keys, panels and where figures come from", self.action_help)
        yield SystemCommand("Why", "Every figure with its source and its whole note or reason", self.action_why)
        yield SystemCommand("Levers", "What each lever would do to tokens/s here, and where it stops", self.action_levers)
        yield SystemCommand("Sort processes", "Cycle the process table's sort column", self.action_sort_processes)
        yield SystemCommand("Panel 0: Overview", "The overview (below the full layout)", lambda: self.action_focus_panel(0))
        for number, title in PANEL_TITLES:
            yield SystemCommand(f"Panel {number}: {title}", "Focus this panel (again to return)",
                                lambda n=number: self.action_focus_panel(n))

    def summary_text(self) -> str:
        """The run's perf summary (as the sampling thread accumulated it), for the screen and the exit."""
        view = self.latest or self.last_alive
        return format_summary(view.summary if view is not None else None)
