"""TensorFlow's process-wide thread pools, made as training would make them.

The first session of a process sizes TensorFlow's intra-op pool (and its shared inter-op pool)
from its config, for every later session, and the pools' threads keep the priority of the
thread that made them. nbhooks makes sessions before training does (checking that an
evaluation input ends, preparing an evaluation on a thread of low priority): these are made
after :func:`open_process_pools`, so that training gets the threads its RunConfig asks for,
at its own priority, whatever nbhooks did first.
"""

from __future__ import annotations

import threading
from typing import Any

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf

_LOCK = threading.Lock()
_open = False


def open_process_pools(estimator: Any) -> None:
    """Make TensorFlow's process-wide thread pools now, as ``estimator``'s session config
    says, on this thread (at its priority); once per process."""
    global _open
    with _LOCK:
        if not _open:
            config = tfi.session_config(estimator)
            tf().compat.v1.Session(graph=tf().Graph(), config=config).close()
            _open = True
