"""Argument checks shared by the public API: each raises before anything starts, saying what
was wrong and how to fix it. The bottom floor: nothing here imports the rest of nbhooks but
the lazy TensorFlow entry point."""

from __future__ import annotations

import numbers
import os
import tempfile
from collections.abc import Sequence
from typing import Any, overload

from nbhooks._tf import tf


@overload
def check_int(name: str, value: Any, minimum: int = 1, *, hint: str = "") -> int: ...
@overload
def check_int(
    name: str, value: Any, minimum: int = 1, *, hint: str = "", optional: bool
) -> int | None: ...
def check_int(
    name: str, value: Any, minimum: int = 1, *, hint: str = "", optional: bool = False
) -> int | None:
    """``value`` as an ``int`` >= ``minimum`` (any integer type, numpy's included, not bool).

    ``optional``: None is allowed and returned. ``hint`` is appended to the error text.
    """
    if value is None and optional:
        return None
    kind = {0: "an int >= 0", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
    what = f"{name} must be {kind}"
    suffix = f"; {hint}" if hint else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what}, got {type(value).__name__} {value!r}{suffix}")
    if value < minimum:
        raise ValueError(f"{what}, got {value}{suffix}")
    return int(value)


def check_estimator(estimator: Any) -> None:
    """Any Estimator: TF2 ``tf.estimator.*``, TF1 ``tf.compat.v1.estimator.*`` (their common
    base), canned ones and Keras ``model_to_estimator``."""
    if not isinstance(estimator, tf().compat.v1.estimator.Estimator):
        raise TypeError(
            f"estimator must be a tf.estimator.Estimator or tf.compat.v1.estimator.Estimator "
            f"(e.g. tf.estimator.Estimator(model_fn) or a canned one such as "
            f"tf.estimator.DNNClassifier), got {type(estimator).__name__}"
        )


def check_input_fn(input_fn: Any) -> None:
    if not callable(input_fn):
        raise TypeError(
            f"input_fn must be a function returning a tf.data.Dataset or (features, labels), "
            f"got {type(input_fn).__name__}: pass the function itself, not its result"
        )


def check_steps(steps: Any, max_steps: Any) -> tuple[int | None, int | None]:
    """``(steps, max_steps)`` as ints: at most one of them, each positive."""
    if steps is not None and max_steps is not None:
        raise ValueError(
            "give steps (how many more steps) or max_steps (the global step to stop at), not both"
        )
    return (
        check_int("steps", steps, optional=True),
        check_int("max_steps", max_steps, optional=True),
    )


def check_hooks(hooks: Sequence[Any]) -> None:
    for hook in hooks:
        if not isinstance(hook, tf().estimator.SessionRunHook):
            raise TypeError(
                f"every hook must be a tf.estimator.SessionRunHook instance, got "
                f"{type(hook).__name__} (pass hook objects, not classes or callables)"
            )


def check_model_dir(model_dir: str | os.PathLike[str], create: bool = True) -> str:
    """The real path of a writable model_dir. ``create``: make it if missing; else check that
    it could be made (its nearest existing parent is a writable directory)."""
    path = os.path.realpath(os.fspath(model_dir))
    fix = "pass RunConfig(model_dir=...) a directory you can write to"
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = "is a file" if existing == path else f"is inside {existing!r}, a file"
        raise NotADirectoryError(
            f"the estimator's model_dir {path!r} {what}, not a directory: {fix}"
        )
    try:
        if create:
            os.makedirs(path, exist_ok=True)
            existing = path
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".nbhooks-write-test"):
            pass
    except OSError as exc:
        raise PermissionError(
            f"the estimator's model_dir {path!r} is not writable ({exc.strerror or exc}): {fix}"
        ) from exc
    return path
