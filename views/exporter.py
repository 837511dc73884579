"""Prometheus metrics from infermon's figures: a collector over the latest view (prometheus_client).

Every figure of :class:`~infermon.live.view.Figures` is a gauge ``infermon_<name>`` with the labels
``pid``, ``model``, ``device``, ``engine`` and ``source`` (measured, engine-reported, modeled,
datasheet, given). A figure that is n/a has no sample: Prometheus' own way of saying "absent".
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from infermon.live.view import FIGURE_INFO, LiveView

PREFIX = "infermon_"

# Figures whose metric names predate the figures table (dashboards use them), and figures that share
# one metric told apart by the ``source`` label.
METRIC_NAMES = {
    "bandwidth_modeled_bytes_per_s": "achieved_bandwidth_bytes_per_second",
    "bandwidth_measured_bytes_per_s": "achieved_bandwidth_bytes_per_second",
    "bandwidth_engine_bytes_per_s": "achieved_bandwidth_bytes_per_second",
    "flops_modeled_per_s": "achieved_flops_per_second",
    "flops_engine_per_s": "achieved_flops_per_second",
    "operating_intensity": "operating_intensity_flops_per_byte",
    "ops_per_byte": "ops_per_byte_ridge",
    "kv_headroom_tokens": "kv_cache_headroom_tokens",
    "kv_usage": "kv_cache_usage_ratio",
    "kv_capacity_tokens": "kv_cache_capacity_tokens",
}
SHARED_HELP = {
    "achieved_bandwidth_bytes_per_second": "Achieved memory bandwidth (source: modeled from tokens/s, measured by "
                                           "GPM, or the engine's own estimate)",
    "achieved_flops_per_second": "Achieved FLOP/s (source: modeled from tokens/s, or the engine's own estimate)",
}


def metric_name(figure_name: str) -> str:
    """``generation_tokens_per_s`` → ``generation_tokens_per_second``; ``ttft_p50_s`` → ``ttft_p50_seconds``;
    fractions get ``_ratio`` (Prometheus base units)."""
    if figure_name in METRIC_NAMES:
        return METRIC_NAMES[figure_name]
    name = figure_name
    if name.endswith("_per_s"):
        name = name[: -len("_per_s")] + "_per_second"
    elif name.endswith("_s"):
        name = name[: -len("_s")] + "_seconds"
    elif FIGURE_INFO[figure_name][0] == "fraction" and name not in ("mbu", "mbu_measured", "mfu"):
        name += "_ratio"
    return name


class ViewCollector(Collector):
    """Serves the figures of the newest :class:`LiveView` (set from the sampling loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._view: LiveView | None = None
        self.samples_total = 0

    def update(self, view: LiveView) -> None:
        with self._lock:
            self._view = view
            self.samples_total += 1

    def collect(self):
        with self._lock:
            view, samples = self._view, self.samples_total
        yield CounterMetricFamily(PREFIX + "samples", "Samples infermon has taken of the process", value=samples)
        if view is None:
            return
        labels = ["pid", "model", "device", "engine"]
        values = [str(view.tree.root_pid) if view.tree else "", view.model.name if view.model else "",
                  view.hardware.name if view.hardware else "", view.engine.kind if view.engine else ""]
        families: OrderedDict[str, GaugeMetricFamily] = OrderedDict()
        for name, fig in view.figures.items():
            metric = metric_name(name)
            if metric not in families:
                unit, meaning = FIGURE_INFO[name]
                help_text = SHARED_HELP.get(metric) or f"{meaning[0].upper()}{meaning[1:]} ({unit})"
                families[metric] = GaugeMetricFamily(PREFIX + metric, help_text, labels=labels + ["source"])
            if fig.value is not None:
                families[metric].add_metric(values + [fig.source], fig.value)
        yield GaugeMetricFamily(PREFIX + "up", "1 while the watched process is alive", value=1 if view.alive else 0)
        yield from families.values()
        bound = GaugeMetricFamily(PREFIX + "bound", "1 for the roof that bounds the process now (memory or compute)",
                                  labels=labels + ["bound"])
        if view.verdict.bound:
            for name in ("memory", "compute"):
                bound.add_metric(values + [name], 1.0 if view.verdict.bound == name else 0.0)
        yield bound
        lever = GaugeMetricFamily(PREFIX + "lever_tokens_per_second",
                                  "Modeled decode tokens/s if this lever were pulled (source=modeled), or with the "
                                  "measured efficiency applied (source=modeled-at-measured-efficiency)",
                                  labels=labels + ["lever", "ceiling", "source"])
        if view.levers is not None:
            for item in (view.levers.baseline, *view.levers.levers):
                ceiling = item.ceiling or ""
                if item.tokens_per_s is not None:
                    lever.add_metric(values + [item.key, ceiling, "modeled"], item.tokens_per_s)
                if item.expected_tokens_per_s is not None:
                    lever.add_metric(values + [item.key, ceiling, "modeled-at-measured-efficiency"],
                                     item.expected_tokens_per_s)
        yield lever
        memory = GaugeMetricFamily(PREFIX + "gpu_memory_used_bytes", "GPU memory used (NVML)",
                                   labels=labels + ["gpu", "scope"])
        for d in view.devices:
            if d.kind != "gpu":
                continue
            if d.memory_used_bytes is not None:
                memory.add_metric(values + [str(d.index), "device"], d.memory_used_bytes)
            if d.memory_tree_bytes is not None:
                memory.add_metric(values + [str(d.index), "process_tree"], d.memory_tree_bytes)
        yield memory
