"""Dashboard: a run, its hooks and their views composed into one widget."""

from __future__ import annotations

import contextlib
import html
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from nbhooks.atomic import write_text
from nbhooks.checks import (
    check_estimator,
    check_hooks,
    check_input_fn,
    check_int,
    check_model_dir,
    check_steps,
)
from nbhooks.events import BranchEvent, RunStateEvent
from nbhooks.notebook import TrainingRun

InputFn = Callable[..., Any]
EvalSpec = InputFn | tuple[InputFn, int]  # an input_fn, or (input_fn, batches per evaluation)


class Dashboard:
    """Train an Estimator in the background and watch it: controls, progress, live curves,
    final-op values and input-pipeline checkpoints in one widget.

    ``evals``: ``{"name": input_fn}`` (or one input_fn, named ``"eval"``) evaluated in memory
    every ``every_n_iter`` steps for ``eval_steps`` batches (None: until the input ends); a
    value ``(input_fn, n)`` evaluates ``n`` batches, e.g. ``{"train": (train_fn, 20)}``.
    ``evaluate_from``: ``"memory"``, ``"checkpoints"`` (``estimator.evaluate()`` on the
    checkpoint of each evaluated step) or ``"auto"``; the panel says which (``eval_status``).
    ``asynchronous_eval`` (default True): evaluate a snapshot of each evaluated step on a
    thread of its own while training goes on; training waits only when the next evaluation
    step comes before the last evaluation ended, so every step is evaluated, with the same
    numbers (see :class:`~nbhooks.LiveEvaluatorHook`'s ``asynchronous``). An evaluation that
    ``early_stopping`` watches runs synchronously; ``False`` evaluates every one on the
    training thread. The in-memory evaluations are built when the dashboard is shown, so
    that Start trains at once.
    ``final_ops``: what :class:`~nbhooks.FinalOpsTableHook` accepts. ``pipeline_checkpoints``:
    Save/Restore of the ``tf.data`` position, saved automatically at every model checkpoint:
    ``"auto"`` (the default) on where the input can be checkpointed, else off with the reason
    in the pipeline panel; when each save would write over 1 MB (a large shuffle buffer),
    automatic saves wait until Save is pressed once, and the panel says so. ``True``: always
    on (an input that cannot be checkpointed is an error naming the cause); ``False`` off.
    ``early_stopping``: an :class:`~nbhooks.EarlyStopping` or its keyword arguments, e.g.
    ``{"metric": "loss", "patience": 3}``. ``steps``: what :meth:`train` and the Start button
    train by default. Display it in a notebook; everything also works headless.

    ``estimator``: an Estimator (training continues from the checkpoint in its model_dir), or
    a function ``model_dir -> Estimator``: each run then starts fresh in a new folder
    ``runs_dir/001``, ``002``... (earlier ones kept), and a New run button (:meth:`new_run`)
    starts over. ``pace``: at most this many steps per second (None: no limit), so that a
    class can watch a small model learn; :attr:`pace` changes it while training.

    Knobs (:func:`nbhooks.knob` in the model_fn) get a slider each; :meth:`set_knob` changes
    one from code, :attr:`knobs` lists every change that reached training.
    """

    def __init__(
        self,
        estimator: Any,
        train_input_fn: InputFn,
        evals: Mapping[str, EvalSpec] | InputFn | None = None,
        every_n_iter: int = 100,
        eval_steps: int | None = None,
        final_ops: Any = None,
        pipeline_checkpoints: bool | str = "auto",
        early_stopping: Any = None,
        *,
        steps: int = 1000,
        hooks: Iterable[Any] = (),
        keep_checkpoints: int = 5,
        external_state_policy: str | None = None,
        max_points: int = 500,
        export_dir: str | os.PathLike[str] | None = None,
        pace: float | None = None,
        runs_dir: str | os.PathLike[str] = "runs",
        evaluate_from: str = "memory",
        asynchronous_eval: bool = True,
    ) -> None:
        # Every argument, for new_run(): the same dashboard again, on a fresh estimator.
        made_with = {name: value for name, value in locals().items() if name != "self"}
        from nbhooks.hooks.pace import PaceHook

        self.pace_hook = PaceHook(pace)  # checks pace
        self._make_estimator, estimator = _estimator_and_factory(estimator, runs_dir)
        self._made_with = made_with
        self._frame: _Frame | None = None
        from nbhooks.stores.metrics import MetricHistory

        # Every check runs before anything is created: a bad argument leaves nothing behind.
        check_estimator(estimator)
        check_model_dir(estimator.model_dir, create=False)  # a file, or read-only: refused now
        check_input_fn(train_input_fn)
        check_steps(steps, None)
        hooks = tuple(hooks)
        check_hooks(hooks)
        from nbhooks.hooks.pipeline import check_input_savers

        check_input_savers(hooks, dashboard_saves=pipeline_checkpoints is not False)
        check_int("every_n_iter", every_n_iter, hint="evaluate every N training steps, e.g. 100")
        check_int("eval_steps", eval_steps, optional=True, hint="None: until the input ends")
        check_int("max_points", max_points, minimum=3, hint="the most points drawn per curve")
        evals = _check_evals(evals)
        if early_stopping is not None and not evals:
            raise ValueError(
                "early_stopping watches in-memory evaluations: also pass evals={'eval': eval_fn}"
            )
        self.estimator = estimator
        self.metrics = MetricHistory()
        self.evaluators = self._make_evaluators(
            evals, every_n_iter, eval_steps, evaluate_from, asynchronous_eval
        )
        self._earlier: dict[str, str] = {}  # evaluation -> what was read, for its status
        self._read_earlier_evaluations()
        self.early_stopping = _make_early_stopping(early_stopping, self.evaluators)
        self.final_ops_hook = self._make_final_ops(final_ops)
        self._pipeline = self._make_pipeline(
            pipeline_checkpoints, keep_checkpoints, external_state_policy
        )
        from nbhooks.hooks.knobs import KnobHook

        self.knob_hook = KnobHook()
        self._train_input_fn = train_input_fn
        own_hooks = [*self.evaluators, self.early_stopping, self.final_ops_hook, self._pipeline]
        own_hooks.append(self.knob_hook)
        self.run = TrainingRun(
            estimator,
            train_input_fn,
            steps=steps,
            hooks=[*(h for h in own_hooks if h is not None), self.pace_hook, *hooks],
        )
        self.run.events.subscribe(self._follow_the_model_back)
        self.max_points = max_points
        self.export_dir = Path(export_dir) if export_dir is not None else Path(estimator.model_dir)
        self._widget: Any = None
        self._views: dict[str, Any] = {}
        #: The evaluations built ahead when the dashboard was shown (None before).
        self.eval_preparation: Any = None

    def _read_earlier_evaluations(self) -> None:
        """Put on the curves what earlier trainings of this model_dir evaluated (its
        ``eval_<name>`` folders), up to the checkpoint training goes on from: a dashboard made
        again (a restarted kernel, the notebook opened another day) shows the whole history."""
        from nbhooks.eventfiles import earlier_evaluations
        from nbhooks.rewind import checkpoint_step
        from nbhooks.views.format import plural

        last = checkpoint_step(self.estimator.model_dir) if self.evaluators else None
        if last is None:
            return
        for hook in self.evaluators:
            folder = self.estimator.eval_dir(hook.evaluation)
            earlier = earlier_evaluations(folder, last)
            for step, metrics, wall_time in earlier:
                self.metrics.record(hook.evaluation, step, metrics, wall_time)
            if earlier:
                self._earlier[hook.evaluation] = (
                    f"{plural(len(earlier), 'earlier evaluation')} (steps {earlier[0][0]:,}-"
                    f"{earlier[-1][0]:,}) read from {folder}"
                )

    def _status(self, hook: Any) -> str:
        """How ``hook``'s evaluation runs, and what of it was read from an earlier training."""
        earlier = self._earlier.get(hook.evaluation)
        return f"{hook.status}; {earlier}" if earlier else hook.status

    # -- building the hooks -----------------------------------------------------------------
    def _make_evaluators(
        self,
        evals: dict[str, EvalSpec],
        every_n_iter: int,
        eval_steps: int | None,
        evaluate_from: str,
        asynchronous: bool = False,
    ) -> list[Any]:
        """One LiveEvaluatorHook per evaluation; ``evaluate_from``: "memory", "checkpoints" or
        "auto"; ``asynchronous`` (see :class:`~nbhooks.LiveEvaluatorHook`)."""
        if not evals:
            return []
        from nbhooks.hooks.evaluator import LiveEvaluatorHook

        return LiveEvaluatorHook.many(
            self.estimator,
            evals,
            every_n_iter,
            eval_steps,
            store=self.metrics,
            evaluate_from=evaluate_from,
            asynchronous=asynchronous,
        )

    @property
    def eval_status(self) -> str:
        """How each evaluation runs: in memory, or from checkpoints and why (one line each)."""
        return "\n".join(self._status(h) for h in self.evaluators)

    def _eval_status_section(self) -> Any:
        """The panel's line saying how the evaluations run, kept current by the publisher; an
        evaluation that cannot be built is said in red before Start."""
        from nbhooks.views.base import View
        from nbhooks.views.format import ERROR_COLOUR, coloured

        dash = self

        class EvalStatusView(View):
            def __init__(self) -> None:
                import ipywidgets as w

                self.widget = w.HTML(self.text())
                self.widget.add_class("nbh-eval-status")

            @staticmethod
            def text() -> str:
                lines = (
                    coloured(dash._status(h), ERROR_COLOUR)
                    if h.prepare_error
                    else f'<span style="opacity:.75">{html.escape(dash._status(h))}</span>'.replace(
                        "\n", "<br>"
                    )
                    for h in dash.evaluators
                )
                return "<br>".join(lines)

            def on_events(self, events: Any) -> None:
                text = self.text()
                if text != self.widget.value:
                    self.widget.value = text

        self._views["eval_status"] = EvalStatusView()
        return self._views["eval_status"].widget

    @staticmethod
    def _make_final_ops(final_ops: Any) -> Any:
        if final_ops is None:
            return None
        from nbhooks.hooks.final_ops import FinalOpsTableHook

        return FinalOpsTableHook(final_ops)

    def _make_pipeline(self, enabled: bool | str, keep: int, policy: str | None) -> Any:
        """The pipeline hook: ``"auto"`` turns itself off on inputs it cannot hold."""
        if not isinstance(enabled, bool) and enabled != "auto":
            raise TypeError(
                f"pipeline_checkpoints must be 'auto' (on where the input allows it), True or "
                f"False, got {enabled!r}"
            )
        if enabled is False:
            return None
        from nbhooks.hooks.pipeline import CHEAP_BYTES, PipelineCheckpointHook

        auto = enabled == "auto"
        return PipelineCheckpointHook(
            self.estimator,
            external_state_policy=policy,
            keep=keep,
            unsupported="off" if auto else "raise",
            automatic_limit=CHEAP_BYTES if auto else None,
        )

    # -- the run ----------------------------------------------------------------------------
    def train(self, steps: int | None = None, max_steps: int | None = None) -> None:
        """Start training in the background (``steps`` more, or up to ``max_steps``); returns
        at once. :meth:`wait` blocks until it ends."""
        self.run.start(steps=steps, max_steps=max_steps)

    def pause(self) -> None:
        self.run.pause()

    def resume(self) -> None:
        self.run.resume()

    def stop(self, reason: str | None = None) -> None:
        """Stop cleanly at the next step boundary (``reason`` shown with the final state)."""
        self.run.stop(reason)

    def wait(self, timeout: float | None = None) -> str:
        """Block until training ends; re-raise its error. Returns the final state."""
        return self.run.wait(timeout)

    @property
    def state(self) -> str:
        return self.run.state

    @property
    def history(self) -> pd.DataFrame:
        """Every in-memory evaluation: step, evaluation, metric, value, wall_time."""
        return self.metrics.to_frame()

    @property
    def final_ops(self) -> pd.DataFrame:
        """Final-op values, one row per op per session (empty without ``final_ops``)."""
        if self.final_ops_hook is None:
            return pd.DataFrame()
        return self.final_ops_hook.to_frame()

    @property
    def pipeline(self) -> Any:
        """The :class:`~nbhooks.PipelineCheckpointHook`: ``save()``, ``restore(step=None)``,
        ``delete(step)``, ``checkpoints``. Requests made while training is paused are served
        when it resumes, at that step boundary."""
        if self._pipeline is None:
            raise RuntimeError(
                "pipeline checkpoints are off for this dashboard: create it with "
                "pipeline_checkpoints=True"
            )
        return self._pipeline

    # -- knobs ------------------------------------------------------------------------------
    @property
    def knob_specs(self) -> dict[str, Any]:
        """The model's knobs (name -> :class:`~nbhooks.knobs.KnobSpec`), found by building its
        training graph once (on this thread) if training has not found them yet."""
        if self.knob_hook.specs is None:
            from nbhooks.knobs import find_knobs

            found = find_knobs(self.estimator, self._train_input_fn)
            if found is not None:
                self.knob_hook.declare(found)
        return dict(self.knob_hook.specs or {})

    @property
    def knob_values(self) -> dict[str, float]:
        """Each knob's value now (the last one set, else the model_fn's)."""
        self.knob_specs  # noqa: B018 - finds them if needed
        return self.knob_hook.current()

    def set_knob(self, name: str, value: float) -> float:
        """Set knob ``name`` to ``value`` from the next training step on (at the start of the
        next training when idle); it holds across ``train()`` calls. Returns the value.

        KeyError for an unknown knob, TypeError for a non-number, ValueError outside its
        ``min``/``max``: raised before anything changes.
        """
        if not self.knob_specs:
            raise KeyError(
                f"this model has no knobs (nh.knob(...) in its model_fn); cannot set {name!r}"
            )
        return self.knob_hook.set(name, value)

    # -- rewind -----------------------------------------------------------------------------
    @property
    def checkpoints_to_rewind(self) -> list[int]:
        """The steps :meth:`rewind` can go back to (a model and an input checkpoint each; a
        model checkpoint when the input's position is not saved)."""
        from nbhooks.rewind import rewindable_steps

        return rewindable_steps(self.run.model_dir, self._input_rewinder()[0])

    def rewind(self, step: int) -> None:
        """Start the next training from the model and input-pipeline checkpoints of ``step``.

        Without input positions (``pipeline_checkpoints=False``; an input that has none to
        save, such as ``numpy_input_fn``; automatic input checkpoints paused for a large
        shuffle buffer) from the model checkpoint alone: the input then starts from its
        beginning, as at every ``train()`` without a saved position. Idle only.
        :attr:`history` keeps both branches (its ``branch`` column); knob values stay as they
        are now. Raises, before anything changes, when a checkpoint is missing.
        """
        from nbhooks.rewind import rewind

        if self.run.running:
            raise RuntimeError(f"rewind needs an idle run: this one is {self.state}; stop() it")
        with self.run.dir_lock.holding("rewind"):  # refused while another process trains
            rewind(self.run.model_dir, self._input_rewinder()[0], step)
        self.run.reread_step()
        self._branch_from(step, "rewind")

    def _branch_from(self, step: int, why: str, again: bool = False) -> None:
        """Record what follows ``step`` (``again``: from ``step`` itself on) in a new branch of
        the history, marked on the curves (main thread, before training starts)."""
        branch = self.metrics.fork(step - 1 if again else step)
        self.run.events.emit(BranchEvent(step - 1 if again else step))  # a Compare forks too
        curves = self._views.get("curves")
        if curves is not None:
            curves.mark(step, f"{why} → branch {branch}")
            curves.refresh()  # the abandoned branch fades now, not at the next evaluation

    def _follow_the_model_back(self, event: Any) -> None:
        """A ``train()`` that starts before the last recorded step (the later steps were never
        saved: a run that failed after its last checkpoint, or a RunConfig that saves none)
        records its evaluations in a new branch, as after a rewind, not as repeats dropped."""
        if isinstance(event, RunStateEvent) and event.state == "running":
            last = self.metrics.last_step()
            if event.step is not None and last is not None and event.step < last:
                # again: re-initialized weights (no checkpoint) differ from those recorded
                self._branch_from(event.step, f"restarted from step {event.step:,}", again=True)

    def _input_rewinder(self) -> tuple[Any, str | None]:
        """The pipeline hook that rewinds the input with the model; or None and why the input
        starts from its beginning instead (its positions are not saved)."""
        if self._pipeline is None:
            return None, "pipeline checkpoints are off"
        if self._pipeline.off:
            return None, self._pipeline.off
        if self._pipeline.paused:
            return None, "automatic input checkpoints are paused (a large shuffle buffer)"
        return self._pipeline, None

    def _rewind_view(self) -> Any:
        """The Rewind tab (main thread): the steps to go back to, kept current, and a button."""
        from nbhooks.views.rewind import RewindView

        def rewind(step: int) -> str:
            self.rewind(step)
            why = self._input_rewinder()[1]
            and_input = "" if why is None else f" (the model; the input from its beginning: {why})"
            return f"the next training starts from step {step}{and_input}"

        return RewindView(lambda: self.checkpoints_to_rewind, rewind)

    @property
    def knobs(self) -> pd.DataFrame:
        """Every knob change that reached training: step, knob, value, wall_time."""
        return self.knob_hook.log.to_frame()

    def close(self) -> None:
        """Stop training and close every widget and thread this dashboard owns."""
        self.run.close()
        self._widget = self._frame = None

    # -- fresh runs and pace ----------------------------------------------------------------
    def new_run(self) -> None:
        """Start over in a new run folder (``runs_dir/002``, ``003``...): fresh weights, empty
        curves and tables; earlier runs stay on disk. The dashboard shown stays where it is.

        Needs a dashboard made with a function ``model_dir -> Estimator``; refused while
        training (stop it first). Does not train: :meth:`train` or Start does.
        """
        if self._make_estimator is None:
            raise RuntimeError(
                f"this dashboard trains the estimator it was given, in {self.run.model_dir}; "
                "for fresh runs make it with a function model_dir -> Estimator, e.g. "
                "nh.Dashboard(make_demo_estimator, train_fn, ...)"
            )
        if self.run.running:
            raise RuntimeError(
                f"the run is {self.state}: stop() it (or wait() for it) before a new run"
            )
        from nbhooks.notebook import adopt

        earlier, frame = self.run, self._frame
        self.__init__(**self._made_with)  # type: ignore[misc]  # every part made afresh
        self._frame = frame
        if frame is not None:
            self._widget = self._build_widget()  # the new run's sections, in the same box
        adopt(self.run, earlier)  # running the dashboard's cell again replaces this run too
        earlier.close()

    @property
    def run_dir(self) -> str:
        """This run's folder (the estimator's model_dir)."""
        return self.run.model_dir

    @property
    def pace(self) -> float | None:
        """At most this many training steps per second (None: as fast as it goes). Settable
        at any time, also while training: a class can watch a small model learn."""
        return self.pace_hook.steps_per_sec

    @pace.setter
    def pace(self, steps_per_sec: float | None) -> None:
        self.pace_hook.steps_per_sec = steps_per_sec

    # -- the widget -------------------------------------------------------------------------
    @property
    def widget(self) -> Any:
        """The dashboard widget (created once, on first display, on the main thread)."""
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _build_widget(self) -> Any:
        import ipywidgets as w

        panel = self.run.panel()
        sections: list[Any] = [panel.widget]
        if self.evaluators:
            from nbhooks.views.curves import CurvesView

            self._views["curves"] = CurvesView(self.metrics, max_points=self.max_points)
            sections.append(self._views["curves"].widget)
            sections.append(self._eval_status_section())
        specs = self.knob_specs
        self._prepare_evaluations()
        if specs:
            from nbhooks.views.knobs import KnobsView

            self._views["knobs"] = KnobsView(
                specs, self.knob_hook.current(), self.set_knob, self._views.get("curves")
            )
            sections.insert(1, self._views["knobs"].widget)
        tabs: dict[str, Any] = {}
        if self.final_ops_hook is not None:
            from nbhooks.views.final_ops import FinalOpsView

            self._views["final_ops"] = FinalOpsView(
                self.final_ops_hook.table, export_dir=self.export_dir
            )
            tabs["Final ops"] = self._views["final_ops"].widget
        if self._pipeline is not None:
            from nbhooks.views.checkpoints import PipelineCheckpointPanel

            self._views["pipeline"] = PipelineCheckpointPanel(self._pipeline)
            tabs["Pipeline checkpoints"] = self._views["pipeline"].widget
        self._views["rewind"] = self._rewind_view()
        tabs["Rewind"] = self._views["rewind"].widget
        for view in self._views.values():
            panel.add(view, show=False)  # the run's panel owns them: run.close() closes them
        if tabs:
            tab = w.Tab(children=list(tabs.values()), titles=list(tabs))
            tab.add_class("nbh-tabs")
            sections.append(tab)
        return self._show_sections(sections)

    def _prepare_evaluations(self) -> None:
        """Build the in-memory evaluations on a thread while the dashboard is looked at, so
        that Start trains and evaluates at once (training waits for it if it comes first)."""
        if not self.evaluators or self.run.running:
            return
        from nbhooks.hooks.evaluator import EvalPreparation

        self.eval_preparation = self.run.own(
            EvalPreparation(self.estimator, self._train_input_fn, self.evaluators)
        )

    def _show_sections(self, sections: list[Any]) -> Any:
        """The dashboard box (made once; the run that is current owns it) with this run's
        sections under its header; a New run button when runs start fresh."""
        from nbhooks.views.progress import StatusLineKeeper

        panel = self.run.panel()
        curves = self._views.get("curves")
        if curves is not None:  # its status line follows the run, not the run's last end
            panel.add(StatusLineKeeper(curves.status, curves.interval), show=False)
        if self._frame is None:
            self._frame = _Frame(self.new_run if self._make_estimator is not None else None)
        if self._frame.new_run is not None:
            panel.add(self._frame.new_run.follow(self.state), show=False)
        self._frame.show(self.run, sections, self._title_html())
        return self._frame.box

    def _title_html(self) -> str:
        where = _short_path(self.run.model_dir)
        fresh = " · a fresh run" if self._make_estimator is not None else ""
        return f'<b>nbhooks</b> <span style="opacity:.75">· {html.escape(where)}{fresh}</span>'

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self.run.closed:
            return {"text/plain": repr(self)}
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        closed = " (closed)" if self.run.closed else ""
        return f"<nbhooks.Dashboard {self.state}{closed} step={self.run.global_step}>"

    # -- report -----------------------------------------------------------------------------
    def export_html(self, path: str | os.PathLike[str]) -> Path:
        """A standalone, offline HTML report: the outcome and settings, the best values and
        their steps, the curves, final-op values and pipeline checkpoints (paths relative to
        the report, local times)."""
        from nbhooks.views.report import report_html

        path = Path(path)
        page = report_html(self, path.parent, self._made_with, self._pipeline)
        write_text(path, page)
        return path


class _WidgetTree:
    """Closes a whole widget tree (the run owns it: closing or replacing the run closes it)."""

    def __init__(self, widget: Any) -> None:
        self.widget = widget

    def close(self) -> None:
        from nbhooks.views.base import close_widget_tree

        if self.widget is not None:  # None: handed over (a dashboard's box, to its new run)
            close_widget_tree(self.widget)


def _check_evals(evals: Any) -> dict[str, EvalSpec]:
    if evals is None:
        return {}
    if callable(evals):
        return {"eval": evals}
    if not isinstance(evals, Mapping) or not evals:
        raise TypeError(
            "evals must be an input_fn or a dict of name -> input_fn or (input_fn, steps), e.g. "
            f'{{"train": (train_fn, 20), "eval": eval_fn}}, got {type(evals).__name__}'
        )
    for name, fn in evals.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"evaluation names must be non-empty strings, got {name!r}")
        if not callable(fn) and not isinstance(fn, tuple):
            raise TypeError(
                f"evals[{name!r}] must be an input_fn or (input_fn, steps), got {type(fn).__name__}"
            )
    return dict(evals)


def _make_early_stopping(spec: Any, evaluators: list[Any]) -> Any:
    if spec is None:
        return None
    from nbhooks.hooks.evaluator import EarlyStopping

    if isinstance(spec, EarlyStopping):
        return spec
    if isinstance(spec, Mapping):
        spec = dict(spec)
        names = [h.evaluation for h in evaluators]
        if spec.get("evaluation") is None:
            if "eval" not in names and len(names) > 1:
                raise ValueError(
                    f"early_stopping: say which evaluation to watch, e.g. "
                    f'{{"metric": "loss", "evaluation": {names[-1]!r}}} (one of {names})'
                )
            spec["evaluation"] = "eval" if "eval" in names else names[0]
        elif spec["evaluation"] not in names:
            raise ValueError(
                f"early_stopping: evaluation {spec['evaluation']!r} is not one of the evals {names}"
            )
        return EarlyStopping(**spec, evaluators=evaluators)
    raise TypeError(
        "early_stopping must be nh.EarlyStopping(...) or its arguments as a dict, e.g. "
        f'{{"metric": "loss", "mode": "min", "patience": 3}}, got {type(spec).__name__}'
    )


# -- fresh runs --------------------------------------------------------------------------------
def _estimator_and_factory(estimator: Any, runs_dir: Any) -> tuple[Any, Any]:
    """``(factory or None, estimator)``: an Estimator is used as it is; a function
    ``model_dir -> Estimator`` is called on a new numbered folder of ``runs_dir``."""
    from nbhooks._tf import tf

    if isinstance(estimator, tf().compat.v1.estimator.Estimator) or not callable(estimator):
        check_estimator(estimator)
        return None, estimator
    make_estimator = estimator
    folder = _new_run_folder(runs_dir)
    try:
        made = make_estimator(str(folder))
        if not isinstance(made, tf().compat.v1.estimator.Estimator):
            raise TypeError(
                f"the function given as estimator must return an Estimator for the model_dir "
                f"it is given, got {type(made).__name__}"
            )
        if os.path.realpath(made.model_dir) != os.path.realpath(folder):
            raise ValueError(
                f"the function given as estimator must build it in the model_dir it is given "
                f"({str(folder)!r}), got model_dir={made.model_dir!r}: pass it on to RunConfig"
            )
    except BaseException:
        with contextlib.suppress(OSError):
            folder.rmdir()  # left empty: the next run takes its number
        raise
    return make_estimator, made


def _new_run_folder(runs_dir: Any) -> Path:
    """A new, empty ``runs_dir/NNN`` (one more than the highest number there), made here so
    that two kernels never share one."""
    from nbhooks.checks import check_model_dir

    runs = Path(check_model_dir(runs_dir))  # made if missing; refused if not writable
    number = max((int(p.name) for p in runs.iterdir() if p.name.isdigit()), default=0)
    while True:
        number += 1
        folder = runs / f"{number:03d}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder


def _short_path(path: str, start: str | None = None) -> str:
    """``path`` relative to ``start`` (the working directory) when inside it."""
    start = os.path.realpath(start or os.getcwd())
    real = os.path.realpath(path)
    return os.path.relpath(real, start) if real.startswith(start + os.sep) else path


#: Readable from the back of a classroom (1280x800 projectors): readouts at least 13 px,
#: tables that scroll inside their box instead of being cut off.
PROJECTOR_CSS = """<style>
.nbh-dashboard {font-size: 14px; min-width: 0;}
.nbh-dashboard .nbh-progress-line, .nbh-dashboard .nbh-state,
.nbh-dashboard .nbh-curves-readout, .nbh-dashboard .nbh-curves-status,
.nbh-dashboard .nbh-pipeline-status, .nbh-dashboard .nbh-error {font-size: 14px;}
.nbh-dashboard .nbh-curves-readout small {font-size: 13px;}
.nbh-dashboard .nbh-curves-readout .widget-html-content,
.nbh-dashboard .nbh-curves-readout {max-width: 100%; overflow-x: auto;}
.nbh-dashboard .nbh-curves-table td, .nbh-dashboard .nbh-curves-table th {padding: 2px 10px;}
.nbh-dashboard .nbh-final-ops-table {font-size: 13px;}
.nbh-dashboard .widget-tab, .nbh-dashboard .nbh-tabs {max-width: 100%; min-width: 0;}
/* Voila's page marks each cell with its tags: notes about the notebook's code are not shown */
.celltag_notebook-only {display: none !important;}
</style>"""


class _Frame:
    """The dashboard box: a header (title, New run) over the current run's sections.

    The box outlives new runs: :meth:`show` puts a run's sections in it and makes that run
    its owner (closing the run closes the box; a run replaced by a new one closes only its
    own sections)."""

    def __init__(self, new_run: Callable[[], None] | None) -> None:
        import ipywidgets as w

        from nbhooks.views.controls import NewRunButton

        self.title = w.HTML()
        self.title.add_class("nbh-title")
        self.new_run = NewRunButton(new_run) if new_run is not None else None
        header = [self.title] + ([self.new_run.widget] if self.new_run is not None else [])
        self.body = w.VBox()
        self.box = w.VBox(
            [
                w.HTML(PROJECTOR_CSS),
                w.HBox(header, layout=w.Layout(justify_content="space-between")),
                self.body,
            ],
            layout=w.Layout(max_width="1200px"),
        )
        self.box.add_class("nbh-dashboard")
        self._owner: _WidgetTree | None = None

    def show(self, run: Any, sections: list[Any], title: str) -> None:
        import ipywidgets as w

        sections_box = w.VBox(sections)
        run.own(_WidgetTree(sections_box))
        with self.box.hold_sync():
            self.title.value = title
            self.body.children = (sections_box,)
        if self._owner is not None:
            self._owner.widget = None  # the earlier run no longer closes the box
        self._owner = run.own(_WidgetTree(self.box))
