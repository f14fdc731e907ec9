"""The one place that pushes events into views: throttled by time, batched, on its own thread.

A widget message per training step costs +45-50 % training time in a real kernel, so the
training thread only appends the event to a list; a publisher thread wakes at most
``1/interval`` times a second, coalesces progress events and hands each view one batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from nbhooks.events import EventBus, StepEvent
from nbhooks.views.base import View

log = logging.getLogger("nbhooks")


def coalesce(events: Iterable[Any]) -> list[Any]:
    """Drop every StepEvent that is followed by a later one; keep all other events in order."""
    events = list(events)
    last_step = max((i for i, e in enumerate(events) if isinstance(e, StepEvent)), default=-1)
    return [e for i, e in enumerate(events) if not isinstance(e, StepEvent) or i == last_step]


class Publisher:
    """Feeds ``views`` from ``bus``, at most one batch per ``interval`` seconds.

    Owns one daemon thread, started lazily with the first event and ended by :meth:`close`.
    ``clock`` is a seam for tests. :meth:`flush` delivers pending events at once (``wait()``
    and ``close()`` use it so the last state is never left unshown).
    """

    def __init__(
        self,
        bus: EventBus,
        views: Sequence[View] = (),
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.views: list[View] = list(views)
        self.interval = interval
        self._clock = clock
        self._pending: list[Any] = []
        self._cond = threading.Condition()
        self._deliver_lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last_flush = float("-inf")
        self.batches = 0  # how many batches went out (for tests and benchmarks)
        self._unsubscribe = bus.subscribe(self._on_event)

    def add(self, view: View) -> None:
        self.views.append(view)

    def _on_event(self, event: Any) -> None:
        with self._cond:
            if self._closed:
                return
            self._pending.append(event)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="nbhooks-publisher", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                wait = self._last_flush + self.interval - self._clock()
            if wait > 0:
                # Let more events pile up (close() wakes it at once).
                with self._cond:
                    self._cond.wait(wait)
                    if self._closed:
                        return
            self.flush()

    def flush(self) -> None:
        """Deliver everything pending now (any thread)."""
        with self._deliver_lock:
            with self._cond:
                batch, self._pending = self._pending, []
            if not batch:
                return
            self._last_flush = self._clock()
            batch = coalesce(batch)
            for view in list(self.views):
                try:
                    view.on_events(batch)
                except Exception:
                    log.exception("nbhooks: view %s failed to update", type(view).__name__)
            self.batches += 1

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until nothing is pending (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                if not self._pending and not self._deliver_lock.locked():
                    return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        """Deliver what is pending, stop the thread, close the views."""
        self._unsubscribe()  # first: nothing emitted after the last flush can be lost
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        for view in self.views:
            view.close()
