"""The demo's data and model: a small dense network on scikit-learn's bundled ``load_digits``.

Nothing is downloaded: the 1797 8x8 digit images ship inside scikit-learn (the ``demo`` extra).
The model is a custom ``model_fn`` in the ``tf.compat.v1`` style, with variables
``dense/kernel``, ``dense/bias`` (``dense_1/...`` for a second hidden layer) and
``logits/kernel``, ``logits/bias``; evaluation reports ``accuracy`` and ``loss``.

    from nbhooks.demo import digits_input_fns, make_demo_estimator
    train_fn, eval_fn, train_eval_fn = digits_input_fns()
    est = make_demo_estimator()
    est.train(train_fn, steps=300)
    est.evaluate(eval_fn)
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nbhooks._tf import tf

N_FEATURES = 64
N_CLASSES = 10
EVAL_FRACTION = 0.2
SPLIT_SEED = 0  # the train/eval split never changes, whatever the shuffle seed

InputFn = Callable[[], Any]


@functools.cache
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_eval, y_eval)``: features scaled to [0, 1] (float32), int32 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the nbhooks demo needs scikit-learn: pip install "nbhooks[demo]"'
        ) from exc
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    n_eval = int(len(y) * EVAL_FRACTION)
    eval_idx, train_idx = order[:n_eval], order[n_eval:]
    return x[train_idx], y[train_idx], x[eval_idx], y[eval_idx]


def _input_fn(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None) -> InputFn:
    """An Estimator input_fn over ``(x, y)``: shuffled and repeated forever when ``seed`` is set."""

    def input_fn():
        ds = tf().data.Dataset.from_tensor_slices(({"x": x}, y))
        if seed is not None:
            ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True).repeat()
        return ds.batch(batch_size)

    return input_fn


def digits_input_fns(batch_size: int = 64, seed: int = 0) -> tuple[InputFn, InputFn, InputFn]:
    """``(train_input_fn, eval_input_fn, train_eval_input_fn)`` over a fixed 80/20 split.

    ``train_input_fn`` shuffles (with ``seed``) and repeats forever; the two others go once
    over the evaluation set and the training set, in order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x_train, y_train, x_eval, y_eval = digits_split()
    return (
        _input_fn(x_train, y_train, batch_size, seed),
        _input_fn(x_eval, y_eval, batch_size, None),
        _input_fn(x_train, y_train, batch_size, None),
    )


def _dense(x: Any, scope: str, units: int, activation: Callable[[Any], Any] | None = None) -> Any:
    """A fully connected layer with variables ``<scope>/kernel`` and ``<scope>/bias``."""
    v1 = tf().compat.v1
    with v1.variable_scope(scope):
        kernel = v1.get_variable(
            "kernel", (x.shape[-1], units), initializer=v1.glorot_uniform_initializer()
        )
        bias = v1.get_variable("bias", (units,), initializer=v1.zeros_initializer())
    out = tf().matmul(x, kernel) + bias
    return activation(out) if activation else out


def demo_model_fn(features: dict[str, Any], labels: Any, mode: str, params: dict[str, Any]):
    """Dense ReLU layers (``params["hidden_units"]``) then 10 logits, trained with plain SGD."""
    t = tf()
    v1 = t.compat.v1
    h = features["x"]
    for i, units in enumerate(params["hidden_units"]):
        h = _dense(h, "dense" if i == 0 else f"dense_{i}", units, t.nn.relu)
    logits = _dense(h, "logits", N_CLASSES)
    classes = t.argmax(logits, axis=1, output_type=t.int32)
    predictions = {"class": classes, "probabilities": t.nn.softmax(logits)}
    if mode == t.estimator.ModeKeys.PREDICT:
        return t.estimator.EstimatorSpec(mode, predictions=predictions)
    loss = v1.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
    if mode == t.estimator.ModeKeys.EVAL:
        metrics = {"accuracy": v1.metrics.accuracy(labels, classes)}
        return t.estimator.EstimatorSpec(mode, loss=loss, eval_metric_ops=metrics)
    optimizer = v1.train.GradientDescentOptimizer(params["learning_rate"])
    train_op = optimizer.minimize(loss, global_step=v1.train.get_global_step())
    return t.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def make_demo_estimator(
    model_dir: str | os.PathLike[str] | None = None,
    hidden_units: Sequence[int] = (64,),
    learning_rate: float = 0.05,
    **runconfig: Any,
):
    """A ``tf.estimator.Estimator`` for the digits; extra keywords go to ``RunConfig``.

    Defaults favour speed and repeatability: ``tf_random_seed=0``, no summaries, no step-rate
    logging. ``model_dir=None`` lets the Estimator pick a temporary directory.
    """
    if not hidden_units or any(int(u) < 1 for u in hidden_units):
        raise ValueError(f"hidden_units must be positive integers, got {hidden_units!r}")
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
    t = tf()
    runconfig.setdefault("tf_random_seed", 0)
    runconfig.setdefault("save_summary_steps", None)
    runconfig.setdefault("log_step_count_steps", None)
    config = t.estimator.RunConfig(
        model_dir=None if model_dir is None else str(model_dir), **runconfig
    )
    params = {"hidden_units": tuple(int(u) for u in hidden_units), "learning_rate": learning_rate}
    return t.estimator.Estimator(demo_model_fn, config=config, params=params)
