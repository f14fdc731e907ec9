"""The run's own hook: pause and stop at step boundaries, progress from the training thread."""

from __future__ import annotations

from typing import Protocol

from nbhooks._tf import tf
from nbhooks.hooks._bases import SessionRunHook
from nbhooks.hooks._graph import refuse_another_models_checkpoint, require_global_step

_tf = tf()


class StepListener(Protocol):
    """What the hook reports to (the run's control); every call is on the training thread."""

    def session_started(self, step: int) -> None: ...

    def step_done(self, step: int) -> bool:
        """Called after every step; may block while paused. True means: stop now."""
        ...

    def session_ended(self, step: int, input_ended: bool) -> None:
        """The session ends at ``step``; ``input_ended``: because the input ran out."""
        ...


class ControlHook(SessionRunHook):
    """Counts steps and asks the listener after each one whether to stop.

    Cheap on purpose: it adds no fetch to the training step. The global step is read when the
    session starts and ends; in between each ``session.run`` of ``estimator.train`` is one
    step of the train op, which increments the global step by one. A step whose
    ``after_run`` never came ended the session by running out of input (TF ends training
    quietly on ``OutOfRangeError``; any other error skips ``end()``). Before the session
    restores ``model_dir``'s checkpoint, one of another model is refused."""

    def __init__(self, listener: StepListener, model_dir: str | None = None) -> None:
        self._listener = listener
        self._model_dir = model_dir
        self._global_step = None
        self._step = 0
        self._in_step = False

    def begin(self) -> None:
        self._global_step = require_global_step("TrainingRun")
        refuse_another_models_checkpoint(self._model_dir)

    def after_create_session(self, session, coord) -> None:
        self._step = int(session.run(self._global_step))
        self._in_step = False
        self._listener.session_started(self._step)

    def before_run(self, run_context) -> None:
        self._in_step = True

    def after_run(self, run_context, run_values) -> None:
        self._in_step = False
        self._step += 1
        if self._listener.step_done(self._step):
            run_context.request_stop()

    def end(self, session) -> None:
        self._step = int(session.run(self._global_step))
        self._listener.session_ended(self._step, input_ended=self._in_step)
