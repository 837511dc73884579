"""Style changes as differences (tui/sgr.py): fewer bytes, and the terminal shows the same cells.

"The same" is checked on a terminal emulator (pyte): every cell's character, colours and
attributes, and the cursor, after the original stream and after the rewritten one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pyte
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.color import Color, ColorSystem
from rich.console import Console
from rich.style import Style

from infermon.testing import scripted
from infermon.tui.sgr import SgrCoalescer, attributes_of, parse_sgr, style_of, transition
from test_tui import make_app, settle

COLS, ROWS = 40, 8


def screen_after(*writes: str, cols: int = COLS, rows: int = ROWS) -> pyte.Screen:
    screen = pyte.Screen(cols, rows)
    stream = pyte.Stream(screen)
    for data in writes:
        stream.feed(data)
    return screen


def cells(screen: pyte.Screen) -> list:
    return [[screen.buffer[y][x] for x in range(screen.columns)] for y in range(screen.lines)]


def assert_same_screen(original: list[str], rewritten: list[str], cols: int = COLS, rows: int = ROWS) -> None:
    a = screen_after(*original, cols=cols, rows=rows)
    b = screen_after(*rewritten, cols=cols, rows=rows)
    for y, (row_a, row_b) in enumerate(zip(cells(a), cells(b))):
        assert row_a == row_b, (y, "".join(c.data for c in row_a), "".join(c.data for c in row_b))
    assert (a.cursor.x, a.cursor.y) == (b.cursor.x, b.cursor.y)
    # The style in force afterwards (what the next character would be printed in) is the same too.
    assert a.cursor.attrs == b.cursor.attrs


def test_a_figure_after_its_label_costs_one_short_change_instead_of_a_reset_and_a_restatement():
    label, value = "\x1b[1;38;2;221;227;234;48;2;18;22;28m", "\x1b[38;2;221;227;234;48;2;18;22;28m"
    original = f"\x1b[10;63H{label}bandwidth  \x1b[0m{value}   12.9\x1b[0m\r\n\x1b[13;63H{label}FLOP/s  \x1b[0m{value}31.4\x1b[0m"
    out = SgrCoalescer().feed(original)
    assert out == (f"\x1b[10;63H{label}bandwidth  \x1b[22m   12.9"  # the line break before a move is dropped
                   f"\x1b[13;63H\x1b[1mFLOP/s  \x1b[22m31.4\x1b[0m")
    assert len(out) < 0.6 * len(original)
    assert_same_screen([original], [out], cols=120, rows=40)


def test_the_shorter_of_a_difference_and_a_restatement():
    def change(current: dict, target: dict) -> str:
        return transition(style_of(current), style_of(target))

    bold_red = {"1": "1", "fg": "31"}
    assert change({}, {}) == ""
    assert change(bold_red, {}) == "\x1b[0m"
    assert change({}, bold_red) == "\x1b[1;31m"
    assert change(bold_red, {"fg": "31"}) == "\x1b[22m"
    # One code ends both bold and dim: dim is set again.
    assert change({"1": "1", "2": "2", "bg": "44"}, {"2": "2", "bg": "44"}) == "\x1b[22;2m"
    assert change({"fg": "38;2;1;2;3", "bg": "48;5;7"}, {"bg": "48;5;7"}) == "\x1b[39m"
    many = {"1": "1", "3": "3", "4": "4", "7": "7", "fg": "31", "bg": "42"}
    assert change(many, {"bg": "42"}) == "\x1b[0;42m"  # shorter than ending five attributes


def test_styles_are_read_as_a_terminal_reads_them():
    def read(params: str, base: dict | None = None) -> dict | None:
        style = parse_sgr(params, style_of(base or {}))
        return None if style is None else attributes_of(style)

    assert read("", {"1": "1"}) == {}
    assert read("0;1;38;5;196;48;2;0;0;0") == {"1": "1", "fg": "38;5;196", "bg": "48;2;0;0;0"}
    assert read("22;39", {"1": "1", "2": "2", "fg": "31", "bg": "44"}) == {"bg": "44"}
    assert read("38;2;1;2") is None  # a colour cut short
    assert read("4:3") is None  # a curly underline: not modelled
    assert read("58;5;1") is None  # an underline colour: not modelled


def test_a_style_it_cannot_read_passes_through_until_a_plain_reset():
    original = ["\x1b[1mA\x1b[4:3mB\x1b[0m\x1b[31mC\x1b[0m\x1b[1mD", "\x1b[2;1HE\x1b[0m"]
    coalescer = SgrCoalescer()
    out = [coalescer.feed(data) for data in original]
    assert "\x1b[4:3m" in out[0]
    assert_same_screen(original, out)


def test_other_escape_sequences_see_the_original_style():
    # Erasing fills with the current background: the style must be in force first, reset or not.
    original = ["\x1b[44mA\x1b[0m\x1b[2;1H\x1b[K\x1b[41m\x1b[3;1H\x1b[2K"]
    out = [SgrCoalescer().feed(data) for data in original]
    assert_same_screen(original, out)
    assert out[0].index("\x1b[0m") < out[0].index("\x1b[K")


_COLOURS = st.one_of(st.none(), st.sampled_from(["red", "bright_blue", "color(202)", "#ddE3ea", "#12161c", "#4fa3e0"]))
_STYLES = st.builds(lambda fg, bg, bold, dim, italic, underline, reverse, strike: Style(
    color=Color.parse(fg) if fg else None, bgcolor=Color.parse(bg) if bg else None, bold=bold, dim=dim,
    italic=italic, underline=underline, reverse=reverse, strike=strike),
    _COLOURS, _COLOURS, st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
_PIECES = st.one_of(
    st.tuples(_STYLES, st.text(alphabet="ab █░╱●—é ", min_size=1, max_size=6)).map(
        lambda pair: pair[0].render(pair[1], color_system=ColorSystem.TRUECOLOR)),
    st.builds(lambda y, x: f"\x1b[{y};{x}H", st.integers(1, ROWS - 1), st.integers(1, COLS - 8)),
    st.just("\r\n"), st.just("\n"), st.just("\r"), st.just("\x1b[0m"), st.just("\x1b[m"),
    st.just("\x1b[K"), st.just("\x1b[?25l"), st.just("\x1b[1;2m"), st.just("\x1b[22m"), st.just("\x1b[4:3m"),
    st.just("\x1b[58;5;1mu\x1b[0m"), st.just("\x1b[0;7mr\x1b[0m"),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_PIECES, max_size=14), min_size=1, max_size=4))
def test_any_stream_leaves_the_same_screen(writes):
    """Streams of rich's styled text, moves, line breaks and other sequences, in several writes,
    on a terminal tall enough that no line break scrolls (Textual's never do)."""
    writes = ["".join(pieces) for pieces in writes]
    coalescer = SgrCoalescer()
    out = [coalescer.feed(data) for data in writes]
    assert_same_screen(writes, out, rows=ROWS + "".join(writes).count("\n") + 1)
    assert sum(map(len, out)) <= sum(map(len, writes)) + 4 * len(writes)


async def test_the_dashboards_own_frames_leave_the_same_screen_in_about_half_the_bytes():
    """Every frame the dashboard draws (the first whole screen, then the changes of each new
    sample, a theme change), as Textual would write them to a true-colour terminal, and rewritten."""
    app, source = make_app(scripted.snapshots(30))
    truecolor = Console(color_system="truecolor", force_terminal=True, width=120)
    frames: list[str] = []
    original_display = app._display

    def record(screen, renderable) -> None:
        from textual._compositor import CompositorUpdate

        if isinstance(renderable, CompositorUpdate):
            frames.append(renderable.render_segments(truecolor))
        original_display(screen, renderable)

    app._display = record
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot, source)
        await pilot.press("t")
        await pilot.pause()
        await pilot.pause()
    assert len(frames) >= 5
    coalescer = SgrCoalescer()
    rewritten = [coalescer.feed(frame) for frame in frames]
    for n in range(1, len(frames) + 1):
        assert_same_screen(frames[:n], rewritten[:n], cols=120, rows=40)
    changes = slice(1, None)  # the frames after the first whole screen
    ratio = sum(map(len, rewritten[changes])) / sum(map(len, frames[changes]))
    assert ratio < 0.6, ratio


def test_each_write_ends_in_the_style_the_original_left():
    """Whatever else writes to the terminal between two writes sees what it would have seen."""
    coalescer = SgrCoalescer()
    frame = "\x1b[1;1H\x1b[1;38;2;1;2;3mX\x1b[0m"
    assert coalescer.feed(frame) == coalescer.feed(frame) == "\x1b[1;1H\x1b[1;38;2;1;2;3mX\x1b[0m"
    assert coalescer.feed("\x1b[44mA") == "\x1b[44mA"
    assert coalescer.feed("B\x1b[0m") == "B\x1b[0m"


SHOW_VARIANT = """
import sys
from infermon.testing import scripted
from infermon.live.derive import Deriver
from infermon.tui.app import InfermonApp
from infermon.tui.sources import LiveSource
from infermon.tui import driver
if sys.argv[1] == "as-textual-writes":
    from textual.drivers.linux_driver import LinuxDriver
    driver.QuietLinuxDriver.write = lambda self, data: LinuxDriver.write(self, data)
sampler = scripted.ScriptedSampler(scripted.snapshots(12), interval_s=0.2)
InfermonApp(LiveSource(sampler, Deriver()), target="pid 4242").run()
"""


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux, a real terminal emulator")
def test_a_real_terminal_shows_the_same_colours_with_and_without_the_rewrite(tmp_path):
    """The dashboard in two tmux panes, one writing as Textual does and one through the rewrite:
    once the scripted run has ended, tmux's record of every cell, colours included, is the same."""
    script = tmp_path / "show.py"
    script.write_text(SHOW_VARIANT)
    sessions = {variant: f"sgr-{variant}-{os.getpid()}" for variant in ("as-textual-writes", "rewritten")}
    for variant, session in sessions.items():
        subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                        f"env TERM=xterm-256color COLORTERM=truecolor {sys.executable} {script} {variant}"], check=True)

    def capture(session: str) -> str:
        shown = subprocess.run(["tmux", "capture-pane", "-e", "-p", "-t", session], capture_output=True, text=True).stdout
        return re.sub(r"up [^·]*·", "", shown)  # the uptime differs by when each started

    try:
        deadline, previous, settled = time.monotonic() + 90, {}, {}
        while time.monotonic() < deadline and len(settled) < 2:
            time.sleep(2)
            for variant, session in sessions.items():
                now = capture(session)
                if "Throughput" in now and now == previous.get(variant):
                    settled[variant] = now
                previous[variant] = now
        assert len(settled) == 2, "the dashboards did not settle within 90 s"
        assert "\x1b[" in settled["rewritten"]  # colours were captured
        assert settled["rewritten"] == settled["as-textual-writes"]
    finally:
        for session in sessions.values():
            subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


# Escape sequences, and a byte that is not UTF-8 as a command line read with surrogateescape gives it.
HOSTILE = "x\x1b[2J\x1b]52;c;cHduZWQ=\x07\x9b31m\x7fy\udcff"


async def test_the_watched_processs_text_never_drives_the_terminal():
    """A command line, a model name and an engine version carrying escape sequences (clear the
    screen, write the clipboard) reach the terminal as U+FFFD, on every panel, the header and the
    why screen."""
    import dataclasses

    from infermon.tui.app import InfermonApp
    from infermon.tui.sources import LiveSource
    from infermon.live.derive import Deriver

    def hostile(snapshot):
        processes = tuple(dataclasses.replace(p, cmdline=(HOSTILE, *p.cmdline[1:]), name=HOSTILE[:15])
                          for p in snapshot.tree.processes)
        engine = dataclasses.replace(snapshot.engine, model_name=HOSTILE, version=HOSTILE)
        return dataclasses.replace(snapshot, tree=dataclasses.replace(snapshot.tree, processes=processes),
                                   engine=engine)

    sampler = scripted.ScriptedSampler([hostile(s) for s in scripted.snapshots(6)])
    app = InfermonApp(LiveSource(sampler, Deriver()), target="pid 4242")
    console = Console(color_system="truecolor", force_terminal=True, width=200)
    frames: list[str] = []
    original_display = app._display

    def record(screen, renderable) -> None:
        from textual._compositor import CompositorUpdate

        if isinstance(renderable, CompositorUpdate):
            frames.append(renderable.render_segments(console))
        original_display(screen, renderable)

    app._display = record
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot, sampler)
        await pilot.press("w")
        await pilot.pause()
        await pilot.pause()
    shown = "".join(frames)
    assert "\ufffd" in shown  # the text is there, its control characters shown as such
    for sequence in ("\x1b[2J", "\x1b]52", "\x07", "\x9b", "\x7f", "\udcff", "\\udcff"):
        assert sequence not in shown, repr(sequence)


def test_the_once_report_shows_the_watched_processs_text_without_its_control_characters():
    import dataclasses
    import io

    from infermon.live.derive import Deriver
    from infermon.views.live_report import print_live_report

    deriver = Deriver()
    view = None
    for snapshot in scripted.snapshots(3):
        processes = tuple(dataclasses.replace(p, cmdline=(HOSTILE, *p.cmdline[1:])) for p in snapshot.tree.processes)
        view = deriver.update(dataclasses.replace(
            snapshot, tree=dataclasses.replace(snapshot.tree, processes=processes),
            engine=dataclasses.replace(snapshot.engine, model_name=HOSTILE, version=HOSTILE)))
    out = io.StringIO()
    print_live_report(view, Console(file=out, force_terminal=True, color_system="truecolor", width=160))
    shown = out.getvalue()
    assert "\ufffd" in shown and shown.count("\n") > 20 and "\x1b[" in shown  # lines and colours kept
    for sequence in ("\x1b[2J", "\x1b]52", "\x07", "\x9b", "\x7f", "\udcff", "\\udcff"):
        assert sequence not in shown, repr(sequence)
