"""Requests from the notebook to the training thread: futures that the hook serving them
completes (no TensorFlow, no widgets)."""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

from nbhooks.stores.pipeline_files import Checkpoint


class PipelineRequest:
    """A save, restore or delete asked for from any thread; done when the hook served it.

    ``wait(timeout)`` returns the :class:`Checkpoint` acted on, or raises the error.
    """

    def __init__(self, action: Literal["save", "restore", "delete"], target: Any = None) -> None:
        self.action = action
        self.target = target
        self.result: Checkpoint | None = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self.created = time.monotonic()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def set_result(self, result: Checkpoint) -> None:
        self.result = result
        self._done.set()

    def set_error(self, error: BaseException) -> None:
        self.error = error
        self._done.set()

    def wait(self, timeout: float | None = None) -> Checkpoint:
        """Block until served; raises TimeoutError, or the action's own error."""
        if not self._done.wait(timeout):
            raise TimeoutError(
                f"pipeline {self.action} not served within {timeout} s: it runs at the next "
                f"training step boundary (a paused run serves it when resumed)"
            )
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def __repr__(self) -> str:
        state = "done" if self.done else "pending"
        return f"<PipelineRequest {self.action} {self.target!r} {state}>"
