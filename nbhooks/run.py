"""TrainingRun: ``estimator.train`` in a worker thread that a person can pause, resume and stop.

Headless (no widgets here): the run emits events on ``run.events``; views subscribe through a
:class:`~nbhooks.publish.Publisher`. Displaying a run in a notebook shows its controls and
progress; in a plain script it reports to the console.
"""

from __future__ import annotations

import atexit
import threading
import traceback
import warnings
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from nbhooks import NbhooksWarning
from nbhooks.checks import (
    check_estimator,
    check_hooks,
    check_input_fn,
    check_model_dir,
    check_steps,
)
from nbhooks.errors import describe_error
from nbhooks.events import EventBus, RunState, RunStateEvent
from nbhooks.progress import ProgressMeter

_FINAL = frozenset({"finished", "stopped", "failed"})
#: "dir:<model_dir>" or "cell:<notebook cell id>" -> the run that owns it: one training
#: thread per model_dir, and re-running a cell replaces the run it made before.
_OWNERS: dict[str, weakref.ref[TrainingRun]] = {}
_OWNERS_LOCK = threading.Lock()


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
        check_steps(steps, max_steps)
        check_hooks(hooks)
        if report not in ("auto", "console", None):
            raise ValueError(f"report must be 'auto', 'console' or None, got {report!r}")
        self.model_dir = check_model_dir(estimator.model_dir)
        self._owner_keys = _owner_keys(self.model_dir)
        self.estimator = estimator
        self.input_fn = input_fn
        self.steps, self.max_steps = steps, max_steps
        self.hooks: tuple[Any, ...] = hooks
        self.events = EventBus()
        self.meter = ProgressMeter()
        self._lock = threading.RLock()
        self._resume = threading.Condition(self._lock)
        self._state: RunState = "idle"
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._done.set()
        self._stop_requested = False
        self._pause_requested = False
        self.reason: str | None = None
        self.error: BaseException | None = None
        self.error_traceback: str | None = None
        self._panel: Any = None
        self._console: Any = None
        self._owned: list[Any] = []  # closed by close(), newest first
        _claim(self)  # before the hooks attach: an earlier run must not share them
        for hook in hooks:
            if hasattr(hook, "attach"):
                hook.attach(self)
        if report == "console" or (report == "auto" and not _in_kernel()):
            self.report_to_console()

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

    def _set_state(self, state: RunState, **info: Any) -> None:
        with self._lock:
            self._state = state
        self.events.emit(RunStateEvent(state, step=self.meter.step, **info))

    # -- control (any thread) -------------------------------------------------------------
    def start(self, steps: int | None = None, max_steps: int | None = None) -> None:
        """Start training in the background; returns at once. ``steps``/``max_steps`` override
        the ones given at construction for this start."""
        if steps is not None or max_steps is not None:
            check_steps(steps, max_steps)
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
            self._stop_requested = self._pause_requested = False
            self.reason, self.error, self.error_traceback = None, None, None
            self._done.clear()
            self.meter.reset_clock()
            self._thread = threading.Thread(
                target=self._work, args=(steps, max_steps), name="nbhooks-training", daemon=True
            )
            self._set_state("running")
            try:
                self._thread.start()
            except BaseException as exc:
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
            if not self.running or self._stop_requested or self._state in _FINAL:
                return
            self._stop_requested = True
            self.reason = reason or "stopped by request"
            self._resume.notify_all()
            self._set_state("stopping", reason=self.reason)

    def wait(self, timeout: float | None = None) -> RunState:
        """Block until training ends; re-raise its error. Returns the final state.

        Raises ``TimeoutError`` when ``timeout`` seconds pass first (training goes on).
        """
        if not self._done.wait(timeout):
            raise TimeoutError(
                f"training is still {self._state} after {timeout} s (step {self.global_step})"
            )
        if self._console is not None:
            self._console.publisher.flush()  # the last lines, before a script goes on or exits
        if self._panel is not None and threading.current_thread() is threading.main_thread():
            self._panel.resync()
        if self.error is not None:
            raise self.error
        return self._state

    def close(self, timeout: float | None = 60) -> None:
        """Stop training, wait for it, and close the widgets and reporters this run owns."""
        self.stop(reason="closed")
        self._done.wait(timeout)
        while self._owned:
            self._owned.pop().close()
        self._panel = self._console = None
        with _OWNERS_LOCK:
            for key in self._owner_keys:
                if _OWNERS.get(key, lambda: None)() is self:
                    del _OWNERS[key]

    # -- the training thread --------------------------------------------------------------
    def _work(self, steps: int | None, max_steps: int | None) -> None:
        from nbhooks.hooks.control import ControlHook

        self._target = {"steps": steps, "max_steps": max_steps}
        self._session_started = False
        try:
            self.estimator.train(
                self.input_fn,
                hooks=[ControlHook(self), *self.hooks],
                steps=steps,
                max_steps=max_steps,
            )
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
        lock, so a stop() racing the end cannot be lost), then release wait()."""
        self.events.emit(self.meter.final())
        with self._lock:
            if state is None:
                state = "stopped" if self._stop_requested else "finished"
                if state == "finished":
                    self.reason = (
                        f"reached step {self.meter.step}"
                        if self._session_started
                        else f"nothing to train: the model is already at max_steps={max_steps}"
                    )
                info["reason"] = self.reason
            self._state = state
        # Outside the lock: listeners may do real work (serving queued pipeline requests)
        # and must not block stop()/pause()/start() on the main thread meanwhile.
        self.events.emit(RunStateEvent(state, step=self.meter.step, **info))
        self._done.set()

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

    def session_ended(self, step: int) -> None:
        self.meter.step = step

    # -- display --------------------------------------------------------------------------
    def panel(self) -> Any:
        """The controls-and-progress widget of this run (created once, owned by the run)."""
        if self._panel is None:
            from nbhooks.views.run_panel import RunPanel

            self._panel = self.own(RunPanel(self))
        return self._panel

    def own(self, closable: Any) -> Any:
        """Close ``closable`` (anything with ``close()``) when this run is closed or replaced;
        returns it."""
        self._owned.append(closable)
        return closable

    def report_to_console(self, interval: float = 2.0) -> None:
        """Print progress and state changes to stderr (scripts, or a notebook without widgets)."""
        if self._console is not None:
            self._console.view.interval = interval
        else:
            from nbhooks.views.console import ConsoleReport

            self._console = self.own(ConsoleReport(self, interval=interval))

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        try:
            widget = self.panel().widget
        except ImportError as exc:
            warnings.warn(
                f"ipywidgets is not available ({exc}); reporting to the console instead",
                NbhooksWarning,
                stacklevel=2,
            )
            self.report_to_console()
            return {"text/plain": repr(self)}
        return widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"<TrainingRun {self._state} step={self.global_step} model_dir={self.model_dir!r}>"


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


# -- one training thread per model_dir, one run per notebook cell ------------------------------
def _owner_keys(model_dir: str) -> tuple[str, ...]:
    """The model_dir, and the notebook cell running now (JupyterLab and Notebook 7 send its
    id with each execution)."""
    cell = _cell_id()
    return (f"dir:{model_dir}", *([f"cell:{cell}"] if cell else []))


def _cell_id() -> str | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    try:
        parent = kernel.get_parent("shell") if kernel is not None else None
    except Exception:  # an older ipykernel
        return None
    cell = ((parent or {}).get("metadata") or {}).get("cellId")
    return cell if isinstance(cell, str) and cell else None


def _claim(run: TrainingRun) -> None:
    """Make ``run`` the owner of its keys. A previous owner that still trains is stopped
    (e.g. the run made by an earlier execution of the same notebook cell); one that has ended
    has its widgets and threads closed."""
    with _OWNERS_LOCK:
        previous = {}
        for key in run._owner_keys:
            ref = _OWNERS.get(key)
            earlier = ref() if ref is not None else None
            if earlier is not None and earlier is not run:
                previous[id(earlier)] = earlier
            _OWNERS[key] = weakref.ref(run)
    for earlier in previous.values():
        if earlier.running:
            warnings.warn(
                f"stopping the earlier run that was still training in {earlier.model_dir} "
                f"(step {earlier.global_step}): one training thread per model_dir and per "
                "notebook cell",
                NbhooksWarning,
                stacklevel=3,
            )
        earlier.close()
        if earlier.running:
            with _OWNERS_LOCK:  # still its model_dir's owner: never two threads on it
                _OWNERS[f"dir:{earlier.model_dir}"] = weakref.ref(earlier)
            raise RuntimeError(
                f"the earlier run in {earlier.model_dir} did not stop within 60 s; "
                "wait for it (run.wait()) or use another model_dir"
            )


@atexit.register
def _stop_all_at_exit() -> None:
    with _OWNERS_LOCK:
        runs = [r() for r in _OWNERS.values()]
    for run in runs:
        if run is not None:
            run.close(timeout=30)  # a clean stop (final checkpoint) and the last console lines
