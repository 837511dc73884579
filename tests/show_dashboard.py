"""Run the dashboard on scripted snapshots, to look at it: python tests/show_dashboard.py [interval_s]."""

import sys

from infermon.testing import scripted

from infermon.live.derive import Deriver
from infermon.tui.app import InfermonApp
from infermon.tui.sources import LiveSource

if __name__ == "__main__":
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    sampler = scripted.ScriptedSampler(scripted.snapshots(600), interval_s=interval)
    app = InfermonApp(LiveSource(sampler, Deriver()), target="pid 4242")
    app.run()
    print(app.summary_text())
