"""Finding an engine's metrics endpoint among the ports its process tree listens on."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from infermon.probes.engines.mapping import parse_engine_text
from infermon.probes.engines.registry import ENGINES, detect_engine, engine
from infermon.probes.http import DEFAULT_MAX_BYTES, fetch


def candidate_urls(ports: Iterable[int], framework: str, primary: Iterable[int] = ()) -> list[str]:
    """Metrics URLs to try, in order: the framework's default ports among the listening ones, then
    the ``primary`` process's ports (the API server's), then the other listening ports, each
    group ascending. With no ports known, the default ports (all engines' when the framework
    names none). The path is the framework's metrics path."""
    listening = list(dict.fromkeys(int(p) for p in ports))
    module = engine(framework)
    preferred = module.DEFAULT_PORTS if module is not None else tuple(
        dict.fromkeys(p for m in ENGINES.values() for p in m.DEFAULT_PORTS))
    if listening:
        first = [p for p in preferred if p in listening]
        main = sorted(p for p in dict.fromkeys(int(p) for p in primary) if p in listening and p not in first)
        rest = sorted(p for p in listening if p not in first and p not in main)
        ordered = first + main + rest
    else:
        ordered = list(preferred)
    path = module.METRICS_PATH if module is not None else "/metrics"
    return [f"http://127.0.0.1:{port}{path}" for port in ordered]


@dataclass(frozen=True)
class Discovery:
    """What :func:`discover` found: the metrics URL, or None and why; ``slow``: a likely engine
    port (the API server's, or the framework's default) did not answer in time, so it is worth
    asking again soon rather than concluding there is no engine."""

    url: str | None
    why: str
    slow: bool = False


def discover(ports: Iterable[int], framework: str, timeout_s: float = 1.0, budget_s: float | None = None,
             primary: Iterable[int] = ()) -> Discovery:
    """Find the engine's metrics endpoint: the first candidate that answers Prometheus text
    with a known engine prefix.

    Candidates are tried one at a time (one request each) and the search stops after ``budget_s``
    (default 5 × ``timeout_s``) so a tree with many silent ports (NCCL, gloo, ZMQ) cannot stall the
    start. A silent port gets ``timeout_s``; a likely engine port (the framework's default ports
    and the ``primary`` ones, tried first) gets what is left of the budget: a busy vLLM API server
    that answers /metrics in 6 ms at rest took up to 2 s under load on a 2-core host, and giving up
    on it after ``timeout_s`` left the whole run without an engine.
    """
    urls = candidate_urls(ports, framework, primary)
    likely = _likely_ports(ports, framework, primary)
    budget = 5 * timeout_s if budget_s is None else budget_s
    stop_at = time.monotonic() + budget
    failures: list[str] = []
    slow = False
    for index, url in enumerate(urls):
        remaining = stop_at - time.monotonic()
        if remaining <= 0:
            left = ", ".join(urllib.parse.urlsplit(u).netloc.rsplit(":", 1)[-1] for u in urls[index:])
            failures.append(f"stopped after {budget:.1f} s (not tried: {left})")
            break
        port = urllib.parse.urlsplit(url).port
        got = fetch(url, remaining if port in likely else min(timeout_s, remaining), DEFAULT_MAX_BYTES,
                    expect="prometheus")
        if not got.ok:
            failures.append(f"{port} {got.why}")
            slow = slow or (port in likely and got.timed_out)
            continue
        expo = parse_engine_text(got.body.decode("utf-8", errors="replace"))
        if expo.why:
            failures.append(f"{port} {expo.why}")
            continue
        kind = detect_engine(expo)
        if kind is None:
            failures.append(f"{port} Prometheus text without engine metrics")
            continue
        return Discovery(url, f"{kind} metrics at {url}")
    if not urls:
        return Discovery(None, "no ports to try")
    return Discovery(None, "no engine /metrics found: " + "; ".join(failures), slow)


def _likely_ports(ports: Iterable[int], framework: str, primary: Iterable[int]) -> set[int]:
    """The ports :func:`candidate_urls` puts first: the framework's default ports (all engines'
    when it names none) among the listening ones (all of them when none are known), and the
    ``primary`` ones."""
    listening = {int(p) for p in ports}
    module = engine(framework)
    preferred = set(module.DEFAULT_PORTS) if module is not None else {
        p for m in ENGINES.values() for p in m.DEFAULT_PORTS}
    defaults = preferred & listening if listening else preferred
    return defaults | ({int(p) for p in primary} & listening)
