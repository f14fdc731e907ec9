"""``variable_names``: the variables a model will have, before it has trained or saved anything.

``estimator.get_variable_names()`` reads a checkpoint, so it fails on a fresh model_dir, and
the names depend on the model: ``dense/kernel`` exists only where a layer is called ``dense``
(a canned ``DNNClassifier`` names its first layer ``dnn/hiddenlayer_0/kernel``). This builds
the training graph once in a scratch ``tf.Graph`` (no session, nothing written) and lists its
global variables, which are the names :class:`~nbhooks.FinalOpsTableHook` accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf
from nbhooks.checks import check_estimator, check_input_fn


def variable_names(estimator: Any, input_fn: Callable[..., Any]) -> list[str]:
    """The names of the global variables ``estimator``'s model makes in training on
    ``input_fn``'s data (e.g. ``["dense/bias", "dense/kernel", "global_step", ...]``), sorted.

    Builds the TRAIN graph in a scratch graph: the model_fn and input_fn run once on this
    thread, nothing is trained, saved or read from ``model_dir``. Errors of the model_fn or
    input_fn are raised as they are.
    """
    check_estimator(estimator)
    check_input_fn(input_fn)
    variables = training_graph(estimator, input_fn).get_collection(
        tf().compat.v1.GraphKeys.GLOBAL_VARIABLES
    )
    return sorted({v.op.name for v in variables})


def training_graph(estimator: Any, input_fn: Callable[..., Any]) -> Any:
    """``estimator``'s TRAIN graph on ``input_fn``'s data, built once in a scratch
    ``tf.Graph`` on this thread (no session; nothing trained, saved or read). Errors of the
    model_fn or input_fn are raised as they are."""
    t = tf()
    train = t.estimator.ModeKeys.TRAIN
    with t.Graph().as_default() as graph:
        t.compat.v1.train.get_or_create_global_step()
        features, labels = _features_and_labels(tfi.call_input_fn(estimator, input_fn, train))
        estimator.model_fn(features, labels, train, estimator.config)
    return graph


def _features_and_labels(result: Any) -> tuple[Any, Any]:
    """What an input_fn returned, as the tensors the model_fn takes."""
    t = tf()
    if isinstance(result, t.data.Dataset):
        result = t.compat.v1.data.make_initializable_iterator(result).get_next()
    if isinstance(result, tuple | list) and len(result) == 2:
        return result[0], result[1]
    return result, None
