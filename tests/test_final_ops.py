"""FinalValuesTable (pure model) and FinalOpsTableHook with real estimators."""

from __future__ import annotations

import threading
from pathlib import Path

import models
import numpy as np
import pandas as pd
import pytest

import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.events import EventBus, FinalOpsEvent, RunStateEvent
from nbhooks.hooks.final_ops import FinalOpsTableHook, describe_error
from nbhooks.stores.final_values import FinalValuesTable, summarize

MALICIOUS = "<img src=x onerror=alert(1)>"


# -- model fns of our own: a feedable scale and a session that fails at a given step ------


def scaled_model_fn(features, labels, mode, params):
    """models.model_fn plus ``scaled_sum`` = sum(kernel) * ``scale`` (fed or 1.0).

    With ``params["fail_at"]`` the train op asserts ``global_step < fail_at``: the session
    raises at that step, so ``end()`` never runs.
    """
    t = tf()
    v1 = t.compat.v1
    spec = models.model_fn(features, labels, mode, params)
    kernel = v1.get_collection(v1.GraphKeys.GLOBAL_VARIABLES, "dense/kernel")[0]
    scale = v1.placeholder_with_default(t.constant(1.0), (), name="scale")
    t.identity(t.reduce_sum(kernel) * scale, name="scaled_sum")
    if mode != t.estimator.ModeKeys.TRAIN or "fail_at" not in params:
        return spec
    limit = t.constant(params["fail_at"], t.int64)
    check = t.debugging.assert_less(v1.train.get_global_step(), limit, message="planned failure")
    with t.control_dependencies([check]):
        return spec._replace(train_op=t.group(spec.train_op))


def make_custom(model_dir: Path, **params):
    t = tf()
    config = t.estimator.RunConfig(
        model_dir=str(model_dir), save_summary_steps=None, log_step_count_steps=None
    )
    return t.estimator.Estimator(scaled_model_fn, config=config, params=params)


@pytest.fixture
def events_of():
    """Collects the FinalOpsEvents a hook emits."""

    def collect(hook: FinalOpsTableHook) -> list[FinalOpsEvent]:
        seen: list[FinalOpsEvent] = []
        hook.events.subscribe(lambda e: seen.append(e) if isinstance(e, FinalOpsEvent) else None)
        return seen

    return collect


# -- the pure model -------------------------------------------------------------------------


def test_summarize_scalar_keeps_value_and_array_gets_summary():
    scalar = summarize(np.int64(7))
    assert scalar["value"] == 7 and isinstance(scalar["value"], int)
    assert scalar["shape"] == () and np.isnan(scalar["mean"])
    array = summarize(np.array([[3.0, -4.0]], dtype="float32"))
    assert array["value"] is None and array["shape"] == (1, 2) and array["dtype"] == "float32"
    assert array["mean"] == -0.5 and array["min"] == -4 and array["max"] == 3
    assert array["l2"] == pytest.approx(5.0) and array["std"] == pytest.approx(3.5)


def test_summarize_strings_and_empty_arrays():
    assert summarize(np.bytes_(MALICIOUS.encode()))["value"] == MALICIOUS
    assert summarize(np.array([b"a", b"b"]))["dtype"] == "string"
    assert np.isnan(summarize(np.zeros((0, 3)))["mean"])


def test_table_accumulates_runs_keeps_arrays_and_failures(tmp_path: Path):
    table = FinalValuesTable()
    first, second, third = table.new_run(), table.new_run(), table.new_run()
    kernel = np.arange(6.0).reshape(3, 2)
    table.add_values(first, "train", 10, {"w": kernel, "acc": 0.5})
    table.add_values(second, "eval", 10, {"acc": 0.75})
    table.add_failure(third, "train", 12, "InvalidArgumentError: boom")
    frame = table.to_frame()
    assert list(frame["run_id"]) == [first, first, second, third]
    assert list(frame["status"]) == ["ok", "ok", "ok", "failed"]
    assert frame.loc[1, "value"] == 0.5 and frame.loc[0, "l2"] == pytest.approx(np.sqrt(55))
    assert frame.loc[3, "message"] == "session failed, no final values: InvalidArgumentError: boom"
    np.testing.assert_array_equal(table.array(first, "w"), kernel)
    assert table.to_frame(arrays=True).loc[0, "array"] is table.array(first, "w")
    with pytest.raises(KeyError, match=r"that run has: \['acc', 'w'\]"):
        table.array(first, "nope")
    written = pd.read_csv(table.to_csv(tmp_path / "out" / "final.csv"))
    assert list(written["name"].fillna("")) == ["w", "acc", "acc", ""]
    assert list(table.failures["run_id"]) == [third]


def test_table_is_safe_to_write_from_many_threads():
    table = FinalValuesTable()

    def write() -> None:
        for _ in range(50):
            table.add_values(table.new_run(), "train", 1, {"a": 1.0, "b": np.ones(3)})

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    frame = table.to_frame()
    assert len(frame) == 400 and frame["run_id"].nunique() == 200


# -- construction: bad input is rejected before anything runs ------------------------------


@pytest.mark.parametrize(
    ("final_ops", "error", "match"),
    [
        ({"w": 3}, TypeError, r"final_ops\['w'\] is int 3, which cannot be fetched"),
        ({"w": None}, TypeError, "a tf.Tensor or a tf.Variable"),
        ({"w": ""}, TypeError, "cannot be fetched"),
        ({}, ValueError, "final_ops is empty"),
        ({1: "dense/kernel"}, TypeError, "keys must be non-empty strings"),
        (42, TypeError, "final_ops must be a dict"),
        ([object()], TypeError, "cannot be fetched"),
    ],
)
def test_construction_rejects_what_cannot_be_fetched(final_ops, error, match):
    with pytest.raises(error, match=match):
        FinalOpsTableHook(final_ops)


def test_construction_rejects_an_operation_and_bad_feed_dict_and_table():
    with tf().Graph().as_default():
        op = tf().no_op(name="nothing")
        with pytest.raises(TypeError, match="fetch one of its outputs"):
            FinalOpsTableHook({"op": op})
    with pytest.raises(TypeError, match="final_ops_feed_dict must be a dict"):
        FinalOpsTableHook(["dense/kernel"], final_ops_feed_dict=[1])
    with pytest.raises(TypeError, match="table must be a FinalValuesTable"):
        FinalOpsTableHook(["dense/kernel"], table=pd.DataFrame())


def test_construction_rejects_eager_tensors_and_variables():
    """Made in a TF2 notebook outside any graph: the estimator's session cannot fetch them."""
    for value in (tf().constant(1.0), tf().Variable(1.0)):
        with pytest.raises(TypeError, match="made eagerly, outside the estimator's graph"):
            FinalOpsTableHook({"w": value})
    with tf().Graph().as_default():
        FinalOpsTableHook({"w": tf().constant(1.0)})  # a graph tensor is fine


def test_describe_error_skips_tf_boilerplate():
    error = ValueError("Graph execution error:\n\nDetected at node x\n  File a.py\nreal cause\n")
    assert describe_error(error) == "ValueError: real cause"
    assert describe_error(None) == "the session raised"
    assert len(describe_error(RuntimeError("x" * 1000))) == 300


# -- real estimators ------------------------------------------------------------------------


def test_train_records_variables_by_name_with_values_and_arrays(estimator, train_fn, events_of):
    hook = FinalOpsTableHook(
        {"w": "dense/kernel", "b": "dense/bias:0", "step": "global_step", MALICIOUS: "dense/bias"}
    )
    seen = events_of(hook)
    estimator.train(train_fn, steps=5, hooks=[hook])
    frame = hook.to_frame().set_index("name")
    kernel = estimator.get_variable_value("dense/kernel")
    assert set(frame["mode"]) == {"train"} and set(frame["step"]) == {5}
    assert frame.loc["step", "value"] == 5 and frame.loc["w", "shape"] == (4, 2)
    assert frame.loc["w", "dtype"] == "float32" and not np.isnan(frame.loc["w", "l2"])
    assert frame.loc["w", "l2"] == pytest.approx(float(np.linalg.norm(kernel)), rel=1e-5)
    np.testing.assert_allclose(hook.array(1, "w"), kernel)
    np.testing.assert_allclose(hook.array(1, MALICIOUS), hook.array(1, "b"))
    assert [(e.run_id, e.mode, e.step, e.failed, len(e.rows)) for e in seen] == [
        (1, "train", 5, False, 4)
    ]


def test_evaluate_fetches_metric_values_and_rows_accumulate(estimator, train_fn, eval_fn):
    table = FinalValuesTable()
    estimator.train(train_fn, steps=20, hooks=[FinalOpsTableHook(["dense/kernel"], table=table)])
    hook = FinalOpsTableHook(
        {"accuracy": "accuracy/value:0", "correct": "accuracy/total", "w": "dense/kernel"},
        table=table,
    )
    metrics = estimator.evaluate(eval_fn, hooks=[hook])
    frame = table.to_frame()
    assert list(frame["run_id"]) == [1, 2, 2, 2] and list(frame["mode"]) == ["train", *["eval"] * 3]
    evaluated = frame[frame["run_id"] == 2].set_index("name")
    assert evaluated.loc["accuracy", "value"] == pytest.approx(metrics["accuracy"])
    assert evaluated.loc["correct", "value"] == pytest.approx(metrics["accuracy"] * 256)
    assert set(evaluated["step"]) == {20}
    np.testing.assert_allclose(table.array(1, "dense/kernel"), table.array(2, "w"))


def test_canned_estimator_train_and_evaluate_with_a_callable(model_dir, train_fn, eval_fn):
    classifier = models.make_linear_classifier(model_dir)
    weights = "linear/linear_model/x/weights"

    def pick(graph) -> dict:
        names = [op.name for op in graph.get_operations()]
        assert weights in names  # called with the estimator's own graph
        return {"weights": weights, "step": "global_step"}

    hook = FinalOpsTableHook(pick)
    classifier.train(train_fn, steps=3, hooks=[hook])
    classifier.evaluate(eval_fn, steps=2, hooks=[hook])
    frame = hook.to_frame()
    assert list(zip(frame["run_id"], frame["mode"], frame["name"], strict=True)) == [
        (1, "train", "weights"),
        (1, "train", "step"),
        (2, "eval", "weights"),
        (2, "eval", "step"),
    ]
    assert list(frame["step"]) == [3, 3, 3, 3] and frame.loc[0, "shape"] == (4, 1)
    np.testing.assert_allclose(hook.array(2, "weights"), classifier.get_variable_value(weights))


def test_a_callable_returning_garbage_is_refused_in_begin(estimator, train_fn):
    hook = FinalOpsTableHook(lambda graph: {"w": 1.5})
    with pytest.raises(TypeError, match=r"final_ops\['w'\] is float"):
        estimator.train(train_fn, steps=1, hooks=[hook])
    assert estimator.latest_checkpoint() is None and not hook.session_open


def test_tensors_and_variables_from_inside_model_fn(model_dir, train_fn):
    hooks: list[FinalOpsTableHook] = []

    def model_fn(features, labels, mode, params):
        spec = scaled_model_fn(features, labels, mode, params)
        graph = tf().compat.v1.get_default_graph()
        kernel = graph.get_collection("variables", "dense/kernel")[0]
        hooks.append(FinalOpsTableHook([kernel, graph.get_tensor_by_name("scaled_sum:0")]))
        return spec._replace(training_hooks=hooks[-1:])

    config = tf().estimator.RunConfig(model_dir=str(model_dir))
    tf().estimator.Estimator(model_fn, config=config).train(train_fn, steps=2)
    frame = hooks[0].to_frame().set_index("name")
    assert list(frame.index) == ["dense/kernel", "scaled_sum:0"]
    assert frame.loc["scaled_sum:0", "value"] == pytest.approx(
        hooks[0].array(1, "dense/kernel").sum()
    )


def test_a_tensor_from_another_graph_is_a_clear_error(estimator, train_fn):
    with tf().Graph().as_default():
        stray = tf().constant(1.0, name="stray")
    with pytest.raises(ValueError, match=r"belongs to another graph.*pass its name"):
        estimator.train(train_fn, steps=1, hooks=[FinalOpsTableHook({"s": stray})])


def test_final_ops_feed_dict_still_works(model_dir, train_fn):
    estimator = make_custom(model_dir)
    plain = FinalOpsTableHook(["scaled_sum"])
    fed = FinalOpsTableHook(["scaled_sum"], final_ops_feed_dict={"scale:0": 3.0})
    estimator.train(train_fn, steps=3, hooks=[plain, fed])
    assert plain.final_ops_values["scaled_sum"] != 0
    assert fed.to_frame().loc[0, "value"] == pytest.approx(3 * plain.to_frame().loc[0, "value"])


def test_unknown_name_lists_the_closest_names_before_training(estimator, train_fn):
    hook = FinalOpsTableHook({"w": "dense/kernal"})
    with pytest.raises(ValueError, match=r"no variable, tensor or op named 'dense/kernal'") as info:
        estimator.train(train_fn, steps=5, hooks=[hook])
    assert "closest names in the graph: 'dense/kernel'" in str(info.value)
    assert estimator.latest_checkpoint() is None and len(hook.table) == 0


def test_an_op_without_outputs_is_refused(estimator, train_fn):
    with pytest.raises(ValueError, match=r"has no outputs .*'accuracy/value:0'"):
        estimator.train(train_fn, steps=1, hooks=[FinalOpsTableHook({"t": "GradientDescent"})])


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_an_op_that_reads_input_is_refused_with_an_explanation(estimator, train_fn, eval_fn, mode):
    hook = FinalOpsTableHook({"loss": "sparse_softmax_cross_entropy_loss/value:0"})
    run = estimator.train if mode == "train" else estimator.evaluate
    with pytest.raises(ValueError) as info:
        run(train_fn if mode == "train" else eval_fn, steps=2, hooks=[hook])
    message = str(info.value)
    assert "depends on the input pipeline through 'IteratorGetNext'" in message
    assert "OutOfRangeError" in message and "'accuracy/value:0'" in message
    assert len(hook.table) == 0


def test_metric_update_op_is_refused_in_evaluate(estimator, train_fn, eval_fn):
    estimator.train(train_fn, steps=1)
    with pytest.raises(ValueError, match="depends on the input pipeline"):
        estimator.evaluate(eval_fn, hooks=[FinalOpsTableHook({"u": "accuracy/update_op:0"})])


# -- failed sessions -------------------------------------------------------------------------


def test_a_failed_session_is_noted_by_the_next_begin_not_shown_stale(
    model_dir, train_fn, events_of
):
    estimator = make_custom(model_dir, fail_at=4)
    hook = FinalOpsTableHook(["dense/kernel"])
    seen = events_of(hook)
    estimator.train(train_fn, steps=2, hooks=[hook])  # ok: steps 0 and 1
    with pytest.raises(tf().errors.InvalidArgumentError, match="planned failure"):
        estimator.train(train_fn, steps=10, hooks=[hook])
    assert hook.session_open and hook.final_ops_values is None  # no stale values kept
    with pytest.raises(tf().errors.InvalidArgumentError):
        estimator.train(train_fn, steps=10, hooks=[hook])  # its begin() notes run 2
    frame = hook.to_frame()
    assert list(zip(frame["run_id"], frame["status"], strict=True)) == [(1, "ok"), (2, "failed")]
    assert "session failed, no final values" in frame.loc[1, "message"]
    assert pd.isna(frame.loc[1, "name"]) and np.isnan(frame.loc[1, "l2"])
    assert [e.failed for e in seen] == [False, True] and seen[1].run_id == 2


def test_watch_marks_the_failure_with_the_training_error(model_dir, train_fn):
    estimator = make_custom(model_dir, fail_at=2)
    hook = FinalOpsTableHook(["dense/kernel"])
    with pytest.raises(tf().errors.InvalidArgumentError), hook.watch():
        estimator.train(train_fn, steps=10, hooks=[hook])
    failures = hook.table.failures
    assert list(failures["run_id"]) == [1] and not hook.session_open
    assert "InvalidArgumentError: assertion failed" in failures.loc[0, "message"]
    assert "planned failure" in failures.loc[0, "message"]


def test_attach_marks_the_open_session_failed_on_a_failed_run_state(model_dir, train_fn):
    class Run:  # the part of TrainingRun that attach() uses
        events = EventBus()

    run = Run()
    hook = FinalOpsTableHook(["dense/kernel"])
    hook.attach(run)
    seen: list[FinalOpsEvent] = []
    run.events.subscribe(lambda e: seen.append(e) if isinstance(e, FinalOpsEvent) else None)
    error = None
    try:
        make_custom(model_dir, fail_at=1).train(train_fn, steps=5, hooks=[hook])
    except tf().errors.InvalidArgumentError as exc:
        error = exc
    assert error is not None and hook.session_open
    run.events.emit(RunStateEvent("failed", step=1, error=error))
    assert [(e.run_id, e.step, e.failed) for e in seen] == [(1, 1, True)]
    assert "planned failure" in seen[0].message and not hook.session_open
    run.events.emit(RunStateEvent("failed", step=1, error=error))  # nothing open: no new row
    assert len(hook.table) == 1


def test_with_a_real_training_run(model_dir, train_fn):
    hook = FinalOpsTableHook({"w": "dense/kernel"})
    run = nh.TrainingRun(
        make_custom(model_dir, fail_at=3), train_fn, steps=10, hooks=[hook], report=None
    )
    run.start()
    with pytest.raises(tf().errors.InvalidArgumentError):
        run.wait(timeout=120)
    frame = hook.to_frame()
    assert list(frame["status"]) == ["failed"] and "planned failure" in frame.loc[0, "message"]
    run.close()
