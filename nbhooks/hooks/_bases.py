"""TensorFlow's classes that nbhooks' hooks subclass, in one place.

TensorFlow ships no type information: to mypy these are ``Any``, which it accepts as a base.
"""

from __future__ import annotations

from typing import Any

from nbhooks._tf import tf

_estimator = tf().estimator

SessionRunHook: Any = _estimator.SessionRunHook
InMemoryEvaluatorHook: Any = _estimator.experimental.InMemoryEvaluatorHook
FinalOpsHook: Any = _estimator.FinalOpsHook
CheckpointSaverListener: Any = _estimator.CheckpointSaverListener
