"""The dashboard with scripted views: every key, every state, and what a user reads on screen."""

import asyncio


from infermon.testing import scripted
from infermon.tui.app import InfermonApp
from infermon.tui.panels import Panel, ProcessesPanel
from infermon.tui.screens import HelpScreen, SummaryScreen
from infermon.live.derive import Deriver
from infermon.tui.sources import LiveSource
from infermon.tui.widgets import find_row


def make_app(snapshots=None, **kwargs):
    """The dashboard over scripted snapshots, derived by the real Deriver in the sampling thread."""
    sampler = scripted.ScriptedSampler(snapshots if snapshots is not None else scripted.snapshots())
    return InfermonApp(LiveSource(sampler, Deriver()), target="pid 4242", **kwargs), sampler


async def settle(pilot, sampler):
    for _ in range(200):
        if sampler.exhausted.is_set():
            break
        await asyncio.sleep(0.01)
    for _ in range(5):
        await pilot.pause()


def text_of(app, selector) -> str:
    """The text of a widget (``#header``, ``#verdict``), or of a panel's row by its key (``#gen``)."""
    from textual.css.query import NoMatches

    try:
        widget = app.query_one(selector)
    except NoMatches:
        return find_row(app, selector.removeprefix("#"))
    rendered = widget.render()
    return str(getattr(rendered, "plain", rendered))


async def test_header_verdict_and_panels_show_the_run():
    app, source = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot, source)
        header = text_of(app, "#header")
        assert "pid 4242" in header and "vllm 0.33.0" in header and "Llama 3.1 8B" in header
        assert "H100 80GB HBM3" in header and "up 1h02m" in header and "every 1 s" in header
        assert text_of(app, "#verdict").startswith("memory-bound decode: batch 8")
        assert "of peak bandwidth" in text_of(app, "#verdict")
        assert "concurrent requests" in text_of(app, "#advice")
        assert "tok/s" in text_of(app, "#gen") and "engine-reported" in text_of(app, "#gen")
        assert "TB/s" in text_of(app, "#bw-measured") and "measured" in text_of(app, "#bw-measured")
        assert "modeled" in text_of(app, "#bw-modeled")
        assert "datasheet" in text_of(app, "#peak-bw")
        assert "131,072 B" in text_of(app, "#kv-bytes")
        assert "no agent" in text_of(app, "#torch")


async def test_pause_keeps_the_screen_and_resumes():
    app, source = make_app(scripted.snapshots(30))
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot, source)
        await pilot.press("p")
        assert app.paused and "paused" in text_of(app, "#header")
        await pilot.press("p")
        assert not app.paused and "paused" not in text_of(app, "#header")


async def test_process_exit_is_shown_and_last_data_stays():
    app, source = make_app(scripted.snapshots_then_exit())
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot, source)
        for _ in range(20):
            if "exited" in text_of(app, "#header"):
                break
            await pilot.pause(0.05)
        assert "exited" in text_of(app, "#header")
        assert "tok/s" in text_of(app, "#gen")  # the last figures stay on screen


async def test_no_gpu_no_engine_says_why():
    app, source = make_app(scripted.snapshots(4, with_engine=False, with_gpus=False))
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot, source)
        assert "no engine /metrics found" in text_of(app, "#gen")
        assert "no NVIDIA driver" in text_of(app, "#devices-note")
        assert "no token counters" in text_of(app, "#verdict")


async def test_a_script_whose_agent_has_no_model_yet_is_starting_not_unreachable():
    """``infermon demo`` on a cold host: the agent publishes before the script has built its model.
    The screen said "⚠ engine unreachable" and "no engine metrics and no agent" beside the agent's
    own record: a script has no endpoint to reach, and its agent is there and says why it counts
    nothing yet."""
    from infermon.probes.sampler import agents_not_counting
    from infermon.probes.snapshot import AgentSample, evolve

    agent = AgentSample(pid=4242, time=scripted.T0, interval_s=1.0, generation_tokens_total=0.0,
                        prompt_tokens_total=0.0, decode_steps_total=0.0, batch=0, max_batch=0)
    said = agents_not_counting((agent,), in_engine=False)
    snapshots = [evolve(s, agents=(evolve(agent, time=s.time),), why={**s.why, "agent": said})
                 for s in scripted.snapshots(4, with_engine=False, with_gpus=False)]
    app, source = make_app(snapshots)
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot, source)
        header, verdict = text_of(app, "#header"), text_of(app, "#verdict")
        assert "unreachable" not in header and "live" in header, header
        assert "the agent in pid 4242 counts no tokens" in verdict and "yet" in verdict, verdict
        assert "no agent" not in verdict, verdict
        assert "the agent in pid 4242" in text_of(app, "#gen"), text_of(app, "#gen")  # not port 8000's refusal


async def test_help_summary_theme_and_reset_keys():
    app, source = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot, source)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("s")
        assert isinstance(app.screen, SummaryScreen)
        assert "Perf Summary" in app.screen.text and "Tokens generated" in app.screen.text
        await pilot.press("escape")
        before = app.theme
        await pilot.press("t")
        assert app.theme != before
        deriver = app.source.deriver
        assert deriver.history.peak_generation is not None and deriver.accumulator.samples > 0
        await pilot.press("r")
        # The reset happens in the sampling thread, at its next tick.
        view = deriver.update(scripted.snapshot(99))
        assert view.summary.samples == 1
        assert view.trend.peak_generation_tokens_per_s == view.figures.generation_tokens_per_s.value


async def test_number_keys_maximise_when_wide_and_switch_when_narrow():
    app, source = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot, source)
        await pilot.press("2")
        assert app.screen.maximized is app.query_one("#roofline", Panel)
        await pilot.press("escape")
        assert app.screen.maximized is None
        await pilot.press("5")
        await pilot.press("5")
        assert app.screen.maximized is None
    app, source = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, source)
        assert app.has_class("narrow")
        await pilot.press("4")
        shown = [p.number for p in app.query(Panel) if p.display and p.has_class("-current")]
        assert shown == [4]
        assert app.query_one("#throughput").styles.display == "none"


async def test_sort_processes():
    app, source = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot, source)
        panel = app.query_one(ProcessesPanel)
        assert panel.sort_column == "CPU%"
        await pilot.press("o")
        assert panel.sort_column == "RSS"
        rows = [panel.body.plain(key) for key in panel.body.keys]
        assert rows[1].strip().startswith("4250")  # after the header  # the engine core has the largest RSS


async def test_tiny_terminal_says_so_and_recovers():
    app, source = make_app()
    async with app.run_test(size=(40, 10)) as pilot:
        await settle(pilot, source)
        assert app.has_class("tiny")
        assert app.query_one("#too-small").styles.display == "block"
        await pilot.resize_terminal(160, 45)
        for _ in range(10):
            await pilot.pause(0.05)
        assert not app.has_class("tiny")


async def test_command_palette_lists_our_actions():
    app, source = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot, source)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for title in ("Pause / resume", "Reset peaks", "Next theme", "Run summary", "Key help", "Panel 2: Roofline"):
            assert title in titles


async def test_quit_returns_and_summary_is_available():
    app, source = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot, source)
        await pilot.press("q")
    summary = app.summary_text()
    assert "Throughput:" in summary and "TFLOP/s" in summary


# The four sizes the dashboard is designed for: an SSH default, a small window, the full layout,
# a large screen. Scripted data and a clock that comes from it: the same screen every run.
SIZES = ((80, 24), (100, 30), (120, 40), (200, 50))


def _snapshot(snap_compare, size, keys=(), **kwargs):
    app, source = make_app(**kwargs)

    async def run_before(pilot):
        await settle(pilot, source)
        for key in keys:
            await pilot.press(key)
        await pilot.pause()

    return snap_compare(app, terminal_size=size, run_before=run_before)


def test_snapshot_80x24(snap_compare):
    assert _snapshot(snap_compare, (80, 24))


def test_snapshot_100x30(snap_compare):
    assert _snapshot(snap_compare, (100, 30))


def test_snapshot_120x40(snap_compare):
    assert _snapshot(snap_compare, (120, 40))


def test_snapshot_200x50(snap_compare):
    assert _snapshot(snap_compare, (200, 50))


def test_snapshot_80x24_roofline(snap_compare):
    assert _snapshot(snap_compare, (80, 24), keys=("2",))


def test_snapshot_80x24_no_engine_no_gpu(snap_compare):
    app, source = make_app(scripted.snapshots(4, with_engine=False, with_gpus=False))

    async def run_before(pilot):
        await settle(pilot, source)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_resize_to_20x5_and_back():
    app, source = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        await settle(pilot, source)
        await pilot.resize_terminal(20, 5)
        for _ in range(5):
            await pilot.pause(0.05)
        assert app.has_class("tiny")
        await pilot.resize_terminal(160, 45)
        for _ in range(5):
            await pilot.pause(0.05)
        assert not app.has_class("tiny") and "pid 4242" in text_of(app, "#header")


async def test_levers_screen_shows_each_lever_and_follows_new_samples():
    from infermon.tui.screens import LeversScreen

    app, source = make_app(scripted.snapshots(12))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, source)
        await pilot.press("l")
        assert isinstance(app.screen, LeversScreen)
        view = app.screen.view
        assert view is not None and view.levers is not None
        from rich.console import Console

        console = Console(record=True, width=118)
        console.print(app.screen.shown)
        text = console.export_text()
        assert view.verdict.finding in text and "batch ×2" in text and "weights int4" in text
        keys = {lever.key for lever in view.levers.levers}
        assert {"batch_x2", "weights_int4", "kv_fp8", "speculative", "tensor_parallel"} <= keys
        await pilot.press("escape")
        assert not isinstance(app.screen, LeversScreen)


async def test_a_verdict_that_got_shorter_keeps_its_height_with_the_blank_line_above_it_for_a_while():
    """Rows never flip-flop (everything below would move), so a verdict that wrapped to two rows
    keeps two when it fits in one, for 30 s. The spare row goes above it, under the header, not
    between the verdict and its advice; the advice's spare row goes below it. Then the rows are
    given back (a long message at start-up must not leave a blank row for good)."""
    app, source = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, source)
        app.paused = True  # the next views must not replace what this test sets
        await pilot.pause()
        verdict, advice = app.query_one("#verdict"), app.query_one("#advice")
        now = [1000.0]
        verdict._clock = advice._clock = lambda: now[0]
        long_text = "memory-bound decode: batch 1, 0.5 FLOP/B vs ridge 6.80 — 15% of peak bandwidth, and more words"
        short = "memory-bound decode: batch 1"
        for widget in (verdict, advice):
            widget.set(long_text)
            await pilot.pause()
            assert len([row for row in widget._rows if row.plain]) == 2
            widget.set(short)
            await pilot.pause()
        assert [row.plain for row in verdict._rows] == ["", short]
        assert [row.plain for row in advice._rows] == [short, ""]
        assert verdict.size.height == 2 and advice.region.y == verdict.region.bottom
        now[0] += 29
        verdict.set(short)
        await pilot.pause()
        assert [row.plain for row in verdict._rows] == ["", short]
        now[0] += 2
        verdict.set(short)  # the same words, 31 s in fewer rows
        await pilot.pause()
        assert [row.plain for row in verdict._rows] == [short] and verdict.size.height == 1
        verdict.set(long_text)  # grows again at once
        await pilot.pause()
        assert len(verdict._rows) == 2 and verdict.size.height == 2


def assert_kept_lines_are_current(app) -> int:
    """Each widget that keeps its lines (tui/widgets.py KeptLines) gives the compositor now
    exactly what it would render from scratch: the kept lines are never stale."""
    from textual.widget import Widget

    from infermon.tui.widgets import KeptLines

    checked = 0
    for widget in app.screen.query("*"):
        kept = getattr(widget, "_kept", None)
        if not isinstance(widget, KeptLines) or kept is None or not widget.display:
            continue
        crop = kept[0][0]
        strips = widget.render_lines(crop)  # what the compositor would get now
        widget._styles_cache.clear()
        fresh = Widget.render_lines(widget, crop)
        assert [s.text for s in fresh] == [s.text for s in strips], widget
        assert fresh == strips, widget
        checked += 1
    return checked


async def test_widgets_that_keep_their_lines_never_show_stale_ones():
    app, source = make_app(scripted.snapshots(40))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, source)
        assert assert_kept_lines_are_current(app) >= 10
        for keys in (["t"], ["2"], ["escape"], ["p"], ["p"], ["t", "t"]):
            await pilot.press(*keys)
            await pilot.pause()
            await pilot.pause()
            checked = assert_kept_lines_are_current(app)
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        await pilot.pause()
        checked += assert_kept_lines_are_current(app)
        assert checked >= 5


async def test_startup_objects_are_left_out_of_garbage_collections_while_the_app_runs():
    """Once the first view is drawn, what exists (modules, widgets, styles: ~95,000 objects) is
    frozen out of the collector: a full collection walked it all, ~70 ms on a loaded host. When the
    app ends, the objects are handed back."""
    import gc

    before = gc.get_freeze_count()  # 0 unless something else in this process froze objects
    app, source = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, source)
        assert gc.get_freeze_count() > before + 10_000
        cycle: list = []
        cycle.append(cycle)  # made after the freeze: still collected
        tracked = id(cycle)
        del cycle
        assert gc.collect() >= 1 and all(id(o) != tracked for o in gc.get_objects())
    assert gc.get_freeze_count() == before


class _FailingOnce:
    """A sampler whose second tick raises with words an endpoint could have put in an error."""

    def __init__(self) -> None:
        import threading
        from types import SimpleNamespace

        self._items = iter(scripted.snapshots(2))
        self.config = SimpleNamespace(interval_s=0.0)
        self.ticks = 0
        self._closed = threading.Event()

    def tick(self):
        self.ticks += 1
        if self.ticks == 2:
            raise ValueError("could not read '\x1b]0;owned\x07\x1b[2J' [/b] [$nope] [link=x]")
        item = next(self._items, None)
        if item is None:
            self._closed.wait()
        return item

    def close(self) -> None:
        self._closed.set()


async def test_a_toast_shows_outside_words_as_they_are_and_never_drives_the_terminal():
    """A failed tick's exception, a bad markup string: each toast is plain words (control
    characters as U+FFFD, brackets as brackets), and the app goes on."""
    sampler = _FailingOnce()
    app = InfermonApp(LiveSource(sampler, Deriver()), target="pid 4242")
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(200):
            if sampler.ticks >= 3:
                break
            await asyncio.sleep(0.01)
        app.notify("a theme named [/i] with [$x] in it")  # invalid markup, as Textual's own calls may pass
        for _ in range(5):
            await pilot.pause()
        toasts = list(app._notifications)
        failed = next(t for t in toasts if "sampling failed" in t.message)
        assert "\x1b" not in failed.message and "\x07" not in failed.message and "\ufffd" in failed.message
        assert "[/b] [$nope] [link=x]" in failed.message and not failed.markup
        theme = next(t for t in toasts if "theme named" in t.message)
        assert theme.message == "a theme named [/i] with [$x] in it" and not theme.markup
        assert app.is_running and "tok/s" in find_row(app, "o-gen")  # still drawing
    app.notify("after the app ended")  # never raises


async def test_overview_rows_kept_from_the_last_view_are_the_rows_a_fresh_draw_builds():
    """A row is built again only when what it shows changed; a kept one must read, cell for cell,
    as the row built from scratch, view after view, at every width and after a new theme."""
    from infermon.tui.overview import Overview

    views = scripted.views(30)
    app, source = make_app(scripted.snapshots(2))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, source)
        overview = app.query_one(Overview)

        def rows() -> dict:
            return {key: (text.plain, text.spans, text.style) for key, text in overview.rows.items()}

        kept_between_views = 0
        for step, view in enumerate(views):
            if step == 12:
                await pilot.resize_terminal(100, 30)
                await pilot.pause()
            if step == 20:
                await pilot.press("t")  # another theme: other colours in every kept row
                await pilot.pause()
            before = dict(overview.rows)
            overview.draw(view)
            kept = rows()
            kept_between_views += sum(overview.rows[key] is text for key, text in before.items() if key in overview.rows)
            overview._built.clear()
            overview.draw(view)
            assert rows() == kept, step
        assert kept_between_views >= 30  # rows are kept from one view to the next, not only rebuilt
