"""TrainingRun: ``estimator.train`` in a worker thread that a person can pause, resume and stop.

Headless (no widgets here): the run emits events on ``run.events``; views subscribe through a
:class:`~nbhooks.publish.Publisher`. How a run shows itself (a panel in a notebook, lines on the
console in a script) is its :class:`Face`, made by :attr:`TrainingRun.face_factory`, which
:mod:`nbhooks.notebook` sets: the run never imports what displays it.
"""

from __future__ import annotations

import atexit
import os
import threading
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol

from nbhooks import NbhooksWarning, training_threads
from nbhooks._tf import tf
from nbhooks.checks import (
    check_estimator,
    check_hooks,
    check_input_fn,
    check_model_dir,
    check_steps,
)
from nbhooks.dirlock import ModelDirLock
from nbhooks.errors import describe_error
from nbhooks.events import FINAL_STATES, EventBus, RunState, RunStateEvent
from nbhooks.meter import ProgressMeter
from nbhooks.rewind import checkpoint_step

#: model_dir -> the run that owns it: one training thread per model_dir.
_OWNERS: dict[str, weakref.ref[TrainingRun]] = {}
_OWNERS_LOCK = threading.Lock()


class Closable(Protocol):
    def close(self) -> None: ...


class Face(Closable, Protocol):
    """How a run shows itself to a person (see :mod:`nbhooks.notebook`)."""

    def panel(self) -> Any:
        """The controls-and-progress widget (made once)."""
        ...

    def report_to_console(self, interval: float = 2.0) -> None: ...

    def after_wait(self) -> None:
        """``wait()`` returned: show the final state before the caller goes on."""
        ...

    def mimebundle(self, **kwargs: Any) -> dict[str, Any] | None: ...


class BusUser(Protocol):
    """A hook that emits on, or listens to, the run's event bus: :class:`TrainingRun` calls
    ``attach(run)`` once, when the hook is given to it."""

    def attach(self, run: TrainingRun) -> None: ...


class TrainingRun:
    """Run ``estimator.train(input_fn, steps=..., max_steps=..., hooks=...)`` in the background.

    ``start()`` returns at once. ``pause()`` holds the loop at the next step boundary (the
    session stays open), ``resume()`` continues, ``stop()`` ends it cleanly at the next step
    (final checkpoint written, ``end()`` hooks run). ``wait()`` blocks and re-raises the
    training error. A run can be started again after it ends; it continues from the model's
    checkpoint. A new run on the same ``model_dir``, or made by the same notebook cell run
    again, replaces the earlier one: it is stopped (with a warning) and its widgets closed.

    ``report``: ``"auto"`` reports to the console when not in a notebook kernel, ``"console"``
    always, ``None`` never (display the run in a notebook for widgets).
    """

    #: Training reads its ``tf.data`` input with TensorFlow's synchronous op, on the thread
    #: that runs the step (:class:`~nbhooks.hooks.input_read.SynchronousInputHook`); False
    #: keeps the Estimator's asynchronous read.
    read_input_synchronously: ClassVar[bool] = True

    #: Makes each new run's :class:`Face` (``(run, report) -> Face``), before its hooks attach;
    #: :mod:`nbhooks.notebook` sets it. None: headless, nothing is shown.
    face_factory: ClassVar[Callable[[TrainingRun, str | None], Face] | None] = None

    def __init__(
        self,
        estimator: Any,
        input_fn: Callable[..., Any],
        steps: int | None = None,
        max_steps: int | None = None,
        hooks: Iterable[Any] = (),
        *,
        report: str | None = "auto",
    ) -> None:
        hooks = tuple(hooks)
        check_estimator(estimator)
        check_input_fn(input_fn)
        steps, max_steps = check_steps(steps, max_steps)
        check_hooks(hooks)
        from nbhooks.hooks.pipeline import check_input_savers

        check_input_savers(hooks)
        _warn_if_early_stopping_reads_elsewhere(hooks)
        _warn_if_no_checkpoints(estimator)
        if report not in ("auto", "console", None):
            raise ValueError(f"report must be 'auto', 'console' or None, got {report!r}")
        self.model_dir = check_model_dir(estimator.model_dir)
        self.estimator = estimator
        self.input_fn = input_fn
        self.steps, self.max_steps = steps, max_steps
        self.hooks: tuple[Any, ...] = hooks
        self.events = EventBus()
        self.meter = ProgressMeter()
        self._lock = threading.RLock()
        self._resume = threading.Condition(self._lock)
        self._state: RunState = "idle"
        self._done = threading.Event()
        self._done.set()
        self._stop_requested = False
        self._pause_requested = False
        self.reason: str | None = None
        self.error: BaseException | None = None
        self.error_traceback: str | None = None
        self._owned: list[Closable] = []  # closed by close(), newest first
        #: held while training: one training process per model_dir (see nbhooks.dirlock)
        self.dir_lock = ModelDirLock(self.model_dir)
        #: close() was called: the run neither trains nor shows itself again.
        self.closed = False
        self.reread_step()  # a model_dir with a checkpoint: its step, not 0
        # Before the hooks attach: an earlier run (same model_dir, or made by an earlier
        # execution of the same notebook cell) must not share them.
        _claim(self)
        factory = TrainingRun.face_factory
        self.face: Face | None = None if factory is None else self.own(factory(self, report))
        for hook in hooks:
            if hasattr(hook, "attach"):
                hook.attach(self)

    # -- state ----------------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        """idle, running, paused, stopping, finished, stopped or failed."""
        return self._state

    @property
    def running(self) -> bool:
        """True while a training thread is alive (running, paused or stopping)."""
        return not self._done.is_set()

    @property
    def global_step(self) -> int:
        return self.meter.step

    @property
    def steps_per_sec(self) -> float | None:
        return self.meter.rate

    @property
    def eta(self) -> float | None:
        """Seconds left until the target step, at the current rate (None when unknown)."""
        return self.meter.eta

    def reread_step(self) -> None:
        """Take the model's step from model_dir's checkpoint again (idle: the step the next
        ``train()`` starts from, after a rewind or a failure) and show it if it moved."""
        step = checkpoint_step(self.model_dir) or 0  # none: the model_fn's initial values
        if step != self.meter.step:
            self.events.emit(self.meter.moved(step))

    def _set_state(self, state: RunState, **info: Any) -> None:
        with self._lock:
            self._state = state
        self.events.emit(RunStateEvent(state, step=self.meter.step, **info))

    # -- control (any thread) -------------------------------------------------------------
    def start(self, steps: int | None = None, max_steps: int | None = None) -> None:
        """Start training in the background; returns at once. ``steps``/``max_steps`` override
        the ones given at construction for this start."""
        refuse_if_closed(self.closed, "run", _CLOSED_BY)
        if steps is not None or max_steps is not None:
            steps, max_steps = check_steps(steps, max_steps)
        else:
            steps, max_steps = self.steps, self.max_steps
        if self.running:
            raise RuntimeError(
                f"this run is already {self._state}: stop() it (or wait() for it) before "
                "starting it again"
            )
        _claim(self)  # may stop (and wait for) another run on this model_dir: not under the lock
        with self._lock:
            if self.running:
                raise RuntimeError(f"this run is already {self._state}")
            self.dir_lock.acquire("train")  # refused if another process trains here
            try:
                self.reread_step()  # where this train() starts: the checkpoint's step
            except BaseException:
                self.dir_lock.release()
                raise
            self._stop_requested = self._pause_requested = False
            self.reason, self.error, self.error_traceback = None, None, None
            self._done.clear()
            self.meter.reset_clock()
            self._set_state("running")
            try:
                # A thread that trained before, if one waits: see nbhooks.training_threads.
                training_threads.start(
                    lambda: self._work(steps, max_steps), "nbhooks-training", self._done.set
                )
            except BaseException as exc:
                self.dir_lock.release()
                self._done.set()
                self.error, self._state = exc, "failed"
                raise

    def pause(self) -> None:
        """Hold training at the next step boundary (the session stays open)."""
        with self._lock:
            if self._state in ("paused", "stopping"):
                return
            if self._state != "running":
                raise RuntimeError(f"cannot pause: the run is {self._state}, not running")
            self._pause_requested = True

    def resume(self) -> None:
        """Continue a paused run."""
        with self._lock:
            if self._state == "running" and not self._pause_requested:
                return
            if self._state not in ("paused", "running"):
                raise RuntimeError(f"cannot resume: the run is {self._state}, not paused")
            self._pause_requested = False
            self._resume.notify_all()

    def stop(self, reason: str | None = None) -> None:
        """Stop cleanly at the next step boundary; a no-op when nothing runs."""
        with self._lock:
            if not self.running or self._stop_requested or self._state in FINAL_STATES:
                return
            self._stop_requested = True
            self.reason = reason or "stopped by request"
            self._resume.notify_all()
            self._set_state("stopping", reason=self.reason)

    def wait(self, timeout: float | None = None) -> RunState:
        """Block until training ends; re-raise its error. Returns the final state.

        Raises ``TimeoutError`` when ``timeout`` seconds pass first (training goes on).
        Interrupted (the notebook's interrupt button, Ctrl-C), it stops training as
        :meth:`stop` does, waits for that clean stop and raises ``KeyboardInterrupt``.
        """
        done, interrupted = wait_or_stop(self._done, timeout, self.stop)
        if not done:
            raise TimeoutError(
                f"training is still {self._state} after {timeout} s (step {self.global_step})"
            )
        if self.face is not None:
            self.face.after_wait()  # e.g. the last console lines, before a script goes on
        if self.error is not None:
            raise self.error
        if interrupted:
            raise KeyboardInterrupt(
                f"training {self._state} at step {self.global_step:,}: wait() was interrupted "
                "(train() again goes on from there)"
            )
        return self._state

    def close(self, timeout: float | None = 60) -> None:
        """Stop training, wait for it, and close the widgets, reporters and TensorFlow summary
        writers (a thread each) this run owns. A closed run neither trains nor shows again."""
        self.closed = True
        self.stop(reason="closed")
        if self._done.wait(timeout):
            from nbhooks._tf_internals import release_summary_writers

            release_summary_writers(self.model_dir)
        while self._owned:
            self._owned.pop().close()
        with _OWNERS_LOCK:
            if _OWNERS.get(self.model_dir, lambda: None)() is self:
                del _OWNERS[self.model_dir]

    # -- the training thread --------------------------------------------------------------
    def _work(self, steps: int | None, max_steps: int | None) -> None:
        from nbhooks.hooks.control import ControlHook
        from nbhooks.hooks.group import grouped
        from nbhooks.hooks.input_read import SynchronousInputHook

        own = [ControlHook(self, self.estimator.model_dir)]
        if self.read_input_synchronously:
            own.append(SynchronousInputHook())

        self._target = {"steps": steps, "max_steps": max_steps}
        self._session_started = False
        self._input_ended = False
        try:
            try:
                self.estimator.train(
                    self.input_fn,
                    hooks=grouped([*own, *self.hooks]),
                    steps=steps,
                    max_steps=max_steps,
                )
            finally:
                self.dir_lock.release()  # before wait() returns: a start() right after may lock
        except BaseException as exc:  # re-raised by wait()
            self.error = exc
            self.error_traceback = "".join(traceback.format_exception(exc))
            self._finish(
                "failed",
                reason=describe_error(exc),
                error=exc,
                traceback=self.error_traceback,
            )
        else:
            self._finish(None, max_steps=max_steps)

    def _finish(self, state: RunState | None, max_steps: int | None = None, **info: Any) -> None:
        """Publish the final state (``None``: stopped or finished, decided here under the
        lock, so a stop() racing the end cannot be lost)."""
        self.events.emit(self.meter.final())
        with self._lock:
            if state is None:
                state = "stopped" if self._stop_requested else "finished"
                if state == "finished":
                    self.reason = self._finished_reason(max_steps)
                info["reason"] = self.reason
            self._state = state
        # Outside the lock: listeners may do real work (serving queued pipeline requests)
        # and must not block stop()/pause()/start() on the main thread meanwhile. wait() is
        # released once the thread is a spare again (training_threads.start's ``then``).
        self.events.emit(RunStateEvent(state, step=self.meter.step, **info))

    def _finished_reason(self, max_steps: int | None) -> str:
        step, target = self.meter.step, self.meter.target
        if not self._session_started:
            return f"nothing to train: the model is already at max_steps={max_steps}"
        short = target is not None and step < target
        if self._input_ended:
            return f"the input ran out at step {step:,}" + (
                f", before step {target:,} (to train all the steps, repeat the input: "
                f"Dataset.repeat(), or num_epochs=None)"
                if short
                else ""
            )
        if short:
            return f"a hook asked to stop at step {step:,}, before step {target:,}"
        return f"reached step {step:,}"

    # StepListener: called by ControlHook on the training thread.
    def session_started(self, step: int) -> None:
        steps, max_steps = self._target["steps"], self._target["max_steps"]
        target = step + steps if steps is not None else max_steps
        self._session_started = True
        self.events.emit(self.meter.begin(step, target))

    def step_done(self, step: int) -> bool:
        event = self.meter.update(step)
        if event is not None:
            self.events.emit(event)
        if self._pause_requested:
            self._hold()
        return self._stop_requested

    def _hold(self) -> None:
        with self._lock:  # a stop() cannot slip between the check and the "paused" state
            if self._stop_requested or not self._pause_requested:
                return
            self.meter.pause()
            self.events.emit(self.meter.snapshot())
            self._set_state("paused")
            while self._pause_requested and not self._stop_requested:
                self._resume.wait()
            if not self._stop_requested:
                self._set_state("running")
            self.meter.resume()

    def session_ended(self, step: int, input_ended: bool) -> None:
        self.meter.step = step
        self._input_ended = input_ended

    # -- what owns what, and how it shows -----------------------------------------------------
    def own(self, closable: Any) -> Any:
        """Close ``closable`` (anything with ``close()``) when this run is closed or replaced;
        returns it."""
        self._owned.append(closable)
        return closable

    def panel(self) -> Any:
        """The controls-and-progress widget of this run (made once, by its face)."""
        return self._face().panel()

    def report_to_console(self, interval: float = 2.0) -> None:
        """Print progress and state changes to stderr (scripts, or a notebook without widgets)."""
        self._face().report_to_console(interval)

    def _face(self) -> Face:
        refuse_if_closed(self.closed, "run", _CLOSED_BY)
        if self.face is None:
            raise RuntimeError(
                "this run has no face to show itself with: import nbhooks (nh.TrainingRun), "
                "which sets TrainingRun.face_factory"
            )
        return self.face

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        return None if self.face is None or self.closed else self.face.mimebundle(**kwargs)

    def __repr__(self) -> str:
        closed = " (closed)" if self.closed else ""
        return (
            f"<TrainingRun {self._state}{closed} step={self.global_step} "
            f"model_dir={self.model_dir!r}>"
        )


def refuse_if_closed(closed: bool, what: str, by: str = "close()") -> None:
    """Training or showing a closed run (or dashboard, comparison) again: its widgets and
    threads are gone, and nothing would close the new ones. ``by``: what closes one."""
    if closed:
        raise RuntimeError(
            f"this {what} was closed (by {by}): it neither trains nor shows itself again; "
            "make a new one to go on"
        )


#: What closes a run: its owner, or a newer run that takes its model_dir (see ``retire``).
_CLOSED_BY = "close(), or a newer run on its model_dir or from its notebook cell"


#: The reason of a run stopped because waiting for it was interrupted.
INTERRUPTED = "interrupted (KeyboardInterrupt)"


def wait_or_stop(
    done: threading.Event, timeout: float | None, stop: Callable[[str], object]
) -> tuple[bool, bool]:
    """``done.wait(timeout)`` for training to end; returns (done, interrupted). On a
    ``KeyboardInterrupt`` (the notebook's interrupt button, Ctrl-C) it calls
    ``stop(INTERRUPTED)`` (a clean stop at the next step boundary, the final checkpoint saved)
    and waits for ``done``; interrupted again, it stops waiting at once (training still
    stops)."""
    try:
        return done.wait(timeout), False
    except KeyboardInterrupt:
        stop(INTERRUPTED)
    try:
        done.wait()
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            "interrupted again: no longer waiting; training stops at its next step boundary"
        ) from None
    return True, True


# -- checks of the estimator and hooks a run is given -------------------------------------
def _warn_if_no_checkpoints(estimator: Any) -> None:
    """Without checkpoints every ``train()`` starts again from the model_fn's initial values."""
    config = estimator.config
    if config.save_checkpoints_steps is None and config.save_checkpoints_secs is None:
        warnings.warn(
            "the estimator's RunConfig saves no checkpoints (save_checkpoints_steps and "
            "save_checkpoints_secs are both None): every train() starts again from step 0, and "
            "nothing is kept in model_dir. Set one, e.g. RunConfig(save_checkpoints_steps=100)",
            NbhooksWarning,
            stacklevel=4,
        )


def _warn_if_early_stopping_reads_elsewhere(hooks: tuple[Any, ...]) -> None:
    """TF's ``stop_if_*`` hooks read evaluations from ``estimator.eval_dir()`` unless given
    ``eval_dir``; the run's in-memory evaluations write ``estimator.eval_dir(name)``."""
    from nbhooks import _tf_internals as tfi

    in_memory = tf().estimator.experimental.InMemoryEvaluatorHook
    evaluators = [h for h in hooks if isinstance(h, in_memory)]
    if not evaluators:
        return
    written = {os.path.realpath(tfi.eval_dir(h)): tfi.eval_name(h) for h in evaluators}
    for hook in hooks:
        read = tfi.early_stopping_dir(hook)
        if read is None or os.path.realpath(read) in written:
            continue
        name = next(iter(written.values()))
        warnings.warn(
            f"TensorFlow's early-stopping hook ({type(hook).__name__}) reads evaluations from "
            f"{read!r}, where none of this run's evaluations write (they write "
            f"{', '.join(map(repr, sorted(written)))}): it would never stop training, or decide "
            f"on old results. Make it with eval_dir=estimator.eval_dir({name!r}), or use "
            f"nh.EarlyStopping (early_stopping= of a Dashboard)",
            NbhooksWarning,
            stacklevel=4,
        )


# -- one training thread per model_dir -------------------------------------------------------
def _claim(run: TrainingRun) -> None:
    """Make ``run`` the owner of its model_dir, retiring the run that owned it before."""
    with _OWNERS_LOCK:
        ref = _OWNERS.get(run.model_dir)
        earlier = ref() if ref is not None else None
        _OWNERS[run.model_dir] = weakref.ref(run)
    if earlier is not None and earlier is not run:
        retire(earlier, why="one training thread per model_dir")


def retire(earlier: TrainingRun, why: str) -> None:
    """Close ``earlier``, which a new run replaces: stopped (with a warning) if it still trains,
    its widgets and threads closed. Raises if it does not stop within 60 s."""
    if earlier.running:
        warnings.warn(
            f"stopping the earlier run that was still training in {earlier.model_dir} "
            f"(step {earlier.global_step}): {why}",
            NbhooksWarning,
            stacklevel=4,
        )
    earlier.close()
    if earlier.running:
        with _OWNERS_LOCK:  # still its model_dir's owner: never two threads on it
            _OWNERS[earlier.model_dir] = weakref.ref(earlier)
        raise RuntimeError(
            f"the earlier run in {earlier.model_dir} did not stop within 60 s; "
            "wait for it (run.wait()) or use another model_dir"
        )


def live_runs() -> list[TrainingRun]:
    """Every run that still owns its model_dir (not closed), oldest first."""
    with _OWNERS_LOCK:
        runs = [r() for r in _OWNERS.values()]
    return [run for run in runs if run is not None]


@atexit.register
def _stop_all_at_exit() -> None:
    for run in live_runs():
        run.close(timeout=30)  # a clean stop (final checkpoint) and the last console lines
