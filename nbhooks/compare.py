"""Compare: several dashboards trained one after another (or N at once), watched side by side.

    runs = {f"lr {lr}": nh.Dashboard(make_estimator(lr), train_fn, evals={"eval": eval_fn})
            for lr in (0.01, 0.05, 0.3)}
    cmp = nh.Compare(runs, parallel=1)
    cmp                      # live curves (a trace per run x evaluation) and a table of runs
    cmp.train(steps=1500); cmp.wait(); cmp.history

A queue of runs is served by a scheduler thread the Compare owns: it starts up to ``parallel``
runs, and the next one when a run ends. Each run trains in its own thread, and each
``estimator.train`` builds its own graph there (TensorFlow's default graph is thread-local), so
runs at once do not share a graph. The curves are drawn from a history the Compare keeps, fed
by every run's evaluations (evaluation names ``"<run> · <evaluation>"``).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nbhooks.atomic import write_text
from nbhooks.checks import check_int, check_steps
from nbhooks.events import (
    FINAL_STATES,
    BranchEvent,
    EvalEvent,
    EvalPreparedEvent,
    Event,
    EventBus,
    RunStateEvent,
)
from nbhooks.run import refuse_if_closed, wait_or_stop
from nbhooks.stores.metrics import Evaluation, MetricHistory, guess_mode

__all__ = ["BUDGET_BYTES", "Compare"]

#: The most bytes one update of the comparison curves may send to the page (all runs together).
BUDGET_BYTES = 50_000
SEPARATOR = " · "


class Compare:
    """Train several :class:`~nbhooks.Dashboard` s and compare them live.

    ``runs``: ``{"name": dashboard}`` (each with its own ``model_dir``). ``parallel``: how many
    train at once (1: one after another, in the order given). ``max_points``: the most points
    drawn per curve; fewer when many curves share the ``budget_bytes`` of an update.

    :meth:`train` returns at once; :meth:`wait` blocks and re-raises the first training error;
    :meth:`stop` stops every run and empties the queue; :meth:`stop_run` one run. The Compare
    owns the dashboards given to it: :meth:`close` closes them, its scheduler thread and its
    widgets.
    """

    def __init__(
        self,
        runs: Mapping[str, Any],
        parallel: int = 1,
        *,
        max_points: int = 500,
        budget_bytes: int = BUDGET_BYTES,
    ) -> None:
        self.dashboards: dict[str, Any] = _check_runs(runs)
        self.parallel = min(
            check_int("parallel", parallel, hint="how many runs train at once"),
            len(self.dashboards),
        )
        self.max_points = check_int("max_points", max_points, minimum=3)
        self.budget_bytes = check_int("budget_bytes", budget_bytes, minimum=1000)
        #: Every run's evaluations under ``"<run> · <evaluation>"`` (what the curves draw).
        self.metrics = MetricHistory()
        for name, dash in self.dashboards.items():  # runs in parallel finish in any order
            for evaluation in dash.metrics.order:
                self.metrics.declare(curve_name(name, evaluation))
        #: Every event of every run, for the Compare's views (their publisher listens here);
        #: evaluations in them are named as in :attr:`metrics`.
        self.events = EventBus()
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()
        self._active: set[str] = set()
        self._stopping = False
        self.closed = False  #: close() was called: it neither trains nor shows again
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._done.set()
        self.errors: dict[str, BaseException] = {}  #: start failures (training errors: wait())
        self.face: Any = None  #: the CompareFace (table, curves, publisher), made on display
        # What the runs evaluated before (earlier train() calls, an earlier training of their
        # model_dir), then what they send; the lock keeps an evaluation sent meanwhile after it.
        self._copying = threading.Lock()
        with self._copying:
            self._unsubscribe = [
                dash.run.events.subscribe(self._listener(name))
                for name, dash in self.dashboards.items()
            ]
            for name, dash in self.dashboards.items():
                for done in dash.metrics.replay():
                    if isinstance(done, Evaluation):
                        evaluation = curve_name(name, done.evaluation)
                        self.metrics.record(evaluation, done.step, done.metrics, done.wall_time)
                    else:
                        self._fork(name, done[0])

    # -- events from the runs (their training threads) ----------------------------------------
    def _listener(self, name: str) -> Callable[[Event], None]:
        def on_event(event: Event) -> None:
            if isinstance(event, EvalEvent | EvalPreparedEvent):  # named as self.metrics names it
                event = dataclasses.replace(event, name=curve_name(name, event.name))
            if isinstance(event, EvalEvent):
                with self._copying:
                    self.metrics.record(event.name, event.step, event.metrics, event.wall_time)
            elif isinstance(event, BranchEvent):  # the run's own history forked: so does its part
                with self._copying:
                    self._fork(name, event.step)
            elif isinstance(event, RunStateEvent) and event.state in FINAL_STATES:
                with self._cond:
                    self._active.discard(name)
                    self._cond.notify_all()
            self.events.emit(event)

        return on_event

    def _fork(self, name: str, step: int) -> None:
        """Run ``name``'s history forked at ``step``: so does its part of the curves, unless
        it has as many forks already (a fork the copy of its history had, told again)."""
        dash = self.dashboards[name]
        ours = [curve_name(name, h.evaluation) for h in dash.evaluators]
        if ours and self.metrics.forks(ours[0]) < dash.metrics.forks(dash.evaluators[0].evaluation):
            self.metrics.fork(step, ours)

    # -- control --------------------------------------------------------------------------
    def train(self, steps: int | None = None, max_steps: int | None = None) -> None:
        """Queue every run (``steps`` more each, or up to ``max_steps``) and start the first
        ``parallel`` of them; returns at once."""
        refuse_if_closed(self.closed, "comparison")
        steps, max_steps = check_steps(steps, max_steps)
        busy = [n for n, d in self.dashboards.items() if d.run.running]
        if self.running or busy:
            raise RuntimeError(
                f"already training ({', '.join(busy) or 'the queue'}): stop() or wait() first"
            )
        with self._cond:
            self._queue = deque(self.dashboards)
            self._active = set()
            self._stopping = False
            self.errors = {}
            self._done.clear()
            self._thread = threading.Thread(
                target=self._schedule, args=(steps, max_steps), name="nbhooks-compare", daemon=True
            )
            self._thread.start()

    def _schedule(self, steps: int | None, max_steps: int | None) -> None:
        """The scheduler thread: keep ``parallel`` runs training until the queue is empty."""
        try:
            while True:
                with self._cond:
                    while not self._stopping and self._queue and len(self._active) >= self.parallel:
                        self._cond.wait()
                    if self._stopping or not self._queue:
                        while self._active and not self._stopping:
                            self._cond.wait()
                        return
                    name = self._queue.popleft()
                    self._active.add(name)
                try:  # outside the lock: the run's own events come back to _listener
                    self.dashboards[name].train(steps=steps, max_steps=max_steps)
                except Exception as exc:  # e.g. its model_dir taken: the others go on
                    with self._cond:
                        self.errors[name] = exc
                        self._active.discard(name)
        finally:
            self._done.set()

    def stop(self, reason: str | None = None) -> None:
        """Stop every run at its next step boundary; queued runs do not start."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
        for dash in self.dashboards.values():
            dash.stop(reason)

    def stop_run(self, name: str) -> None:
        """Stop one run (or take it off the queue if it has not started)."""
        dash = self._dashboard(name)
        with self._cond:
            if name in self._queue:
                self._queue.remove(name)
        dash.stop()

    def wait(self, timeout: float | None = None) -> dict[str, str]:
        """Block until every queued run has ended; re-raise the first error (the run's name in
        its notes). Returns each run's final state. ``TimeoutError`` if ``timeout`` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done, interrupted = wait_or_stop(self._done, timeout, self.stop)
        if not done:
            raise TimeoutError(f"the comparison is still training after {timeout} s: {self.states}")
        errors = dict(self.errors)
        if self.face is not None and threading.current_thread() is threading.main_thread():
            self.face.resync()  # the final state, also for recorders of this cell's messages
        for name, dash in self.dashboards.items():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                dash.wait(left)
            except TimeoutError:
                raise
            except BaseException as exc:
                errors.setdefault(name, exc)
        for name, error in errors.items():
            error.add_note(f"in the compared run {name!r}")
            raise error
        if interrupted:
            raise KeyboardInterrupt(
                f"the comparison stopped ({self.states}): wait() was interrupted"
            )
        return self.states

    @property
    def running(self) -> bool:
        """True while the scheduler has runs queued or training."""
        return not self._done.is_set()

    @property
    def states(self) -> dict[str, str]:
        """Each run's state (``"queued"`` while waiting for its turn)."""
        with self._cond:
            queued = set(self._queue) if self.running else set()
        return {n: "queued" if n in queued else d.state for n, d in self.dashboards.items()}

    def close(self) -> None:
        """Stop, then close the scheduler thread, the widgets and every dashboard (for good:
        it neither trains nor shows again)."""
        self.closed = True
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        for dash in self.dashboards.values():
            dash.close()
        if self.face is not None:
            self.face.close()
        self.face = None

    def _dashboard(self, name: str) -> Any:
        if name not in self.dashboards:
            raise KeyError(f"no run named {name!r}; the runs are {list(self.dashboards)}")
        return self.dashboards[name]

    # -- data -----------------------------------------------------------------------------
    @property
    def history(self) -> pd.DataFrame:
        """Every run's evaluations: run, step, evaluation, metric, value, wall_time (tidy)."""
        frames = [d.history.assign(run=n) for n, d in self.dashboards.items()]
        frame = pd.concat(frames, ignore_index=True)
        if "branch" in frame:  # a run that never branched is on its branch 0
            frame["branch"] = frame["branch"].fillna(0).astype(int)
        return frame[["run", *(c for c in frame.columns if c != "run")]]

    @property
    def summary(self) -> pd.DataFrame:
        """One row per run: its settings, state, step, steps/s and best value of each curve."""
        return pd.DataFrame([self._summary_row(n, d) for n, d in self.dashboards.items()])

    def _summary_row(self, name: str, dash: Any) -> dict[str, Any]:
        run = dash.run
        row: dict[str, Any] = {"run": name, **settings_of(dash), "state": self.states[name]}
        row["step"], row["steps_per_sec"] = run.global_step, run.steps_per_sec
        for evaluation in dash.metrics.names:
            for metric in dash.metrics.metrics:
                best = dash.metrics.best(metric, guess_mode(metric), evaluation=evaluation)
                if best is not None:
                    row[f"best {evaluation} {metric}"] = best.value
        return row

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :attr:`history` as CSV (no index column); returns the path."""
        path = Path(path)
        write_text(path, self.history.to_csv(index=False))
        return path

    def export_html(self, path: str | os.PathLike[str]) -> Path:
        """A standalone, offline HTML report: the comparison curves and the table of runs."""
        import plotly.graph_objects as go

        from nbhooks.views.curves import CurvesView

        path = Path(path)
        view = self.face.curves if self.face else CurvesView(self.metrics, self.max_points)
        try:
            figure = go.Figure(view.figure).to_html(include_plotlyjs=True, full_html=False)
        finally:
            if self.face is None:
                view.close()
        table = self.summary.to_html(escape=True, index=False)
        write_text(
            path,
            '<!doctype html><html><head><meta charset="utf-8"><title>nbhooks comparison</title>'
            "</head><body><h1>nbhooks comparison</h1>"
            f"{table}{figure}</body></html>",
        )
        return path

    # -- the widget -------------------------------------------------------------------------
    @property
    def widget(self) -> Any:
        """The comparison widget (created once, on first display, on the main thread)."""
        refuse_if_closed(self.closed, "comparison")
        if self.face is None:
            from nbhooks.views.compare import CompareFace

            self.face = CompareFace(self)
        return self.face.widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self.closed:
            return {"text/plain": repr(self)}
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        states = ", ".join(f"{n}: {s}" for n, s in self.states.items())
        closed = " (closed)" if self.closed else ""
        return f"<nbhooks.Compare parallel={self.parallel}{closed} {{{states}}}>"


def curve_name(run: str, evaluation: str) -> str:
    """How the comparison's history names a run's evaluation: ``"<run> · <evaluation>"``."""
    return f"{run}{SEPARATOR}{evaluation}"


def settings_of(dash: Any) -> dict[str, Any]:
    """What sets a run apart: the estimator's scalar ``params`` and its knobs' current values."""
    params = getattr(dash.estimator, "params", None) or {}
    out = {k: v for k, v in params.items() if isinstance(v, int | float | str | bool)}
    knobs = getattr(dash, "knob_values", None)
    if knobs:
        out.update(knobs)
    return out


def _check_runs(runs: Any) -> dict[str, Any]:
    from nbhooks.dashboard import Dashboard

    if not isinstance(runs, Mapping) or not runs:
        raise TypeError(
            'runs must be a non-empty dict of name -> nh.Dashboard, e.g. {"lr 0.1": dash}, '
            f"got {type(runs).__name__}"
        )
    dirs: dict[str, str] = {}
    for name, dash in runs.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"run names must be non-empty strings, got {name!r}")
        if not isinstance(dash, Dashboard):
            raise TypeError(f"runs[{name!r}] must be an nh.Dashboard, got {type(dash).__name__}")
        if dash.run.closed:
            raise ValueError(f"runs[{name!r}] was closed: pass a new nh.Dashboard")
        if dash.run.model_dir in dirs:
            raise ValueError(
                f"runs {dirs[dash.run.model_dir]!r} and {name!r} share the model_dir "
                f"{dash.run.model_dir}: give each estimator a model_dir of its own"
            )
        dirs[dash.run.model_dir] = name
    return dict(runs)
