"""Finding an engine's metrics endpoint among the ports its process tree listens on."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterable

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


def discover(ports: Iterable[int], framework: str, timeout_s: float = 1.0, budget_s: float | None = None,
             primary: Iterable[int] = ()) -> tuple[str | None, str]:
    """Find the engine's metrics endpoint: the first candidate that answers Prometheus text
    with a known engine prefix. Returns (url, what was found) or (None, why nothing was).

    Candidates are tried one at a time (one request each, ``timeout_s`` each) and the
    search stops after ``budget_s`` (default 5 × ``timeout_s``) so a tree with many
    silent ports (NCCL, gloo, ZMQ) cannot stall the start.
    """
    urls = candidate_urls(ports, framework, primary)
    budget = 5 * timeout_s if budget_s is None else budget_s
    stop_at = time.monotonic() + budget
    failures: list[str] = []
    for index, url in enumerate(urls):
        remaining = stop_at - time.monotonic()
        if remaining <= 0:
            left = ", ".join(urllib.parse.urlsplit(u).netloc.rsplit(":", 1)[-1] for u in urls[index:])
            failures.append(f"stopped after {budget:.1f} s (not tried: {left})")
            break
        port = urllib.parse.urlsplit(url).port
        got = fetch(url, min(timeout_s, remaining), DEFAULT_MAX_BYTES, expect="prometheus")
        if not got.ok:
            failures.append(f"{port} {got.why}")
            continue
        expo = parse_engine_text(got.body.decode("utf-8", errors="replace"))
        if expo.why:
            failures.append(f"{port} {expo.why}")
            continue
        kind = detect_engine(expo)
        if kind is None:
            failures.append(f"{port} Prometheus text without engine metrics")
            continue
        return url, f"{kind} metrics at {url}"
    if not urls:
        return None, "no ports to try"
    return None, "no engine /metrics found: " + "; ".join(failures)
