"""Where the dashboard's views come from: a live sampler, or a list (scripted or replayed).

``next_view`` is called from the sampling thread, never from the event loop:
it may block on probes for up to an interval.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

from infermon.probes.live import LiveModel, LiveView


class ViewSource(Protocol):
    interval_s: float
    kind: str  # "live", "replay" or "scripted"

    def next_view(self) -> LiveView | None:
        """The next view, or None when the source has no more (a replay's end)."""

    def close(self) -> None: ...


class LiveSource:
    """One sampler tick per view."""

    kind = "live"

    def __init__(self, sampler, live: LiveModel) -> None:
        self.sampler = sampler
        self.live = live
        self.interval_s = sampler.config.interval_s

    def next_view(self) -> LiveView | None:
        return self.live.update(self.sampler.tick())

    def close(self) -> None:
        self.sampler.close()


class ListSource:
    """Views from a list, ``interval_s`` apart (tests, and replay's frames).

    ``hold_at_end``: after the last view, wait until closed instead of ending
    (the screen then stays as a live one would between samples).
    """

    def __init__(self, views: Iterable[LiveView], interval_s: float = 0.0, kind: str = "scripted",
                 hold_at_end: bool = False) -> None:
        import threading

        self._views: Iterator[LiveView] = iter(views)
        self.interval_s = interval_s
        self.kind = kind
        self.hold_at_end = hold_at_end
        self.exhausted = threading.Event()
        self._closed = threading.Event()

    def next_view(self) -> LiveView | None:
        view = next(self._views, None)
        if view is None:
            self.exhausted.set()
            if self.hold_at_end:
                self._closed.wait()
        return view

    def close(self) -> None:
        self._closed.set()
