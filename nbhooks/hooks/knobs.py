"""KnobHook: applies knob values set from the notebook at training step boundaries.

In ``begin()`` it finds the graph's knobs (:func:`nbhooks.knobs.knob`) and builds one
placeholder and assign op per knob. A value set while training runs is assigned with its own
small ``session.run`` before the next step; nothing is fed or fetched on the other steps (the
cheaper of the two ways measured in ``bench/bench_knobs.py``: feeding every step costs more).
Every value set so far is assigned again when a session starts, so it holds across
``train()`` calls (knobs are not in checkpoints: see :mod:`nbhooks.knobs`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from nbhooks._tf import tf
from nbhooks.events import EventBus, KnobEvent, RunAttached
from nbhooks.hooks._bases import SessionRunHook
from nbhooks.hooks._graph import require_global_step
from nbhooks.knobs import KnobLog, KnobSpec, describe, knobs_in_graph

_tf = tf()


class KnobHook(RunAttached, SessionRunHook):
    """Holds the knob values a person set and assigns them at step boundaries.

    :meth:`set` may be called from any thread; changes are recorded in :attr:`log` (step,
    knob, value, wall_time) and emitted as :class:`~nbhooks.events.KnobEvent`.
    """

    def __init__(self, log: KnobLog | None = None) -> None:
        self.log = log if log is not None else KnobLog()
        self.events = EventBus()
        #: The knobs of the training graph (None until known: found before training by
        #: :meth:`declare`, or by ``begin()``).
        self.specs: dict[str, KnobSpec] | None = None
        self.values: dict[str, float] = {}  #: every value set (what each session starts with)
        self._pending: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ops: dict[str, tuple[Any, Any]] = {}
        self._global_step: Any = None
        self._step = 0

    def declare(self, specs: dict[str, KnobSpec]) -> None:
        """The knobs the training graph will have (found before training starts)."""
        with self._lock:
            if self.specs is None:
                self.specs = dict(specs)

    def current(self) -> dict[str, float]:
        """Each knob's value now: the last one set, else the model_fn's."""
        with self._lock:
            specs = self.specs or {}
            return {n: self.values.get(n, s.default) for n, s in specs.items()}

    def set(self, name: str, value: Any) -> float:
        """Ask for ``name`` to be ``value`` from the next training step on; returns the value.

        Raises before anything changes: KeyError for an unknown knob, TypeError for a
        non-number, ValueError outside the knob's ``min``/``max``.
        """
        with self._lock:
            if self.specs is None:
                raise RuntimeError(
                    "the knobs of this model are not known yet: they are found when its "
                    "training graph is first built"
                )
            spec = self.specs.get(name) if isinstance(name, str) else None
            if spec is None:
                raise KeyError(
                    f"no knob named {name!r}; this model's knobs: {describe(self.specs)}"
                )
            number = spec.check(value)
            if self.values.get(name, spec.default) == number and name not in self._pending:
                return number
            self.values[name] = number
            self._pending[name] = number
            return number

    # -- SessionRunHook (the training thread) ---------------------------------------------
    def begin(self) -> None:
        knobs = knobs_in_graph()
        self._global_step = require_global_step("KnobHook") if knobs else None
        self._ops = {}
        for each in knobs:
            placeholder = _tf.compat.v1.placeholder(_tf.float32, shape=(), name="knob_value")
            self._ops[each.spec.name] = (placeholder, each.variable.assign(placeholder))
        with self._lock:
            self.specs = {k.spec.name: k.spec for k in knobs}
            unknown = set(self.values) - set(self.specs)
        if unknown:
            raise ValueError(
                f"knob(s) {sorted(unknown)} were set but the training graph has no such knob; "
                f"its knobs: {describe(self.specs)}"
            )

    def after_create_session(self, session: Any, coord: Any) -> None:
        if not self._ops:
            return
        self._step = int(session.run(self._global_step))
        with self._lock:
            values, fresh = dict(self.values), dict(self._pending)
            self._pending.clear()
        self._assign(session, values, announce=fresh)

    def before_run(self, run_context: Any) -> None:
        if self._pending:  # a dict's truth is read atomically; the lock is taken only then
            with self._lock:
                fresh = dict(self._pending)
                self._pending.clear()
            self._assign(run_context.session, fresh, announce=fresh)

    def after_run(self, run_context: Any, run_values: Any) -> None:
        self._step += 1

    def _assign(self, session: Any, values: dict[str, float], announce: dict[str, float]) -> None:
        if not values:
            return
        ops = [self._ops[n][1] for n in values]
        session.run(ops, feed_dict={self._ops[n][0]: v for n, v in values.items()})
        now = time.time()
        for name, value in announce.items():
            self.log.record(self._step, name, value, now)
            self.events.emit(KnobEvent(name, value, self._step, now))
