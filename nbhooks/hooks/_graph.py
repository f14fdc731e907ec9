"""Graph look-ups shared by the hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from nbhooks import _tf_internals as tfi


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
