"""The files through which a notebook follows and steers a distributed job (headless).

Everything lives in ``<model_dir>/nbhooks/`` and goes through ``tf.io.gfile``, so it works the
same on a local disk and on shared storage (GCS, HDFS, NFS). No port is opened anywhere.

- ``control.json``: the latest request of a person (``stop``, ``pause`` or ``resume``) with the
  time it was made. Written by :class:`~nbhooks.monitor.Monitor`, read by every task's
  :class:`~nbhooks.ClusterControlHook`.
- ``job.json``: when the chief started the current job (its ``begin()``). A request older than
  that is stale: it was meant for an earlier job and is ignored.
- ``tasks/<type>-<index>.json``: a task's heartbeat (state, global step, time, host, pid),
  rewritten by its hook at most once per ``heartbeat_secs``.

Every write is atomic (a temporary file renamed over the target), so a reader sees the old or
the new content, never half of one. A file that cannot be read or parsed reads as absent.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal

from nbhooks._tf import tf
from nbhooks.atomic import write_text

log = logging.getLogger("nbhooks")

Action = Literal["stop", "pause", "resume"]
ACTIONS: tuple[Action, ...] = ("stop", "pause", "resume")
#: What a task's hook reports: training steps, held by a pause, on its way out, done.
TaskState = Literal["starting", "running", "paused", "stopping", "evaluating", "waiting", "ended"]
SUBDIR = "nbhooks"


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """A request for every task of the job: stop, pause or resume at the next check."""

    action: Action
    time: float  #: when it was made (seconds since the epoch, the requester's clock)
    id: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """A task's last report of itself."""

    task: str  #: "chief:0", "worker:1", "evaluator:0"...
    state: TaskState
    step: int | None
    time: float
    started: float  #: when this task's hook began (a restarted task starts again)
    host: str
    pid: int


def task_from_env(environ: Any = None) -> tuple[str, int]:
    """``(type, index)`` of this process from ``TF_CONFIG`` (``("chief", 0)`` without one)."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG") or "{}"
    try:
        task = json.loads(raw).get("task") or {}
        return str(task.get("type") or "chief"), int(task.get("index") or 0)
    except (ValueError, AttributeError, TypeError):
        return "chief", 0


def model_dir_from_env(environ: Any = None) -> str | None:
    """The ``model_dir`` in ``TF_CONFIG`` (RunConfig reads it there too), or None."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG") or "{}"
    try:
        value = json.loads(raw).get("model_dir")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None


class JobFiles:
    """The control, job and heartbeat files of one ``model_dir``."""

    def __init__(self, model_dir: str | os.PathLike[str]) -> None:
        self.model_dir = os.fspath(model_dir)
        self.dir = _join(self.model_dir, SUBDIR)
        self.control_path = _join(self.dir, "control.json")
        self.job_path = _join(self.dir, "job.json")
        self.tasks_dir = _join(self.dir, "tasks")

    # -- control --------------------------------------------------------------------------
    def request(self, action: str, now: float | None = None) -> ControlRequest:
        """Write a request for every task (atomically); returns it."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        request = ControlRequest(action, time.time() if now is None else now, uuid.uuid4().hex)
        self._write_json(self.control_path, asdict(request))
        return request

    def read_request(self) -> ControlRequest | None:
        """The current request; None when there is none or it cannot be read."""
        data = self._read_json(self.control_path)
        if data is None:
            return None
        try:
            action, when, rid = data["action"], float(data["time"]), str(data["id"])
        except (KeyError, TypeError, ValueError):
            log.warning("nbhooks: ignoring the unreadable control file %s", self.control_path)
            return None
        if action not in ACTIONS:
            log.warning("nbhooks: ignoring unknown action %r in %s", action, self.control_path)
            return None
        return ControlRequest(action, when, rid)

    # -- the job --------------------------------------------------------------------------
    def write_job_start(self, started: float) -> None:
        self._write_json(
            self.job_path, {"started": started, "host": socket.gethostname(), "pid": os.getpid()}
        )

    def read_job_start(self) -> float | None:
        data = self._read_json(self.job_path)
        try:
            return None if data is None else float(data["started"])
        except (KeyError, TypeError, ValueError):
            return None

    # -- heartbeats -----------------------------------------------------------------------
    def write_heartbeat(self, beat: Heartbeat) -> None:
        name = beat.task.replace(":", "-")
        self._write_json(_join(self.tasks_dir, f"{name}.json"), asdict(beat))

    def read_heartbeats(self) -> list[Heartbeat]:
        """Every task's last heartbeat (unreadable ones left out)."""
        gfile = tf().io.gfile
        try:
            paths = gfile.glob(_join(self.tasks_dir, "*.json"))
        except tf().errors.OpError:
            return []
        beats = []
        for path in sorted(paths):
            data = self._read_json(path)
            if data is None:
                continue
            try:
                step = data.get("step")
                beats.append(
                    Heartbeat(
                        task=str(data["task"]),
                        state=data["state"],
                        step=None if step is None else int(step),
                        time=float(data["time"]),
                        started=float(data["started"]),
                        host=str(data.get("host", "")),
                        pid=int(data.get("pid", 0)),
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue
        return beats

    # -- plumbing -------------------------------------------------------------------------
    def _write_json(self, path: str, data: dict[str, Any]) -> None:
        write_text(path, json.dumps(data))

    @staticmethod
    def _read_json(path: str) -> dict[str, Any] | None:
        t = tf()
        try:
            with t.io.gfile.GFile(path, "r") as f:
                data = json.loads(f.read())
        except (t.errors.OpError, ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None


def _join(*parts: str) -> str:
    """Join with "/" (gfile paths, e.g. gs://bucket/dir, are not OS paths)."""
    return "/".join(p.rstrip("/") for p in parts)
