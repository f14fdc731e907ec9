"""One thread that runs the jobs handed to it, one at a time.

Handing a job to a thread that waits costs the caller a notify; starting a new thread for
each job cost the training thread ~0.7 ms of waiting each time on this 2-core machine
(``Thread.start()`` returns once the new thread runs, which on busy cores takes a while).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker:
    """A thread named ``name``, started at the first job, that first calls ``setup`` (e.g. to
    lower its own priority), then runs each job submitted, one at a time. Its owner ends it
    with :meth:`close`. While it waits for a job, it asks ``alive()`` every ``poll`` seconds
    whether its owner still needs it, and ends when not (an owner that failed before it could
    close it); a job submitted after that starts a thread again."""

    def __init__(
        self,
        name: str,
        setup: Callable[[], object] | None = None,
        alive: Callable[[], bool] | None = None,
        poll: float = 0.25,
    ) -> None:
        self.name = name
        self._setup = setup
        self._alive = alive
        self.poll = poll
        self._ready = threading.Condition()
        self._job: Callable[[], object] | None = None
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """True from :meth:`submit` until the job has returned."""
        return self._busy

    def submit(self, job: Callable[[], object]) -> None:
        """Run ``job`` on the worker's thread; what it raises is logged (a job reports its
        own errors). One job at a time: RuntimeError while one is busy, or once closed."""
        with self._ready:
            if self._closing:
                raise RuntimeError(f"{self.name} is closed")
            if self._busy:
                raise RuntimeError(f"{self.name} still runs its last job")
            self._job, self._busy = job, True
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()
            else:
                self._ready.notify_all()

    def wait(self) -> None:
        """Wait until the job submitted last has returned (at once on the worker's thread)."""
        if threading.current_thread() is self._thread:
            return
        with self._ready:
            self._ready.wait_for(lambda: not self._busy)

    def close(self) -> None:
        """Let the job at hand finish, end the thread and join it. Idempotent."""
        with self._ready:
            self._closing = True
            self._ready.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _serve(self) -> None:
        if self._setup is not None:
            try:
                self._setup()
            except Exception:  # the jobs run all the same
                log.exception("nbhooks: setting up %s failed", self.name)
        while True:
            with self._ready:
                while not self._ready.wait_for(
                    lambda: self._job is not None or self._closing,
                    timeout=None if self._alive is None else self.poll,
                ):
                    if self._alive is not None and not self._alive():
                        self._thread = None  # the next job starts a thread again
                        return
                job, self._job = self._job, None
            if job is None:
                return
            try:
                job()
            except BaseException:  # the thread serves on: the next job, or close()
                log.exception("nbhooks: a job of %s raised", self.name)
            finally:
                del job  # what the job holds is not kept alive by a waiting thread
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()
