"""Training threads, kept between trainings: a thread's first training is the slow one.

TensorFlow's oneDNN code keeps state per thread that a thread's first sessions build: the
first ``estimator.train`` on a new thread reached its first step 35 ms later on the demo model
and 50 ms later on the 3x128 model than on a thread that had trained any model before
(measured 2026-12-05; with ``TF_ENABLE_ONEDNN_OPTS=0`` there is no difference). Bare
``estimator.train`` in a notebook runs on the kernel's main thread and pays it once; a
:class:`~nbhooks.TrainingRun` on a new thread for each ``train()`` paid it each time.

:func:`start` runs a training on a thread whose training ended before (named :data:`SPARE`
while it waits) or on a new one. At most :data:`KEEP` threads wait, each at most
:data:`IDLE_SECONDS`, then end: this module owns them. A thread's niceness is never changed
here, and those who change their own (the evaluation threads) do not come here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: The name of a thread waiting for its next training.
SPARE = "nbhooks-spare"
#: How many threads may wait (a Compare with parallel=2 trains two runs at once).
KEEP = 2
#: How long a thread waits for a training before it ends.
IDLE_SECONDS = 600.0

#: A training and what to call once its thread is a spare again.
_Job = tuple[Callable[[], object], Callable[[], object]]
_lock = threading.Lock()
_waiting: list[_Spare] = []


class _Spare:
    """A thread between trainings: the next one's target is handed over here."""

    def __init__(self) -> None:
        self.thread = threading.current_thread()
        self.ready = threading.Condition(_lock)
        self.job: _Job | None = None


def start(target: Callable[[], object], name: str, then: Callable[[], object]) -> None:
    """Run ``target`` on a thread named ``name`` (a spare one if one waits), then, once the
    thread is named :data:`SPARE` again and waits (unless :data:`KEEP` do), ``then`` (e.g.
    what tells ``wait()`` that training ended: a thread still named for training is never seen
    after it, and a training started after it gets this thread). Raises what starting a new
    thread raises; ``target`` and ``then`` must not raise (what they do is logged)."""
    job = (target, then)
    with _lock:
        if _waiting:
            spare = _waiting.pop()
            spare.thread.name = name  # as a new thread would be, before start() returns
            spare.job = job
            spare.ready.notify()
            return
    thread = threading.Thread(target=_serve, args=(job,), name=name, daemon=True)
    thread.start()


def _serve(job: _Job | None) -> None:
    spare = _Spare()  # this thread, named for its first job by start()
    while job is not None:
        target, then = job
        _call(target)
        spare.thread.name = SPARE
        offered = _offer(spare)  # before ``then``: a training started after it gets this thread
        _call(then)
        del job, target, then  # the run is not kept alive by a waiting thread
        job = _next_job(spare) if offered else None


def _offer(spare: _Spare) -> bool:
    """Count this thread among those waiting; False when enough wait already."""
    with _lock:
        if len(_waiting) >= KEEP:
            return False
        spare.job = None
        _waiting.append(spare)
        return True


def _next_job(spare: _Spare) -> _Job | None:
    """Wait for a training (None: none came in time)."""
    with _lock:
        spare.ready.wait_for(lambda: spare.job is not None, timeout=IDLE_SECONDS)
        if spare.job is None:
            _waiting.remove(spare)
        return spare.job


def _call(fn: Callable[[], object]) -> None:
    try:
        fn()
    except BaseException:  # the thread must go on serving (or end) cleanly
        log.exception("nbhooks: a training thread's job raised")


def waiting() -> int:
    """How many threads wait for a training now."""
    with _lock:
        return len(_waiting)
