"""Steps/s, elapsed and ETA from step counts: pure arithmetic, throttled by time."""

from __future__ import annotations

import time
from collections.abc import Callable

from nbhooks.events import StepEvent


class ProgressMeter:
    """Turns step counts into :class:`StepEvent` s, at most one per ``interval`` seconds.

    The rate is an exponential moving average of the rate over each interval, so a pause or
    an evaluation shows as a dip and recovers instead of skewing the ETA for the whole run.
    """

    def __init__(self, interval: float = 0.1, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self.target: int | None = None
        self.step = 0
        self.rate: float | None = None
        self._t0 = clock()
        self._last_t = self._t0
        self._last_step = 0
        self._paused_at: float | None = None
        self._begin_t: float | None = None  # when the current session started
        self._begin_step = 0

    def begin(self, step: int, target: int | None) -> StepEvent:
        """A session started at ``step``; ``target`` is the step training stops at, if known."""
        now = self._clock()
        self.step, self.target = step, target
        self._last_t, self._last_step = now, step
        self._begin_t, self._begin_step = now, step
        return self._event(now)

    def final(self) -> StepEvent:
        """The closing event; a session shorter than ``interval`` gets its average rate."""
        now = self._clock()
        if self.rate is None and self._begin_t is not None and now > self._begin_t:
            self.rate = (self.step - self._begin_step) / (now - self._begin_t)
        return self._event(now)

    def moved(self, step: int) -> StepEvent:
        """The model is at ``step`` outside any session (its checkpoint read, a rewind): no
        target or rate until the next session begins."""
        self.step, self.target, self.rate = step, None, None
        return self.snapshot()

    def reset_clock(self) -> None:
        """Start counting elapsed time now (a new ``start()`` of the run)."""
        self._t0 = self._last_t = self._clock()
        self.rate = None

    def pause(self) -> None:
        self._paused_at = self._clock()

    def resume(self) -> None:
        """Exclude the paused time from the rate (elapsed keeps counting wall time)."""
        if self._paused_at is not None:
            self._last_t += self._clock() - self._paused_at
            self._paused_at = None

    def update(self, step: int) -> StepEvent | None:
        """Record ``step``; return an event when ``interval`` has passed since the last one."""
        self.step = step
        now = self._clock()
        dt = now - self._last_t
        if dt < self.interval:
            return None
        instant = (step - self._last_step) / dt
        self.rate = instant if self.rate is None else 0.7 * self.rate + 0.3 * instant
        self._last_t, self._last_step = now, step
        return self._event(now)

    def snapshot(self) -> StepEvent:
        """An event for the current step, now (unthrottled)."""
        return self._event(self._clock())

    @property
    def eta(self) -> float | None:
        if self.target is None or not self.rate:
            return None
        return max(self.target - self.step, 0) / self.rate

    def _event(self, now: float) -> StepEvent:
        return StepEvent(
            step=self.step,
            target=self.target,
            steps_per_sec=self.rate,
            elapsed=now - self._t0,
            eta=self.eta,
        )
