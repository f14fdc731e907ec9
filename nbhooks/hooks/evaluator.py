"""Live in-memory evaluation: TensorFlow's ``InMemoryEvaluatorHook`` that keeps its metrics.

TF's hook evaluates without a checkpoint (it copies the training variables into an eval
graph), but throws away the metrics dict that ``estimator._evaluate_run`` returns.
:class:`LiveEvaluatorHook` captures it, records it in a
:class:`~nbhooks.stores.metrics.MetricHistory` (each ``(name, step)`` once) and emits an
:class:`~nbhooks.events.EvalEvent`.
:class:`EarlyStopping` listens to those events and stops the run cleanly.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf
from nbhooks.checks import check_estimator, check_input_fn, check_int
from nbhooks.events import EvalEvent, EventBus, RunAttached, RunStateEvent, StopRequestEvent
from nbhooks.hooks._graph import require_global_step
from nbhooks.hooks.eval_session import EvalSession
from nbhooks.stores.metrics import MetricHistory, check_mode, guess_mode, is_improvement

log = logging.getLogger("nbhooks")
_tf = tf()
_GLOBAL_STEP = _tf.compat.v1.GraphKeys.GLOBAL_STEP
_FROM_CHECKPOINTS = (
    "evaluate from checkpoints instead: estimator.evaluate() after train(), or "
    "tf.estimator.train_and_evaluate()"
)


class LiveEvaluatorHook(RunAttached, _tf.estimator.experimental.InMemoryEvaluatorHook):
    """Evaluate in memory every ``every_n_iter`` training steps and keep every metric.

    Same arguments and schedule as ``tf.estimator.experimental.InMemoryEvaluatorHook`` (once
    when the session starts, every ``every_n_iter`` steps of each ``train()`` call, once at
    the end; summaries go to ``model_dir/eval_<name>``), except that a step already recorded
    for this evaluation name is not evaluated again. Results land in ``store`` (pass one
    ``store`` to several named hooks to share it) and go out as ``EvalEvent`` on ``events``.

    ``history`` (property) is the tidy DataFrame: step, evaluation, metric, value, wall_time.
    """

    def __init__(
        self,
        estimator: Any,
        input_fn: Callable[..., Any],
        name: str | None = None,
        every_n_iter: int = 100,
        steps: int | None = None,
        hooks: Sequence[Any] | None = None,
        *,
        store: MetricHistory | None = None,
        events: EventBus | None = None,
    ) -> None:
        _check_args(estimator, input_fn, name, every_n_iter, steps, store)
        super().__init__(
            estimator, input_fn, steps=steps, hooks=hooks, name=name, every_n_iter=every_n_iter
        )
        self._capture = tfi.capture_eval_results(self)
        self.evaluation: str = name or "eval"
        self.store: MetricHistory = store if store is not None else MetricHistory()
        self.events: EventBus = events if events is not None else EventBus()
        self.run: Any = None
        self.evaluations = 0  #: evaluations run by this hook (skipped repeats not counted)
        self.eval_seconds = 0.0  #: time spent evaluating, in seconds
        self._global_step: Any = None
        self._eval_session: EvalSession | None = None
        self._fast: bool | None = None  # one persistent eval session applies (decided once)

    @classmethod
    def many(
        cls,
        estimator: Any,
        input_fns: Mapping[str, Callable[..., Any]],
        every_n_iter: int = 100,
        steps: int | None = None,
        *,
        store: MetricHistory | None = None,
        events: EventBus | None = None,
    ) -> list[LiveEvaluatorHook]:
        """One hook per named input_fn (e.g. ``{"train": ..., "eval": ...}``), one shared
        store and event bus."""
        if not isinstance(input_fns, Mapping) or not input_fns:
            raise TypeError(
                'input_fns must be a non-empty dict of name -> input_fn, e.g. {"eval": eval_fn}'
            )
        store = store if store is not None else MetricHistory()
        events = events if events is not None else EventBus()
        return [
            cls(estimator, fn, name, every_n_iter, steps, store=store, events=events)
            for name, fn in input_fns.items()
        ]

    @property
    def history(self) -> pd.DataFrame:
        """Every recorded value (of every evaluation sharing the store), tidy."""
        return self.store.to_frame()

    def on_run_state(self, event: RunStateEvent) -> None:
        if event.state == "failed":  # end() does not run then: close the evaluation session
            self._close_eval_session()

    # -- SessionRunHook -------------------------------------------------------------------
    def begin(self) -> None:
        self._close_eval_session()  # left open by a training session that crashed
        self._global_step = require_global_step("LiveEvaluatorHook")
        try:
            super().begin()
        except ValueError as exc:
            raise ValueError(self._explain_scaffold_error(exc)) from exc

    def after_create_session(self, session: Any, coord: Any) -> None:
        saveables = _tf.compat.v1.get_collection(_tf.compat.v1.GraphKeys.SAVEABLE_OBJECTS)
        if saveables:
            raise ValueError(
                f"LiveEvaluatorHook copies variables into the evaluation graph in memory, but "
                f"the model has {len(saveables)} other saveable object(s) in SAVEABLE_OBJECTS "
                f"(e.g. lookup tables or boosted trees) that cannot be copied; "
                f"{_FROM_CHECKPOINTS}"
            )
        super().after_create_session(session, coord)

    def _evaluate(self, train_session: Any) -> None:  # TF's hook calls it (tfi.CONTRACT)
        step = int(train_session.run(self._global_step))
        if self.store.has(self.evaluation, step):
            # end() after an evaluation at the same step, or a new train() call starting
            # where the last one ended: nothing new to measure.
            tfi.mark_evaluated(self)
            return
        started = time.perf_counter()
        results = self._run_evaluation(train_session)
        self.eval_seconds += time.perf_counter() - started
        self.evaluations += 1
        step = int(results.get(_GLOBAL_STEP, step))
        metrics = scalar_metrics(results)
        wall_time = time.time()
        if self.store.record(self.evaluation, step, metrics, wall_time):
            self.events.emit(EvalEvent(self.evaluation, step, metrics, wall_time))

    def end(self, session: Any) -> None:
        try:
            super().end(session)
        finally:
            self._close_eval_session()

    def _run_evaluation(self, train_session: Any) -> Mapping[str, Any]:
        """One evaluation: in the persistent session when equivalent, else TF's own path."""
        if self._fast is None:
            self._fast = EvalSession.applies(self)
        if not self._fast:
            tfi.evaluate_as_tf(self, train_session)
            return self._capture.pop()
        if self._eval_session is None:
            config = tfi.session_config(self._capture.estimator)
            self._eval_session = EvalSession(self, config)
        results = self._eval_session.evaluate(train_session)
        tfi.mark_evaluated(self)
        return results

    def _close_eval_session(self) -> None:
        if self._eval_session is not None:
            self._eval_session.close()
        self._eval_session, self._fast = None, None

    def _explain_scaffold_error(self, exc: ValueError) -> str:
        scaffold = tfi.eval_scaffold(self)
        if scaffold is not None and scaffold.saver is not None:
            what = "a custom Saver (scaffold=Scaffold(saver=...), e.g. for moving averages)"
        elif scaffold is not None and scaffold.init_fn is not None:
            what = "a custom init_fn (scaffold=Scaffold(init_fn=...))"
        else:
            return f"LiveEvaluatorHook: {exc}"
        return (
            f"LiveEvaluatorHook feeds the training variables into the evaluation graph itself, "
            f"so the model_fn's EVAL EstimatorSpec must not set {what}. Drop it in EVAL mode, "
            f"or {_FROM_CHECKPOINTS}"
        )


def scalar_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """The numeric scalar entries of an evaluation result, as floats (global_step dropped)."""
    metrics: dict[str, float] = {}
    for key, value in results.items():
        if key == _GLOBAL_STEP:
            continue
        array = np.asarray(value)
        if array.ndim == 0 and array.dtype.kind in "biuf":
            metrics[str(key)] = float(array)
    return metrics


def _check_args(
    estimator: Any,
    input_fn: Any,
    name: Any,
    every_n_iter: Any,
    steps: Any,
    store: Any,
) -> None:
    check_estimator(estimator)
    check_input_fn(input_fn)
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise ValueError(
            f"name must be None or a non-empty string without '/' (summaries go to "
            f"model_dir/eval_<name>), got {name!r}"
        )
    check_int("every_n_iter", every_n_iter, hint="evaluate every N training steps, e.g. 100")
    check_int("steps", steps, optional=True, hint="None evaluates until input_fn's data ends")
    if store is not None and not isinstance(store, MetricHistory):
        raise TypeError(f"store must be a nbhooks.MetricHistory, got {type(store).__name__}")
    config = estimator.config
    if config.num_ps_replicas > 0 or config.num_worker_replicas > 1:
        raise ValueError(
            f"LiveEvaluatorHook evaluates inside the training process, which works only for "
            f"local (single machine) training, but the estimator's RunConfig has "
            f"{config.num_ps_replicas} parameter server(s) and {config.num_worker_replicas} "
            f"worker(s) (from TF_CONFIG). Unset TF_CONFIG to train locally, or use "
            f"tf.estimator.train_and_evaluate() with an evaluator task."
        )


class EarlyStopping(_tf.estimator.SessionRunHook):
    """Stop training when an in-memory metric stops improving (no event files needed).

    Watches ``metric`` of one evaluation (``evaluation``; may be left out when only one is
    watched). After ``patience`` evaluations in a row without an improvement of more than
    ``min_delta`` over the best value (lower is better for ``mode="min"``; left out: "min" for
    losses and errors, "max" for anything else such as accuracy or auc), it stops the run
    cleanly: the final checkpoint is written and ``end()`` hooks run. ``reason`` says why.

    In a :class:`~nbhooks.run.TrainingRun` it watches the run's LiveEvaluatorHooks and calls
    ``run.stop(reason)``. With plain ``estimator.train(hooks=[...])`` pass the evaluator
    hooks as ``evaluators=``; it then requests the stop through the session's run context.
    """

    def __init__(
        self,
        metric: str,
        mode: str | None = None,
        patience: int = 3,
        min_delta: float = 0.0,
        evaluation: str | None = None,
        evaluators: Iterable[LiveEvaluatorHook] = (),
    ) -> None:
        if not isinstance(metric, str) or not metric:
            raise ValueError(f"metric must be a metric name such as 'loss', got {metric!r}")
        self.mode = guess_mode(metric) if mode is None else check_mode(mode)
        check_int("patience", patience, hint="evaluations without improvement before stopping")
        if not isinstance(min_delta, numbers.Real) or not min_delta >= 0:
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        self.evaluators = list(evaluators)
        for hook in self.evaluators:
            if not isinstance(hook, LiveEvaluatorHook):
                raise TypeError(
                    f"evaluators must be LiveEvaluatorHook instances, got {type(hook).__name__}"
                )
        self.metric, self.patience, self.min_delta = metric, patience, float(min_delta)
        self.evaluation = evaluation
        self.run: Any = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._buses: list[EventBus] = []
        self._run_context: Any = None
        self._error: Exception | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the best value and the count (done at the start of every ``train()``)."""
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.wait = 0
        self.reason: str | None = None
        self.stopped_step: int | None = None
        self._stop_sent = False

    def attach(self, run: Any) -> None:
        """Called by :class:`~nbhooks.run.TrainingRun`: stop through ``run.stop(reason)``."""
        self.run = run

    def observe(self, step: int, value: float) -> str | None:
        """Take one evaluation's value; return the stop reason once patience runs out."""
        if self.reason is not None:
            return self.reason
        if is_improvement(value, self.best_value, self.mode, self.min_delta):
            self.best_value, self.best_step, self.wait = value, step, 0
            return None
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_step = step
            self.reason = (
                f"early stopping: {self.metric} ({self.evaluation}) did not improve by more "
                f"than {self.min_delta:g} for {self.patience} evaluations; best "
                f"{self.best_value:.6g} at step {self.best_step}, now {value:.6g} at step {step}"
            )
        return self.reason

    # -- SessionRunHook -------------------------------------------------------------------
    def begin(self) -> None:
        self._unsubscribe_all()  # end() never ran if the previous session failed
        self.reset()
        self._error = None
        evaluators = self._watched()
        self.evaluation = self._resolve_evaluation(evaluators)
        self._buses = list({id(h.events): h.events for h in evaluators}.values())
        self._unsubscribe = [bus.subscribe(self._on_event) for bus in self._buses]

    def before_run(self, run_context: Any) -> None:
        self._run_context = run_context

    def after_run(self, run_context: Any, run_values: Any) -> None:
        if self._error is not None:
            raise self._error
        if self.reason is not None:
            run_context.request_stop()

    def end(self, session: Any) -> None:
        self._unsubscribe_all()
        self._run_context = None

    def _unsubscribe_all(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    # -- internals ------------------------------------------------------------------------
    def _watched(self) -> list[LiveEvaluatorHook]:
        hooks = self.evaluators
        if not hooks and self.run is not None:
            hooks = [h for h in self.run.hooks if isinstance(h, LiveEvaluatorHook)]
        if not hooks:
            raise ValueError(
                "EarlyStopping has no evaluation to watch: pass evaluators=[LiveEvaluatorHook"
                "(...)] or give a TrainingRun both hooks"
            )
        return hooks

    def _resolve_evaluation(self, evaluators: Sequence[LiveEvaluatorHook]) -> str:
        names = list(dict.fromkeys(h.evaluation for h in evaluators))
        if self.evaluation is None and len(names) == 1:
            return names[0]
        if self.evaluation in names:
            return self.evaluation
        raise ValueError(
            f"EarlyStopping(evaluation={self.evaluation!r}): pass evaluation= one of {names}"
        )

    def _on_event(self, event: Any) -> None:
        if not isinstance(event, EvalEvent) or event.name != self.evaluation:
            return
        if self.metric not in event.metrics:
            self._error = ValueError(
                f"EarlyStopping watches {self.metric!r} but evaluation {event.name!r} reports "
                f"only {sorted(event.metrics)}: pass metric= one of them"
            )
            return
        if self.observe(event.step, event.metrics[self.metric]) is not None:
            self._stop(event)

    def _stop(self, event: EvalEvent) -> None:
        if self._stop_sent:
            return
        self._stop_sent = True
        log.info("nbhooks: %s", self.reason)
        if self._run_context is not None:
            self._run_context.request_stop()  # stop at this very step, whatever the hook order
        if self.run is not None:
            self.run.stop(reason=self.reason)
        else:  # no run to announce it: tell whoever listens to the evaluations
            self._buses[0].emit(StopRequestEvent(event.step, self.reason))
