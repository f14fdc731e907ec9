"""Compatibility: every estimator family x input style of tests/zoo.py, evaluated live, gives
the numbers ``estimator.evaluate()`` gives on the checkpoint of the same step (README's table).
"""

from __future__ import annotations

import math
import threading

import pytest
import zoo

import nbhooks as nh

pytestmark = pytest.mark.slow


def live_history(
    case: zoo.Case, model_dir, asynchronous: bool = False
) -> tuple[object, object, nh.LiveEvaluatorHook]:
    est, train_fn, eval_fn = case.make(model_dir)
    options = {} if case.evaluate_from == "memory" else {"evaluate_from": case.evaluate_from}
    hook = nh.LiveEvaluatorHook(
        est, eval_fn, every_n_iter=zoo.EVERY, asynchronous=asynchronous, **options
    )
    run = nh.TrainingRun(est, train_fn, steps=zoo.STEPS, hooks=[hook], report=None)
    run.start()
    assert run.wait(timeout=120) == "finished"
    return est, eval_fn, hook


FAST = [c for c in zoo.CASES if c.how == "persistent session"]


@pytest.mark.parametrize(
    ("case", "asynchronous"),
    [(c, False) for c in zoo.CASES] + [(c, True) for c in FAST],
    ids=[c.id for c in zoo.CASES] + [f"{c.id}-async" for c in FAST],
)
def test_live_metrics_equal_checkpoint_evaluation(
    case: zoo.Case, asynchronous: bool, model_dir
) -> None:
    """Asynchronous: each evaluated step's snapshot gives that step's checkpoint numbers (a
    step skipped while the one before was in flight is simply absent)."""
    est, eval_fn, hook = live_history(case, model_dir, asynchronous)
    steps = sorted({int(s) for s in hook.history["step"]})
    if asynchronous:
        assert steps[0] == 0 and steps[-1] == zoo.STEPS
        assert set(steps) <= set(range(0, zoo.STEPS + 1, zoo.EVERY))
        assert not [t for t in threading.enumerate() if t.name.startswith("nbhooks-eval")]
    else:
        assert steps == list(range(0, zoo.STEPS + 1, zoo.EVERY))
    for step in steps[1:]:  # step 0 (the initial model) skipped: CI time
        expected = est.evaluate(
            eval_fn, checkpoint_path=f"{model_dir}/model.ckpt-{step}", name="check"
        )
        assert int(expected["global_step"]) == step
        frame = hook.history.query("step == @step")
        got = dict(zip(frame["metric"], frame["value"], strict=True))
        wanted = {k: float(v) for k, v in expected.items() if k != "global_step"}
        assert set(got) == set(wanted), step
        assert not all(v == 0 for v in got.values()), f"all metrics 0.0 at step {step}"
        for metric, value in wanted.items():
            assert math.isclose(got[metric], value, rel_tol=1e-5, abs_tol=1e-6), (
                f"step {step} {metric}: live {got[metric]!r}, checkpoint {value!r}"
            )
    assert hook.how == case.how


def test_tf1_estimators_are_accepted_everywhere(tmp_path) -> None:
    """A TF1 canned estimator in a Dashboard: evaluator, pipeline, final ops, the run."""
    est, train_fn, eval_fn = zoo.linear_tf1(tmp_path / "model")
    dash = nh.Dashboard(
        est,
        train_fn,
        evals=eval_fn,
        every_n_iter=5,
        final_ops={"step": "global_step"},
        pipeline_checkpoints=True,
        steps=10,
    )
    dash.train()
    assert dash.wait(timeout=120) == "finished"
    assert sorted(set(dash.history["step"])) == [0, 5, 10]
    assert dash.final_ops["value"].tolist()[-1] == 10
    dash.close()
