"""Run the dashboard on scripted snapshots, to look at it: python tests/show_dashboard.py [interval_s]."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import scripted  # noqa: E402

from infermon.live.derive import Deriver  # noqa: E402
from infermon.tui.app import InfermonApp  # noqa: E402
from infermon.tui.sources import LiveSource  # noqa: E402

if __name__ == "__main__":
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    sampler = scripted.ScriptedSampler(scripted.snapshots(600), interval_s=interval)
    app = InfermonApp(LiveSource(sampler, Deriver()), target="pid 4242")
    app.run()
    print(app.summary_text())
