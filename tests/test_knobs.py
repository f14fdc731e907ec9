"""nh.knob: values checked, applied at step boundaries, kept across train() calls, harmless
outside training; the dashboard's sliders and curve marks (real widgets, recorded comm)."""

from __future__ import annotations

import math

import models
import numpy as np
import pytest
from waiting import wait_for

import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.knobs import KnobSpec, make_spec


def knob_model_fn(features, labels, mode, params):
    """models.model_fn with its learning rate as a knob."""
    t = tf()
    v1 = t.compat.v1
    with v1.variable_scope("dense"):
        kernel = v1.get_variable(
            "kernel", (models.N_FEATURES, 2), initializer=v1.zeros_initializer()
        )
        bias = v1.get_variable("bias", (2,), initializer=v1.zeros_initializer())
    logits = t.matmul(features["x"], kernel) + bias
    lr = nh.knob("learning_rate", params["learning_rate"], min=1e-4, max=1.0, scale="log")
    if mode == t.estimator.ModeKeys.PREDICT:
        return t.estimator.EstimatorSpec(mode, predictions={"lr": lr + 0 * logits[:, 0]})
    loss = v1.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
    if mode == t.estimator.ModeKeys.EVAL:
        return t.estimator.EstimatorSpec(
            mode, loss=loss, eval_metric_ops={"lr": v1.metrics.mean(lr)}
        )
    opt = v1.train.GradientDescentOptimizer(lr)
    train_op = opt.minimize(loss, global_step=v1.train.get_global_step())
    return t.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def knob_estimator(model_dir, learning_rate: float = 0.1):
    t = tf()
    config = t.estimator.RunConfig(
        model_dir=str(model_dir), save_summary_steps=None, log_step_count_steps=None
    )
    return t.estimator.Estimator(
        knob_model_fn, config=config, params={"learning_rate": learning_rate}
    )


def knob_dashboard(model_dir, **kwargs):
    kwargs.setdefault("pipeline_checkpoints", False)
    return nh.Dashboard(knob_estimator(model_dir), models.input_fn(), **kwargs)


def weights(estimator) -> np.ndarray:
    return np.concatenate(
        [estimator.get_variable_value(n).ravel() for n in ("dense/kernel", "dense/bias")]
    )


# -- the spec (pure) -------------------------------------------------------------------------
@pytest.mark.fast
def test_specs_and_values_are_checked_with_clear_errors() -> None:
    spec = make_spec("lr", 0.05, min=1e-4, max=1.0, scale="log")
    assert spec == KnobSpec("lr", 0.05, 1e-4, 1.0, "log")
    assert spec.check(np.float32(0.5)) == pytest.approx(0.5) and spec.check(1) == 1.0
    with pytest.raises(ValueError, match=r"knob 'lr' must be within \[0.0001, 1.0\], got 2"):
        spec.check(2)
    with pytest.raises(TypeError, match=r"knob 'lr' takes a number, got str '0\.1'"):
        spec.check("0.1")
    with pytest.raises(TypeError, match="takes a number, got bool"):
        spec.check(True)
    with pytest.raises(ValueError, match="finite"):
        spec.check(math.nan)
    with pytest.raises(ValueError, match="scale='log' needs 0 < min < max"):
        make_spec("lr", 0.1, scale="log")
    with pytest.raises(ValueError, match=r"min \(1\) must be below max \(0.5\)"):
        make_spec("lr", 0.1, min=1, max=0.5)
    with pytest.raises(ValueError, match="must be within"):
        make_spec("lr", 5.0, min=0, max=1)
    with pytest.raises(ValueError, match='scale must be "linear" or "log"'):
        make_spec("lr", 0.1, scale="exp")
    with pytest.raises(TypeError, match="non-empty string"):
        make_spec("", 0.1)


def test_a_knob_made_outside_a_graph_is_refused() -> None:
    """In a notebook cell (eager): training would fail to capture it, far from the cause."""
    assert tf().executing_eagerly()
    with pytest.raises(RuntimeError, match=r"nh.knob\('lr', ...\) was called outside a graph: "
                       r"call it inside model_fn"):  # fmt: skip
        nh.knob("lr", 0.1, min=0.01, max=1.0)


def test_one_knob_per_name_in_a_graph() -> None:
    t = tf()
    with t.Graph().as_default():
        a = nh.knob("x", 1.0)
        assert nh.knob("x", 1.0).graph is a.graph
        with pytest.raises(ValueError, match="knob 'x' is already defined"):
            nh.knob("x", 2.0)
        assert len(t.compat.v1.get_collection("nbhooks_knobs")) == 1


# -- training ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_change_applies_from_the_next_step_and_holds_across_trains(tmp_path) -> None:
    # the reference: plain params, 50 steps at 0.1, then 100 at 0.5 (two more train() calls)
    ref = knob_estimator(tmp_path / "ref", 0.1)
    ref.train(models.input_fn(), steps=50)
    ref = knob_estimator(tmp_path / "ref", 0.5)
    ref.train(models.input_fn(), steps=50)
    ref.train(models.input_fn(), steps=50)

    dash = knob_dashboard(tmp_path / "knob")
    assert dash.knob_specs == {"learning_rate": KnobSpec("learning_rate", 0.1, 1e-4, 1.0, "log")}
    dash.train(steps=50)
    dash.wait(timeout=120)
    assert dash.set_knob("learning_rate", 0.5) == 0.5  # idle: applies when training starts
    dash.train(steps=50)
    dash.wait(timeout=120)
    dash.train(steps=50)  # the value holds: applied again when the session starts
    dash.wait(timeout=120)
    assert np.abs(weights(dash.estimator) - weights(ref)).max() == 0.0
    assert dash.knobs[["step", "knob", "value"]].values.tolist() == [[50, "learning_rate", 0.5]]
    assert dash.knob_values == {"learning_rate": 0.5}
    # not in checkpoints: a checkpoint from before the knob existed still restores
    assert not [n for n in dash.estimator.get_variable_names() if "knob" in n]
    # harmless in evaluation and prediction: the model_fn's value, as a local variable
    assert dash.estimator.evaluate(models.input_fn(repeat=False), steps=2)["lr"] == pytest.approx(
        0.1
    )
    preds = dash.estimator.predict(models.input_fn(n=4, repeat=False))
    assert [p["lr"] for p in preds] == pytest.approx([0.1] * 4)
    dash.close()


@pytest.mark.slow
def test_a_change_mid_run_lands_at_the_step_boundary(tmp_path) -> None:
    dash = knob_dashboard(tmp_path / "k")
    dash.train(steps=100_000)
    try:
        assert wait_for(lambda: dash.run.global_step > 20, timeout=60)
        dash.pause()
        assert wait_for(lambda: dash.state == "paused", timeout=60)
        step = dash.run.global_step
        dash.set_knob("learning_rate", 1e-4)
        dash.set_knob("learning_rate", 0.2)  # only the last value before the step applies
        dash.resume()
        assert wait_for(lambda: len(dash.knobs) == 1, timeout=60)
        assert dash.knobs[["step", "value"]].values.tolist() == [[step, 0.2]]
    finally:
        dash.stop()
        dash.wait(timeout=60)


@pytest.mark.slow
def test_bad_values_are_refused_before_anything_changes(tmp_path) -> None:
    dash = knob_dashboard(tmp_path / "k")
    with pytest.raises(KeyError, match="no knob named 'lr'; this model's knobs: 'learning_rate'"):
        dash.set_knob("lr", 0.1)
    with pytest.raises(ValueError, match=r"within \[0.0001, 1.0\]"):
        dash.set_knob("learning_rate", 3)
    with pytest.raises(TypeError, match="takes a number"):
        dash.set_knob("learning_rate", None)
    assert dash.knob_values == {"learning_rate": 0.1} and dash.knobs.empty
    plain = nh.Dashboard(
        models.make_estimator(tmp_path / "plain"), models.input_fn(), pipeline_checkpoints=False
    )
    with pytest.raises(KeyError, match="this model has no knobs"):
        plain.set_knob("learning_rate", 0.1)
    assert plain.knobs.columns.tolist() == ["step", "knob", "value", "wall_time"]


# -- widgets ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_slider_changes_training_and_each_change_is_marked(tmp_path, comm_log) -> None:
    dash = knob_dashboard(
        tmp_path / "k", evals={"eval": models.input_fn(repeat=False)}, every_n_iter=20
    )
    widget = dash.widget
    view = dash._views["knobs"]
    control = view.sliders["learning_rate"]
    assert type(control).__name__ == "FloatLogSlider" and "nbh-knob" in control._dom_classes
    assert (control.min, control.max, control.value) == (-4.0, 0.0, 0.1)
    from nbhooks.views.base import walk_widgets

    assert any(w is view.widget for w in walk_widgets(widget))
    control.value = 0.3  # as a person would, before training
    assert dash.knob_values == {"learning_rate": 0.3}
    control.value = 5.0  # out of range: the slider clamps it to its max (1.0)
    assert dash.knob_values == {"learning_rate": 1.0}
    dash.train(steps=60)
    dash.wait(timeout=120)
    dash.set_knob("learning_rate", 0.01)  # from code: the slider follows once it applies
    dash.train(steps=40)
    dash.wait(timeout=120)
    dash.run.panel().publisher.flush()
    assert dash.knobs[["step", "value"]].values.tolist() == [[0, 1.0], [60, 0.01]]
    assert control.value == pytest.approx(0.01)
    shapes = dash._views["curves"].figure.layout.shapes
    assert sorted({s.x0 for s in shapes}) == [0, 60]
    assert "learning_rate=0.01" in [s.label.text for s in shapes]
    assert "learning_rate = 0.01 from step 60" in view.status.value
    dash.close()
