"""ClusterControlHook: Stop / Pause / Resume of a distributed job through a file, no port.

Every training task (chief and workers) runs the hook. At most every ``check_secs`` it reads
``<model_dir>/nbhooks/control.json`` (written by :class:`~nbhooks.Monitor`) and acts on it at
that step boundary; at most every ``heartbeat_secs`` it writes the task's heartbeat. On the
evaluator (in ``EvalSpec(hooks=...)``) it only reports heartbeats: an evaluation is never cut
short. The chief records when the job started; a request older than that is stale and never
stops the new job, and an unreadable control file is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from nbhooks._tf import tf
from nbhooks.hooks._bases import SessionRunHook
from nbhooks.jobfiles import (
    ControlRequest,
    Heartbeat,
    JobFiles,
    TaskState,
    model_dir_from_env,
    task_from_env,
)

_tf = tf()
log = logging.getLogger("nbhooks")


class ClusterControlHook(SessionRunHook):
    """Lets :meth:`Monitor.stop`, ``pause`` and ``resume`` reach this task at a step boundary.

    ``model_dir``: the job's (default: ``model_dir`` of ``TF_CONFIG``). ``check_secs``: the
    least time between two reads of the control file. ``heartbeat_secs``: the least time
    between two heartbeats. Add the same hook to the chief's and every worker's training hooks
    (``TrainSpec(hooks=[nh.ClusterControlHook(model_dir)])``), and optionally to
    ``EvalSpec(hooks=...)`` for the evaluator's row in the Monitor.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        check_secs: float = 0.5,
        heartbeat_secs: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        model_dir = model_dir if model_dir is not None else model_dir_from_env()
        if model_dir is None:
            raise ValueError(
                "ClusterControlHook needs the job's model_dir: pass "
                "ClusterControlHook(estimator.model_dir), or set model_dir in TF_CONFIG"
            )
        for name, value in (("check_secs", check_secs), ("heartbeat_secs", heartbeat_secs)):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.files = JobFiles(model_dir)
        self.check_secs = float(check_secs)
        self.heartbeat_secs = float(heartbeat_secs)
        self._clock = clock
        self.task_type, self.task_index = task_from_env()
        self.task = f"{self.task_type}:{self.task_index}"
        self.evaluating = self.task_type == "evaluator"
        self._global_step: Any = None
        self._started = 0.0
        self._next_check = 0.0
        self._next_beat = 0.0
        self._step: int | None = None
        self._beat_due = False
        self._handled: str | None = None  # the id of the last request acted on
        self.checks = 0  #: how many times the control file was read (cost accounting)

    # -- SessionRunHook ---------------------------------------------------------------------
    def begin(self) -> None:
        self._global_step = _tf.compat.v1.train.get_global_step()
        if not self._started:
            self._started = self._clock()
            if self.task_type in ("chief", "master") and not self.evaluating:
                self.files.write_job_start(self._started)
        self._beat("evaluating" if self.evaluating else "starting", force=True)

    def after_create_session(self, session: Any, coord: Any) -> None:
        if self._global_step is not None:
            self._step = int(session.run(self._global_step))
        self._beat("evaluating" if self.evaluating else "running", force=True)

    def before_run(self, run_context: Any) -> Any:
        # A heartbeat is due: fetch the global step with this step (one scalar, no more often).
        self._beat_due = self._clock() >= self._next_beat
        if self._beat_due and self._global_step is not None:
            return _tf.estimator.SessionRunArgs(self._global_step)
        return None

    def after_run(self, run_context: Any, run_values: Any) -> None:
        if run_values.results is not None:
            self._step = int(run_values.results)
        due, self._beat_due = self._beat_due, False
        if self.evaluating:
            if due:
                self._beat("evaluating", force=True)
            return
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self.check_secs
            request = self._read()
            if request is not None and request.action == "pause":
                request = self._hold()
            if request is not None and request.action == "stop":
                self._handled = request.id
                log.info("nbhooks: %s stops: requested at %s", self.task, request.time)
                run_context.request_stop()
                self._beat("stopping", force=True)
                return
        if due:
            self._beat("running", force=True)

    def end(self, session: Any) -> None:
        if self._global_step is not None:
            # the ps may be gone already: the last known step stays
            with contextlib.suppress(Exception):
                self._step = int(session.run(self._global_step))
        self._beat("waiting" if self.evaluating else "ended", force=True)

    # -- the control file -------------------------------------------------------------------
    def _read(self) -> ControlRequest | None:
        """The current request, unless it is stale (made before this job started)."""
        self.checks += 1
        request = self.files.read_request()
        if request is None:
            return None
        job_start = self.files.read_job_start()
        since = self._started if job_start is None else min(job_start, self._started)
        return None if request.time < since else request

    def _hold(self) -> ControlRequest | None:
        """Paused: block at this step boundary until a resume or a stop (heartbeats go on)."""
        log.info("nbhooks: %s paused at step %s", self.task, self._step)
        while True:
            self._beat("paused")
            time.sleep(self.check_secs)
            request = self._read()
            if request is None or request.action != "pause":
                return request

    def _beat(self, state: TaskState, force: bool = False) -> None:
        now = self._clock()
        if not force and now < self._next_beat:
            return
        self._next_beat = now + self.heartbeat_secs
        beat = Heartbeat(
            self.task, state, self._step, now, self._started, socket.gethostname(), os.getpid()
        )
        try:
            self.files.write_heartbeat(beat)
        except Exception as exc:  # a full disk must not stop training
            log.warning("nbhooks: could not write the heartbeat of %s: %s", self.task, exc)
