"""Small real estimators on generated data, shared by the tests (no mocks of TensorFlow)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nbhooks._tf import tf

N_FEATURES = 4


def make_data(n: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A linearly separable-ish binary problem: x (n, 4) float32, y (n,) int32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype("float32")
    w = np.array([1.5, -2.0, 0.5, 1.0], dtype="float32")
    y = (x @ w + 0.3 * rng.normal(size=n) > 0).astype("int32")
    return x, y


def input_fn(
    n: int = 512, batch: int = 32, repeat: bool = True, seed: int = 0, shuffle: bool = False
) -> Callable[[], object]:
    """An Estimator input_fn over :func:`make_data` (repeats forever unless ``repeat=False``)."""

    def fn():
        x, y = make_data(n, seed)
        ds = tf().data.Dataset.from_tensor_slices(({"x": x}, y))
        if shuffle:
            ds = ds.shuffle(n, seed=seed)
        if repeat:
            ds = ds.repeat()
        return ds.batch(batch)

    return fn


def model_fn(features, labels, mode, params):
    """Logistic regression: variables ``dense/kernel`` and ``dense/bias``."""
    t = tf()
    v1 = t.compat.v1
    with v1.variable_scope("dense"):
        kernel = v1.get_variable("kernel", (N_FEATURES, 2), initializer=v1.zeros_initializer())
        bias = v1.get_variable("bias", (2,), initializer=v1.zeros_initializer())
    logits = t.matmul(features["x"], kernel) + bias
    predictions = {"class": t.argmax(logits, axis=1), "probabilities": t.nn.softmax(logits)}
    if mode == t.estimator.ModeKeys.PREDICT:
        return t.estimator.EstimatorSpec(mode, predictions=predictions)
    loss = v1.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
    if mode == t.estimator.ModeKeys.EVAL:
        metrics = {"accuracy": v1.metrics.accuracy(labels, predictions["class"])}
        return t.estimator.EstimatorSpec(mode, loss=loss, eval_metric_ops=metrics)
    opt = v1.train.GradientDescentOptimizer(params.get("learning_rate", 0.1))
    train_op = opt.minimize(loss, global_step=v1.train.get_global_step())
    return t.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def make_estimator(model_dir, learning_rate: float = 0.1, **config):
    """A custom-model_fn Estimator writing to ``model_dir``; ``config`` goes to RunConfig."""
    t = tf()
    config.setdefault("save_summary_steps", None)
    config.setdefault("log_step_count_steps", None)
    run_config = t.estimator.RunConfig(model_dir=str(model_dir), **config)
    return t.estimator.Estimator(
        model_fn, config=run_config, params={"learning_rate": learning_rate}
    )


def make_linear_classifier(model_dir, **config):
    """A canned estimator over the same data (feature column ``x`` of shape 4)."""
    t = tf()
    config.setdefault("save_summary_steps", None)
    config.setdefault("log_step_count_steps", None)
    column = t.feature_column.numeric_column("x", shape=(N_FEATURES,))
    return t.estimator.LinearClassifier(
        [column], config=t.estimator.RunConfig(model_dir=str(model_dir), **config)
    )


def estimator_with(config: Any) -> Any:
    """The model of :func:`make_estimator` built with a given RunConfig (a LocalCluster
    task's factory: RunConfig -> Estimator)."""
    return tf().estimator.Estimator(model_fn, config=config, params={"learning_rate": 0.1})


def small_cluster(
    make_estimator: Callable[[Any], Any], model_dir: Any, steps: int = 10, **options: Any
) -> Any:
    """A LocalCluster on :func:`input_fn` with no evaluator and, unless ``options`` say
    otherwise, a chief and a parameter server only; ``make_estimator(config)`` builds each
    task's Estimator."""
    from nbhooks.cluster import LocalCluster

    options = {"workers": 0, "evaluator": False, **options}
    return LocalCluster(
        make_estimator, input_fn(), None, steps=steps, model_dir=model_dir, **options
    )
