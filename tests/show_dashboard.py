"""Run the dashboard on scripted views, to look at it: python tests/show_dashboard.py [interval_s]."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import scripted  # noqa: E402

from infermon.tui.app import InfermonApp  # noqa: E402
from infermon.tui.sources import ListSource  # noqa: E402

if __name__ == "__main__":
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    app = InfermonApp(ListSource(scripted.views(600), interval_s=interval, hold_at_end=True), target="pid 4242")
    app.run()
    print(app.summary_text())
