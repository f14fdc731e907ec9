"""One training process per model_dir, across kernels and scripts.

Two processes training one ``model_dir`` (a notebook opened twice, a script beside a notebook)
overwrite each other's checkpoints step for step and mix their evaluations, without an error
from TensorFlow. A run holds an advisory lock (``flock``) on ``<model_dir>/nbhooks/training.lock``
while it trains, and a rewind while it rewrites the checkpoint state; another process is
refused, told who holds it. The operating system releases the lock when its process ends,
killed included, so a crash never leaves a model_dir locked. Only local paths are locked
(``gs://``, ``hdfs://`` and the like have no such lock), and only where ``fcntl`` exists.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

log = logging.getLogger("nbhooks")

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = os.path.join("nbhooks", "training.lock")


class ModelDirLock:
    """The training lock of one ``model_dir`` (a no-op where it cannot be had, see above)."""

    def __init__(self, model_dir: str) -> None:
        self.model_dir = model_dir
        self.path = os.path.join(model_dir, LOCK_FILE)
        self._fd: int | None = None
        self._guard = threading.Lock()

    def acquire(self, action: str, who: str | None = None) -> None:
        """Take the lock to ``action`` ("train" or "rewind"); raises RuntimeError, having
        changed nothing, when another process (or another run of this one) holds it. ``who``:
        this process, as the refused one is told (default: a Jupyter kernel, or the script)."""
        if fcntl is None or "://" in self.model_dir:
            return
        with self._guard:
            if self._fd is not None:
                raise RuntimeError(f"cannot {action} in {self.model_dir}: this run trains there")
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise RuntimeError(_busy_message(self.model_dir, action, holder)) from None
            except OSError as exc:  # a filesystem without locks (some network mounts)
                os.close(fd)
                log.debug("nbhooks: no training lock in %s: %s", self.model_dir, exc)
                return
            _write_holder(fd, action, who)
            self._fd = fd

    def check(self, action: str) -> None:
        """Raise as :meth:`acquire` would, keeping nothing."""
        with self.holding(action):
            pass

    @contextlib.contextmanager
    def holding(self, action: str) -> Iterator[None]:
        """The lock held for the ``with`` block (see :meth:`acquire`)."""
        self.acquire(action)
        try:
            yield
        finally:
            self.release()

    def release(self) -> None:
        """Let another process train here (safe to call when not held)."""
        with self._guard:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock


def _program() -> str:
    """This process as a person would name it: a Jupyter kernel, or the script it runs."""
    path = sys.argv[0] if sys.argv else ""
    name = os.path.basename(path)
    if "ipykernel" in path:
        return "a Jupyter kernel"
    if name in ("", "-c"):
        return "a Python process"
    if name == "__main__.py":  # python -m package
        name = os.path.basename(os.path.dirname(path))
    return f"the script {name}"


def _write_holder(fd: int, action: str, who: str | None) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "program": who or _program(),
        "action": action,
        "since": time.time(),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _busy_message(model_dir: str, action: str, holder: dict[str, Any]) -> str:
    doing = {"rewind": "rewinding"}.get(holder.get("action", ""), "training")
    since = holder.get("since")
    when = (
        f", since {time.strftime('%H:%M:%S', time.localtime(since))}"
        if isinstance(since, int | float)
        else ""
    )
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        return (
            f"cannot {action} in {model_dir}: another run in this process is {doing} there"
            f"{when}. Stop it (its Stop button, or stop()) and try again, or give this one "
            f"another model_dir"
        )
    who = "another process"
    if holder.get("pid"):
        program = holder.get("program") or "a process"
        who = f"{program} (pid {holder['pid']} on {holder.get('host')})"
    return (
        f"cannot {action} in {model_dir}: {who} is {doing} there{when}. Two processes on "
        f"one model_dir overwrite each other's checkpoints. Stop it there (or shut down its "
        f"kernel) and try again, or give this estimator another model_dir"
    )
