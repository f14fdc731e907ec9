"""Argument checks shared by the public API: each raises before anything starts, saying what
was wrong and how to fix it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

from nbhooks._tf import tf


def check_estimator(estimator: Any) -> None:
    if not isinstance(estimator, tf().estimator.Estimator):
        raise TypeError(
            f"estimator must be a tf.estimator.Estimator (e.g. tf.estimator.Estimator(model_fn) "
            f"or a canned one such as tf.estimator.DNNClassifier), got {type(estimator).__name__}"
        )


def check_input_fn(input_fn: Any) -> None:
    if not callable(input_fn):
        raise TypeError(
            f"input_fn must be a function returning a tf.data.Dataset or (features, labels), "
            f"got {type(input_fn).__name__}: pass the function itself, not its result"
        )


def check_steps(steps: int | None, max_steps: int | None) -> None:
    if steps is not None and max_steps is not None:
        raise ValueError(
            "give steps (how many more steps) or max_steps (the global step to stop at), not both"
        )
    for name, value in (("steps", steps), ("max_steps", max_steps)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be a positive int, got {value!r}")
        if value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value}")


def check_hooks(hooks: Sequence[Any]) -> None:
    for hook in hooks:
        if not isinstance(hook, tf().estimator.SessionRunHook):
            raise TypeError(
                f"every hook must be a tf.estimator.SessionRunHook instance, got "
                f"{type(hook).__name__} (pass hook objects, not classes or callables)"
            )


def check_model_dir(model_dir: str | os.PathLike[str]) -> str:
    """The real path of a writable model_dir (created if missing)."""
    path = os.path.realpath(os.fspath(model_dir))
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".nbhooks-write-test"):
            pass
    except OSError as exc:
        raise PermissionError(
            f"the estimator's model_dir {path!r} is not writable ({exc.strerror or exc}): pass "
            "RunConfig(model_dir=...) a directory you can write to"
        ) from exc
    return path
