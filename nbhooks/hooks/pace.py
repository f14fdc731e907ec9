"""``PaceHook``: hold training to at most N steps per second, so a class can watch it learn.

A small model on 2 CPU cores trains 300 steps a second: a demo is over before anyone can press
Pause. The hook waits after each step until the step's slot at the pace has come; time spent
elsewhere (an evaluation, a pause) is not made up afterwards with a burst of fast steps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from nbhooks._tf import tf
from nbhooks.events import RunAttached, RunStateEvent
from nbhooks.hooks._bases import SessionRunHook

_tf = tf()


def check_pace(pace: Any) -> float | None:
    """``pace`` as steps per second (> 0), or None for no limit."""
    if pace is None:
        return None
    if isinstance(pace, bool) or not isinstance(pace, int | float) or not pace > 0:
        raise ValueError(
            f"pace must be a number of training steps per second > 0 (e.g. 25), or None for "
            f"no limit; got {pace!r}"
        )
    return float(pace)


class PaceHook(RunAttached, SessionRunHook):
    """At most ``steps_per_sec`` training steps per second (None: no limit).

    ``steps_per_sec`` can be changed at any time, from any thread; the wait after a step ends
    at once when the run is asked to stop. ``clock`` and ``wait`` are seams for tests.
    """

    def __init__(
        self,
        steps_per_sec: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], Any] | None = None,
    ) -> None:
        self.steps_per_sec = check_pace(steps_per_sec)
        self._clock = clock
        self._stop = threading.Event()
        self._wait = wait if wait is not None else self._stop.wait
        self._due: float | None = None

    @property
    def steps_per_sec(self) -> float | None:
        return self._pace

    @steps_per_sec.setter
    def steps_per_sec(self, value: float | None) -> None:
        self._pace = check_pace(value)
        self._due = None  # the new pace counts from the next step

    def on_run_state(self, event: RunStateEvent) -> None:
        if event.state == "running":
            self._stop.clear()
        elif event.state in ("stopping", "finished", "stopped", "failed"):
            self._stop.set()  # a stop does not wait for the next slot

    def after_create_session(self, session: Any, coord: Any) -> None:
        self._due = None

    def after_run(self, run_context: Any, run_values: Any) -> None:
        pace = self._pace
        if pace is None:
            return
        now = self._clock()
        interval = 1.0 / pace
        due = self._due
        # The first step, or behind by more than a step (an evaluation, a pause): start over.
        due = now + interval if due is None or due + interval < now else due + interval
        self._due = due
        if due > now and not self._stop.is_set():
            self._wait(due - now)
