"""The embedded demo: the digits split, its input_fns and the small dense Estimator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nbhooks import demo
from nbhooks._tf import tf as import_tf


def test_package_reexports_the_data_and_model_api() -> None:
    from nbhooks.demo import digits

    for name in ("digits_input_fns", "make_demo_estimator", "digits_split", "demo_model_fn"):
        assert getattr(demo, name) is getattr(digits, name)


def test_digits_split_is_fixed_scaled_and_disjoint() -> None:
    x_train, y_train, x_eval, y_eval = demo.digits_split()
    assert x_train.shape == (1438, demo.N_FEATURES) and x_eval.shape == (359, demo.N_FEATURES)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int32
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert set(np.unique(y_eval)) == set(range(demo.N_CLASSES))
    train_rows = {row.tobytes() for row in x_train}
    assert sum(row.tobytes() in train_rows for row in x_eval) < 10  # a few duplicate images


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: demo.digits_input_fns(batch_size=0), "batch_size"),
        (lambda: demo.make_demo_estimator(hidden_units=()), "hidden_units"),
        (lambda: demo.make_demo_estimator(hidden_units=(8, 0)), "hidden_units"),
        (lambda: demo.make_demo_estimator(learning_rate=0), "learning_rate"),
    ],
    ids=["batch_size", "no_hidden_layer", "empty_layer", "learning_rate"],
)
def test_bad_arguments_are_rejected(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.slow
def test_eval_input_fns_are_finite_and_train_repeats() -> None:
    tf = import_tf()
    train_fn, eval_fn, train_eval_fn = demo.digits_input_fns(batch_size=100)
    assert sum(int(y.shape[0]) for _, y in eval_fn()) == 359
    assert sum(int(y.shape[0]) for _, y in train_eval_fn()) == 1438
    batches = list(train_fn().take(20))  # more than one epoch: it repeats
    assert all(int(y.shape[0]) == 100 for _, y in batches)
    assert isinstance(batches[0][0]["x"], tf.Tensor)


@pytest.mark.slow
def test_demo_estimator_trains_and_beats_chance(tmp_path: Path) -> None:
    train_fn, eval_fn, _ = demo.digits_input_fns()
    estimator = demo.make_demo_estimator(tmp_path / "model", hidden_units=(32, 16))
    estimator.train(train_fn, steps=50)
    assert estimator.get_variable_value("global_step") == 50
    names = set(estimator.get_variable_names())
    assert {"dense/kernel", "dense_1/kernel", "logits/kernel", "logits/bias"} <= names
    before = estimator.evaluate(eval_fn)
    estimator.train(train_fn, steps=250)
    after = estimator.evaluate(eval_fn)
    assert after["global_step"] == 300
    assert after["accuracy"] > 0.5  # chance is 0.1 for ten classes
    assert after["loss"] < before["loss"]
