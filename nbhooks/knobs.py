"""Knobs: scalar settings of a model that a person can change while it trains.

    def model_fn(features, labels, mode, params):
        ...
        lr = nh.knob("learning_rate", 0.05, min=1e-4, max=1.0, scale="log")
        train_op = tf.compat.v1.train.GradientDescentOptimizer(lr).minimize(loss, ...)

:func:`knob` makes a non-trainable scalar variable and lists it in the graph collection
``"nbhooks_knobs"``. The :class:`~nbhooks.hooks.knobs.KnobHook` a Dashboard adds finds them in
``begin()`` and assigns a new value at the next step boundary (a placeholder and an assign op
built once: no rebuilt graph, nothing fed or fetched on the steps in between).

Knob values are not saved in checkpoints (the variable is a *local* variable, initialised to
the model_fn's value in every session): the dashboard keeps the last value set and applies it
again whenever a training session starts, so a value holds across ``train()`` calls and a
rewind replays with the value in force; a new Python process starts from the model_fn's value.
In evaluation and prediction graphs the knob is the same local variable at its model_fn value,
which nothing there assigns: harmless.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from nbhooks.variables import training_graph

COLLECTION = "nbhooks_knobs"
Scale = Literal["linear", "log"]
log = logging.getLogger("nbhooks")

__all__ = ["COLLECTION", "Knob", "KnobLog", "KnobSpec", "find_knobs", "knob", "knobs_in_graph"]


@dataclass(frozen=True, slots=True)
class KnobSpec:
    """A knob's name, the model_fn's value, its bounds and how a slider should scale."""

    name: str
    default: float
    min: float | None = None
    max: float | None = None
    scale: Scale = "linear"

    def check(self, value: Any) -> float:
        """``value`` as a float, or a TypeError/ValueError saying what is allowed."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            try:
                import numpy as np

                ok = isinstance(value, np.number) and not isinstance(value, np.bool_)
            except ImportError:  # pragma: no cover
                ok = False
            if not ok:
                raise TypeError(
                    f"knob {self.name!r} takes a number, got {type(value).__name__} {value!r}"
                )
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"knob {self.name!r} takes a finite number, got {number}")
        low = -math.inf if self.min is None else self.min
        high = math.inf if self.max is None else self.max
        if not low <= number <= high:
            raise ValueError(
                f"knob {self.name!r} must be within [{self.min}, {self.max}], got {number:g}"
            )
        return number

    @property
    def bounds(self) -> str:
        return f"[{self.min}, {self.max}]{' (log scale)' if self.scale == 'log' else ''}"


@dataclass(frozen=True, slots=True)
class Knob:
    """A knob in a graph: its spec and its variable (what the graph collection holds)."""

    spec: KnobSpec
    variable: Any


def make_spec(
    name: Any, value: Any, min: Any = None, max: Any = None, scale: Any = "linear"
) -> KnobSpec:
    """A checked :class:`KnobSpec` (errors say which argument is wrong and why)."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"a knob's name must be a non-empty string, got {name!r}")
    if scale not in ("linear", "log"):
        raise ValueError(f'knob {name!r}: scale must be "linear" or "log", got {scale!r}')
    low, high = (
        None if bound is None else KnobSpec(f"{name}'s {label}", 0.0).check(bound)
        for label, bound in (("min", min), ("max", max))
    )
    if low is not None and high is not None and low >= high:
        raise ValueError(f"knob {name!r}: min ({low:g}) must be below max ({high:g})")
    if scale == "log" and (low is None or high is None or low <= 0):
        raise ValueError(
            f"knob {name!r}: scale='log' needs 0 < min < max, got min={low}, max={high}"
        )
    spec = KnobSpec(name, 0.0, low, high, scale)
    return KnobSpec(name, spec.check(value), low, high, scale)


def knob(
    name: str,
    value: float,
    *,
    min: float | None = None,
    max: float | None = None,
    scale: Scale = "linear",
) -> Any:
    """A scalar float32 tensor whose value a Dashboard can change while training runs.

    Call it inside ``model_fn``; ``value`` is where it starts. ``min``/``max`` bound what
    :meth:`~nbhooks.Dashboard.set_knob` and the slider accept (the slider needs both);
    ``scale="log"`` gives a logarithmic slider (learning rates). Calling it again with the same
    name in one graph returns the same knob.
    """
    from nbhooks._tf import tf

    spec = make_spec(name, value, min, max, scale)
    if tf().executing_eagerly():  # a notebook cell: no graph a Dashboard could find it in
        raise RuntimeError(
            f"nh.knob({name!r}, ...) was called outside a graph: call it inside model_fn, "
            f"which the Estimator runs when it builds its graph (made in a notebook cell, it "
            f"is an eager tensor, which training fails to use: 'Attempting to capture an "
            f"EagerTensor without building a function')"
        )
    v1 = tf().compat.v1
    for existing in knobs_in_graph():
        if existing.spec.name == spec.name:
            if existing.spec != spec:
                raise ValueError(
                    f"knob {name!r} is already defined in this graph as {existing.spec}; got {spec}"
                )
            return existing.variable.read_value()
    variable = v1.Variable(
        spec.default,
        dtype=tf().float32,
        trainable=False,
        collections=[v1.GraphKeys.LOCAL_VARIABLES],
        name=f"knob_{_op_name(spec.name)}",
        shape=(),
    )
    v1.add_to_collection(COLLECTION, Knob(spec, variable))
    return variable.read_value()


def _op_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in name)


def knobs_in_graph(graph: Any = None) -> list[Knob]:
    """The knobs of ``graph`` (the default graph when None), in the order they were made."""
    from nbhooks._tf import tf

    graph = graph or tf().compat.v1.get_default_graph()
    return [k for k in graph.get_collection(COLLECTION) if isinstance(k, Knob)]


def find_knobs(estimator: Any, input_fn: Callable[..., Any]) -> dict[str, KnobSpec] | None:
    """The knobs ``estimator``'s model_fn makes in training, found by building its training
    graph once in a throwaway graph (on the calling thread); None if that graph cannot be
    built here (training will report why)."""
    try:
        graph = training_graph(estimator, input_fn)
    except Exception:
        log.debug("nbhooks: could not build the training graph to find its knobs", exc_info=True)
        return None
    return {k.spec.name: k.spec for k in knobs_in_graph(graph)}


class KnobLog:
    """Every knob change that reached training: step, knob, value, wall_time (thread-safe)."""

    def __init__(self) -> None:
        self._rows: list[tuple[int, str, float, float]] = []
        self._lock = threading.Lock()

    def record(self, step: int, name: str, value: float, wall_time: float | None = None) -> None:
        with self._lock:
            self._rows.append((int(step), name, float(value), wall_time or time.time()))

    def __len__(self) -> int:
        return len(self._rows)

    def to_frame(self) -> pd.DataFrame:
        """One row per change, in the order they applied."""
        with self._lock:
            rows = list(self._rows)
        frame = pd.DataFrame(rows, columns=["step", "knob", "value", "wall_time"])
        return frame.astype({"step": "int64", "knob": "object", "value": "float64"})


def describe(specs: Mapping[str, KnobSpec]) -> str:
    """``'a' [0, 1], 'b' [..]`` for error messages (``none`` when empty)."""
    return ", ".join(f"{n!r} {s.bounds}" for n, s in specs.items()) or "none"
