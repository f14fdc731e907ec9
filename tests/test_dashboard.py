"""Dashboard composition with a real Estimator and real (headless) widgets."""

from __future__ import annotations

import glob
import threading

import models
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_faults import fill
from waiting import poll, wait_for

import nbhooks as nh
from nbhooks import training_threads
from nbhooks._tf import tf
from nbhooks.events import RunStateEvent
from nbhooks.views.base import CODE_KEYS, walk_widgets
from nbhooks.views.format import ERROR_COLOUR


@pytest.fixture
def dash(estimator, train_fn, eval_fn, comm_log):
    dash = nh.Dashboard(
        estimator,
        train_fn,
        evals={"eval": eval_fn},
        every_n_iter=50,
        final_ops={"w": "dense/kernel", "step": "global_step"},
        steps=200,
    )
    yield dash
    dash.close()


def live_threads() -> set[str]:
    """nbhooks threads, but for the spare training threads nbhooks.training_threads keeps."""
    return {
        t.name
        for t in threading.enumerate()
        if t.name.startswith("nbhooks") and t.name != training_threads.SPARE
    }


def test_train_fills_history_final_ops_and_checkpoints(dash):
    assert dash.state == "idle" and dash.history.empty
    widget = dash.widget
    assert "nbh-dashboard" in widget._dom_classes
    assert dash.train() is None  # a cell ending in dash.train() shows no second dashboard
    assert dash.wait(timeout=120) == "finished"
    h = dash.history
    assert list(h.columns) == ["step", "evaluation", "metric", "value", "wall_time"]
    assert sorted(h.step.unique()) == [0, 50, 100, 150, 200]
    final = dash.final_ops.set_index("name")
    assert final.loc["step", "value"] == 200
    assert 200 in dash.pipeline.checkpoints.step.tolist()
    progress = dash.run.panel().progress
    assert progress.bar.value == 200 and progress.bar.bar_style == "success"


def test_evaluations_keep_their_declared_order_whichever_finishes_first(
    estimator, train_fn, comm_log
) -> None:
    """Beside training each evaluation runs on a thread of its own: "slow" (declared first,
    64 batches) mostly ends after "quick" (1 batch), and keeps the first place and colour."""
    slow, quick = models.input_fn(n=2048, repeat=False, seed=1), models.input_fn(n=32, seed=2)
    dash = nh.Dashboard(
        estimator,
        train_fn,
        evals={"slow": slow, "quick": (quick, 1)},
        every_n_iter=50,
        steps=100,
        pipeline_checkpoints=False,
    )
    try:
        dash.widget  # noqa: B018 - shown
        dash.train()
        assert dash.wait(timeout=120) == "finished"
        assert dash.metrics.names == ["slow", "quick"]
        curves = dash._views["curves"]
        legend = sorted((t.legendrank, t.legendgroup) for t in curves.figure.data if t.showlegend)
        assert [name for _, name in legend] == ["slow", "quick"]
        assert curves.readout.value.index("slow") < curves.readout.value.index("quick")
    finally:
        dash.close()


def _plain(value):
    """``value`` with tuples as lists and buffers as bytes (as they look once sent)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value


def test_after_wait_a_recorder_of_the_cell_has_every_widgets_state(dash, comm_log):
    """nbclient keeps the messages of the running cell only (the main thread's), while the
    publisher thread sends the live updates: after wait() on the main thread, the state such a
    recorder holds is each widget's current state (the curves' points included), without the
    plot code sent again; a second wait() with nothing changed sends nothing."""
    assert dash.widget is not None  # displayed: the curves' FigureWidget carries ~5 MB of JS
    dash.train()
    before = len(comm_log)
    assert dash.wait(timeout=120) == "finished"
    resent = [d for _, main, d in comm_log.sent[before:] if main and d.get("method") == "update"]
    assert any("_widget_data" in d["state"] for d in resent)  # the curves' data is resent...
    assert not any("_esm" in d["state"] for d in resent)  # ...not their code
    recorded = comm_log.recorded()
    checked = 0
    for view in dash.run.panel().views:
        for widget in walk_widgets(view.widget) if view.widget is not None else ():
            if widget.comm is None:
                continue
            keys = [k for k in widget.keys if k not in CODE_KEYS]
            current = _plain(widget.get_state(key=keys))
            mine = _plain({k: recorded[widget.comm.comm_id].get(k) for k in keys})
            assert mine == current, f"{type(widget).__name__}: recorded state is not current"
            checked += 1
    assert checked > 50
    before = len(comm_log)
    assert dash.wait() == "finished"  # e.g. a later cell: all was recorded already
    assert len(comm_log) == before


def test_displaying_twice_builds_one_widget(dash):
    assert dash.widget is dash.widget
    a = dash._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"]
    b = dash._repr_mimebundle_()["application/vnd.jupyter.widget-view+json"]["model_id"]
    assert a == b


def test_rerunning_the_cell_leaves_no_thread_or_widget_behind(
    estimator, train_fn, eval_fn, comm_log
):
    first = nh.Dashboard(estimator, train_fn, evals=eval_fn, steps=100_000)
    old_widget = first.widget
    first.train()
    assert wait_for(lambda: first.run.global_step > 5)
    with pytest.warns(nh.NbhooksWarning, match="stopping the earlier run"):
        second = nh.Dashboard(estimator, train_fn, evals=eval_fn, steps=20)
    assert first.state == "stopped"
    assert old_widget.comm is None  # the old dashboard's widgets are closed
    with pytest.raises(RuntimeError, match=r"closed .*a newer run on its model_dir"):
        first.train()  # before: it took the model_dir back, closing the new dashboard
    second.widget  # noqa: B018 - builds it
    second.train()
    second.wait(timeout=120)
    second.close()
    assert wait_for(lambda: not live_threads(), timeout=10), live_threads()


def test_a_closed_dashboard_neither_trains_nor_shows_again(dash, tmp_path):
    """Before: train() after close() trained again, and ``dash.widget`` built a new panel,
    views and publisher thread after their owner had closed them."""
    dash.train()
    dash.wait(timeout=120)
    dash.close()
    assert not live_threads()
    for again in (dash.train, lambda: dash.widget, dash.run.panel):
        with pytest.raises(RuntimeError, match=r"this run was closed \(by close\(\), or a newer"):
            again()
    assert dash._repr_mimebundle_() == {
        "text/plain": "<nbhooks.Dashboard finished (closed) step=200>"
    }
    assert not live_threads() and dash.run.global_step == 200
    assert "Evaluation curves" in dash.export_html(tmp_path / "r.html").read_text()  # still


def test_export_html_report(dash, tmp_path, tmpfs):
    dash.train()
    dash.wait(timeout=120)
    report = dash.export_html(tmp_path / "reports" / "report.html").read_text()  # folder made
    assert "Evaluation curves" in report and "Final-op values" in report
    assert "Pipeline checkpoints" in report and "plotly" in report
    # a report written again on a full disk: a clear error, and the earlier one whole
    disk = tmpfs(f"size={len(report.encode()) + 200_000}")
    earlier = dash.export_html(disk / "report.html").read_text()
    fill(disk, leave=len(report.encode()) // 2)
    with pytest.raises(OSError, match=r"could not write .*report\.html \(No space left on device"):
        dash.export_html(disk / "report.html")
    assert (disk / "report.html").read_text() == earlier
    assert sorted(p.name for p in disk.iterdir()) == ["ballast", "report.html"]


def test_early_stopping_stops_through_the_run(estimator, train_fn, eval_fn, comm_log):
    dash = nh.Dashboard(
        estimator,
        train_fn,
        evals=eval_fn,
        every_n_iter=10,
        steps=5000,
        early_stopping={"metric": "accuracy", "mode": "max", "patience": 2, "min_delta": 0.5},
    )
    assert dash.widget is not None  # shown: its evaluation is built ahead, for asynchronous...
    assert dash.eval_preparation.wait(timeout=60) and dash.eval_preparation.prepared == ["eval"]
    dash.train()  # ...use, then evaluated synchronously (early stopping watches it)
    assert dash.wait(timeout=120) == "stopped"
    assert dash.run.reason.startswith("early stopping: accuracy (eval)")
    # best at step 0, then two evaluations without improvement: stops at step 20(+1)
    assert dash.run.global_step <= 21
    dash.close()


def test_a_shown_dashboard_builds_its_evaluation_before_training(
    tmp_path, train_fn, eval_fn, comm_log
):
    est = models.make_estimator(tmp_path / "model", save_checkpoints_steps=50)
    dash = nh.Dashboard(est, train_fn, {"eval": eval_fn}, every_n_iter=50, steps=100)
    assert dash.eval_preparation is None  # headless: nothing is built before train()
    assert dash.widget is not None
    preparation = dash.eval_preparation
    assert preparation.wait(timeout=60) and preparation.prepared == ["eval"]
    (hook,) = dash.evaluators
    graph = hook.eval_graph
    assert graph is not None and hook.how == "persistent session"
    # Before Start: the subplots of its metrics drawn, its summary writer open on its graph.
    curves = dash._views["curves"]
    assert dash.run.panel().publisher.wait_idle(timeout=30)
    assert [a.text for a in curves.figure.layout.annotations] == ["accuracy", "loss"]
    # and its curves, empty (plotly draws no frame for a subplot without a trace)
    assert [(t.name, t.xaxis, len(t.x)) for t in curves.figure.data[::2]] == [
        ("eval", "x", 0),
        ("eval", "x2", 0),
    ]
    (events,) = glob.glob(f"{tmp_path}/model/eval_eval/events.out.tfevents.*")
    accumulator = EventAccumulator(events)
    accumulator.Reload()
    assert any(node.name.startswith("accuracy/") for node in accumulator.Graph().node)
    dash.train()
    assert dash.wait(timeout=120) == "finished"
    assert hook.eval_graph is graph  # training used the graph built ahead: no second build
    history = dash.history.query("metric == 'loss'").set_index("step")["value"]
    assert sorted(history.index) == [0, 50, 100]
    for step in (50, 100):
        expected = est.evaluate(eval_fn, checkpoint_path=f"{tmp_path}/model/model.ckpt-{step}")
        assert history[step] == pytest.approx(float(expected["loss"]), rel=1e-6), step
    dash.close()
    assert "nbhooks-eval-prepare" not in live_threads()


def test_a_model_that_fails_ahead_fails_in_training_as_it_would(tmp_path, eval_fn, comm_log):
    def broken_train_fn():
        raise RuntimeError("no training data here")

    est = models.make_estimator(tmp_path / "model")
    dash = nh.Dashboard(est, broken_train_fn, {"eval": eval_fn}, every_n_iter=50, steps=100)
    assert dash.widget is not None
    assert dash.eval_preparation.wait(timeout=60) and dash.eval_preparation.prepared == []
    dash.train()
    with pytest.raises(RuntimeError, match="no training data here"):
        dash.wait(timeout=120)
    dash.close()


def test_an_evaluation_that_cannot_be_built_says_so_before_start(tmp_path, train_fn, comm_log):
    """An evaluation input left unbatched, on a canned estimator: its error in red under the
    curves before Start (TF's root cause, not "in user code:"), and Start fails with it
    before the first checkpoint is written."""

    def unbatched_eval_fn():
        x, y = models.make_data(64)
        return tf().data.Dataset.from_tensor_slices(({"x": x}, y))  # no .batch(n)

    model_dir = tmp_path / "model"
    dash = nh.Dashboard(
        models.make_linear_classifier(model_dir),
        train_fn,
        {"eval": unbatched_eval_fn},
        every_n_iter=10,
        steps=20,
        pipeline_checkpoints=False,
    )
    assert dash.widget is not None
    assert dash.eval_preparation.wait(timeout=60) and dash.eval_preparation.prepared == []
    (hook,) = dash.evaluators
    assert hook.prepare_error.startswith("ValueError: Cannot reshape a tensor"), hook.prepare_error
    status = dash._views["eval_status"].widget
    poll(lambda: "eval: cannot be built: ValueError: Cannot reshape" in status.value, 30, "it")
    assert ERROR_COLOUR in status.value and "in user code" not in status.value
    dash.train()
    with pytest.raises(ValueError, match="Cannot reshape a tensor"):
        dash.wait(timeout=120)
    assert dash.run.panel().publisher.wait_idle(timeout=30)
    texts = [str(getattr(x, "value", "")) for x in walk_widgets(dash.widget)]
    shown = [text for text in texts if "Training failed" in text]
    assert len(shown) == 1 and "Training failed: ValueError: Cannot reshape a" in shown[0]
    assert tf().train.latest_checkpoint(str(model_dir)) is None  # nothing written half-way
    dash.close()


def test_a_restart_before_the_last_recorded_step_records_a_new_branch(model_dir, eval_fn):
    """A run fails after its last checkpoint: the next train() resumes from that checkpoint,
    and its evaluations of the steps after it are recorded (a branch), not dropped as
    repeats of the failed run's."""
    batches = {"n": 0}

    def fail_once(x):
        batches["n"] += 1
        if batches["n"] == 36:  # the first run only: it has trained 35 steps
            raise OSError("the data disk went away")
        return x

    def flaky_train_fn():
        ds = models.input_fn()()
        return ds.map(lambda f, y: ({"x": tf().py_function(fail_once, [f["x"]], tf().float32)}, y))

    est = models.make_estimator(model_dir, save_checkpoints_steps=20)
    dash = nh.Dashboard(est, flaky_train_fn, {"eval": eval_fn}, every_n_iter=10,
                        pipeline_checkpoints=False, asynchronous_eval=False)  # fmt: skip
    # (evaluated at their steps: step 30's is recorded before the failure, for sure)
    starts: list[int | None] = []
    dash.run.events.subscribe(
        lambda e: starts.append(e.step) if isinstance(e, RunStateEvent) and e.state == "running"
        else None
    )  # fmt: skip
    dash.train(steps=50)
    with pytest.raises(tf().errors.OpError, match="the data disk went away"):
        dash.wait(timeout=120)
    dash.train(steps=30)
    assert dash.wait(timeout=120) == "finished"
    assert starts[1] == 20 and dash.run.global_step == 50  # from model.ckpt-20
    history = dash.history.query("metric == 'loss'")
    assert sorted(history[history.branch == 0].step) == [0, 10, 20, 30]
    assert sorted(history[history.branch == 1].step) == [20, 30, 40, 50]
    live = history[history.branch == 1].set_index("step").value
    for step in (20, 40):  # the steps with a checkpoint
        expected = est.evaluate(eval_fn, checkpoint_path=f"{model_dir}/model.ckpt-{step}")
        assert live[step] == pytest.approx(float(expected["loss"]), rel=1e-6), step
    dash.close()


def test_a_run_config_without_checkpoints_warns_and_branches_every_train(model_dir, train_fn,
                                                                          eval_fn):  # fmt: skip
    est = models.make_estimator(model_dir, save_checkpoints_steps=None, save_checkpoints_secs=None)
    with pytest.warns(nh.NbhooksWarning, match="saves no checkpoints.*starts again from step 0"):
        dash = nh.Dashboard(est, train_fn, {"eval": eval_fn}, every_n_iter=10,
                            pipeline_checkpoints=False, steps=20)  # fmt: skip
    for _ in range(2):
        dash.train()
        assert dash.wait(timeout=120) == "finished" and dash.run.global_step == 20
    history = dash.history.query("metric == 'loss'")
    assert [sorted(history[history.branch == b].step) for b in (0, 1)] == [[0, 10, 20]] * 2
    dash.close()


class TestBadInput:
    def test_not_an_estimator(self, train_fn):
        with pytest.raises(TypeError, match=r"tf\.estimator\.Estimator"):
            nh.Dashboard(object(), train_fn)

    def test_evals_must_be_input_fns(self, estimator, train_fn):
        with pytest.raises(TypeError, match=r"evals\['eval'\] must be an input_fn"):
            nh.Dashboard(estimator, train_fn, evals={"eval": 3})
        with pytest.raises(TypeError, match="evals must be an input_fn or a dict"):
            nh.Dashboard(estimator, train_fn, evals=[train_fn])

    def test_early_stopping_needs_evals(self, estimator, train_fn):
        with pytest.raises(ValueError, match="also pass evals"):
            nh.Dashboard(estimator, train_fn, early_stopping={"metric": "loss"})

    def test_early_stopping_evaluation_must_exist(self, estimator, train_fn, eval_fn):
        with pytest.raises(ValueError, match="not one of the evals"):
            nh.Dashboard(
                estimator,
                train_fn,
                evals={"eval": eval_fn},
                early_stopping={"metric": "loss", "evaluation": "test"},
            )
        with pytest.raises(ValueError, match="say which evaluation"):
            nh.Dashboard(
                estimator,
                train_fn,
                evals={"a": eval_fn, "b": eval_fn},
                early_stopping={"metric": "loss"},
            )

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"steps": 0}, "steps must be a positive int"),
            ({"hooks": [object()]}, "SessionRunHook instance"),
            ({"max_points": 2}, "max_points must be an int >= 3"),
            ({"every_n_iter": 0}, "every_n_iter must be a positive int"),  # even without evals
            ({"eval_steps": 2.5}, "eval_steps must be a positive int"),
        ],
    )
    def test_checked_before_anything_is_created(self, model_dir, train_fn, kwargs, match):
        with pytest.raises((TypeError, ValueError), match=match):
            nh.Dashboard(models.make_estimator(model_dir), train_fn, **kwargs)
        assert not model_dir.exists()  # not even the model_dir was created

    def test_a_model_dir_that_is_a_file_or_read_only(self, tmp_path, tmpfs, train_fn):
        (tmp_path / "a-file").write_text("not a folder")
        with pytest.raises(NotADirectoryError, match="is a file, not a directory"):
            nh.Dashboard(models.make_estimator(tmp_path / "a-file"), train_fn)
        with pytest.raises(NotADirectoryError, match=r"is inside .*a-file', a file"):
            nh.Dashboard(models.make_estimator(tmp_path / "a-file" / "model"), train_fn)
        read_only = tmpfs("ro,size=64k")  # root writes through chmod: a read-only mount is the test
        with pytest.raises(PermissionError, match=r"not writable.*Read-only file system"):
            nh.Dashboard(models.make_estimator(read_only / "model"), train_fn)

    def test_input_pipeline_savers_are_refused_but_ours(self, model_dir, train_fn):
        """TF's hook serves one train() call (the next fails restoring); two hooks would write
        the same input.ckpt files."""
        est = models.make_estimator(model_dir, save_checkpoints_steps=10)
        theirs = tf().data.experimental.CheckpointInputPipelineHook(est)
        serves_one = r"^TensorFlow's CheckpointInputPipelineHook serves one train\(\) call"
        for pipeline in ("auto", False):
            with pytest.raises(ValueError, match=serves_one + r".*pipeline_checkpoints='auto'"):
                nh.Dashboard(est, train_fn, hooks=[theirs], pipeline_checkpoints=pipeline)
        with pytest.raises(ValueError, match=serves_one + r".*nh.PipelineCheckpointHook\("):
            nh.TrainingRun(est, train_fn, hooks=[theirs])
        assert not model_dir.exists()  # refused before anything was made
        ours = nh.PipelineCheckpointHook(est)
        with pytest.raises(ValueError, match=r"^2 hooks save the input pipeline \(Pipeline"):
            nh.Dashboard(est, train_fn, hooks=[ours])
        # Why: in bare TensorFlow, the hook given to a second train() call fails it.
        est.train(train_fn, steps=10, hooks=[theirs])
        with pytest.raises(tf().errors.NotFoundError, match="not found in checkpoint"):
            est.train(train_fn, steps=10, hooks=[theirs])

    def test_pipeline_off_says_so(self, estimator, train_fn):
        dash = nh.Dashboard(estimator, train_fn, pipeline_checkpoints=False)
        with pytest.raises(RuntimeError, match="pipeline_checkpoints=True"):
            dash.pipeline.save()
        dash.close()

    def test_nothing_is_left_running_after_a_bad_argument(self, model_dir, train_fn):
        with pytest.raises(TypeError):
            nh.Dashboard(models.make_estimator(model_dir), train_fn, pipeline_checkpoints="yes")
        assert not live_threads()
