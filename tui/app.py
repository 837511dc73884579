"""The live dashboard: header, verdict, five panels; sampling happens off the event loop.

A sampling thread asks the :class:`ViewSource` for one view per interval and
posts it as a :class:`ViewReady` message; a newer message replaces an older
one still queued, so a slow terminal never builds a backlog. Widgets only draw.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container
from textual.message import Message
from textual.widgets import Footer, Static

from infermon.live.derive import LiveView
from infermon.live.summary import SummaryAccumulator, format_summary
from infermon.live.history import History
from infermon.tui.panels import PANELS, Panel, Paragraph, ProcessesPanel
from infermon.tui.screens import HelpScreen, SummaryScreen
from infermon.tui.sources import ViewSource

# Below these sizes the panels are shown one at a time.
NARROW_WIDTH = 120
NARROW_HEIGHT = 34
# Below this nothing fits: the screen says so until the terminal grows again.
MIN_WIDTH = 60
MIN_HEIGHT = 16
PANEL_TITLES = ((1, "Throughput"), (2, "Roofline"), (3, "KV cache & memory"), (4, "Devices"), (5, "Processes"))


class ViewReady(Message):
    """New views are waiting; supersedes such a message still in the queue.

    The views themselves go through a queue the handler drains, so history and
    the run summary see every sample even when a slow terminal skips drawing some.
    """

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ViewReady)


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
    """``infermon --pid PID``: where the process sits against the roofline, right now."""

    TITLE = "infermon"
    CSS = """
    Screen { layout: vertical; }
    #header { height: 1; background: $panel; color: $text; padding: 0 1; }
    #verdict { height: auto; max-height: 2; padding: 0 1; color: $text; text-style: bold; }
    #advice { height: auto; max-height: 2; padding: 0 1; }
    #tabs { height: 1; padding: 0 1; display: none; }
    #panels { layout: grid; grid-size: 2 3; grid-rows: 12 1fr 1fr; grid-columns: 1fr 1fr; height: 1fr; }
    #processes { column-span: 2; }
    #roof-figures { width: 50; }
    #roof-plot { width: 1fr; height: 100%; min-width: 0; }
    #roof-body { height: 1fr; }
    .narrow #tabs { display: block; }
    .narrow #panels { layout: vertical; }
    .narrow .panel { display: none; height: 1fr; }
    .narrow .panel.-current { display: block; }
    .narrow #roof-body { layout: vertical; }
    .narrow #roof-figures { width: 1fr; height: auto; }
    .narrow #roof-plot { width: 1fr; height: 1fr; }
    #too-small { display: none; height: 1fr; content-align: center middle; text-style: bold; }
    .tiny #too-small { display: block; }
    .tiny #panels, .tiny #tabs, .tiny #verdict, .tiny #advice, .tiny Footer { display: none; }
    """
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help"),
        Binding("p", "toggle_pause", "pause"),
        Binding("r", "reset_peaks", "reset peaks"),
        Binding("t", "next_theme", "theme"),
        Binding("s", "summary", "summary"),
        Binding("o", "sort_processes", "sort", show=False),
        Binding("plus,equals_sign", "replay_faster", "faster", show=False),
        Binding("minus", "replay_slower", "slower", show=False),
        Binding("left", "replay_seek(-10)", "back 10", show=False),
        Binding("right", "replay_seek(10)", "forward 10", show=False),
        Binding("shift+left", "replay_seek(-60)", "back 60", show=False),
        Binding("shift+right", "replay_seek(60)", "forward 60", show=False),
        Binding("home", "replay_to(0)", "start", show=False),
        Binding("end", "replay_to(-1)", "end", show=False),
        Binding("escape", "restore", "restore", show=False),
        *[Binding(str(n), f"focus_panel({n})", f"panel {n}", show=False) for n in range(1, 6)],
    ]

    def __init__(self, source: ViewSource, theme: str | None = None, themes: list | None = None,
                 target: str = "", notices: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.source = source
        self.history = History()
        self.accumulator = SummaryAccumulator()
        self.latest: LiveView | None = None
        self.paused = False
        self.ended: str | None = None
        self.current_panel = 1
        self.target = target
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: deque[LiveView] = deque()
        self.last_alive: LiveView | None = None
        self._extra_themes = themes or []
        self._initial_theme = theme
        self._notices = notices

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(self._header_text(), id="header")
        yield Paragraph(id="verdict")
        yield Paragraph(id="advice")
        yield Static("", id="tabs")
        with Container(id="panels"):
            for panel in PANELS:
                yield panel()
        yield Static(f"terminal too small: infermon needs at least {MIN_WIDTH}×{MIN_HEIGHT}", id="too-small")
        yield Footer()

    def on_mount(self) -> None:
        from infermon.themes import BUILTIN

        for theme in (*BUILTIN, *self._extra_themes):
            self.register_theme(theme)
        self.theme = self._initial_theme or ("user" if any(t.name == "user" for t in self._extra_themes) else "dark")
        self._apply_size()
        self.query_one("#verdict", Paragraph).set(Text("waiting for the first samples…", style="dim"))
        self._thread = threading.Thread(target=self._sample_loop, name="infermon-sampler", daemon=True)
        self._thread.start()
        if self._notices:
            more = f" (+{len(self._notices) - 1} more)" if len(self._notices) > 1 else ""
            self.notify(f"{self._notices[0]}{more}", title="recording", severity="warning", timeout=8)

    def on_resize(self, event) -> None:
        self._apply_size(event.size)

    def _apply_size(self, size=None) -> None:
        size = size or self.size
        narrow = size.width < NARROW_WIDTH or size.height < NARROW_HEIGHT
        self.set_class(narrow, "narrow")
        self.set_class(size.width < MIN_WIDTH or size.height < MIN_HEIGHT, "tiny")
        self._mark_current()
        self._show_again()

    def _mark_current(self) -> None:
        for panel in self.query(Panel):
            panel.set_class(panel.number == self.current_panel, "-current")
        tabs = Text()
        for panel in self.query(Panel):
            style = "reverse bold" if panel.number == self.current_panel else "dim"
            tabs.append(f" {panel.number} {panel.title} ", style=style)
        self.query_one("#tabs", Static).update(tabs)

    # ------------------------------------------------------------------ sampling (thread)

    def _sample_loop(self) -> None:
        interval = self.source.interval_s
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                view = self.source.next_view()
            except Exception as exc:  # a probe bug must never take the dashboard down
                self.post_message(SourceEnded(f"sampling failed: {type(exc).__name__}: {exc}"))
                return
            if view is None:
                self.post_message(SourceEnded("end of the recording" if self.source.kind == "replay" else "no more data"))
                return
            self._pending.append(view)
            self.post_message(ViewReady())
            if view.snapshot.tree is not None and not view.snapshot.tree.alive:
                return
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))
            if time.monotonic() - next_at > interval:
                next_at = time.monotonic()  # fell behind (suspended laptop): do not burst to catch up

    def on_unmount(self) -> None:
        self._stop.set()
        self.source.close()

    # ------------------------------------------------------------------ drawing

    def on_view_ready(self, message: ViewReady) -> None:
        view = None
        generation = getattr(self.source, "generation", None)
        if generation is not None and generation != getattr(self, "_generation", None):
            # A replay seek: start the history over from the new position.
            self._generation = generation
            self.history = History()
            self.accumulator.reset()
        while self._pending:
            view = self._pending.popleft()
            self.latest = view
            if view.snapshot.tree is None or view.snapshot.tree.alive:
                self.last_alive = view
                self.history.add(view)
                self.accumulator.add(view)
        if view is not None and not self.paused:
            self._draw(view)

    def on_source_ended(self, message: SourceEnded) -> None:
        self.ended = message.reason
        self._set_header()

    def _draw(self, view: LiveView) -> None:
        self._set_header()
        # After the process exits, its last figures stay on screen.
        view = self.last_alive or view
        if view is getattr(self, "_drawn", None):
            return
        self._drawn = view
        # The finding (its numbers move) and the advice (it rarely does) repaint separately.
        finding, _, advice = view.analysis.verdict.partition("; ")
        style = "bold red" if finding.startswith("memory-bound") else "bold green" if finding.startswith("compute-bound") else "bold"
        self.query_one("#verdict", Paragraph).set(Text(finding, style=style))
        self.query_one("#advice", Paragraph).set(Text(advice, style="italic") if advice else "")
        for panel in self.query(Panel):
            if self._visible(panel):
                panel.show(view, self.history)
            else:
                panel.stale = True  # drawn when it is shown again

    def _visible(self, panel: Panel) -> bool:
        """Hidden panels (narrow layout, or another one maximised) are not drawn: it costs CPU."""
        maximized = self.screen.maximized
        if maximized is not None and maximized is not panel:
            return False
        return not self.has_class("narrow") or panel.number == self.current_panel

    def _show_again(self) -> None:
        """Draw panels that were hidden when the last view came."""
        view = self.last_alive or self.latest
        if view is None:
            return
        for panel in self.query(Panel):
            if getattr(panel, "stale", False) and self._visible(panel):
                panel.stale = False
                panel.show(view, self.history)

    def _set_header(self) -> None:
        text = self._header_text()
        if text.plain != getattr(self, "_header_shown", None):
            self._header_shown = text.plain
            self.query_one("#header", Static).update(text, layout=False)

    def _state(self) -> Text:
        view = self.latest
        if self.source.kind == "replay":
            position = self.source.position()
            if self.source.paused:
                return Text(f"❚❚ replay {position}", style="bold yellow")
            if self.source.at_end:
                return Text(f"■ end of recording {position}", style="bold yellow")
            return Text(f"▶ replay {position}", style="bold green")
        if self.paused:
            return Text("❚❚ paused", style="bold yellow")
        if view is not None and view.snapshot.tree is not None and not view.snapshot.tree.alive:
            return Text("✕ exited", style="bold red")
        if self.ended:
            return Text(f"■ {self.ended}", style="bold yellow")
        if view is not None and view.snapshot.engine is not None and "engine" in view.snapshot.engine.why:
            return Text("⚠ engine unreachable", style="bold yellow")
        return Text(f"● {self.source.kind}", style="bold green")

    def _header_text(self) -> Text:
        """State first (it must survive a narrow terminal), then what is watched."""
        text = self._state()
        text.append("  infermon", style="bold")
        view = self.latest
        if view is None:
            text.append(f"  {self.target}  starting…", style="dim")
            return text
        snap = view.snapshot
        tree = snap.tree
        parts = [f"pid {tree.root_pid}" if tree else self.target]
        engine = snap.engine
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
            parts.append(f"up {_duration(snap.time - root.create_time)}")
        parts.append(f"every {snap.interval_s:g} s")
        text.append("  " + " · ".join(parts))
        return text

    # ------------------------------------------------------------------ actions

    def action_replay_faster(self) -> None:
        if self.source.kind == "replay":
            self.notify(f"speed {self.source.faster():g}×", timeout=1)
            self._set_header()

    def action_replay_slower(self) -> None:
        if self.source.kind == "replay":
            self.notify(f"speed {self.source.slower():g}×", timeout=1)
            self._set_header()

    def action_replay_seek(self, samples: int) -> None:
        if self.source.kind == "replay":
            self.source.seek(samples)
            self._set_header()

    def action_replay_to(self, index: int) -> None:
        if self.source.kind == "replay":
            self.source.seek(to=index if index >= 0 else len(self.source.views) - 1)
            self._set_header()

    def action_toggle_pause(self) -> None:
        if self.source.kind == "replay":
            # In a replay, pause means the playback.
            self.source.toggle_pause()
            self._set_header()
            return
        self.paused = not self.paused
        if not self.paused and self.latest is not None:
            self._drawn = None
            self._draw(self.latest)
        else:
            self._set_header()

    def action_reset_peaks(self) -> None:
        self.history.reset_peaks()
        self.accumulator.reset()
        self.notify("peaks and the run summary reset", timeout=2)

    def action_next_theme(self) -> None:
        from infermon.themes import theme_names

        names = theme_names(next((t for t in self._extra_themes if t.name == "user"), None))
        current = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(current + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_summary(self) -> None:
        self.push_screen(SummaryScreen(format_summary(self.accumulator.summary())))

    def action_sort_processes(self) -> None:
        column = self.query_one(ProcessesPanel).cycle_sort()
        self.notify(f"processes sorted by {column}", timeout=2)

    def action_focus_panel(self, number: int) -> None:
        panel = next(p for p in self.query(Panel) if p.number == number)
        if self.has_class("narrow"):
            self.current_panel = number
            self._mark_current()
            self._show_again()
            return
        if self.screen.maximized is panel:
            self.screen.minimize()
        else:
            self.screen.maximize(panel, container=False)
        self._show_again()

    def action_restore(self) -> None:
        if self.screen.maximized is not None:
            self.screen.minimize()
            self._show_again()

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("Pause / resume", "Freeze the display (sampling goes on)", self.action_toggle_pause)
        yield SystemCommand("Reset peaks", "Reset peak figures and the run summary", self.action_reset_peaks)
        yield SystemCommand("Next theme", "Cycle dark, light, high-contrast, ansi (and user)", self.action_next_theme)
        yield SystemCommand("Run summary", "The perf summary of the run so far", self.action_summary)
        yield SystemCommand("Key help", "Keys, panels and where figures come from", self.action_help)
        yield SystemCommand("Sort processes", "Cycle the process table's sort column", self.action_sort_processes)
        for number, title in PANEL_TITLES:
            yield SystemCommand(f"Panel {number}: {title}", "Focus this panel (again to return)",
                                lambda n=number: self.action_focus_panel(n))

    def summary_text(self) -> str:
        return format_summary(self.accumulator.summary())
