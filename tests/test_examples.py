"""The example Prometheus config and Grafana dashboard only use metrics the exporter serves."""

import json
import re
from pathlib import Path

from infermon.testing import scripted
from prometheus_client import CollectorRegistry, generate_latest

from infermon.views.exporter import ViewCollector

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def served_names() -> set[str]:
    registry = CollectorRegistry(auto_describe=False)
    collector = ViewCollector()
    registry.register(collector)
    collector.update(scripted.views(4)[-1])
    text = generate_latest(registry).decode()
    return set(re.findall(r"^(infermon_\w+)", text, re.MULTILINE))


def test_grafana_dashboard_queries_real_metrics():
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text())
    names = served_names()
    used = {m for panel in dashboard["panels"] for t in panel["targets"] for m in re.findall(r"infermon_\w+", t["expr"])}
    assert used and used <= names, used - names


def test_prometheus_example_scrapes_the_default_port():
    assert "127.0.0.1:9464" in (EXAMPLES / "prometheus.yml").read_text()
