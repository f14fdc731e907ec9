"""Graph look-ups shared by the hooks."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf


def require_global_step(who: str) -> Any:
    """The default graph's global step, as the tensor to fetch to read it (the one TF's own
    hooks fetch: see :func:`~nbhooks._tf_internals.global_step_read`); a clear error when the
    model_fn made none."""
    global_step = tfi.global_step_read()
    if global_step is None:
        raise ValueError(
            f"{who} needs a global step: the model_fn must pass "
            "tf.compat.v1.train.get_global_step() to optimizer.minimize(global_step=...)"
        )
    return global_step


def refuse_another_models_checkpoint(model_dir: str | None) -> None:
    """Raise ValueError, before the session restores it, when the latest checkpoint in
    ``model_dir`` holds a variable of the default graph with another shape. TensorFlow would
    restore it all the same (a resource variable takes the shape of what it is assigned) and
    train the model that wrote the checkpoint, not this one. Variables the checkpoint names
    otherwise (object-based checkpoints, partitions) are left to TensorFlow's restore."""
    t = tf()
    path = t.train.latest_checkpoint(model_dir) if model_dir else None
    if path is None:
        return
    saved = dict(t.train.list_variables(path))
    clashes = [
        f"{v.op.name} is {saved[v.op.name]} in {os.path.basename(path)}, {v.shape.as_list()} here"
        for v in t.compat.v1.global_variables()
        if v.op.name in saved and not v.shape.is_compatible_with(saved[v.op.name])
    ]
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise ValueError(
            f"model_dir holds a checkpoint of another model: {clashes[0]}{more}. Train this "
            f"model in a new model_dir, or delete the checkpoints in {model_dir}: TensorFlow "
            f"would restore the other model and train it instead"
        )


def upstream_ops(
    ops: Iterable[Any],
    follow: Callable[[Any], bool] = lambda tensor: True,
    control: bool = True,
) -> Iterator[Any]:
    """``ops`` and every op running them runs, each once, depth first: through the data inputs
    ``follow`` accepts (a tensor) and, with ``control``, the control inputs."""
    seen: set[str] = set()
    todo = list(ops)
    while todo:
        op = todo.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        yield op
        todo.extend(t.op for t in op.inputs if follow(t))
        if control:
            todo.extend(op.control_inputs)
