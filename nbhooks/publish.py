"""The one place that pushes events into views: throttled by time, batched, on its own thread.

A widget message per training step costs +45-50 % training time in a real kernel, so the
training thread only appends the event to a list; a publisher thread hands each view one
batch at a time, at most once per the view's ``interval`` (progress 10 times a second, a plot
whose every redraw costs the browser tens of milliseconds less often), coalescing progress
events.
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


class _Slot:
    """A view, the events it has not been given yet, and when it was last given some."""

    __slots__ = ("backlog", "last", "view")

    def __init__(self, view: View) -> None:
        self.view = view
        self.backlog: list[Any] = []
        self.last = float("-inf")


class Publisher:
    """Feeds ``views`` from ``bus``, each at most one batch per ``view.interval`` seconds
    (``interval`` for views that do not say).

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
        self.interval = interval
        self._clock = clock
        self._slots: list[_Slot] = [_Slot(v) for v in views]
        self._pending: list[Any] = []  # appended to by the emitting (training) thread
        self._cond = threading.Condition()
        self._deliver_lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.batches = 0  # how many batches went out (for tests and benchmarks)
        self._unsubscribe = bus.subscribe(self._on_event)

    @property
    def views(self) -> list[View]:
        return [slot.view for slot in self._slots]

    def add(self, view: View) -> None:
        with self._cond:
            self._slots = [*self._slots, _Slot(view)]

    def _interval(self, view: View) -> float:
        return self.interval if view.interval is None else view.interval

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

    def _distribute(self) -> None:
        """Move new events into every view's backlog (holding ``_cond``)."""
        if self._pending:
            for slot in self._slots:
                slot.backlog.extend(self._pending)
            self._pending = []

    def _next_due(self) -> float | None:
        """When the first view with a backlog may get it (holding ``_cond``)."""
        due = [s.last + self._interval(s.view) for s in self._slots if s.backlog]
        return min(due, default=None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                self._distribute()
                due = self._next_due()
                if due is None or due > self._clock():
                    # Let more events pile up (a new event or close() wakes it at once).
                    self._cond.wait(None if due is None else due - self._clock())
                    continue
            self._deliver(due_only=True)

    def flush(self) -> None:
        """Deliver everything pending to every view now (any thread)."""
        self._deliver(due_only=False)

    def _deliver(self, due_only: bool) -> None:
        with self._deliver_lock:
            now = self._clock()
            with self._cond:
                self._distribute()
                batches = []
                for slot in self._slots:
                    due = now >= slot.last + self._interval(slot.view)
                    if slot.backlog and (due or not due_only):
                        batches.append((slot, coalesce(slot.backlog)))
                        slot.backlog, slot.last = [], now
            for slot, batch in batches:
                try:
                    slot.view.on_events(batch)
                except Exception:
                    log.exception("nbhooks: view %s failed to update", type(slot.view).__name__)
            if batches:
                self.batches += 1

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until nothing is pending (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                idle = not self._pending and not any(s.backlog for s in self._slots)
                if idle and not self._deliver_lock.locked():
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
