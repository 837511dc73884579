"""Prometheus metrics from infermon's figures: a collector over the latest view (prometheus_client)."""

from __future__ import annotations

import threading

from prometheus_client.core import GaugeMetricFamily, CounterMetricFamily
from prometheus_client.registry import Collector

from infermon.live.derive import LiveView

PREFIX = "infermon_"


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
        snap = view.snapshot
        pid = str(snap.tree.root_pid) if snap.tree else ""
        model = view.model.name if view.model else ""
        device = view.hardware.name if view.hardware else ""
        engine = snap.engine.kind if snap.engine else ""
        labels = ["pid", "model", "device", "engine"]
        values = [pid, model, device, engine]

        def gauge(name: str, help_text: str, value, extra: dict | None = None):
            extra = extra or {}
            family = GaugeMetricFamily(PREFIX + name, help_text, labels=labels + list(extra))
            if value is not None:
                family.add_metric(values + list(extra.values()), float(value))
            return family

        a, rates = view.analysis, view.rates
        yield gauge("up", "1 while the watched process is alive", 1 if snap.tree and snap.tree.alive else 0)
        yield gauge("generation_tokens_per_second", "Generated tokens/s (engine counters or agent)",
                    rates.generation_tokens_per_s)
        yield gauge("prompt_tokens_per_second", "Prompt (prefill) tokens/s", rates.prompt_tokens_per_s)
        bandwidth = GaugeMetricFamily(PREFIX + "achieved_bandwidth_bytes_per_second",
                                      "Achieved memory bandwidth, modeled from tokens/s or measured by GPM",
                                      labels=labels + ["source"])
        for source, value in (("modeled", a.achieved_bandwidth_modeled_bytes_per_s),
                              ("measured", a.achieved_bandwidth_measured_bytes_per_s)):
            if value is not None:
                bandwidth.add_metric(values + [source], value)
        yield bandwidth
        yield gauge("achieved_flops_per_second", "Achieved FLOP/s, modeled", a.achieved_flops_per_s)
        yield gauge("mbu", "Model bandwidth utilisation, modeled (0-1)", a.mbu)
        yield gauge("mbu_measured", "Bandwidth utilisation measured by GPM (0-1)", a.mbu_measured)
        yield gauge("mfu", "Model FLOP utilisation, modeled (0-1)", a.mfu)
        yield gauge("operating_intensity_flops_per_byte", "Achieved FLOP/s ÷ bytes/s", a.operating_intensity)
        yield gauge("ops_per_byte_ridge", "Ridge point: peak FLOP/s ÷ peak bandwidth", a.ops_per_byte)
        yield gauge("decode_ceiling_tokens_per_second", "Modeled decode ceiling at the current batch and context",
                    a.decode_ceiling_tokens_per_s)
        yield gauge("critical_batch", "Batch where decode turns compute-bound", a.critical_batch)
        yield gauge("kv_cache_headroom_tokens", "KV-cache tokens still free", a.kv_headroom_tokens)
        engine_sample = snap.engine
        yield gauge("kv_cache_usage_ratio", "KV-cache usage reported by the engine (0-1)",
                    engine_sample.kv_usage if engine_sample else None)
        yield gauge("requests_running", "Requests in the running batch", engine_sample.batch if engine_sample else None)
        yield gauge("requests_waiting", "Requests waiting", engine_sample.requests_waiting if engine_sample else None)
        bound = GaugeMetricFamily(PREFIX + "bound", "1 for the roof that bounds the process now (memory or compute)",
                                  labels=labels + ["bound"])
        if a.bound:
            for name in ("memory", "compute"):
                bound.add_metric(values + [name], 1.0 if a.bound == name else 0.0)
        yield bound
        hw = view.hardware
        yield gauge("peak_bandwidth_bytes_per_second", "Device peak memory bandwidth", hw.bandwidth_bytes_per_s if hw else None)
        yield gauge("peak_flops", "Device dense peak FLOP/s", hw.peak_flops if hw else None)
        memory = GaugeMetricFamily(PREFIX + "gpu_memory_used_bytes", "GPU memory used (NVML)",
                                   labels=labels + ["gpu", "scope"])
        for d in snap.devices:
            if d.kind != "gpu":
                continue
            if d.memory_used_bytes is not None:
                memory.add_metric(values + [str(d.index), "device"], d.memory_used_bytes)
            if d.memory_tree_bytes is not None:
                memory.add_metric(values + [str(d.index), "process_tree"], d.memory_tree_bytes)
        yield memory
