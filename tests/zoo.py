"""A zoo of the Estimators users bring, each with its train and evaluation input_fns.

Every entry is a :class:`Case`: which family of estimator, which input style, and how nbhooks
evaluates it (``how``: the README's compatibility table is this list). ``case.make(model_dir)``
returns ``(estimator, train_fn, eval_fn)``. Offline data only: scikit-learn's bundled sets
(iris, breast_cancer, diabetes) or generated. Small models, deterministic (seeded, no shuffle
in evaluation), a checkpoint every :data:`EVERY` steps kept so that each evaluated step can be
evaluated again from its checkpoint.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nbhooks._tf import tf

EVERY = 10  #: evaluate (and checkpoint) every this many steps
STEPS = 20  #: training steps per case
BATCH = 32

InputFn = Callable[..., Any]
Made = tuple[Any, InputFn, InputFn]


@dataclass(frozen=True)
class Case:
    """One row of the compatibility table."""

    id: str
    family: str  #: estimator family, as users name it
    inputs: str  #: input style of the evaluation input_fn
    how: str  #: how nbhooks evaluates it: "persistent session", "per evaluation", "checkpoints"
    make: Callable[[Path], Made] = field(repr=False)
    evaluate_from: str = "memory"  #: what the test passes to LiveEvaluatorHook


def run_config(model_dir: Path, **extra: Any) -> Any:
    """Checkpoints every EVERY steps, all kept; no summaries or step logs (speed)."""
    return tf().estimator.RunConfig(
        model_dir=str(model_dir),
        tf_random_seed=0,
        save_checkpoints_steps=EVERY,
        keep_checkpoint_max=1000,
        save_summary_steps=None,
        log_step_count_steps=None,
        **extra,
    )


# -- data -------------------------------------------------------------------------------------
@functools.cache
def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return x.astype("float32"), y.astype("int32")


@functools.cache
def cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return x[:, :6].astype("float32"), y.astype("int32")


@functools.cache
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    return (x / x.std(0)).astype("float32"), (y / 100).astype("float32")


COLORS = ["red", "green", "blue"]
SHAPES = ["round", "square"]


@functools.cache
def categorical(n: int = 240) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Two string features (vocabularies above) and a number; the label depends on both."""
    rng = np.random.default_rng(0)
    color = rng.choice(COLORS, n)
    shape = rng.choice(SHAPES, n)
    size = rng.normal(size=n).astype("float32")
    y = ((color == "red") ^ (shape == "round") ^ (size > 1)).astype("int32")
    return {"color": color, "shape": shape, "size": size}, y


def dataset_fn(
    features: dict[str, np.ndarray],
    y: np.ndarray | dict[str, np.ndarray],
    *,
    train: bool,
    batch: int = BATCH,
) -> InputFn:
    """A ``tf.data`` input_fn: shuffled and repeated for training, one ordered pass else;
    ``y`` a dict of labels for a multi-head model."""

    def fn() -> Any:
        ds = tf().data.Dataset.from_tensor_slices((features, y))
        if train:
            ds = ds.shuffle(len(next(iter(features.values()))), seed=0).repeat()
        return ds.batch(batch)

    return fn


def xy_fns(x: np.ndarray, y: np.ndarray, key: str = "x") -> tuple[InputFn, InputFn]:
    return dataset_fn({key: x}, y, train=True), dataset_fn({key: x}, y, train=False)


def numeric(key: str, width: int) -> Any:
    return tf().feature_column.numeric_column(key, shape=(width,))


# -- canned estimators ------------------------------------------------------------------------
def dnn_tf2(model_dir: Path) -> Made:
    x, y = iris()
    est = tf().estimator.DNNClassifier(
        hidden_units=[8], feature_columns=[numeric("x", 4)], n_classes=3,
        config=run_config(model_dir),
    )  # fmt: skip
    return (est, *xy_fns(x, y))


def dnn_tf1(model_dir: Path) -> Made:
    x, y = iris()
    est = tf().compat.v1.estimator.DNNClassifier(
        hidden_units=[8], feature_columns=[numeric("x", 4)], n_classes=3,
        config=run_config(model_dir),
    )  # fmt: skip
    return (est, *xy_fns(x, y))


def linear_vocab_crossed(model_dir: Path) -> Made:
    fc = tf().feature_column
    color = fc.categorical_column_with_vocabulary_list("color", COLORS)
    shape = fc.categorical_column_with_vocabulary_list("shape", SHAPES)
    columns = [color, shape, fc.crossed_column([color, shape], 12), fc.numeric_column("size")]
    est = tf().estimator.LinearClassifier(columns, config=run_config(model_dir))
    features, y = categorical()
    return est, dataset_fn(features, y, train=True), dataset_fn(features, y, train=False)


def linear_tf1(model_dir: Path) -> Made:
    x, y = cancer()
    est = tf().compat.v1.estimator.LinearClassifier([numeric("x", 6)], config=run_config(model_dir))
    return (est, *xy_fns(x, y))


def dnn_linear_combined(model_dir: Path) -> Made:
    fc = tf().feature_column
    color = fc.categorical_column_with_vocabulary_list("color", COLORS)
    est = tf().estimator.DNNLinearCombinedClassifier(
        linear_feature_columns=[color, fc.categorical_column_with_vocabulary_list("shape", SHAPES)],
        dnn_feature_columns=[fc.indicator_column(color), fc.numeric_column("size")],
        dnn_hidden_units=[8],
        config=run_config(model_dir),
    )
    features, y = categorical()
    return est, dataset_fn(features, y, train=True), dataset_fn(features, y, train=False)


def dnn_regressor(model_dir: Path) -> Made:
    x, y = diabetes()
    est = tf().estimator.DNNRegressor(
        hidden_units=[8], feature_columns=[numeric("x", 10)], config=run_config(model_dir)
    )
    return (est, *xy_fns(x, y))


def multi_head(model_dir: Path) -> Made:
    """Two heads (a class and a number) on one network: a dict of labels, metrics per head."""
    est_ = tf().estimator
    x, y = iris()
    head = est_.MultiHead([est_.MultiClassHead(3, name="kind"), est_.RegressionHead(name="petal")])
    labels = {"kind": y, "petal": x[:, 3:]}
    est = est_.DNNEstimator(head, [8], [numeric("x", 4)], config=run_config(model_dir))
    return est, dataset_fn({"x": x}, labels, train=True), dataset_fn({"x": x}, labels, train=False)


def with_added_metric(model_dir: Path) -> Made:
    """``tf.estimator.add_metrics``: a canned estimator wrapped with a metric of the user's."""
    x, y = iris()
    est = tf().estimator.BaselineClassifier(n_classes=3, config=run_config(model_dir))

    def metric_fn(labels: Any, predictions: Any) -> dict[str, Any]:
        truth = tf().cast(tf().reshape(labels, [-1]), "int64")
        wrong = tf().cast(tf().not_equal(truth, predictions["class_ids"][:, 0]), "float32")
        return {"error rate": tf().compat.v1.metrics.mean(wrong)}

    return (tf().estimator.add_metrics(est, metric_fn), *xy_fns(x, y))


def mirrored_dnn(model_dir: Path) -> Made:
    x, y = iris()
    strategy = tf().distribute.MirroredStrategy(["/cpu:0"])
    est = tf().estimator.DNNClassifier(
        hidden_units=[8], feature_columns=[numeric("x", 4)], n_classes=3,
        config=run_config(model_dir, train_distribute=strategy),
    )  # fmt: skip
    return (est, *xy_fns(x, y))


# -- Keras ------------------------------------------------------------------------------------
def keras(model_dir: Path, checkpoint_format: str | None) -> Made:
    k = tf().keras
    x, y = iris()
    model = k.Sequential(
        [k.layers.Input((4,), name="x"), k.layers.Dense(8, "relu"), k.layers.Dense(3)]
    )
    model.compile(
        k.optimizers.legacy.SGD(0.1),
        k.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    est = tf().keras.estimator.model_to_estimator(
        model, config=run_config(model_dir), checkpoint_format=checkpoint_format
    )
    train_fn, eval_fn = xy_fns(x, y, key=model.input_names[0])
    return est, train_fn, eval_fn


# -- custom model_fns -------------------------------------------------------------------------
def _logits(features: Any, width: int, classes: int) -> Any:
    v1 = tf().compat.v1
    with v1.variable_scope("dense"):
        kernel = v1.get_variable("kernel", (width, classes), initializer=v1.zeros_initializer())
        bias = v1.get_variable("bias", (classes,), initializer=v1.zeros_initializer())
    return tf().matmul(features["x"], kernel) + bias


def _spec(mode: Any, labels: Any, logits: Any, *, ema: bool = False, scaffold: Any = None) -> Any:
    t = tf()
    v1 = t.compat.v1
    loss = v1.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
    if mode == t.estimator.ModeKeys.EVAL:
        metrics = {"accuracy": v1.metrics.accuracy(labels, t.argmax(logits, axis=1))}
        return t.estimator.EstimatorSpec(
            mode, loss=loss, eval_metric_ops=metrics, scaffold=scaffold
        )
    train_op = v1.train.GradientDescentOptimizer(0.5).minimize(
        loss, global_step=v1.train.get_global_step()
    )
    if ema:
        with t.control_dependencies([train_op]):
            train_op = v1.train.ExponentialMovingAverage(0.9).apply(v1.trainable_variables())
    return t.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op, scaffold=scaffold)


def custom_model_fn(features: Any, labels: Any, mode: Any) -> Any:
    """Multinomial logistic regression with v1 variables ``dense/kernel``, ``dense/bias``."""
    return _spec(mode, labels, _logits(features, 4, 3))


def ema_model_fn(features: Any, labels: Any, mode: Any) -> Any:
    """Trains raw weights, keeps their moving averages; evaluation restores the averages."""
    logits = _logits(features, 4, 3)
    scaffold = None
    if mode == tf().estimator.ModeKeys.EVAL:
        ema = tf().compat.v1.train.ExponentialMovingAverage(0.9)
        scaffold = tf().compat.v1.train.Scaffold(
            saver=tf().compat.v1.train.Saver(ema.variables_to_restore())
        )
    return _spec(mode, labels, logits, ema=mode == tf().estimator.ModeKeys.TRAIN, scaffold=scaffold)


def checkpoint_saver_model_fn(features: Any, labels: Any, mode: Any) -> Any:
    """Object-based checkpoints in every mode: ``Scaffold(saver=tf.train.Checkpoint(...))``."""
    logits = _logits(features, 4, 3)
    v1 = tf().compat.v1
    kernel, bias = v1.get_collection(v1.GraphKeys.GLOBAL_VARIABLES, scope="dense/")
    checkpoint = tf().train.Checkpoint(kernel=kernel, bias=bias, step=v1.train.get_global_step())
    return _spec(mode, labels, logits, scaffold=v1.train.Scaffold(saver=checkpoint))


def saveable_model_fn(features: Any, labels: Any, mode: Any) -> Any:
    """A model with a lookup table in SAVEABLE_OBJECTS (in-memory evaluation cannot copy it)."""
    t = tf()
    table = t.compat.v1.lookup.experimental.MutableHashTable(
        t.int64, t.float32, 0.0, name="class_weights"
    )
    spec_logits = _logits(features, 4, 3) + table.lookup(t.constant([0, 1, 2], t.int64))
    return _spec(mode, labels, spec_logits)


def custom(model_fn: Callable[..., Any]) -> Callable[[Path], Made]:
    def make(model_dir: Path) -> Made:
        x, y = iris()
        est = tf().estimator.Estimator(model_fn, config=run_config(model_dir))
        return (est, *xy_fns(x, y))

    return make


# -- input styles -----------------------------------------------------------------------------
def with_inputs(style: str) -> Callable[[Path], Made]:
    """The custom model_fn with evaluation data fed in ``style``."""

    def make(model_dir: Path) -> Made:
        x, y = iris()
        est = tf().estimator.Estimator(custom_model_fn, config=run_config(model_dir))
        train_fn = dataset_fn({"x": x}, y, train=True)
        return est, train_fn, eval_input_fn(style, x, y, model_dir)

    return make


def eval_input_fn(style: str, x: np.ndarray, y: np.ndarray, model_dir: Path) -> InputFn:
    v1 = tf().compat.v1
    if style == "numpy":
        return v1.estimator.inputs.numpy_input_fn(
            {"x": x}, y, batch_size=BATCH, num_epochs=1, shuffle=False
        )
    if style == "pandas":
        import pandas as pd

        frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
        fn = v1.estimator.inputs.pandas_input_fn(
            frame, pd.Series(y), batch_size=BATCH, num_epochs=1, shuffle=False
        )

        def stacked() -> Any:  # the model reads one feature "x" of width 4
            features, labels = fn()
            return {"x": tf().stack([features[c] for c in frame.columns], axis=1)}, labels

        return stacked
    if style == "tuple":

        def tensors() -> Any:
            ds = tf().data.Dataset.from_tensor_slices(({"x": x}, y)).batch(BATCH)
            return v1.data.make_one_shot_iterator(ds).get_next()

        return tensors
    if style == "csv":
        path = Path(model_dir).parent / f"{Path(model_dir).name}-eval.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*(f"x{i}" for i in range(x.shape[1])), "label"])
            writer.writerows(
                [*map(float, row), int(label)] for row, label in zip(x, y, strict=True)
            )

        def from_csv() -> Any:
            ds = tf().data.experimental.make_csv_dataset(
                str(path), BATCH, label_name="label", num_epochs=1, shuffle=False
            )
            return ds.map(lambda f, label: ({"x": tf().stack(list(f.values()), axis=1)}, label))

        return from_csv
    raise ValueError(style)


CASES: list[Case] = [
    Case("dnn-tf2", "tf.estimator.DNNClassifier (TF2)", "tf.data", "persistent session", dnn_tf2),
    Case("dnn-tf1", "tf.compat.v1.estimator.DNNClassifier (TF1)", "tf.data",
         "persistent session", dnn_tf1),
    Case("linear-tf1", "tf.compat.v1.estimator.LinearClassifier (TF1)", "tf.data",
         "persistent session", linear_tf1),
    Case("linear-vocab-crossed", "LinearClassifier, vocabulary + crossed columns", "tf.data",
         "persistent session", linear_vocab_crossed),
    Case("dnn-linear", "DNNLinearCombinedClassifier", "tf.data", "persistent session",
         dnn_linear_combined),
    Case("regressor", "DNNRegressor", "tf.data", "persistent session", dnn_regressor),
    Case("multi-head", "DNNEstimator, MultiHead (a class and a number)", "tf.data",
         "persistent session", multi_head),
    Case("add-metrics", "BaselineClassifier + tf.estimator.add_metrics", "tf.data",
         "persistent session", with_added_metric),
    Case("keras-checkpoint", "Keras model_to_estimator (checkpoint_format='checkpoint')",
         "tf.data", "persistent session", functools.partial(keras, checkpoint_format=None)),
    Case("keras-saver", "Keras model_to_estimator (checkpoint_format='saver')", "tf.data",
         "persistent session", functools.partial(keras, checkpoint_format="saver")),
    Case("custom", "custom model_fn", "tf.data", "persistent session", custom(custom_model_fn)),
    Case("ema", "custom model_fn, EMA (EVAL Saver(ema.variables_to_restore()))", "tf.data",
         "persistent session", custom(ema_model_fn)),
    Case("tf-checkpoint-saver", "custom model_fn, Scaffold(saver=tf.train.Checkpoint(...))",
         "tf.data", "persistent session", custom(checkpoint_saver_model_fn)),
    Case("numpy", "custom model_fn", "numpy_input_fn", "fresh graph per evaluation",
         with_inputs("numpy")),
    Case("pandas", "custom model_fn", "pandas_input_fn", "fresh graph per evaluation",
         with_inputs("pandas")),
    Case("tuple", "custom model_fn", "(features, labels) tensors", "per evaluation",
         with_inputs("tuple")),
    Case("csv", "custom model_fn", "make_csv_dataset", "persistent session", with_inputs("csv")),
    Case("mirrored", "DNNClassifier, MirroredStrategy(['/cpu:0'])", "tf.data",
         "persistent session", mirrored_dnn),
    Case("saveable", "custom model_fn with a MutableHashTable (SAVEABLE_OBJECTS)", "tf.data",
         "checkpoints", custom(saveable_model_fn), evaluate_from="checkpoints"),
]  # fmt: skip
