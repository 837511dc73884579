"""One truth: every view shows the same numbers with the same source words, from one derivation.

The same scripted snapshots drive the dashboard, ``--once`` (text and JSON), a recording and its
replay, the exporter and the exit summary; each is checked against ``view.figures``.
"""

import asyncio
import io

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from infermon.testing import scripted
from infermon.live.derive import Deriver
from infermon.live.figure import SOURCES
from infermon.live.summary import format_summary
from infermon.live.view import FIGURE_INFO, Figures
from infermon.tui.app import InfermonApp
from infermon.tui.sources import LiveSource
from infermon.tui.widgets import find_row
from infermon.views.exporter import ViewCollector, metric_name
from infermon.views.fmt import source_text, value_text
from infermon.views.live_json import live_to_json
from infermon.views.live_report import SECTIONS, print_live_report
from infermon.views.recording import RecordingWriter, read_recording

# Dashboard line id → the figure it shows.
DASHBOARD_LINES = {
    "gen": "generation_tokens_per_s", "prompt": "prompt_tokens_per_s", "peak-bw": "peak_bandwidth_bytes_per_s",
    "peak-flops": "peak_flops", "ridge": "ops_per_byte", "ceiling": "decode_ceiling_tokens_per_s",
    "critical": "critical_batch", "bw-modeled": "bandwidth_modeled_bytes_per_s",
    "bw-measured": "bandwidth_measured_bytes_per_s", "flops": "flops_modeled_per_s", "intensity": "operating_intensity",
    "mbu": "mbu", "mfu": "mfu", "kv-bytes": "kv_bytes_per_token", "kv-capacity": "kv_capacity_tokens",
    "kv-pool": "kv_pool_bytes", "kv-usage": "kv_usage", "kv-headroom": "kv_headroom_tokens",
    "kv-fits": "sequences_fit", "rss": "tree_rss_bytes", "prefix": "prefix_cache_hit_rate",
}


@pytest.fixture(scope="module")
def views():
    deriver = Deriver()
    return [deriver.update(s) for s in scripted.snapshots(12)]


def test_the_figures_table_documents_every_figure():
    assert list(FIGURE_INFO) == [f for f in Figures.__dataclass_fields__]


def test_every_figure_has_a_source_and_a_reason_when_missing(views):
    for view in views:
        for name, fig in view.figures.items():
            assert fig.source in SOURCES, name
            assert fig.unit == FIGURE_INFO[name][0], name
            assert (fig.value is None) == (fig.source == "n/a") == (fig.why is not None), (name, fig)


def test_json_text_report_and_exporter_agree(views):
    view = views[-1]
    data = live_to_json(view)
    report = io.StringIO()
    print_live_report(view, console=Console(file=report, width=240, no_color=True))
    text = report.getvalue()
    registry = CollectorRegistry(auto_describe=False)
    collector = ViewCollector()
    registry.register(collector)
    collector.update(view)
    exported = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            exported.setdefault(sample.name, []).append((sample.labels, sample.value))
    reported = {name for _, rows in SECTIONS for _, name in rows}
    for name, fig in view.figures.items():
        assert data["figures"][name] == {"value": fig.value, "unit": fig.unit, "source": fig.source, "why": fig.why,
                                         "note": fig.note, "stale": fig.stale}
        if name in reported:
            line = next(line for line in text.splitlines() if f" {value_text(fig)} " in f" {line} "
                        and source_text(fig) in line)
            assert line, name
        metric = "infermon_" + metric_name(name)
        if fig.value is None:
            assert all(labels["source"] != fig.source for labels, _ in exported.get(metric, [])), name
        else:
            values = {labels["source"]: value for labels, value in exported[metric]}
            assert values[fig.source] == pytest.approx(fig.value), name


def test_recording_replays_the_same_figures(views, tmp_path):
    path = tmp_path / "run.jsonl"
    with open(path, "w") as handle:
        writer = RecordingWriter(handle)
        for view in views:
            writer.write(view)
    assert read_recording(str(path)).views == tuple(views)


def test_exit_summary_is_the_view_summary(views):
    summary = views[-1].summary
    text = format_summary(summary)
    assert f"Tokens generated: {summary.generation_tokens:,.0f}" in text
    # Tokens are the counters' own increase over the watched span: exact, not rate × time.
    first = scripted.engine(0).generation_tokens_total
    last = scripted.engine(11).generation_tokens_total
    assert summary.generation_tokens == last - first


async def test_the_dashboard_shows_the_same_values_and_sources(views):
    sampler = scripted.ScriptedSampler(scripted.snapshots(12))
    app = InfermonApp(LiveSource(sampler, Deriver()), target="pid 4242")
    async with app.run_test(size=(200, 50)) as pilot:
        for _ in range(200):
            if sampler.exhausted.is_set():
                break
            await asyncio.sleep(0.01)
        for _ in range(5):
            await pilot.pause()
        view = app.latest
        assert view == views[-1]  # the same derivation, whichever thread ran it
        for line_id, name in DASHBOARD_LINES.items():
            fig = getattr(view.figures, name)
            shown = find_row(app, line_id)
            assert value_text(fig) in shown, (line_id, shown)
            word = fig.source if fig.value is not None else (fig.why or "n/a")[:20]
            assert word in shown, (line_id, shown)


def test_a_figure_kept_from_the_last_tick_is_the_one_built_afresh():
    """The derivation hands out last tick's Figure object where a figure reads as it did: every
    figure of every tick must equal what a derivation that keeps nothing builds."""
    import dataclasses

    from infermon.live.derive import Deriver
    from infermon.testing import scripted

    class Forgetful(dict):
        def get(self, key, default=None):
            return default

    snapshots = scripted.snapshots_then_exit(10)
    keeping, fresh = Deriver(), Deriver()
    kept_any = False
    previous = None
    for snapshot in snapshots:
        fresh._last_figures = Forgetful()
        a, b = keeping.update(snapshot), fresh.update(snapshot)
        assert dataclasses.asdict(a.figures) == dataclasses.asdict(b.figures)
        if previous is not None:
            kept_any |= any(getattr(a.figures, f.name) is getattr(previous.figures, f.name)
                            for f in dataclasses.fields(a.figures))
        previous = a
    assert kept_any  # the steady scripted server repeats figures: the cache was used
