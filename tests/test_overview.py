"""The overview at 80×24 and the layouts at every size: what a user reads, with nothing cut."""

import asyncio
import io
from dataclasses import replace

from hypothesis import given, strategies as st
from rich.console import Console
from rich.text import Text

from infermon.testing import scripted
from infermon.live.derive import Deriver
from infermon.tui.app import InfermonApp
from infermon.tui.screens import WhyScreen, why_renderables
from infermon.tui.sources import LiveSource
from infermon.tui.text import ELLIPSIS, Row, fit
from infermon.tui.widgets import Body, Paragraph, changed_span, find_row
from infermon.views.fmt import si, source_text, value_text


def make_app(snapshots=None):
    sampler = scripted.ScriptedSampler(snapshots if snapshots is not None else scripted.snapshots())
    return InfermonApp(LiveSource(sampler, Deriver()), target="pid 4242"), sampler


async def settle(pilot, sampler):
    for _ in range(300):
        if sampler.exhausted.is_set():
            break
        await asyncio.sleep(0.01)
    for _ in range(6):
        await pilot.pause()


def shown(widget) -> bool:
    return widget.region.width > 0 and widget.region.height > 0 and all(
        node.display for node in widget.ancestors_with_self if hasattr(node, "display"))


def rows_on_screen(app, body: Body) -> dict[str, str]:
    """The rows of ``body`` that are displayed between the top of the screen and the footer."""
    if not shown(body):
        return {}
    region = body.region
    bottom = min(region.y + region.height, app.size.height - 1)
    return {key: body.plain(key) for y, key in enumerate(body.keys) if region.y + y < bottom}


def visible_rows(app) -> list[tuple[Body, str]]:
    return [(body, text) for body in app.query(Body) if shown(body) for text in rows_on_screen(app, body).values()]


def test_layout_for_each_size():
    assert InfermonApp.layout_for(80, 24) == "narrow"
    assert InfermonApp.layout_for(100, 30) == "split"
    assert InfermonApp.layout_for(120, 40) == "full"
    assert InfermonApp.layout_for(200, 50) == "full"
    assert InfermonApp.layout_for(40, 10) == "tiny"


async def test_the_80x24_overview_shows_every_figure_with_its_source_without_a_key():
    app, sampler = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, sampler)
        view = app.latest
        f = view.figures
        rows = rows_on_screen(app, app.query_one("#overview-rows", Body))
        assert app.query_one("#verdict", Paragraph).text_plain == view.verdict.finding
        assert shown(app.query_one("#verdict")) and app.query_one("#verdict").region.y < 3

        def has(line_id, fig, word=None):
            text = rows[line_id]
            assert value_text(fig) in text, (line_id, text)
            assert source_text(fig) in text, (line_id, text)
            if word:
                assert word in text, (line_id, text)

        has("o-gen", f.generation_tokens_per_s, "generation")
        has("o-prompt", f.prompt_tokens_per_s, "prompt")
        has("o-requests", f.requests_running, "requests")
        assert f"/ {value_text(f.requests_waiting)}" in rows["o-requests"]
        has("o-bw", f.bandwidth_modeled_bytes_per_s, "bandwidth")
        has("o-bw", f.mbu, "MBU")
        has("o-bw", f.peak_bandwidth_bytes_per_s)
        has("o-bw-measured", f.bandwidth_measured_bytes_per_s)
        has("o-bw-measured", f.mbu_measured)
        has("o-flops", f.flops_modeled_per_s, "FLOP/s")
        has("o-flops", f.mfu, "MFU")
        has("o-flops", f.peak_flops)
        has("o-intensity", f.operating_intensity, "intensity")
        has("o-intensity", f.ops_per_byte, "ridge")
        has("o-ceiling", f.decode_ceiling_tokens_per_s, "ceiling")
        assert f.decode_ceiling_tokens_per_s.note in rows["o-ceiling"]  # the batch and context it is at
        has("o-kv", f.kv_usage, "KV usage")
        has("o-kv", f.kv_headroom_tokens, "headroom")
        devices = [text for key, text in rows.items() if key.startswith("o-device-")]
        assert len(devices) == len(view.devices) == 2
        for device, text in zip(view.devices, devices):
            assert f"GPU {device.index}" in text
            assert f"{device.utilization_gpu * 100:.0f}% util" in text
            assert f"{si(device.memory_used_bytes, 'B')} / {si(device.memory_total_bytes, 'B')}" in text
            assert f"{device.power_w:.0f} W" in text and "measured" in text
        # No key was pressed: this is the first screen.
        assert app.current_panel == 0 and app.layout_name == "narrow"


async def test_the_overview_without_engine_or_gpu_gives_reasons():
    app, sampler = make_app(scripted.snapshots(4, with_engine=False, with_gpus=False))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, sampler)
        gen = find_row(app, "o-gen")
        assert "n/a" in gen and "no engine /metrics found" in gen
        assert "no NVIDIA driver" in find_row(app, "o-device-0")


async def test_twelve_gpus_at_80x24_keep_every_figure_on_screen():
    def many(i):
        snap = scripted.snapshot(i)
        used, idle = snap.devices
        return replace(snap, devices=(used, *[replace(idle, index=n, uuid=f"GPU-{n}") for n in range(1, 12)]))

    app, sampler = make_app([many(i) for i in range(8)])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, sampler)
        body = app.query_one("#overview-rows", Body)
        on_screen = rows_on_screen(app, body)
        assert list(on_screen) == body.keys  # every row
        for key in ("o-gen", "o-prompt", "o-requests", "o-bw", "o-flops", "o-intensity", "o-ceiling", "o-kv"):
            assert key in on_screen, key
        devices = [key for key in body.keys if key.startswith("o-device-")]
        assert "more devices (4)" in on_screen[devices[-1]]


async def test_nothing_is_wider_than_its_row_at_any_size():
    for size in ((80, 24), (100, 30), (120, 40), (200, 50), (60, 16)):
        app, sampler = make_app()
        async with app.run_test(size=size) as pilot:
            await settle(pilot, sampler)
            for keys in ((), ("2",), ("3",), ("4",), ("5",), ("0",)):
                for key in keys:
                    await pilot.press(key)
                await pilot.pause()
                for body, text in visible_rows(app):
                    assert Text(text).cell_len <= body.size.width, (size, keys, body.id, text)
            assert "pid 4242" in app.query_one("#header").render().plain


async def test_keys_pick_the_overview_or_a_panel():
    app, sampler = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, sampler)
        assert app.query_one("#overview").display
        await pilot.press("2")
        assert not app.query_one("#overview").display and app.query_one("#roofline").display
        assert "ridge" in find_row(app, "ridge")
        await pilot.press("escape")
        assert app.query_one("#overview").display and app.current_panel == 0
        await pilot.press("4")
        await pilot.press("0")
        assert app.query_one("#overview").display
    app, sampler = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, sampler)
        assert app.layout_name == "split"
        assert app.query_one("#overview").display and app.query_one("#throughput").display
        await pilot.press("3")
        await pilot.pause()
        assert app.query_one("#overview").display and app.query_one("#memory").display
        assert not app.query_one("#throughput").display
        assert "131,072 B" in find_row(app, "kv-bytes")


async def test_why_shows_the_whole_reason_that_a_row_shortens():
    app, sampler = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, sampler)
        await pilot.press("2")
        await pilot.pause()
        reason = app.latest.figures.flops_engine_per_s.why
        row = find_row(app, "flops-engine")
        assert reason not in row and row.endswith(ELLIPSIS)  # shortened at a word on the panel
        await pilot.press("w")
        assert isinstance(app.screen, WhyScreen)
        out = Console(width=100, file=io.StringIO(), record=True)
        for renderable in why_renderables(app.screen.view):
            out.print(renderable)
        assert " ".join(reason.split()) in " ".join(out.export_text().split())  # whole, wrapped
        await pilot.press("escape")
        assert not isinstance(app.screen, WhyScreen)


def test_fit_ends_at_a_word():
    assert fit("no inter-token histogram in this scrape", 100) == "no inter-token histogram in this scrape"
    assert fit("no inter-token histogram in this scrape", 20) == "no inter-token…"
    assert fit("decode never turns compute-bound", 14) == "decode never…"
    assert fit("/a/very/long/path", 8) == "/a/very…"
    assert fit("python -m vllm.entrypoints", 14, words=False) == "python -m vll…"


@given(st.text(alphabet=st.sampled_from("ab c,;"), max_size=60), st.integers(min_value=2, max_value=70))
def test_fit_is_a_prefix_that_fits(text, width):
    out = fit(text, width)
    assert len(out) <= width
    if out != text:
        assert out.endswith(ELLIPSIS)
        kept = out[:-1]
        assert text.startswith(kept)
        # Cut at a word: the kept part is followed by a space or punctuation, unless no space was in reach.
        assert text[len(kept):len(kept) + 1] in (" ", ",", ";", ":") or " " not in text[1:width - 1]


@given(st.lists(st.tuples(st.text(alphabet="abc ", min_size=1, max_size=12), st.integers(0, 3), st.booleans()),
                max_size=8), st.integers(min_value=10, max_value=90))
def test_rows_fit_their_width(parts, width):
    row = Row()
    for text, drop, note in parts:
        row.add(text, drop=drop, note=note)
    assert row.text(width).cell_len <= width


def test_changed_span_is_column_aligned():
    assert changed_span(Text("620 tok/s"), Text("620 tok/s")) is None
    assert changed_span(Text("620 tok/s"), Text("560 tok/s")) == (0, 2)
    # Text that moved changed on screen, even where the characters match.
    assert changed_span(Text("ab  peak"), Text("abc  peak")) == (2, 9)
    assert changed_span(Text("abc", style="bold"), Text("abc")) == (0, 3)
