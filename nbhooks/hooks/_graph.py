"""Graph look-ups shared by the hooks."""

from __future__ import annotations

from typing import Any

from nbhooks._tf import tf


def require_global_step(who: str) -> Any:
    """The default graph's global step tensor; a clear error when the model_fn made none."""
    global_step = tf().compat.v1.train.get_global_step()
    if global_step is None:
        raise ValueError(
            f"{who} needs a global step: the model_fn must pass "
            "tf.compat.v1.train.get_global_step() to optimizer.minimize(global_step=...)"
        )
    return global_step
