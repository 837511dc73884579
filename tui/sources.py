"""Where the dashboard's views come from: a live sampler, or a list (scripted or replayed).

``next_view`` is called from the sampling thread, never from the event loop:
it may block on probes for up to an interval.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

from infermon.live.derive import Deriver
from infermon.live.view import LiveView


class ViewSource(Protocol):
    interval_s: float
    kind: str  # "live", "replay" or "scripted"

    def next_view(self) -> LiveView | None:
        """The next view, or None when the source has no more (a replay's end)."""

    def reset_peaks(self) -> bool:
        """Ask for peaks and the run summary to restart; False where they are recorded, not live."""

    def interrupt(self) -> None:
        """Wake a ``next_view`` that is waiting, so the sampling thread can end."""

    def close(self) -> None: ...


class LiveSource:
    """One sampler tick per view, derived in the sampling thread."""

    kind = "live"

    def __init__(self, sampler, deriver: Deriver) -> None:
        self.sampler = sampler
        self.deriver = deriver
        self.interval_s = sampler.config.interval_s

    def next_view(self) -> LiveView | None:
        return self.deriver.update(self.sampler.tick())

    def reset_peaks(self) -> bool:
        self.deriver.request_reset()
        return True

    def interrupt(self) -> None:
        """A tick is bounded by the interval: nothing to wake."""

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

    def reset_peaks(self) -> bool:
        return False

    def interrupt(self) -> None:
        self._closed.set()

    def close(self) -> None:
        self._closed.set()


class ReplaySource:
    """A recording played back at its own pace: pause, speed 0.5×–8×, seek.

    ``next_view`` sleeps the recorded interval ÷ speed (woken early by seek, pause or close) and
    waits at the end for a seek backwards. ``generation`` changes on every seek so the dashboard
    knows to restart its history.
    """

    kind = "replay"
    SPEEDS = (0.5, 1.0, 2.0, 4.0, 8.0)

    def __init__(self, views, speed: float = 1.0) -> None:
        import threading

        self.views = list(views)
        self.index = 0
        self.speed = speed if speed in self.SPEEDS else 1.0
        self.paused = False
        self.generation = 0
        self.interval_s = 0.0
        self._closed = False
        self._changed = threading.Condition()

    @property
    def at_end(self) -> bool:
        return self.index >= len(self.views)

    def position(self) -> str:
        return f"{min(self.index, len(self.views))}/{len(self.views)} at {self.speed:g}×"

    def next_view(self) -> LiveView | None:
        with self._changed:
            while True:
                if self._closed:
                    return None
                if self.paused or self.at_end:
                    self._changed.wait()
                    continue
                if self.index > 0:
                    gap = self.views[self.index].monotonic - self.views[self.index - 1].monotonic
                    generation = self.generation
                    if self._changed.wait(max(0.0, min(gap, 60.0)) / self.speed):
                        if generation != self.generation or self.paused or self._closed:
                            continue
                view = self.views[self.index]
                self.index += 1
                return view

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def toggle_pause(self) -> bool:
        with self._changed:
            self.paused = not self.paused
            self._changed.notify_all()
            return self.paused

    def faster(self) -> float:
        with self._changed:
            index = self.SPEEDS.index(self.speed)
            self.speed = self.SPEEDS[min(index + 1, len(self.SPEEDS) - 1)]
            self._changed.notify_all()
            return self.speed

    def slower(self) -> float:
        with self._changed:
            index = self.SPEEDS.index(self.speed)
            self.speed = self.SPEEDS[max(index - 1, 0)]
            self._changed.notify_all()
            return self.speed

    def seek(self, samples: int | None = None, to: int | None = None) -> int:
        """Move by ``samples`` (or ``to`` an index); the next view comes at once."""
        with self._changed:
            target = to if to is not None else self.index - 1 + (samples or 0)
            self.index = max(0, min(len(self.views) - 1, target))
            self.generation += 1
            self._changed.notify_all()
            return self.index

    def reset_peaks(self) -> bool:
        return False

    def interrupt(self) -> None:
        self.close()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
