"""The engine probe: one scrape of an engine's metrics per tick, within one time budget; never raises.

One tick = one GET of the metrics (plus the engine's extra reads, e.g.
llama.cpp's ``/slots``; plus, once per probe, an info endpoint for the model
name and version), all within one ``timeout_s`` budget. ``source_time`` is the
monotonic time the metrics answer arrived: rates are counter deltas over it.
"""

from __future__ import annotations

import json
import time
import urllib.parse

from infermon.probes.engines.mapping import SLOW_FIELDS, apply_info, parse_engine_text, sample_from_exposition
from infermon.probes.engines.registry import ENGINES, engine
from infermon.probes.http import DEFAULT_MAX_BYTES, Connections
from infermon.probes.snapshot import EngineSample, evolve

# Latency histograms are most of a scrape's lines and the parser costs ~15–70 µs a line: they (and
# the KV capacity) are parsed every HISTOGRAM_EVERY scrapes (percentiles want a longer window anyway).
HISTOGRAM_EVERY = 5
_EXTRA_BODY_LIMIT = 1_000_000  # a few hundred llama.cpp slots with their params fit in well under 1 MB
INFO_TRIES = 10  # reads of the info endpoint (/version, /props, …) before giving up on it


def metrics_url(url: str, kind: str | None = None) -> str:
    """``http://host:port`` alone means the engine's metrics path (``/metrics`` unless it says otherwise)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url  # fetch() will say what is wrong with it, on the first sample
    if parts.path in ("", "/"):
        module = engine(kind)
        path = module.METRICS_PATH if module is not None else "/metrics"
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    return url


def base_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def failure_hints(kind: str | None, status: int | None) -> tuple[str, ...]:
    module = engine(kind)
    if status in (404, 501) and module is not None:
        return (module.MISSING_METRICS_HINT,)
    return ()


def get_json(connections: Connections, url: str, timeout_s: float) -> tuple[object, int | None, str | None]:
    """(payload, HTTP status, why it failed): one bounded GET of a JSON endpoint."""
    got = connections.get(url, timeout_s, _EXTRA_BODY_LIMIT, expect="json")
    if not got.ok:
        return None, got.status, got.why or "failed"
    try:
        return json.loads(got.body), got.status, None
    except (ValueError, UnicodeDecodeError):
        return None, got.status, "answered with something other than JSON"


class EngineProbe:
    """Scrapes one engine's metrics per ``sample()``; never raises.

    ``kind`` (vllm, sglang, tgi, llamacpp, tensorrt-llm) is what the process tree suggests; the
    metric names decide when they name an engine. All requests of one tick share ``timeout_s``.
    """

    def __init__(self, url: str, kind: str | None = None, timeout_s: float = 1.0,
                 max_bytes: int = DEFAULT_MAX_BYTES, clock=time.monotonic) -> None:
        self.url = metrics_url(url, kind)
        self.kind = kind
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._info: dict | None = None
        self._info_tries = 0
        self._scrapes = 0
        self._latency: dict[str, object] = {}
        self._latency_why: dict[str, str] = {}
        self._http = Connections()

    def close(self) -> None:
        """Close the kept-alive connection to the engine."""
        self._http.close()

    def prime(self) -> None:
        """Ask for the metrics now; the next :meth:`sample` reads the answer (see
        :meth:`Connections.prime`). Never raises."""
        try:
            self._http.prime(self.url, self.timeout_s)
        except Exception:  # belt and braces: whatever state the connection is in, sample() starts afresh
            self._http.close()

    def sample(self) -> EngineSample:
        try:
            return self._sample()
        except Exception as exc:  # belt and braces: a probe never raises to its caller
            return EngineSample(kind=self.kind or "unknown", url=self.url,
                                why={"engine": f"internal error: {type(exc).__name__}: {exc}"})

    def _sample(self) -> EngineSample:
        deadline = self._clock() + self.timeout_s
        got = self._http.get(self.url, self.timeout_s, self.max_bytes, expect="prometheus")
        arrived = self._clock()
        if got.ok and got.answered_s is not None:
            # The counters are as old as the answer, not as the last byte read (a long body, or
            # this process busy with the tick's other probes while the scrape thread waits).
            arrived -= max(0.0, got.elapsed_s - got.answered_s)
        if not got.ok:
            return EngineSample(kind=self.kind or "unknown", url=self.url, why={"engine": got.why or "failed"},
                                hints=failure_hints(self.kind, got.status))
        with_histograms = self._scrapes % HISTOGRAM_EVERY == 0
        self._scrapes += 1
        expo = parse_engine_text(got.body.decode("utf-8", errors="replace"), histograms=with_histograms)
        sample = sample_from_exposition(expo, kind=self.kind, url=self.url, histograms=with_histograms)
        if "engine" in sample.why:
            return sample
        sample = evolve(sample, source_time=arrived)
        sample = self._carry_latency(sample, with_histograms)
        module = ENGINES[sample.kind]
        if module.EXTRA_READS:
            sample = module.apply_extra_reads(sample, self._extra_reads(module.EXTRA_READS, deadline))
        if module.INFO_PATH and (sample.model_name is None or sample.version is None):
            sample = self._add_info(sample, module.INFO_PATH, deadline)
        return sample

    def _carry_latency(self, sample: EngineSample, parsed: bool) -> EngineSample:
        """Slow fields (histograms, KV capacity) parsed this scrape are kept for the next ones;
        otherwise the kept ones are used."""
        if parsed:
            self._latency = {name: getattr(sample, name) for name in SLOW_FIELDS}
            self._latency_why = {k: v for k, v in sample.why.items() if k in SLOW_FIELDS}
            return sample
        why = {k: v for k, v in sample.why.items() if k not in SLOW_FIELDS}
        why.update(self._latency_why)
        kept = {k: v for k, v in self._latency.items() if getattr(sample, k) is None}
        return evolve(sample, why=why, **kept)

    def _extra_reads(self, paths: tuple[str, ...], deadline: float) -> dict:
        answers = {}
        for path in paths:
            remaining = deadline - self._clock()
            if remaining <= 0.01:
                answers[path] = (None, None, f"no time left in this tick for {path}")
            else:
                answers[path] = get_json(self._http, base_url(self.url) + path, remaining)
        return answers

    def _add_info(self, sample: EngineSample, path: str, deadline: float) -> EngineSample:
        """The model's name and the engine's version from ``path`` (vLLM's ``/version``, …)."""
        # Fetched until one definite answer, then kept: model and version do not change. A busy
        # server's timeouts are not answers: up to 10 tries (3 once left a loaded vLLM unversioned).
        if self._info is None and self._info_tries < INFO_TRIES and deadline - self._clock() > 0.01:
            self._info_tries += 1
            payload, status, failed = get_json(self._http, base_url(self.url) + path, deadline - self._clock())
            if failed is None:
                self._info = payload if isinstance(payload, dict) else {}
            elif status is not None:
                self._info = {}
        if self._info:
            sample = apply_info(sample, self._info)
        why = dict(sample.why)
        if sample.model_name is None:
            why["model_name"] = f"neither the metrics nor {path} name the model"
        if sample.version is None:
            why["version"] = f"neither the metrics nor {path} give a version"
        return evolve(sample, why=why)
