"""The run's own hook: pause and stop at step boundaries, progress from the training thread."""

from __future__ import annotations

from typing import Protocol

from nbhooks._tf import tf

_tf = tf()


class StepListener(Protocol):
    """What the hook reports to (the run's control); every call is on the training thread."""

    def session_started(self, step: int) -> None: ...

    def step_done(self, step: int) -> bool:
        """Called after every step; may block while paused. True means: stop now."""
        ...

    def session_ended(self, step: int) -> None: ...


class ControlHook(_tf.estimator.SessionRunHook):
    """Fetches the global step with each step (as ``StopAtStepHook`` does) and asks the
    listener whether to stop. Cheap: one scalar fetch and a method call per step."""

    def __init__(self, listener: StepListener) -> None:
        self._listener = listener
        self._global_step = None
        self._step = 0

    def begin(self) -> None:
        self._global_step = _tf.compat.v1.train.get_global_step()
        if self._global_step is None:
            raise RuntimeError(
                "the model_fn created no global step: call tf.compat.v1.train.get_global_step() "
                "and pass it to optimizer.minimize(..., global_step=...)"
            )

    def after_create_session(self, session, coord) -> None:
        self._step = int(session.run(self._global_step))
        self._listener.session_started(self._step)

    def before_run(self, run_context):
        return _tf.estimator.SessionRunArgs(self._global_step)

    def after_run(self, run_context, run_values) -> None:
        # The value read in the same run as the train op is the one before its increment.
        self._step = int(run_values.results) + 1
        if self._listener.step_done(self._step):
            run_context.request_stop()

    def end(self, session) -> None:
        self._step = int(session.run(self._global_step))
        self._listener.session_ended(self._step)
