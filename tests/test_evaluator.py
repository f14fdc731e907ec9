"""LiveEvaluatorHook and EarlyStopping on real estimators (small data, a few hundred steps)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import models
import numpy as np
import pytest
from waiting import wait_for

import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.events import EvalEvent, StopRequestEvent
from nbhooks.hooks.evaluator import EvalPreparation
from nbhooks.stores.metrics import MetricHistory


def checkpoint_steps(model_dir) -> list[int]:
    files = glob.glob(os.path.join(model_dir, "model.ckpt-*.index"))
    return sorted(int(f.rsplit("-", 1)[1].split(".")[0]) for f in files)


def eval_steps(hook: nh.LiveEvaluatorHook, name: str = "eval", metric: str = "loss") -> list:
    return hook.store.series(name, metric)[0].tolist()


@pytest.mark.parametrize(
    ("steps", "expected"), [(200, [0, 50, 100, 150, 200]), (120, [0, 50, 100, 120])]
)
def test_evaluates_every_n_iter_once_per_step(
    estimator, train_fn, eval_fn, steps, expected
) -> None:
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=50)
    seen: list[EvalEvent] = []
    hook.events.subscribe(seen.append)
    estimator.train(train_fn, hooks=[hook], steps=steps)
    assert eval_steps(hook) == expected
    assert hook.evaluations == len(expected)  # end() at an evaluated step is not run again
    assert [e.step for e in seen] == expected
    frame = hook.history
    assert set(frame["metric"]) == {"loss", "accuracy"}
    assert set(frame["evaluation"]) == {"eval"}
    assert len(frame) == 2 * len(expected)
    assert frame["wall_time"].is_monotonic_increasing


@pytest.mark.parametrize("make", [models.make_estimator, models.make_linear_classifier])
def test_values_equal_evaluate_on_final_checkpoint(model_dir, train_fn, eval_fn, make) -> None:
    est = make(model_dir)
    hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=40)
    est.train(train_fn, hooks=[hook], steps=100)
    expected = est.evaluate(eval_fn)
    latest = hook.store.latest()["eval"]
    assert latest.step == expected["global_step"] == 100
    assert set(latest.metrics) == set(expected) - {"global_step"}
    for metric, value in latest.metrics.items():
        assert value == pytest.approx(float(expected[metric]), rel=1e-6, abs=1e-7), metric
    assert len(latest.metrics) >= (2 if make is models.make_estimator else 5)


def test_no_checkpoint_per_evaluation(estimator, model_dir, train_fn, eval_fn) -> None:
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=20)
    estimator.train(train_fn, hooks=[hook], steps=100)
    assert len(eval_steps(hook)) == 6
    assert checkpoint_steps(model_dir) == [0, 100]


def test_two_named_evaluations_share_one_history(estimator, model_dir, train_fn, eval_fn) -> None:
    train_eval = models.input_fn(n=256, repeat=False, seed=0)
    hooks = nh.LiveEvaluatorHook.many(
        estimator, {"train": train_eval, "eval": eval_fn}, every_n_iter=50
    )
    assert hooks[0].store is hooks[1].store and hooks[0].events is hooks[1].events
    estimator.train(train_fn, hooks=hooks, steps=100)
    frame = hooks[0].history
    assert frame.groupby("evaluation")["step"].unique().map(list).to_dict() == {
        "train": [0, 50, 100],
        "eval": [0, 50, 100],
    }
    train_loss = hooks[0].store.series("train", "loss")[1]
    eval_loss = hooks[0].store.series("eval", "loss")[1]
    assert (train_loss[1:] != eval_loss[1:]).all()  # different data, different values
    for name in ("train", "eval"):  # TensorBoard keeps working
        assert glob.glob(os.path.join(model_dir, f"eval_{name}", "events.out.tfevents.*"))


@pytest.mark.parametrize("asynchronous", [True, False])
def test_tensorboard_shows_the_evaluation_graph_for_the_evaluation_run(
    estimator, model_dir, train_fn, eval_fn, asynchronous
) -> None:
    """As estimator.evaluate() does: the eval dir's graph is the evaluation's, not training's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=50, asynchronous=asynchronous)
    estimator.train(train_fn, hooks=[hook], steps=50)
    (events,) = glob.glob(os.path.join(model_dir, "eval", "events.out.tfevents.*"))
    accumulator = EventAccumulator(events)
    accumulator.Reload()
    nodes = [node.name for node in accumulator.Graph().node]
    assert any(name.startswith("accuracy/") for name in nodes)  # the model's eval metric
    assert not [name for name in nodes if name.startswith(("gradients/", "GradientDescent"))]


def test_history_continues_across_train_calls(estimator, train_fn, eval_fn) -> None:
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, name="eval", every_n_iter=50)
    estimator.train(train_fn, hooks=[hook], steps=100)
    estimator.train(train_fn, hooks=[hook], steps=75)
    assert eval_steps(hook) == [0, 50, 100, 150, 175]
    assert hook.evaluations == 5  # the second session's first evaluation (step 100) skipped
    assert hook.history.duplicated(["step", "evaluation", "metric"]).sum() == 0


def loss_curve(model_dir, every: int, steps: int) -> list[tuple[int, float]]:
    est = models.make_estimator(model_dir)
    hook = nh.LiveEvaluatorHook(
        est, models.input_fn(n=256, repeat=False, seed=1), every_n_iter=every
    )
    est.train(models.input_fn(), hooks=[hook], steps=steps)
    steps_, values = hook.store.series("eval", "loss")
    return list(zip(steps_.tolist(), values.tolist(), strict=True))


def expected_stop(curve, patience: int, min_delta: float) -> int:
    rule = nh.EarlyStopping("loss", "min", patience=patience, min_delta=min_delta)
    for step, value in curve:
        rule.observe(step, value)
        if rule.reason:
            return step
    raise AssertionError("the reference curve never triggers early stopping")


@pytest.mark.parametrize("asynchronous", [False, True])
def test_early_stopping_stops_at_the_right_evaluation(
    tmp_path, train_fn, eval_fn, asynchronous
) -> None:
    reference = loss_curve(tmp_path / "reference", every=20, steps=400)
    stop_at = expected_stop(reference, patience=2, min_delta=0.01)
    assert 0 < stop_at < 400

    est = models.make_estimator(tmp_path / "stopped")
    # A watched evaluation runs synchronously even when asked otherwise: the very step.
    hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=20, asynchronous=asynchronous)
    stopper = nh.EarlyStopping("loss", patience=2, min_delta=0.01, evaluators=[hook])
    announced: list[StopRequestEvent] = []
    hook.events.subscribe(lambda e: isinstance(e, StopRequestEvent) and announced.append(e))
    est.train(train_fn, hooks=[stopper, hook], steps=400)  # stopper first: hook order is moot

    assert stopper.stopped_step == stop_at
    assert eval_steps(hook) == [s for s, _ in reference if s <= stop_at]
    assert est.get_variable_value("global_step") == stop_at  # stopped at that very step
    assert checkpoint_steps(tmp_path / "stopped")[-1] == stop_at  # clean stop: final checkpoint
    assert "did not improve" in stopper.reason and f"step {stop_at}" in stopper.reason
    assert [e.reason for e in announced] == [stopper.reason]
    assert hook.skipped == 0 and not hook._sync_for  # released by the stopper's end()


def test_early_stopping_through_a_training_run(estimator, train_fn, eval_fn) -> None:
    run_module = pytest.importorskip("nbhooks.run")
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=10)
    # Accuracy reaches its plateau within a few evaluations; it cannot beat it by 0.5.
    stopper = nh.EarlyStopping("accuracy", "max", patience=3, min_delta=0.5)
    run = run_module.TrainingRun(estimator, train_fn, steps=500, hooks=[hook, stopper], report=None)
    events: list = []
    run.events.subscribe(events.append)
    assert hook.events is run.events
    run.start()
    assert run.wait(timeout=120) == "stopped"
    assert run.reason == stopper.reason and stopper.stopped_step == 30
    assert eval_steps(hook, metric="accuracy") == [0, 10, 20, 30]
    assert [e.step for e in events if isinstance(e, EvalEvent)] == [0, 10, 20, 30]


def test_tfs_early_stopping_reading_another_directory_is_warned(estimator, train_fn, eval_fn):
    """TF's ``stop_if_*`` hooks read ``estimator.eval_dir()`` by default; the evaluation named
    "eval" writes ``estimator.eval_dir("eval")``: made so, TF's hook would never stop."""
    from nbhooks.run import TrainingRun

    hook = nh.LiveEvaluatorHook(estimator, eval_fn, name="eval", every_n_iter=10)
    stop = tf().estimator.experimental.stop_if_no_decrease_hook(estimator, "loss", 100)
    with pytest.warns(nh.NbhooksWarning, match=r"eval_dir=estimator\.eval_dir\('eval'\)"):
        TrainingRun(estimator, train_fn, steps=10, hooks=[hook, stop], report=None).close()


def test_tfs_early_stopping_stops_on_the_live_evaluations(estimator, train_fn, eval_fn):
    """Pointed at the evaluation's directory, TF's hook reads its summaries and stops the run
    (accuracy above 0 from the first evaluation on); the reason names a hook."""
    import warnings

    from nbhooks.run import TrainingRun

    hook = nh.LiveEvaluatorHook(estimator, eval_fn, name="eval", every_n_iter=10)
    stop = tf().estimator.experimental.stop_if_higher_hook(
        estimator,
        "accuracy",
        0.0,
        eval_dir=estimator.eval_dir("eval"),
        run_every_secs=None,
        run_every_steps=5,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", nh.NbhooksWarning)  # no warning: it reads the right one
        run = TrainingRun(estimator, train_fn, steps=20_000, hooks=[hook, stop], report=None)
    run.start()
    assert run.wait(timeout=300) == "finished"
    assert run.reason is not None and run.reason.startswith("a hook asked to stop at step")
    assert run.meter.step < 20_000
    run.close()


def test_early_stopping_with_an_unknown_metric_fails_the_run(estimator, train_fn, eval_fn) -> None:
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=10)
    stopper = nh.EarlyStopping("auc", "max", evaluators=[hook])
    with pytest.raises(ValueError, match=r"'auc'.*reports only \['accuracy', 'loss'\]"):
        estimator.train(train_fn, hooks=[hook, stopper], steps=50)


def test_early_stopping_needs_a_known_evaluation(estimator, train_fn, eval_fn) -> None:
    hooks = nh.LiveEvaluatorHook.many(estimator, {"a": eval_fn, "b": eval_fn}, every_n_iter=10)
    with pytest.raises(ValueError, match=r"pass evaluation= one of \['a', 'b'\]"):
        estimator.train(
            train_fn, hooks=[*hooks, nh.EarlyStopping("loss", evaluators=hooks)], steps=5
        )
    with pytest.raises(ValueError, match="no evaluation to watch"):
        estimator.train(train_fn, hooks=[nh.EarlyStopping("loss")], steps=5)


def test_early_stopping_patience_rule() -> None:
    rule = nh.EarlyStopping("accuracy", "max", patience=2, min_delta=0.01)
    assert rule.observe(0, 0.5) is None
    assert rule.observe(1, 0.505) is None  # not enough: wait 1
    assert rule.observe(2, 0.6) is None  # improvement resets the wait
    assert rule.observe(3, 0.6) is None
    reason = rule.observe(4, 0.59)
    assert reason and (rule.best_step, rule.best_value, rule.stopped_step) == (2, 0.6, 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"every_n_iter": 0}, ValueError, "every_n_iter must be a positive int, got 0; evaluate"),
        ({"every_n_iter": -5}, ValueError, "every_n_iter must be a positive int"),
        ({"every_n_iter": 2.5}, TypeError, "every_n_iter must be a positive int"),
        ({"every_n_iter": None}, TypeError, "positive int"),
        ({"name": "a/b"}, ValueError, "without '/'"),
        ({"steps": 0}, ValueError, "steps must be a positive int.*None evaluates until"),
        ({"store": {}}, TypeError, "MetricHistory"),
    ],
)
def test_bad_arguments_fail_at_construction(estimator, eval_fn, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        nh.LiveEvaluatorHook(estimator, eval_fn, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "up"}, '"min" or "max"'),
        ({"patience": 0}, "patience must be a positive int"),
        ({"min_delta": -1}, "min_delta must be a number >= 0"),
        ({"metric": ""}, "metric name"),
    ],
)
def test_bad_early_stopping_arguments(kwargs, match) -> None:
    args = {"metric": "loss", **kwargs}
    with pytest.raises(ValueError, match=match):
        nh.EarlyStopping(**args)


def test_early_stopping_mode_follows_the_metric_when_left_out() -> None:
    assert nh.EarlyStopping("loss").mode == "min"
    assert nh.EarlyStopping("accuracy").mode == "max"
    assert nh.EarlyStopping("accuracy", "min").mode == "min"
    with pytest.raises(ValueError, match=r"'prediction/mean' is better: pass mode='max' or"):
        nh.EarlyStopping("prediction/mean")
    assert nh.EarlyStopping("prediction/mean", "max").mode == "max"


def test_not_an_estimator_or_input_fn(estimator, eval_fn) -> None:
    with pytest.raises(TypeError, match=r"tf.estimator.Estimator"):
        nh.LiveEvaluatorHook(object(), eval_fn)
    with pytest.raises(TypeError, match="not its result"):
        nh.LiveEvaluatorHook(estimator, eval_fn())


def test_multi_machine_config_is_refused(model_dir, eval_fn, monkeypatch) -> None:
    cluster = {"chief": ["h:1"], "worker": ["h:2", "h:3"], "ps": ["h:4"]}
    task = {"type": "chief", "index": 0}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    est = models.make_estimator(model_dir)
    with pytest.raises(ValueError, match=r"single machine.*Unset TF_CONFIG.*train_and_evaluate"):
        nh.LiveEvaluatorHook(est, eval_fn)


def _model_fn_with(extra):
    def model_fn(features, labels, mode, params):
        spec = models.model_fn(features, labels, mode, params)
        return extra(spec, mode)

    return model_fn


def _estimator(model_dir, model_fn):
    config = tf().estimator.RunConfig(model_dir=str(model_dir), save_summary_steps=None)
    return tf().estimator.Estimator(model_fn, config=config, params={})


def _with_eval_saver(var_list):
    def with_saver(spec, mode):
        if mode != tf().estimator.ModeKeys.EVAL:
            return spec
        saver = tf().compat.v1.train.Saver(var_list())
        return spec._replace(scaffold=tf().compat.v1.train.Scaffold(saver=saver))

    return with_saver


def _variables() -> dict:
    v1 = tf().compat.v1
    return {v.op.name: v for v in v1.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)}


def test_an_eval_saver_of_the_same_names_is_evaluated(model_dir, train_fn, eval_fn) -> None:
    est = _estimator(model_dir, _model_fn_with(_with_eval_saver(_variables)))
    hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=10)
    est.train(train_fn, hooks=[hook], steps=20)
    assert hook.how == "persistent session" and eval_steps(hook) == [0, 10, 20]
    expected = est.evaluate(eval_fn)["loss"]
    assert eval_steps(hook, metric="loss") and hook.store.latest()["eval"].metrics[
        "loss"
    ] == pytest.approx(expected, rel=1e-6)


def test_an_eval_saver_naming_what_training_lacks_is_refused(model_dir, train_fn, eval_fn) -> None:
    def renamed() -> dict:
        return {f"averages/{name}": v for name, v in _variables().items()}

    est = _estimator(model_dir, _model_fn_with(_with_eval_saver(renamed)))
    hook = nh.LiveEvaluatorHook(est, eval_fn)
    with pytest.raises(
        ValueError, match=r"checkpoint key 'averages/.*no variable.*evaluate_from='checkpoints'"
    ):
        est.train(train_fn, hooks=[hook], steps=2)
    # Refused by the first evaluation, which builds the graph beside the first steps (here
    # possibly after both: then end() raises it): nothing recorded.
    assert len(hook.store) == 0 and hook.how is None and not eval_threads()


def test_an_eval_saver_leaving_variables_out_is_refused(model_dir, train_fn, eval_fn) -> None:
    def kernel_only() -> dict:
        return {name: v for name, v in _variables().items() if name != "dense/bias"}

    est = _estimator(model_dir, _model_fn_with(_with_eval_saver(kernel_only)))
    with pytest.raises(ValueError, match=r"does not restore dense/bias:0.*not ready"):
        est.train(train_fn, hooks=[nh.LiveEvaluatorHook(est, eval_fn)], steps=2)


def _with_table(spec, mode):
    tf().compat.v1.lookup.experimental.MutableHashTable(
        tf().int64, tf().float32, 0.0, name="class_weights"
    )
    return spec


def test_saveable_objects_are_refused_naming_them(model_dir, train_fn, eval_fn) -> None:
    est = _estimator(model_dir, _model_fn_with(_with_table))
    with pytest.raises(
        ValueError,
        match=r"SAVEABLE_OBJECTS: _Saveable 'class_weights'.*evaluate_from='checkpoints'",
    ):
        est.train(train_fn, hooks=[nh.LiveEvaluatorHook(est, eval_fn)], steps=2)
    assert not eval_threads()  # refused by the first evaluation, as above


def test_the_first_step_does_not_wait_for_the_evaluation_graph(model_dir, train_fn, eval_fn):
    """The first evaluation builds its graph beside training: a model_fn whose EVAL mode waits
    for the first training step would deadlock (and time out) if that step waited for it."""
    first_step = threading.Event()

    def model_fn(features, labels, mode, params):
        if mode == tf().estimator.ModeKeys.EVAL:
            assert first_step.wait(timeout=60), "the first training step waited for the eval graph"
        return models.model_fn(features, labels, mode, params)

    class FirstStep(tf().estimator.SessionRunHook):
        def after_run(self, run_context, run_values) -> None:
            first_step.set()

    est = _estimator(model_dir, model_fn)
    hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=10)
    assert hook.eval_graph is None
    est.train(train_fn, hooks=[hook, FirstStep()], steps=20)
    assert hook.how == "persistent session" and eval_steps(hook) == [0, 10, 20]
    expected = est.evaluate(eval_fn, checkpoint_path=f"{model_dir}/model.ckpt-0")
    got = hook.history.query("step == 0 and metric == 'loss'").value.item()
    assert got == pytest.approx(float(expected["loss"]), rel=1e-6)  # the snapshot of step 0
    hook.close()


def test_a_run_paused_at_its_first_step_still_shows_step_0(estimator, train_fn, eval_fn) -> None:
    run_module = pytest.importorskip("nbhooks.run")
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=1000)
    run = run_module.TrainingRun(estimator, train_fn, steps=50, hooks=[hook], report=None)
    run.start()
    run.pause()  # at the first step boundary, before the evaluator's after_run may have run
    assert wait_for(lambda: run.state == "paused")
    assert wait_for(lambda: hook.store.has("eval", 0))  # evaluated while the run is held
    run.resume()
    assert run.wait(timeout=60) == "finished"
    assert eval_steps(hook) == [0, 50]


def test_a_model_fn_failing_only_in_eval_mode_fails_training_clearly(
    model_dir, train_fn, eval_fn
) -> None:
    def model_fn(features, labels, mode, params):
        if mode == tf().estimator.ModeKeys.EVAL:
            raise ValueError("no metrics for this model: broken in EVAL mode")
        return models.model_fn(features, labels, mode, params)

    est = _estimator(model_dir, model_fn)
    hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=10)
    with pytest.raises(ValueError, match="broken in EVAL mode"):
        est.train(train_fn, hooks=[hook], steps=2000)
    assert len(hook.store) == 0 and hook.how is None and not eval_threads()
    assert checkpoint_steps(model_dir) == [0]  # failed in the first steps, not at the end
    with pytest.raises(ValueError, match="broken in EVAL mode"):  # again in the next train()
        est.train(train_fn, hooks=[hook], steps=2)


@pytest.mark.parametrize("evaluate_from", ["auto", "checkpoints"])
def test_evaluated_from_checkpoints_when_asked_or_needed(
    model_dir, train_fn, eval_fn, evaluate_from
) -> None:
    est = _estimator(model_dir, _model_fn_with(_with_table))  # RunConfig: no step checkpoints
    hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=10, evaluate_from=evaluate_from)
    est.train(train_fn, hooks=[hook], steps=20)
    assert hook.how == "checkpoints"
    why = "SAVEABLE_OBJECTS" if evaluate_from == "auto" else "evaluate_from='checkpoints'"
    assert why in hook.why and why in hook.status
    assert eval_steps(hook) == [0, 10, 20]
    assert checkpoint_steps(model_dir) == [0, 10, 20]  # saved by the hook, with training's saver
    for step in (10, 20):
        expected = est.evaluate(eval_fn, checkpoint_path=f"{model_dir}/model.ckpt-{step}")
        got = hook.history.query("step == @step and metric == 'loss'").value.item()
        assert got == pytest.approx(expected["loss"], rel=1e-6)


def _with_matrix_metrics(features, labels, mode, params):
    """models.model_fn with a metric of 2 x 2 values (the labels' counts as a confusion
    matrix) and one of text: estimator.evaluate() returns them as they are."""
    spec = models.model_fn(features, labels, mode, params)
    if mode != tf().estimator.ModeKeys.EVAL:
        return spec
    v1 = tf().compat.v1
    total = v1.Variable(
        tf().zeros((2, 2)), trainable=False, collections=[v1.GraphKeys.LOCAL_VARIABLES]
    )
    update = v1.assign_add(
        total, tf().math.confusion_matrix(labels, labels, num_classes=2, dtype=tf().float32)
    )
    metrics = {
        **spec.eval_metric_ops,
        "confusion": (tf().identity(total), update),
        "note": (tf().constant("ok"), tf().no_op()),
    }
    return spec._replace(eval_metric_ops=metrics)


@pytest.mark.parametrize("evaluate_from", ["memory", "checkpoints"])
def test_metrics_that_are_not_single_numbers_are_named_as_not_plotted(
    model_dir, train_fn, eval_fn, evaluate_from
) -> None:
    """Before: they were left out of the history and curves without a word."""
    est = _estimator(model_dir, _with_matrix_metrics)
    hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=10, evaluate_from=evaluate_from)
    est.train(train_fn, hooks=[hook], steps=10)
    assert hook.status.endswith("; not plotted (not single numbers): confusion (2×2), note (bytes)")
    assert set(hook.history.metric) == {"accuracy", "loss"}
    assert est.evaluate(eval_fn)["confusion"].shape == (2, 2)  # what the user would see there


def test_an_input_that_never_ends_is_refused_before_training(estimator) -> None:
    endless = models.input_fn(repeat=True)
    with pytest.raises(ValueError, match=r"never ends: its dataset repeats forever.*steps=N"):
        nh.LiveEvaluatorHook(estimator, endless)
    nh.LiveEvaluatorHook(estimator, endless, steps=3)  # a number of batches: fine

    def constants():
        x, y = models.make_data(64)
        return {"x": tf().constant(x)}, tf().constant(y)

    with pytest.raises(ValueError, match="tensors that never run out"):
        nh.LiveEvaluatorHook(estimator, constants)
    with pytest.raises(ValueError, match=r'evals=\{"train": \(endless_fn, 20\)'):
        nh.Dashboard(estimator, endless, evals={"train": _named(endless, "endless_fn")})


def _named(fn, name):
    def named():
        return fn()

    named.__name__ = name
    return named


def test_steps_per_evaluation_in_many(estimator, train_fn, eval_fn) -> None:
    endless = models.input_fn(repeat=True)
    hooks = nh.LiveEvaluatorHook.many(
        estimator, {"train": (endless, 2), "eval": eval_fn}, every_n_iter=10
    )
    assert [(h.evaluation, h.steps) for h in hooks] == [("train", 2), ("eval", None)]
    estimator.train(train_fn, hooks=hooks, steps=10)
    expected = estimator.evaluate(endless, steps=2)["loss"]
    got = hooks[0].history.query("step == 10 and evaluation == 'train' and metric == 'loss'")
    assert got.value.item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(TypeError, match=r"input_fn or \(input_fn, steps\)"):
        nh.LiveEvaluatorHook.many(estimator, {"train": (endless, 2, 3)})
    with pytest.raises(ValueError, match=r"steps of evals\['train'\] must be a positive int"):
        nh.LiveEvaluatorHook.many(estimator, {"train": (endless, 0)})


def _slow_eval_fn():
    """A finite input that takes far longer than the test to read."""
    x, y = models.make_data(8)
    ds = tf().data.Dataset.from_tensor_slices(({"x": x}, y)).repeat(10**7)
    return ds.batch(1)


class EvaluatingHook(tf().estimator.SessionRunHook):
    """A user evaluation hook that says when the evaluation ran its first batch."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def after_run(self, run_context, run_values) -> None:
        self.started.set()


@pytest.mark.parametrize(
    "path", ["persistent session", "asynchronous", "per evaluation", "checkpoints"]
)
def test_stop_interrupts_an_evaluation_in_progress(estimator, train_fn, path) -> None:
    run_module = pytest.importorskip("nbhooks.run")
    started = EvaluatingHook()
    options = {
        "persistent session": {},
        "asynchronous": {"asynchronous": True},
        "per evaluation": {"hooks": [started]},
        "checkpoints": {"hooks": [started], "evaluate_from": "checkpoints"},
    }[path]
    hook = nh.LiveEvaluatorHook(estimator, _slow_eval_fn, every_n_iter=10, **options)
    run = run_module.TrainingRun(estimator, train_fn, steps=50, hooks=[hook], report=None)
    run.start()
    assert wait_for(
        lambda: (
            hook.evaluating
            and hook.how is not None  # the first evaluation decides it, on its own thread
            and (path in ("persistent session", "asynchronous") or started.started.is_set())
        )
    )
    assert hook.how == ("persistent session" if path == "asynchronous" else path)
    stopped_at = time.monotonic()
    run.stop()
    assert run.wait(timeout=30) == "stopped"
    assert time.monotonic() - stopped_at < 3  # within a second, with room for a loaded CI
    assert len(hook.store) == 0  # the cut evaluation is not recorded
    assert not hook.evaluating
    assert not eval_threads()


def test_shared_history_and_global_step_dedupe(estimator, train_fn, eval_fn) -> None:
    history = MetricHistory()
    history.record("eval", 0, {"loss": 123.0})  # e.g. restored from an earlier session
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=25, store=history)
    estimator.train(train_fn, hooks=[hook], steps=50)
    assert hook.store is history
    assert history.series("eval", "loss")[1][0] == 123.0
    assert eval_steps(hook) == [0, 25, 50] and hook.evaluations == 2


class CountingHook(tf().estimator.SessionRunHook):
    """A user evaluation hook: TF's own evaluation path must run it."""

    def __init__(self) -> None:
        self.sessions = 0

    def after_create_session(self, session, coord) -> None:
        self.sessions += 1


def eval_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("nbhooks-eval")]


def test_one_persistent_eval_session_and_a_graph_that_does_not_grow(
    estimator, train_fn, eval_fn
) -> None:
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=10)
    sizes: list[int] = []

    class GraphSize(tf().estimator.SessionRunHook):
        def after_run(self, run_context, run_values) -> None:
            if hook.eval_graph is not None and hook._eval_session is not None:
                sizes.append(len(hook.eval_graph.get_operations()))

    estimator.train(train_fn, steps=60, hooks=[hook, GraphSize()])
    session, graph = hook._eval_session, hook.eval_graph
    assert session is not None  # kept for the next train() call of the same model
    assert hook.evaluations == 7 and eval_steps(hook) == [0, 10, 20, 30, 40, 50, 60]
    assert len(set(sizes)) == 1  # TF's path adds ops to the eval graph at every evaluation
    metrics = estimator.evaluate(eval_fn)
    assert hook.history.query("step == 60 and metric == 'accuracy'").value.item() == (
        pytest.approx(metrics["accuracy"], rel=1e-6)
    )
    estimator.train(train_fn, steps=20, hooks=[hook])  # the same graph and session again
    assert hook._eval_session is session and hook.eval_graph is graph
    assert eval_steps(hook)[-2:] == [70, 80]
    metrics = estimator.evaluate(eval_fn)
    assert hook.history.query("step == 80 and metric == 'loss'").value.item() == (
        pytest.approx(metrics["loss"], rel=1e-6)
    )
    hook.close()
    assert hook._eval_session is None and hook.eval_graph is None


def test_resetting_that_reads_a_copied_variable_is_found() -> None:
    """The persistent session copies the values in and resets the metrics and the input in one
    run only when the reset reads none of the copied variables (their order is not fixed)."""
    from nbhooks.hooks.eval_session import depends_on

    v1 = tf().compat.v1
    with tf().Graph().as_default():
        weight = v1.get_variable("w", initializer=1.0, use_resource=True)
        total = v1.get_local_variable("total", initializer=0.0, use_resource=True)
        offset = v1.get_local_variable("offset", initializer=weight.read_value(), use_resource=True)
        copied = {weight.op.name}
        assert not depends_on([v1.variables_initializer([total])], copied)
        assert depends_on([v1.variables_initializer([total, offset])], copied)


def test_a_changed_model_gets_a_new_eval_graph(model_dir, train_fn, eval_fn) -> None:
    extra = {"variable": False}

    def model_fn(features, labels, mode, params):
        if extra["variable"]:
            v1 = tf().compat.v1
            v1.get_variable("extra", (3,), initializer=v1.zeros_initializer())
        return models.model_fn(features, labels, mode, params)

    est = _estimator(model_dir, model_fn)
    hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=10)
    est.train(train_fn, steps=10, hooks=[hook])
    graph, session = hook.eval_graph, hook._eval_session
    shutil.rmtree(model_dir)  # a new model in the same folder: steps 0 and 10 again
    extra["variable"] = True
    est.train(train_fn, steps=20, hooks=[hook])
    assert hook.eval_graph is not graph and hook._eval_session is not session
    assert "extra:0" in {v.name for v in hook.eval_graph.get_collection("variables")}
    expected = est.evaluate(eval_fn)
    got = hook.history.query("step == 20 and metric == 'loss'").value.item()
    assert got == pytest.approx(float(expected["loss"]), rel=1e-6)
    hook.close()


def test_asynchronous_evaluation_equals_the_synchronous_one(tmp_path, train_fn, eval_fn) -> None:
    histories = {}
    for asynchronous in (False, True):
        est = models.make_estimator(tmp_path / str(asynchronous), save_checkpoints_steps=20)
        hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=20, asynchronous=asynchronous)
        assert hook.asynchronous is asynchronous
        est.train(train_fn, steps=100, hooks=[hook])
        assert not eval_threads() and hook.evaluating is False
        frame = hook.history.sort_values(["step", "metric"])
        histories[asynchronous] = frame
        steps = sorted(set(frame["step"]))
        assert steps[0] == 0 and steps[-1] == 100  # the first, and end()'s synchronous one
        assert hook.evaluations == len(steps)
        never = len(set(range(0, 101, 20)) - set(steps))  # skipped, and not by end() either
        assert never <= hook.skipped <= never + 1
        if not asynchronous:
            assert hook.skipped == 0 and steps == list(range(0, 101, 20))
        for step in steps[1:]:
            expected = est.evaluate(
                eval_fn, checkpoint_path=f"{tmp_path / str(asynchronous)}/model.ckpt-{step}"
            )
            got = frame.query("step == @step").set_index("metric")["value"]
            for metric in ("loss", "accuracy"):
                assert got[metric] == pytest.approx(float(expected[metric]), rel=1e-6), step
        hook.close()
    sync, asyn = histories[False], histories[True]
    merged = sync.merge(asyn, on=["step", "evaluation", "metric"])
    assert len(merged) == len(asyn) >= 4  # step 0 and the last at least
    assert (merged["value_x"] == merged["value_y"]).all()


def test_asynchronous_waits_by_default_so_every_step_is_evaluated(estimator, train_fn) -> None:
    slow = models.input_fn(n=512, repeat=False, seed=2, batch=1)
    hook = nh.LiveEvaluatorHook(estimator, slow, every_n_iter=5, asynchronous=True)
    estimator.train(train_fn, steps=30, hooks=[hook])
    # Each evaluation (512 batches) outlasts 5 training steps: training waited, none skipped.
    assert hook.skipped == 0
    assert eval_steps(hook) == [0, 5, 10, 15, 20, 25, 30]
    assert not eval_threads()
    hook.close()
    with pytest.raises(ValueError, match='when_busy must be "wait"'):
        nh.LiveEvaluatorHook(estimator, slow, asynchronous=True, when_busy="queue")


def test_a_sessions_asynchronous_evaluations_run_on_one_thread(estimator, train_fn, eval_fn):
    """Before: a new thread for each evaluation, whose start() kept the training thread
    waiting ~0.7 ms each time (8 ms of a 2000-step demo run)."""
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=5, asynchronous=True)
    threads: list[threading.Thread] = []
    hook.events.subscribe(lambda event: threads.append(threading.current_thread()))
    estimator.train(train_fn, steps=20, hooks=[hook])
    assert eval_steps(hook) == [0, 5, 10, 15, 20] and len(threads) == 5
    assert len(set(threads)) == 1 and threads[0].name == "nbhooks-eval-eval"
    assert not threads[0].is_alive()  # ended with the training session
    hook.close()


def test_a_training_that_fails_leaves_no_evaluation_thread_behind(estimator, train_fn, eval_fn):
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=5, asynchronous=True)

    class Fail(tf().estimator.SessionRunHook):  # a user's hook failing training at step 12
        def after_run(self, run_context, run_values):
            if hook.evaluations >= 3:
                raise RuntimeError("the user's hook failed")

    with pytest.raises(RuntimeError, match="the user's hook failed"):
        estimator.train(train_fn, steps=50, hooks=[hook, Fail()])
    # No end() after a failure: the thread sees the training session closed, and ends.
    assert wait_for(lambda: not eval_threads(), timeout=10)
    estimator.train(train_fn, steps=5, hooks=[hook])  # a thread again for the next training
    assert eval_steps(hook)[-1] >= 15 and not eval_threads()
    hook.close()


def test_asynchronous_skips_a_step_while_one_is_in_flight(estimator, train_fn) -> None:
    slow = models.input_fn(n=2048, repeat=False, seed=2, batch=1)
    hook = nh.LiveEvaluatorHook(
        estimator, slow, every_n_iter=1, asynchronous=True, when_busy="skip"
    )
    estimator.train(train_fn, steps=30, hooks=[hook])
    # A step every ms, an evaluation of 2048 batches: every step after 0 finds it in flight.
    assert hook.skipped == 30
    assert eval_steps(hook) == [0, 30]  # the first, and end()'s synchronous one
    assert hook.evaluations == 2
    assert not eval_threads()
    hook.close()


def test_an_asynchronous_evaluation_error_fails_training(estimator, train_fn, eval_fn) -> None:
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=5, asynchronous=True)

    class Broken(Exception):
        pass

    def broken(*args, **kwargs):
        raise Broken("evaluation failed")

    estimator.train(train_fn, steps=5, hooks=[hook])  # builds the session
    hook._eval_session.evaluate_feed = broken
    with pytest.raises(Broken):
        estimator.train(train_fn, steps=50, hooks=[hook])
    assert not eval_threads()
    hook.close()


def test_dashboard_evaluates_asynchronously_when_asked(model_dir, train_fn, eval_fn) -> None:
    dash = nh.Dashboard(
        models.make_estimator(model_dir), train_fn, evals=eval_fn, every_n_iter=10,
        pipeline_checkpoints=False, steps=30, asynchronous_eval=True,
    )  # fmt: skip
    assert [h.asynchronous for h in dash.evaluators] == [True]
    dash.train()
    assert dash.wait(timeout=120) == "finished"
    assert {0, 30} <= set(dash.history["step"])
    expected = dash.estimator.evaluate(eval_fn)
    got = dash.history.query("step == 30 and metric == 'loss'").value.item()
    assert got == pytest.approx(expected["loss"], rel=1e-6)
    dash.close()
    assert dash.evaluators[0]._eval_session is None  # closed with the run
    assert not eval_threads()


def test_user_eval_hooks_take_tensorflows_own_path(estimator, train_fn, eval_fn) -> None:
    counting = CountingHook()
    hook = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=20, hooks=[counting])
    estimator.train(train_fn, steps=40, hooks=[hook])
    assert counting.sessions == 3  # one MonitoredSession per evaluation: steps 0, 20, 40
    assert eval_steps(hook) == [0, 20, 40]


def test_eval_steps_limit_batches_in_the_persistent_session(estimator, train_fn) -> None:
    all_batches = nh.LiveEvaluatorHook(estimator, models.input_fn(n=256, repeat=False, seed=3))
    two_batches = nh.LiveEvaluatorHook(
        estimator, models.input_fn(n=256, repeat=False, seed=3), name="two", steps=2
    )
    estimator.train(train_fn, steps=30, hooks=[all_batches, two_batches])
    expected = estimator.evaluate(models.input_fn(n=256, repeat=False, seed=3), steps=2)
    got = two_batches.history.query("step == 30 and metric == 'loss'").value.item()
    assert got == pytest.approx(expected["loss"], rel=1e-5)
    assert got != pytest.approx(
        all_batches.history.query("step == 30 and metric == 'loss'").value.item(), rel=1e-5
    )


def test_early_stopping_after_a_failed_session_counts_each_evaluation_once(
    estimator, train_fn, eval_fn
) -> None:
    evaluator = nh.LiveEvaluatorHook(estimator, eval_fn, every_n_iter=10)
    stopper = nh.EarlyStopping("loss", patience=2, evaluators=[evaluator])
    stopper.begin()  # a session that failed: its end() never ran
    stopper.begin()
    evaluator.events.emit(EvalEvent("eval", 10, {"loss": 1.0}))
    evaluator.events.emit(EvalEvent("eval", 20, {"loss": 0.5}))
    assert (stopper.wait, stopper.best_step) == (0, 20)
    stopper.end(None)


def test_dashboard_evaluates_from_checkpoints_and_says_so(model_dir, train_fn, eval_fn) -> None:
    est = _estimator(model_dir, _model_fn_with(_with_table))
    dash = nh.Dashboard(
        est, train_fn, evals={"train": (models.input_fn(repeat=True), 2), "eval": eval_fn},
        every_n_iter=10, pipeline_checkpoints=False, evaluate_from="auto", steps=20,
    )  # fmt: skip
    assert [(h.evaluation, h.steps) for h in dash.evaluators] == [("train", 2), ("eval", None)]
    assert dash.eval_status == (
        "train: decided when training starts\neval: decided when training starts"
    )
    dash.train()
    assert dash.wait(timeout=120) == "finished"
    assert "eval: evaluated from checkpoints: the model has state other than variables" in (
        dash.eval_status
    )
    assert sorted(set(dash.history["step"])) == [0, 10, 20]
    memory = nh.Dashboard(
        models.make_estimator(model_dir.parent / "m"),
        train_fn,
        evals=eval_fn,
        pipeline_checkpoints=False,
    )
    assert memory.evaluators[0].how is None
    with pytest.raises(ValueError, match="evaluate_from must be one of"):
        nh.Dashboard(est, train_fn, evals=eval_fn, evaluate_from="disk")


def test_dashboard_panel_shows_how_it_evaluates(model_dir, train_fn, eval_fn, comm_log) -> None:
    from nbhooks.views.base import walk_widgets

    dash = nh.Dashboard(
        models.make_estimator(model_dir),
        train_fn,
        evals=eval_fn,
        every_n_iter=10,
        pipeline_checkpoints=False,
        evaluate_from="checkpoints",
        steps=10,
    )
    status = [
        w for w in walk_widgets(dash.widget) if "nbh-eval-status" in getattr(w, "_dom_classes", ())
    ]
    assert len(status) == 1
    assert "eval: evaluated from checkpoints: evaluate_from=&#x27;checkpoints&#x27;" in (
        status[0].value
    )
    dash.close()


def measuring_model_fn(name: str, measure: Callable[[], float]) -> Callable[..., Any]:
    """The test model, whose evaluation also has a metric ``name``: the mean of ``measure()``
    called by a ``py_func`` in each evaluation batch (on the batch's features), on the thread
    that runs its ops."""

    def model_fn(features, labels, mode, params):
        spec = models.model_fn(features, labels, mode, params)
        if mode != tf().estimator.ModeKeys.EVAL:
            return spec
        v1 = tf().compat.v1
        measured = v1.py_func(
            lambda x: np.float32(measure()), [features["x"]], tf().float32, stateful=True
        )
        return spec._replace(
            eval_metric_ops={**spec.eval_metric_ops, name: v1.metrics.mean(measured)}
        )

    return model_fn


#: The test model, whose evaluation also measures the nice value of the thread running its ops.
nice_model_fn = measuring_model_fn("nice", lambda: os.getpriority(os.PRIO_PROCESS, 0))


def test_asynchronous_evaluations_run_their_ops_on_the_evaluation_thread(
    tmp_path, train_fn, eval_fn
) -> None:
    """Before: on an inter-op thread of the evaluation session's own, each of an evaluation's
    many small runs handed over to it and back, the pool thread spinning after each (~3 ms of
    CPU in a 3x128 evaluation of ~17 ms, bench/README.md). Then, until the input was read
    synchronously: the ops after the input's read on tf.data's thread that read it."""
    ran_on: list[int] = []
    model_fn = measuring_model_fn("ran", lambda: ran_on.append(threading.get_native_id()) or 0)
    config = tf().estimator.RunConfig(model_dir=str(tmp_path), save_summary_steps=None)
    est = tf().estimator.Estimator(model_fn, config=config, params={})
    hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=10, asynchronous=True)
    evaluating: list[int] = []
    hook.events.subscribe(lambda event: evaluating.append(threading.get_native_id()))
    est.train(train_fn, steps=30, hooks=[hook])
    assert eval_steps(hook) == [0, 10, 20, 30] and len(evaluating) == 4
    assert len(set(evaluating)) == 1 and evaluating[0] != threading.get_native_id()
    assert ran_on and set(ran_on) == set(evaluating)  # the hook's evaluation thread, no other
    hook.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value")
@pytest.mark.parametrize("prepared", [False, True])
def test_asynchronous_evaluations_take_only_the_cpu_training_leaves(
    tmp_path, train_fn, eval_fn, prepared
) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if base >= 19:
        pytest.skip("already as nice as can be")
    config = tf().estimator.RunConfig(model_dir=str(tmp_path), save_summary_steps=None)
    est = tf().estimator.Estimator(nice_model_fn, config=config, params={})
    hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=10, asynchronous=True)
    if prepared:  # the evaluation session made ahead, as a shown Dashboard makes it
        preparation = EvalPreparation(est, train_fn, [hook])
        preparation.wait()
        assert preparation.prepared == ["eval"]
    seen = []

    class Training(tf().estimator.SessionRunHook):
        def after_run(self, run_context, run_values) -> None:
            seen.append(os.getpriority(os.PRIO_PROCESS, 0))

    est.train(train_fn, steps=30, hooks=[hook, Training()])
    nice = hook.history.query("metric == 'nice'").set_index("step")["value"]
    assert list(nice.index) == [0, 10, 20, 30]
    assert (nice == 19).all(), nice  # the lowest priority
    assert set(seen) == {base} and os.getpriority(os.PRIO_PROCESS, 0) == base
    hook.close()
    # Synchronous evaluations run on training's threads, at its priority.
    sync = nh.LiveEvaluatorHook(est, eval_fn, name="sync", every_n_iter=10)
    est.train(train_fn, steps=10, hooks=[sync])
    assert (sync.history.query("metric == 'nice'")["value"] == base).all()
    sync.close()


FIRST_SESSION = """
import glob, json, os, sys
sys.path.insert(0, {tests!r})
import models
import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.hooks.evaluator import EvalPreparation

def threads():  # thread id -> nice value
    found = {{}}
    for task in glob.glob("/proc/self/task/*"):
        try:
            with open(task + "/stat") as stat:
                found[task] = int(stat.read().rsplit(")", 1)[1].split()[16])
        except OSError:
            pass
    return found

config = tf().compat.v1.ConfigProto(
    intra_op_parallelism_threads={intra}, inter_op_parallelism_threads=2
)
est = models.make_estimator({model_dir!r}, session_config=config)
before = threads()
hook = nh.LiveEvaluatorHook(est, models.input_fn(n=64, repeat=False), asynchronous=True)
preparation = EvalPreparation(est, models.input_fn(), [hook])
assert preparation.wait(timeout=120) and preparation.prepared == ["eval"]
print(json.dumps([nice for task, nice in threads().items() if task not in before]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value")
def test_training_gets_the_thread_pools_its_config_asks_for(tmp_path) -> None:
    """In a new process (a kernel whose first act is to show a dashboard), nbhooks' scratch
    sessions (the check that the evaluation input ends, the evaluation prepared on a thread of
    low priority) come before training's: TensorFlow's process-wide pools are made first, as
    the estimator's config says and at training's priority; the first session sizes them."""
    intra = (os.cpu_count() or 1) + 3  # more than a session's default: its own config's
    script = FIRST_SESSION.format(
        tests=os.path.dirname(__file__), model_dir=str(tmp_path), intra=intra
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    made = json.loads(out.stdout.strip().splitlines()[-1])
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert made.count(base) >= intra + 2, made  # the intra-op and inter-op pools
    assert made.count(19) >= 1, made  # the evaluation input's threads
    assert set(made) == {base, 19}, made
