"""Rewind: the next training session starts from the model and input checkpoints of a step.

The model side writes the ``checkpoint`` state file so that it names ``model.ckpt-<step>``
(``tf.compat.v1.train.update_checkpoint_state``); the later model checkpoints are dropped from
the list (their files stay until the new branch saves the same steps over them or the Saver
rotates them), so the Saver of the new branch does not count the abandoned ones. The input
side asks the :class:`~nbhooks.PipelineCheckpointHook` to restore the input checkpoint of the
same step (its public ``restore(step)``; idle, that is the position the next ``train()``
starts from). With a seeded model, replaying from there with the same settings gives exactly
the weights of the run that went straight on.
"""

from __future__ import annotations

import os
import re
from typing import Any

_MODEL_CKPT = re.compile(r"model\.ckpt-(\d+)\.index")
_STEP_SUFFIX = re.compile(r"-(\d+)$")


def model_steps(model_dir: str) -> list[int]:
    """Steps of the model checkpoints in ``model_dir`` (``model.ckpt-<step>.index``), sorted."""
    try:
        names = os.listdir(model_dir)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := _MODEL_CKPT.fullmatch(n)))


def checkpoint_step(model_dir: str) -> int | None:
    """The step of the checkpoint model_dir's ``checkpoint`` state file names
    (``model.ckpt-<step>``, as the Estimator saves them), which the next ``train()`` starts
    from; None without one (any path ``tf.io.gfile`` reads)."""
    from nbhooks._tf import tf

    path = tf().train.latest_checkpoint(model_dir)
    if path is None:
        return None
    match = _STEP_SUFFIX.search(path)
    if match:
        return int(match.group(1))
    return int(tf().train.load_checkpoint(path).get_tensor("global_step"))


def input_steps(pipeline: Any) -> list[int]:
    """Steps of the input-pipeline checkpoints the hook lists, sorted."""
    return sorted({int(s) for s in pipeline.checkpoints["step"]})


def rewindable_steps(model_dir: str, pipeline: Any | None) -> list[int]:
    """The steps with both a model checkpoint and an input checkpoint (``pipeline`` None: with
    a model checkpoint)."""
    models = set(model_steps(model_dir))
    return sorted(models if pipeline is None else models & set(input_steps(pipeline)))


def rewind(model_dir: str, pipeline: Any | None, step: int) -> None:
    """Make the next ``train()`` start from the model and input checkpoints of ``step``
    (``pipeline`` None: from the model checkpoint alone; no input position is kept then, and
    the next ``train()`` reads its input from the beginning, as every one does).

    Raises ValueError before touching anything when a checkpoint of ``step`` is missing: the
    message says which, and lists the steps that have what is needed.
    """
    from nbhooks._tf import tf

    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise TypeError(f"rewind takes a global step (an int >= 0), got {step!r}")
    models = model_steps(model_dir)
    needed = [("model checkpoint", models)]
    if pipeline is not None:
        needed.append(("input-pipeline checkpoint", input_steps(pipeline)))
    missing = [what for what, steps in needed if step not in steps]
    if missing:
        have = "both" if pipeline is not None else "a model checkpoint"
        raise ValueError(
            f"cannot rewind to step {step}: no {' and no '.join(missing)} of that step in "
            f"{model_dir}; steps with {have}: {rewindable_steps(model_dir, pipeline) or 'none'}"
        )
    if pipeline is not None:  # validated here: a corrupt input checkpoint raises first
        pipeline.restore(step)
    path = os.path.join(model_dir, f"model.ckpt-{step}")
    kept = [os.path.join(model_dir, f"model.ckpt-{s}") for s in models if s <= step]
    tf().compat.v1.train.update_checkpoint_state(
        model_dir, model_checkpoint_path=path, all_model_checkpoint_paths=kept
    )
