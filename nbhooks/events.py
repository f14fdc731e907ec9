"""Plain event records that flow from the training thread to whatever listens.

Hooks emit them on an :class:`EventBus`; models (history, stores) and views subscribe. Nothing
here knows TensorFlow or widgets.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

log = logging.getLogger("nbhooks")

RunState = Literal["idle", "running", "paused", "stopping", "finished", "stopped", "failed"]


@dataclass(frozen=True, slots=True)
class StepEvent:
    """Training progress at a step boundary (coalesced: only the latest matters)."""

    step: int
    target: int | None
    steps_per_sec: float | None
    elapsed: float
    eta: float | None
    wall_time: float = field(default_factory=time.time)


#: The states a run ends in.
FINAL_STATES = frozenset({"finished", "stopped", "failed"})


@dataclass(frozen=True, slots=True)
class RunStateEvent:
    """The run changed state. ``reason`` says why it stopped; ``error`` is set on failure."""

    state: RunState
    step: int | None = None
    reason: str | None = None
    error: BaseException | None = None
    traceback: str | None = None
    wall_time: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class EvalEvent:
    """One evaluation: every metric the model's eval_metric_ops gave (plus loss)."""

    name: str
    step: int
    metrics: Mapping[str, float]
    wall_time: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class EvalPreparedEvent:
    """An evaluation built before training: the metrics its results will give, in order (or,
    when it could not be built, none and the ``error``, one line)."""

    name: str
    metrics: tuple[str, ...]
    error: str | None = None
    wall_time: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class FinalOpsEvent:
    """A session ended: the rows of final-op values it fetched (or a failure note)."""

    run_id: int
    mode: str
    step: int | None
    rows: tuple[Mapping[str, Any], ...]
    failed: bool = False
    message: str | None = None
    wall_time: float = field(default_factory=time.time)


#: What happened to the input pipeline's checkpoints; "off": the pipeline cannot be held (the
#: reason in ``message``); "warning": something a person should know (e.g. a large save).
PipelineAction = Literal["requested", "saved", "restored", "deleted", "failed", "off", "warning"]


@dataclass(frozen=True, slots=True)
class PipelineEvent:
    """An input-pipeline checkpoint action: requested, saved, restored, deleted or failed."""

    action: PipelineAction
    step: int | None = None
    path: str | None = None
    message: str | None = None
    automatic: bool = False  #: an automatic save or rotation, not something a person asked for
    wall_time: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class StopRequestEvent:
    """A hook asked training to stop (e.g. early stopping) where no run announces it."""

    step: int
    reason: str
    wall_time: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class BranchEvent:
    """The run's history started a new branch: values after ``step`` are recorded again (a
    rewind, or a ``train()`` that resumed before the last recorded step)."""

    step: int
    wall_time: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class KnobEvent:
    """A knob took a new value, from the training step after ``step`` on."""

    knob: str
    value: float
    step: int
    wall_time: float = field(default_factory=time.time)


Event = (
    StepEvent
    | RunStateEvent
    | EvalEvent
    | EvalPreparedEvent
    | FinalOpsEvent
    | PipelineEvent
    | StopRequestEvent
    | KnobEvent
    | BranchEvent
)
Listener = Callable[[Event], None]


class EventBus:
    """Thread-safe fan-out of events to listeners.

    ``emit`` is called from the training thread and must stay cheap: listeners should only
    record the event (the :class:`~nbhooks.publish.Publisher` does the widget work on its own
    thread). A listener that raises is logged and kept; it never breaks training.
    """

    def __init__(self) -> None:
        self._listeners: tuple[Listener, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add ``listener``; returns a function that removes it again."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not listener)

        return unsubscribe

    def emit(self, event: Event) -> None:
        for listener in self._listeners:  # a tuple snapshot: no lock on the hot path
            try:
                listener(event)
            except Exception:
                log.exception("nbhooks: an event listener failed on %r", type(event).__name__)


class Run(Protocol):
    """What a hook may use of the run it is attached to (:class:`~nbhooks.run.TrainingRun`)."""

    events: EventBus

    def stop(self, reason: str | None = None) -> None: ...


class RunAttached:
    """The one way a hook adopts a run's event bus.

    :class:`~nbhooks.run.TrainingRun` calls :meth:`attach` once for each hook it is given: the
    hook then emits on ``run.events`` and :meth:`on_run_state` sees the run's state changes.
    Attaching to another run first detaches from the earlier one.
    """

    events: EventBus
    run: Run | None = None
    _unsubscribe: Callable[[], None] | None = None

    def attach(self, run: Run) -> None:
        self.detach()
        self.run = run
        self.events = run.events
        self._unsubscribe = run.events.subscribe(self._on_bus_event)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = None

    def _on_bus_event(self, event: Event) -> None:
        if isinstance(event, RunStateEvent):
            self.on_run_state(event)

    def on_run_state(self, event: RunStateEvent) -> None:
        """The attached run changed state (override; on the thread that changed it)."""
