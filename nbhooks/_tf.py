"""The one place that imports TensorFlow.

Importing it is slow and noisy, so nothing else in nbhooks does: modules that need TensorFlow
call :func:`tf` when they are first used. The first call quiets TensorFlow's C++ log lines and
the estimator's deprecation warnings, and checks the version (``tf.estimator`` was removed in
TensorFlow 2.16). TensorFlow's private modules and attributes are reached only through
:mod:`nbhooks._tf_internals`.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Any

SUPPORTED = "tensorflow>=2.15.1,<2.16 with tensorflow-estimator==2.15.0"
_INSTALL_HINT = (
    'install it with: pip install "tensorflow-cpu==2.15.1" "tensorflow-estimator==2.15.0" '
    '(or pip install "nbhooks[cpu]")'
)


@functools.cache
def tf() -> Any:  # TensorFlow ships no type information: its API is Any to mypy
    """Return the ``tensorflow`` module, imported once and quietly."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import tensorflow as tf_module
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"nbhooks needs TensorFlow ({SUPPORTED}); {_INSTALL_HINT}") from exc
    version = tuple(int(p) for p in tf_module.__version__.split(".")[:2])
    if version != (2, 15):
        raise ImportError(
            f"nbhooks needs TensorFlow 2.15 (tf.estimator was removed in 2.16), found "
            f"{tf_module.__version__}; {_INSTALL_HINT}"
        )
    tf_module.get_logger().setLevel("ERROR")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    tf_module.compat.v1.logging.set_verbosity(tf_module.compat.v1.logging.ERROR)
    # The estimator's @deprecated wrappers warn through tf's logger (silenced above); silence
    # the Python-level warnings that some of its modules also raise.
    warnings.filterwarnings("ignore", module=r"tensorflow_estimator(\..*)?")
    warnings.filterwarnings("ignore", module=r"tensorflow(\..*)?", category=DeprecationWarning)
    return tf_module
