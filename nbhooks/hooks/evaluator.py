"""Live evaluation: TensorFlow's ``InMemoryEvaluatorHook`` that keeps its metrics, for every
Estimator and input style.

:class:`LiveEvaluatorHook` evaluates without a checkpoint (it copies the training values into
an evaluation graph: see :mod:`nbhooks.hooks.eval_session`), records every metric in a
:class:`~nbhooks.stores.metrics.MetricHistory` (each ``(name, step)`` once) and emits an
:class:`~nbhooks.events.EvalEvent`. How it evaluates (``hook.how``) follows the input:

- ``"persistent session"``: a ``tf.data`` input and no evaluation hooks: one session, reused;
- ``"per evaluation"``: TF's own path, a new session per evaluation (other inputs or hooks);
- ``"fresh graph per evaluation"``: queue-runner inputs (``numpy_input_fn``,
  ``pandas_input_fn``), whose feeding state lives in Python and ends with the first pass;
- ``"checkpoints"``: ``estimator.evaluate(checkpoint_path=...)`` on the checkpoint of the step,
  for models in-memory evaluation cannot copy (``evaluate_from="checkpoints"`` or ``"auto"``).

:class:`EarlyStopping` listens to the events and stops the run cleanly.
"""

from __future__ import annotations

import logging
import numbers
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf
from nbhooks.checks import check_estimator, check_input_fn, check_int
from nbhooks.errors import describe_error
from nbhooks.eventfiles import EVENTS_GLOB
from nbhooks.events import (
    EvalEvent,
    EvalPreparedEvent,
    EventBus,
    RunAttached,
    RunStateEvent,
    StopRequestEvent,
)
from nbhooks.hooks._bases import InMemoryEvaluatorHook, SessionRunHook
from nbhooks.hooks._graph import require_global_step
from nbhooks.hooks.eval_session import (
    EvalGraph,
    EvalInterrupted,
    EvalSession,
    InMemoryUnsupported,
    variables_signature,
    without_autotune,
)
from nbhooks.niceness import BACKGROUND, lower_this_thread
from nbhooks.stores.metrics import (
    MetricHistory,
    Mode,
    check_mode,
    guess_mode,
    is_improvement,
)
from nbhooks.thread_pools import open_process_pools
from nbhooks.worker import Worker

log = logging.getLogger("nbhooks")
_tf = tf()
_GLOBAL_STEP = _tf.compat.v1.GraphKeys.GLOBAL_STEP
EVALUATE_FROM = ("memory", "checkpoints", "auto")
#: Op types through which an input reports its end (OutOfRangeError).
_END_OF_INPUT_OPS = ("IteratorGetNext", "QueueDequeue", "ReaderRead")

InputFn = Callable[..., Any]


class LiveEvaluatorHook(RunAttached, InMemoryEvaluatorHook):
    """Evaluate every ``every_n_iter`` training steps and keep every metric.

    Same arguments and schedule as ``tf.estimator.experimental.InMemoryEvaluatorHook`` (once
    when the session starts, every ``every_n_iter`` steps of each ``train()`` call, once at
    the end; summaries go to ``model_dir/eval_<name>``), except that a step already recorded
    for this evaluation name is not evaluated again. Results land in ``store`` (pass one
    ``store`` to several named hooks to share it) and go out as ``EvalEvent`` on ``events``.

    The numbers are those of ``estimator.evaluate()`` on a checkpoint of the same step,
    whatever the model's EVAL saver (moving averages, Keras, ``tf.train.Checkpoint``) or the
    input style. ``evaluate_from``: ``"memory"`` (default; a model it cannot copy, such as one
    with lookup tables in SAVEABLE_OBJECTS, fails training at its first evaluation, naming
    what), ``"auto"`` (in memory where possible, else from checkpoints) or ``"checkpoints"``:
    each evaluation runs ``estimator.evaluate()`` on the checkpoint of its step (RunConfig's,
    else one the hook saves with the training saver). ``how`` and ``why`` say which way it
    evaluates.

    ``asynchronous=True`` (the persistent session path only): each evaluation takes a snapshot
    of the variables at its step (the one fetch the copy-in makes anyway) and evaluates it on a
    thread of this hook while training goes on; the results are those of that step (on Linux
    that thread and the evaluation session's run ``niceness`` levels below training: they take
    the CPU training leaves idle). At most one evaluation is in flight. When the next
    evaluation step comes while one still runs, ``when_busy="wait"`` (default) makes training
    wait for it there, so that every step is evaluated; ``"skip"`` skips that step instead
    (counted in ``skipped``, logged). The final evaluation in ``end()`` waits for the one in
    flight and runs synchronously; an evaluation an :class:`EarlyStopping` watches always runs
    synchronously, so that it stops at that very step.

    The evaluation graph and session are built by the first evaluation (at the start of the
    first session), on a thread of this hook beside the first training steps, from a snapshot
    of the variables at that step: the first step does not wait for them. A model that cannot
    be evaluated in memory, or an error of the model_fn in EVAL mode, fails training at the
    next step (``evaluate_from="auto"`` builds in ``begin()``: it must know before the first
    evaluation whether to use checkpoints). They are kept across ``train()`` calls of the same
    model (same variables by name, shape and dtype); :meth:`close` (or closing the run)
    releases them.

    An input that never ends (``.repeat()`` without ``steps``) is refused here, before
    training. A run's ``stop()`` interrupts an evaluation in progress (nothing is recorded).
    ``history`` (property) is the tidy DataFrame: step, evaluation, metric, value, wall_time.
    """

    def __init__(
        self,
        estimator: Any,
        input_fn: InputFn,
        name: str | None = None,
        every_n_iter: int = 100,
        steps: int | None = None,
        hooks: Sequence[Any] | None = None,
        *,
        store: MetricHistory | None = None,
        events: EventBus | None = None,
        evaluate_from: str = "memory",
        asynchronous: bool = False,
        when_busy: str = "wait",
    ) -> None:
        if not isinstance(asynchronous, bool):
            raise TypeError(f"asynchronous must be True or False, got {asynchronous!r}")
        if when_busy not in ("wait", "skip"):
            raise ValueError(
                f'when_busy must be "wait" (training waits for the evaluation in flight) or '
                f'"skip" (that step is not evaluated), got {when_busy!r}'
            )
        _check_args(estimator, input_fn, name, every_n_iter, steps, store, evaluate_from)
        open_process_pools(estimator)  # before any scratch session: the check below, a preparation
        if steps is None:
            check_input_ends(estimator, input_fn, name or "eval")
        super().__init__(
            estimator, input_fn, steps=steps, hooks=hooks, name=name, every_n_iter=every_n_iter
        )
        self.estimator = estimator
        self.input_fn = input_fn
        self.steps = steps
        self.user_hooks: list[Any] = list(hooks or [])
        self.evaluation: str = name or "eval"
        self.evaluate_from = evaluate_from
        self.store: MetricHistory = store if store is not None else MetricHistory()
        self.store.declare(self.evaluation)  # its place among the store's evaluations
        self.events: EventBus = events if events is not None else EventBus()
        self.run: Any = None
        self.asynchronous = asynchronous
        self.when_busy = when_busy
        self.evaluations = 0  #: evaluations run by this hook (skipped repeats not counted)
        self.eval_seconds = 0.0  #: time spent evaluating, in seconds
        self.skipped = 0  #: asynchronous: steps not evaluated, the one before still running
        #: The first evaluation's seconds (with building its session), of ``eval_seconds``.
        self.first_eval_seconds: float | None = None
        #: How it evaluates: "persistent session", "per evaluation", "fresh graph per
        #: evaluation" or "checkpoints" (decided in begin(); None before).
        self.how: str | None = "checkpoints" if evaluate_from == "checkpoints" else None
        #: Why it evaluates from checkpoints (None in memory).
        self.why: str | None = (
            "evaluate_from='checkpoints'" if evaluate_from == "checkpoints" else None
        )
        self._global_step: Any = None
        self._train_vars: dict[str, Any] = {}
        self._parts: EvalGraph | None = None
        self._signature: tuple[tuple[str, str, str], ...] | None = None
        #: The variables' signature of a model whose evaluation graph the first evaluation of
        #: the session is to build (set by begin(), taken by after_create_session()).
        self._unbuilt: tuple[tuple[str, str, str], ...] | None = None
        #: That first evaluation, until the first step is done: (step, snapshot, signature).
        self._first: tuple[int, Mapping[str, Any], tuple[Any, ...]] | None = None
        self._marks_start = False  #: the eval folder had events when the session began
        self._eval_session: EvalSession | None = None
        #: The thread of this training session's asynchronous evaluations (one in flight).
        self._worker: Worker | None = None
        self._session: Any = None  #: the training session (whose evaluations are in flight)
        self._async_error: BaseException | None = None
        self._sync_for: set[int] = set()  # EarlyStopping hooks that need each result at once
        self._saver: Any = None  # checkpoints: the training graph's saver, if it has one
        self._evaluated_paths: set[str] = set()
        self._interrupt = threading.Event()
        self._preparation: EvalPreparation | None = None  # building ahead of training
        #: Why building ahead failed (one line), until training builds it again.
        self.prepare_error: str | None = None
        #: The metrics its results hold that are not single numbers (name and shape), left
        #: out of the history and curves (None until the first evaluation).
        self.unplotted: tuple[str, ...] | None = None
        self._evaluating = False
        self._interrupted = False
        self._lock = threading.Lock()

    @classmethod
    def many(
        cls,
        estimator: Any,
        input_fns: Mapping[str, InputFn | tuple[InputFn, int]],
        every_n_iter: int = 100,
        steps: int | None = None,
        *,
        store: MetricHistory | None = None,
        events: EventBus | None = None,
        evaluate_from: str = "memory",
        asynchronous: bool = False,
        when_busy: str = "wait",
    ) -> list[LiveEvaluatorHook]:
        """One hook per named input_fn (e.g. ``{"train": ..., "eval": ...}``), one shared
        store and event bus. A value ``(input_fn, n)`` evaluates ``n`` batches (instead of
        ``steps``), e.g. ``{"train": (train_fn, 20), "eval": eval_fn}``."""
        if not isinstance(input_fns, Mapping) or not input_fns:
            raise TypeError(
                'input_fns must be a non-empty dict of name -> input_fn, e.g. {"eval": eval_fn}'
            )
        specs = {name: split_eval_spec(name, spec, steps) for name, spec in input_fns.items()}
        store = store if store is not None else MetricHistory()
        events = events if events is not None else EventBus()
        return [
            cls(estimator, fn, name, every_n_iter, n, store=store, events=events,
                evaluate_from=evaluate_from, asynchronous=asynchronous, when_busy=when_busy)
            for name, (fn, n) in specs.items()
        ]  # fmt: skip

    @property
    def history(self) -> pd.DataFrame:
        """Every recorded value (of every evaluation sharing the store), tidy."""
        return self.store.to_frame()

    @property
    def status(self) -> str:
        """One line: how this evaluation runs (and why from checkpoints)."""
        if self.prepare_error is not None:
            return f"{self.evaluation}: cannot be built: {self.prepare_error}"
        if self.how is None:
            return f"{self.evaluation}: decided when training starts"
        if self.how == "checkpoints":
            how = f"{self.evaluation}: evaluated from checkpoints: {self.why}"
        else:
            how = f"{self.evaluation}: evaluated in memory ({self.how})"
        if self.unplotted:
            return f"{how}; not plotted (not single numbers): {', '.join(self.unplotted)}"
        return how

    @property
    def evaluating(self) -> bool:
        """True while an evaluation runs (on the training thread, or in flight on its own)."""
        return self._evaluating

    @property
    def eval_graph(self) -> Any:
        """The in-memory evaluation graph (None until the first evaluation of a new model built
        it, and from checkpoints)."""
        return self._parts.graph if self._parts is not None else None

    def attach(self, run: Any) -> None:
        super().attach(run)
        own = getattr(run, "own", None)
        if own is not None:  # the evaluation session, kept across train() calls, ends with it
            own(_Closer(self))

    def on_run_state(self, event: RunStateEvent) -> None:
        if event.state == "running":  # (before the training thread builds its graph)
            self._await_preparation()
        elif event.state == "stopping":
            with self._lock:  # interrupt the evaluation in progress, not the final one
                if self._evaluating:
                    self._interrupt.set()
        elif event.state == "paused":  # held at the first step: show step 0 all the same
            self._start_first()  # (the training thread, in the step's after_run)
        elif event.state == "failed":  # end() does not run then: close the evaluation session
            self._close_eval_session()

    def close(self) -> None:
        """Cancel an evaluation in flight; close the evaluation session and forget its graph."""
        self._await_preparation()
        self._close_eval_session()
        self._parts = self._signature = None

    def synchronous_for(self, watcher: object, needed: bool = True) -> None:
        """``watcher`` (an :class:`EarlyStopping`) needs each result at its very step: evaluate
        synchronously while any watcher needs it."""
        (self._sync_for.add if needed else self._sync_for.discard)(id(watcher))

    @property
    def runs_asynchronously(self) -> bool:
        """True when the next evaluation goes to a thread of its own."""
        return self.asynchronous and self.how == "persistent session" and not self._sync_for

    def prepare(self, train_vars: Mapping[str, Any]) -> bool:
        """Build the evaluation graph and session now, on this thread, for a model whose
        training variables (by name) are ``train_vars`` (those of a scratch training graph,
        see :class:`EvalPreparation`), so that the next ``train()`` evaluates at once. Only
        in memory (``evaluate_from="memory"``) and while nothing is built. A failure is shown
        (:attr:`prepare_error`, an :class:`EvalPreparedEvent` with its ``error``) and training
        builds again in ``begin()``, which raises it before the first checkpoint. Returns True
        when built."""
        if self.evaluate_from != "memory" or self._parts is not None:
            return False
        try:
            self._train_vars = dict(train_vars)
            self._build(variables_signature(self._train_vars))
            assert self._parts is not None
            if self.how == "persistent session":
                self._eval_session = EvalSession(self._parts, self._session_config())
                self._eval_session.warm_up()
            with self._parts.graph.as_default():  # a writer's first event is this graph
                _tf.compat.v1.summary.FileWriterCache.get(tfi.eval_dir(self)).flush()
        except Exception as exc:
            log.debug("nbhooks: evaluation %r not prepared", self.evaluation, exc_info=True)
            self._close_eval_session()
            self._parts = self._signature = self.how = None
            self.prepare_error = describe_error(exc)
            self.events.emit(EvalPreparedEvent(self.evaluation, (), self.prepare_error))
            return False
        names = scalar_metric_names(self._parts.metrics)
        self.events.emit(EvalPreparedEvent(self.evaluation, names))
        return True

    def awaits(self, preparation: EvalPreparation) -> None:
        """Training (and :meth:`close`) waits for ``preparation`` to end before it starts."""
        self._preparation = preparation

    def _await_preparation(self) -> None:
        preparation, self._preparation = self._preparation, None
        if preparation is not None:
            preparation.wait()

    # -- SessionRunHook -------------------------------------------------------------------
    def begin(self) -> None:
        self._await_preparation()
        self._stop_worker()  # left by a training session that crashed
        self._global_step = require_global_step("LiveEvaluatorHook")
        tfi.reset_schedule(self)
        self._interrupted = False
        self._interrupt.clear()
        self._async_error = None
        self._unbuilt = self._first = None
        # an eval folder written before: mark where this session starts (see _mark_start)
        self._marks_start = bool(_tf.io.gfile.glob(f"{tfi.eval_dir(self)}/{EVENTS_GLOB}"))
        v1 = _tf.compat.v1
        if self.evaluate_from == "checkpoints":
            self._begin_checkpoints(self.why or "evaluate_from='checkpoints'")
            return
        self._train_vars = {v.name: v for v in v1.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)}
        signature = variables_signature(self._train_vars)
        if self._parts is not None and signature == self._signature:
            # Another train() call of the same model: keep the graph and its session.
            self._parts.rebind(self._train_vars)
            return
        self._close_eval_session()
        self._parts = self._signature = self.how = self.why = self.unplotted = None
        unprepared, self.prepare_error = self.prepare_error, None
        if self.evaluate_from == "auto" or unprepared:
            # Whether to evaluate from checkpoints must be known before the first evaluation;
            # an evaluation that failed to build ahead fails here, before the first checkpoint.
            self._build(signature)
        else:  # built by the first evaluation, beside training (see after_create_session)
            self._unbuilt = signature

    def _build(self, signature: tuple[tuple[str, str, str], ...]) -> None:
        """Build the evaluation graph and decide ``how``; a model that cannot be copied in
        memory is refused (ValueError) or, with ``evaluate_from="auto"``, from checkpoints."""
        try:
            parts = EvalGraph.build(
                self.estimator,
                without_autotune(self.estimator, self.input_fn),
                tfi.eval_input_hooks(self),
                self._train_vars,
            )
        except InMemoryUnsupported as exc:
            if self.evaluate_from == "auto":
                self._begin_checkpoints(str(exc))
                return
            raise ValueError(
                f"LiveEvaluatorHook({self.evaluation!r}) cannot evaluate this model in memory: "
                f"{exc}. Evaluate from checkpoints instead: "
                f"LiveEvaluatorHook(..., evaluate_from='checkpoints') or "
                f"Dashboard(..., evaluate_from='checkpoints') (each evaluation then runs "
                f"estimator.evaluate() on the checkpoint of its step)"
            ) from exc
        self._parts, self._signature = parts, signature
        if parts.has_queue_runners:
            self.how = "fresh graph per evaluation"
        elif EvalSession.applies(parts):
            self.how = "persistent session"
        else:
            self.how = "per evaluation"
        self.why = None

    def _begin_checkpoints(self, why: str) -> None:
        v1 = _tf.compat.v1
        self._close_eval_session()
        self.how, self.why, self._parts, self._signature = "checkpoints", why, None, None
        savers = v1.get_collection(v1.GraphKeys.SAVERS)
        self._saver = savers[0] if savers else None

    def after_create_session(self, session: Any, coord: Any) -> None:
        """Evaluate once before training (as TF's hook does). For a model new to this hook,
        that first evaluation also builds the evaluation graph and session: it takes a snapshot
        of the variables (one fetch) and, once the first training step is done, runs on a
        thread of its own: the first step neither waits for it nor shares the CPU with it
        (its results are those of this step all the same). An error building or running it
        fails training at a later step."""
        self._session = session
        if self._marks_start:
            self._mark_start(int(session.run(self._global_step)))
        signature, self._unbuilt = self._unbuilt, None
        if signature is None:
            self._evaluate(session)
            return
        tfi.mark_evaluated(self)
        step, values = session.run((self._global_step, self._train_vars))
        self._first = (int(step), values, signature)

    def _mark_start(self, step: int) -> None:
        """Write a session-start marker at ``step + 1`` to the eval folder: values written
        there before for later steps are of a branch this session abandons (a rewind, or a
        restart from an earlier checkpoint), and readers drop them, as TensorBoard does
        (:func:`~nbhooks.eventfiles.earlier_evaluations` for a later dashboard). The writer
        is the one the evaluations' summaries go through, so the marker comes before them."""
        v1 = _tf.compat.v1
        writer = v1.summary.FileWriterCache.get(tfi.eval_dir(self))
        writer.add_session_log(v1.SessionLog(status=v1.SessionLog.START), step + 1)

    def after_run(self, run_context: Any, run_values: Any) -> None:
        self._start_first()
        self._raise_async_error()
        super().after_run(run_context, run_values)

    def _start_first(self) -> None:
        """Start the session's first evaluation, if it waits for the first step."""
        first, self._first = self._first, None
        if first is not None:
            step, values, signature = first
            self._start_snapshot(step, values, build=signature)

    def _evaluate(self, train_session: Any, synchronous: bool = False) -> None:
        """One evaluation at this step (TF's hook calls it: tfi.CONTRACT); ``synchronous``
        runs it on this thread whatever ``asynchronous`` says."""
        self._start_first()
        self._raise_async_error()
        busy = not synchronous and self.asynchronous and not self._sync_for and self._in_flight()
        if busy and self.when_busy == "skip":
            self._skip()
            return
        self._finish_in_flight(cancel=False)  # the one before, first: results in step order
        self._raise_async_error()
        if not synchronous and self.runs_asynchronously:
            self._evaluate_in_background(train_session)
            return
        step = int(train_session.run(self._global_step))
        if self.store.has(self.evaluation, step):
            # end() after an evaluation at the same step, or a new train() call starting
            # where the last one ended: nothing new to measure.
            tfi.mark_evaluated(self)
            return
        started = time.perf_counter()
        with self._lock:
            self._evaluating = True
        try:
            results = self._run_evaluation(train_session, step)
        except EvalInterrupted:
            self._interrupted = True
            log.info("nbhooks: evaluation %r at step %d interrupted by stop", self.evaluation, step)
            return
        finally:
            with self._lock:
                self._evaluating = False
            tfi.mark_evaluated(self)
        if results is None:  # from checkpoints, and no checkpoint of a new step
            return
        self._record(step, results, started)

    def _record(self, step: int, results: Mapping[str, Any], started: float) -> None:
        seconds = time.perf_counter() - started
        with self._lock:
            self.eval_seconds += seconds
            self.evaluations += 1
            if self.first_eval_seconds is None:
                self.first_eval_seconds = seconds
        step = int(results.get(_GLOBAL_STEP, step))
        metrics = scalar_metrics(results)
        if self.unplotted is None:
            self.unplotted = unplotted_metrics(results)
        wall_time = time.time()
        if self.store.record(self.evaluation, step, metrics, wall_time):
            self.events.emit(EvalEvent(self.evaluation, step, metrics, wall_time))

    # -- a snapshot of the step, evaluated on a thread of its own ---------------------------
    def _in_flight(self) -> bool:
        return self._worker is not None and self._worker.busy

    def _skip(self) -> None:
        """Asynchronous: a step reached while the evaluation before still runs."""
        tfi.mark_evaluated(self)
        self.skipped += 1
        log.info(
            "nbhooks: evaluation %r skipped at iteration %d: the one before still runs "
            "(%d skipped)", self.evaluation, tfi.iteration_count(self), self.skipped,
        )  # fmt: skip

    def _evaluate_in_background(self, train_session: Any) -> None:
        """Snapshot the variables (one fetch, with the step) and evaluate them on a thread."""
        tfi.mark_evaluated(self)
        parts = self._parts
        assert parts is not None
        step, values = train_session.run((self._global_step, parts.sources))
        self._start_snapshot(int(step), values)

    def _start_snapshot(
        self, step: int, values: Mapping[str, Any], build: tuple[Any, ...] | None = None
    ) -> None:
        """Evaluate ``values`` (by evaluation variable name; by training variable name when
        the graph is to be built first, from ``build``: the variables' signature) as step
        ``step`` on a thread of this hook."""
        if build is None and self.store.has(self.evaluation, step):
            return
        with self._lock:
            self._evaluating = True
        if self._worker is None:
            niceness = self.niceness
            self._worker = Worker(
                f"nbhooks-eval-{self.evaluation}",
                setup=lambda: lower_this_thread(niceness),
                alive=self._training_open,  # closed without end(): training failed
            )
        graph = _tf.compat.v1.get_default_graph()
        self._worker.submit(lambda: self._evaluate_snapshot(step, values, graph, build))

    def _evaluate_snapshot(
        self, step: int, values: Mapping[str, Any], train_graph: Any, build: tuple[Any, ...] | None
    ) -> None:
        """The evaluation thread: ``train_graph`` is the default graph there, as on the
        training thread (summaries, the training variables' collections)."""
        started = time.perf_counter()
        try:
            with train_graph.as_default():
                if build is not None:
                    self._build(build)
                    assert self._parts is not None
                    values = {n: values[v.name] for n, v in self._parts.sources.items()}
                if not self.store.has(self.evaluation, step):
                    self._record(step, self._evaluate_values(values), started)
        except EvalInterrupted:
            self._interrupted = True
            log.info("nbhooks: evaluation %r at step %d interrupted by stop", self.evaluation, step)
        except BaseException as exc:  # raised on the training thread, at its next step
            self._async_error = exc
        finally:
            with self._lock:
                self._evaluating = False

    #: Asynchronous: the evaluation session runs its ops on the evaluating thread itself
    #: (TensorFlow's caller-thread mode), at that thread's priority, instead of queueing them
    #: behind training's in the shared inter-op pool; no hand-off to a pool thread (which spins
    #: after each) for each of an evaluation's many small runs; its input is read on that
    #: thread too (see :class:`nbhooks.hooks.eval_session.EvalSession`). The intra-op pool is
    #: the process's: see :mod:`nbhooks.thread_pools`.
    own_threads = True
    #: Asynchronous: how much nicer than training the evaluation threads run (Linux; 0: as
    #: nice), so that they take the CPU training leaves idle rather than training's.
    niceness = BACKGROUND

    def _session_config(self) -> Any:
        """The evaluation session's config: the estimator's, its ops run on the evaluating
        thread when evaluations run asynchronously (and ``own_threads``)."""
        config = tfi.session_config(self.estimator)
        if not (self.own_threads and self.asynchronous and not self._sync_for):
            return config
        config = (
            _tf.compat.v1.ConfigProto()
            if config is None
            else type(config).FromString(config.SerializeToString())
        )
        config.use_per_session_threads = False
        del config.session_inter_op_thread_pool[:]
        config.inter_op_parallelism_threads = -1  # run in the caller's thread
        return config

    def _finish_in_flight(self, cancel: bool) -> None:
        """Wait for the evaluation in flight (interrupted first if ``cancel``)."""
        worker = self._worker
        if worker is None:
            return
        if cancel and worker.busy:
            self._interrupt.set()
        worker.wait()
        if cancel:
            self._interrupt.clear()

    def _training_open(self) -> bool:
        session = self._session
        return session is not None and not tfi.session_closed(session)

    def _stop_worker(self) -> None:
        """Cancel the evaluation in flight and end the evaluation thread."""
        self._finish_in_flight(cancel=True)
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    def _raise_async_error(self) -> None:
        error, self._async_error = self._async_error, None
        if error is not None:
            self._stop_worker()  # training fails: end() will not end it
            raise error

    def end(self, session: Any) -> None:
        try:
            self._start_first()  # a session that ran no step
            self._finish_in_flight(cancel=False)  # its result is that of its step: keep it
            self._raise_async_error()
            if not self._interrupted:  # a stop cut an evaluation short: do not start another
                self._evaluate(session, synchronous=True)  # the final one
        finally:
            self._stop_worker()
            self._session = None
            if self.how != "persistent session":
                self._close_eval_session()

    def _run_evaluation(self, train_session: Any, step: int) -> Mapping[str, Any] | None:
        """One evaluation, the way ``how`` says; raises EvalInterrupted on a stop."""
        if self.how == "checkpoints":
            return self._evaluate_checkpoint(train_session, step)
        assert self._parts is not None
        return self._evaluate_values(train_session.run(self._parts.sources))

    def _evaluate_values(self, values: Mapping[str, Any]) -> Mapping[str, Any]:
        """Evaluate in memory the variable values ``values`` (fetched from the evaluation
        graph's ``sources``), on any thread; raises EvalInterrupted on a stop."""
        parts, eval_dir = self._parts, tfi.eval_dir(self)
        assert parts is not None
        if self.how == "persistent session":
            config = self._session_config()
            if self._eval_session is not None and not self._eval_session.made_with(config):
                self._eval_session.close()  # prepared for another threading (EarlyStopping)
                self._eval_session = None
            if self._eval_session is None:
                self._eval_session = EvalSession(parts, config)
            return self._eval_session.evaluate_feed(
                parts.feed(values), self.steps, eval_dir, self._interrupt.is_set
            )
        if self.how == "fresh graph per evaluation":
            # The queue runners' feeding functions keep their position in Python: only a new
            # input (a new call of input_fn, in a new graph) starts the data afresh.
            parts = EvalGraph.build(
                self.estimator, self.input_fn, tfi.eval_input_hooks(self), self._train_vars
            )
        results = parts.evaluate_in_new_session(
            self.estimator, parts.feed(values), [_InterruptHook(self._interrupt)], eval_dir
        )
        if self._interrupt.is_set():
            raise EvalInterrupted
        return results

    def _evaluate_checkpoint(self, session: Any, step: int) -> Mapping[str, Any] | None:
        model_dir = self.estimator.model_dir
        path = os.path.join(model_dir, f"model.ckpt-{step}")
        if not os.path.exists(f"{path}.index"):
            if self._saver is not None:  # the training saver: the same keys as RunConfig's
                path = self._saver.save(
                    session, os.path.join(model_dir, "model.ckpt"), global_step=step,
                    write_meta_graph=False,
                )  # fmt: skip
            else:  # Keras and other scaffold savers: evaluate RunConfig's newest checkpoint
                latest = _tf.train.latest_checkpoint(model_dir)
                if latest is None or latest in self._evaluated_paths:
                    return None
                path = latest
        self._evaluated_paths.add(path)
        results = self.estimator.evaluate(
            self.input_fn,
            steps=self.steps,
            hooks=[*self.user_hooks, _InterruptHook(self._interrupt)],
            checkpoint_path=path,
            name=tfi.eval_name(self),
        )
        if self._interrupt.is_set():
            raise EvalInterrupted
        return results

    def _close_eval_session(self) -> None:
        self._stop_worker()
        if self._eval_session is not None:
            self._eval_session.close()
        self._eval_session = None


class EvalPreparation:
    """Builds the evaluation graphs and sessions of ``hooks`` on a thread of its own, before
    training: a scratch training graph of ``train_input_fn`` (for the variables' names,
    shapes and dtypes), then :meth:`LiveEvaluatorHook.prepare` for each hook in turn. A
    :class:`~nbhooks.Dashboard` starts one when it is shown, so that Start trains and
    evaluates at once. Each hook waits for it before training starts (and when closed);
    a model whose training graph cannot be built here is left to training to report."""

    def __init__(self, estimator: Any, train_input_fn: InputFn, hooks: Sequence[Any]) -> None:
        self.hooks = [h for h in hooks if isinstance(h, LiveEvaluatorHook)]
        self.prepared: list[str] = []  #: the evaluations built ahead, once done
        self._done = threading.Event()
        for hook in self.hooks:
            hook.awaits(self)
        self._thread = threading.Thread(
            target=self._work,
            args=(estimator, train_input_fn),
            name="nbhooks-eval-prepare",
            daemon=True,
        )
        self._thread.start()

    def _work(self, estimator: Any, train_input_fn: InputFn) -> None:
        try:
            # The process's pools exist (the hooks' constructors made them): only what this
            # thread makes from now on inherits its lower priority.
            lower_this_thread(max((h.niceness for h in self.hooks), default=0))
            from nbhooks.variables import training_graph

            graph = training_graph(estimator, train_input_fn)
            variables = graph.get_collection(_tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
            train_vars = {v.name: v for v in variables}
            self.prepared = [h.evaluation for h in self.hooks if h.prepare(train_vars)]
        except Exception:  # training builds the same graph and raises it there
            log.debug("nbhooks: could not build the training graph ahead", exc_info=True)
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the preparation ended; True if it did (False: timed out)."""
        if threading.current_thread() is self._thread:
            return False
        return self._done.wait(timeout)

    def close(self) -> None:
        self.wait()


class _Closer:
    """What a run closes with itself: the hook's evaluation session (not the hook's run)."""

    def __init__(self, hook: LiveEvaluatorHook) -> None:
        self.hook = hook

    def close(self) -> None:
        self.hook.close()


class _InterruptHook(SessionRunHook):
    """In an evaluation's own session: stop after the batch during which ``flag`` was set."""

    def __init__(self, flag: threading.Event) -> None:
        self._flag = flag

    def after_run(self, run_context: Any, run_values: Any) -> None:
        if self._flag.is_set():
            run_context.request_stop()


#: numpy dtype kinds of the metrics kept: bool, int, unsigned, float.
_NUMERIC_KINDS = "biuf"


def _is_number(rank: int | None, kind: str) -> bool:
    """Whether a metric of this rank and numpy dtype kind is one number (what is plotted)."""
    return rank == 0 and kind in _NUMERIC_KINDS


def scalar_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """The numeric scalar entries of an evaluation result, as floats (global_step dropped)."""
    metrics: dict[str, float] = {}
    for key, value in results.items():
        if key == _GLOBAL_STEP:
            continue
        array = np.asarray(value)
        if _is_number(array.ndim, array.dtype.kind):
            metrics[str(key)] = float(array)
    return metrics


def unplotted_metrics(results: Mapping[str, Any]) -> tuple[str, ...]:
    """The entries of an evaluation result that :func:`scalar_metrics` leaves out, each named
    with its shape (``confusion (3×3)``) or type (``name (bytes)``)."""
    left_out = []
    for key, value in results.items():
        array = np.asarray(value)
        if key == _GLOBAL_STEP or _is_number(array.ndim, array.dtype.kind):
            continue
        shape = "×".join(map(str, array.shape)) if array.ndim else type(value).__name__
        left_out.append(f"{key} ({shape})")
    return tuple(left_out)


def scalar_metric_names(metrics: Mapping[str, Any]) -> tuple[str, ...]:
    """The names :func:`scalar_metrics` will keep of results of the tensors ``metrics``
    (numeric scalars, global_step dropped), in order."""
    return tuple(
        str(key)
        for key, tensor in metrics.items()
        if key != _GLOBAL_STEP
        and _is_number(tensor.shape.rank, np.dtype(tensor.dtype.as_numpy_dtype).kind)
    )


def split_eval_spec(name: str, spec: Any, steps: int | None) -> tuple[InputFn, int | None]:
    """``input_fn`` or ``(input_fn, steps)`` -> ``(input_fn, steps)`` (``steps`` by default)."""
    if isinstance(spec, tuple):
        if len(spec) != 2 or not callable(spec[0]):
            raise TypeError(
                f"evals[{name!r}] must be an input_fn or (input_fn, steps), e.g. "
                f"(train_fn, 20), got a tuple of {len(spec)}"
            )
        fn, n = spec
        return fn, check_int(f"steps of evals[{name!r}]", n, hint="batches per evaluation")
    if not callable(spec):
        raise TypeError(
            f"evals[{name!r}] must be an input_fn or (input_fn, steps), got {type(spec).__name__}"
        )
    return spec, steps


def check_input_ends(estimator: Any, input_fn: InputFn, name: str) -> None:
    """Refuse an evaluation input that never ends (with no ``steps``): it would evaluate
    forever. Calls ``input_fn`` in a scratch graph: a ``tf.data.Dataset`` of infinite
    cardinality, or tensors with no input op that can run out (constants), never end."""
    t = _tf
    graph = t.Graph()
    with graph.as_default():
        result = tfi.call_input_fn(estimator, input_fn, t.estimator.ModeKeys.EVAL)
        if isinstance(result, t.data.Dataset):
            cardinality = t.data.experimental.cardinality(result)
            with t.compat.v1.Session(graph=graph) as session:
                endless = session.run(cardinality) == t.data.experimental.INFINITE_CARDINALITY
            what = "its dataset repeats forever (infinite cardinality)"
        else:
            types = {op.type for op in graph.get_operations()}
            endless = not any(kind in op for op in types for kind in _END_OF_INPUT_OPS)
            what = "it returns tensors that never run out (no dataset, queue or reader)"
    if endless:
        raise ValueError(
            f"the evaluation input_fn of {name!r} never ends: {what}, so each evaluation would "
            f"never finish. Give it a number of batches: steps=N (LiveEvaluatorHook), "
            f"eval_steps=N (Dashboard, every evaluation) or per evaluation, e.g. "
            f'evals={{"{name}": ({getattr(input_fn, "__name__", "input_fn")}, 20), ...}}; '
            f"or make it finite (no .repeat())"
        )


def _check_args(
    estimator: Any,
    input_fn: Any,
    name: Any,
    every_n_iter: Any,
    steps: Any,
    store: Any,
    evaluate_from: Any,
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
    if evaluate_from not in EVALUATE_FROM:
        raise ValueError(
            f"evaluate_from must be one of {EVALUATE_FROM} (in memory, from the checkpoint of "
            f"each evaluated step, or in memory where possible), got {evaluate_from!r}"
        )
    config = estimator.config
    if config.num_ps_replicas > 0 or config.num_worker_replicas > 1:
        raise ValueError(
            f"LiveEvaluatorHook evaluates inside the training process, which works only for "
            f"local (single machine) training, but the estimator's RunConfig has "
            f"{config.num_ps_replicas} parameter server(s) and {config.num_worker_replicas} "
            f"worker(s) (from TF_CONFIG). Unset TF_CONFIG to train locally, or use "
            f"tf.estimator.train_and_evaluate() with an evaluator task."
        )


class EarlyStopping(SessionRunHook):
    """Stop training when an in-memory metric stops improving (no event files needed).

    Watches ``metric`` of one evaluation (``evaluation``; may be left out when only one is
    watched). After ``patience`` evaluations in a row without an improvement of more than
    ``min_delta`` over the best value (lower is better for ``mode="min"``; left out: "min" for
    losses and errors, "max" for accuracy, auc, precision...; other names need it), it stops
    the run cleanly: the final checkpoint is written and ``end()`` hooks run. ``reason`` says
    why.

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
        guessed = guess_mode(metric) if mode is None else check_mode(mode)
        if guessed is None:
            raise ValueError(
                f"cannot tell from its name whether a higher or a lower {metric!r} is better: "
                f"pass mode='max' or mode='min'"
            )
        self.mode: Mode = guessed
        check_int("patience", patience, hint="evaluations without improvement before stopping")
        if not isinstance(min_delta, numbers.Real) or not min_delta >= 0:
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        self.evaluators: list[LiveEvaluatorHook] = list(evaluators)
        for hook in self.evaluators:
            if not isinstance(hook, LiveEvaluatorHook):
                raise TypeError(
                    f"evaluators must be LiveEvaluatorHook instances, got {type(hook).__name__}"
                )
        self.metric: str = metric
        self.patience: int = patience
        self.min_delta: float = float(min_delta)
        self.evaluation: str | None = evaluation
        self.run: Any = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._held: list[LiveEvaluatorHook] = []
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
        # Stop at the very step whose evaluation ran out of patience: the watched evaluation
        # runs synchronously (an asynchronous one would decide some steps later).
        self._held = [h for h in evaluators if h.evaluation == self.evaluation]
        for hook in self._held:
            hook.synchronous_for(self)

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
        for hook in self._held:
            hook.synchronous_for(self, needed=False)
        self._held = []

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
            self._buses[0].emit(StopRequestEvent(event.step, self.reason or "early stopping"))
