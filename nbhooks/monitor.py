"""Monitor: follow a distributed Estimator job from its model_dir, read-only (headless core).

It reads what the job writes anyway: the evaluator's ``eval*/`` event files (into a
:class:`~nbhooks.stores.metrics.MetricHistory`), the chief's event files (``global_step/sec``),
the checkpoint list, the input-pipeline checkpoints of each task
(:class:`~nbhooks.PipelineCheckpointHook`), and the heartbeats of
:class:`~nbhooks.ClusterControlHook`. One polling
thread, owned by the Monitor and ended by :meth:`Monitor.close`, reads the files every
``interval`` seconds and emits events on :attr:`Monitor.events`; the widget face
(:mod:`nbhooks.views.monitor`) is fed from them by a throttled Publisher and is built only when
the Monitor is displayed. Stop / Pause / Resume write the job's control file.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from nbhooks._tf import tf
from nbhooks.eventfiles import EVENTS_GLOB, EventDirReader, Scalar, scalars_of, session_start
from nbhooks.events import EvalEvent, EventBus, StepEvent
from nbhooks.jobfiles import ControlRequest, Heartbeat, JobFiles
from nbhooks.stores.metrics import MetricHistory
from nbhooks.stores.pipeline_files import parse_any, whole_index

log = logging.getLogger("nbhooks")

TASK_COLUMNS = ("task", "state", "last_seen", "step", "host", "pid")
CHECKPOINT_COLUMNS = ("step", "path", "size_bytes", "saved_at")
INPUT_COLUMNS = ("task", "step", "kind", "path", "size_bytes", "saved_at")
#: The task that saves a single worker's input checkpoints (``input.ckpt-N``).
SINGLE_TASK = "chief:0"
_STEPS_PER_SEC = "global_step/sec"
_CKPT_STEP = re.compile(r"-(\d+)$")


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task as the Monitor sees it. ``state`` is the task's own (see
    :data:`nbhooks.jobfiles.TaskState`), or ``"silent"`` when a task that has not ended has
    not been heard from for ``lost_after`` seconds."""

    task: str
    state: str
    last_seen: float | None
    step: int | None
    host: str = ""
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One model checkpoint of the job (its files' total size and latest change)."""

    step: int
    path: str
    size_bytes: int
    saved_at: float | None


@dataclass(frozen=True, slots=True)
class InputCheckpoint:
    """One input-pipeline checkpoint of one training task (``input_worker_1.ckpt-120``)."""

    task: str
    step: int
    kind: str  #: "auto" (at the model's checkpoint steps) or "manual" (asked for)
    path: str
    size_bytes: int
    saved_at: float | None


@dataclass(frozen=True, slots=True)
class JobEvent:
    """What the Monitor knows after a poll (only the latest matters to a view)."""

    global_step: int | None
    steps_per_sec: float | None
    tasks: tuple[TaskRow, ...]
    checkpoints: tuple[Checkpoint, ...]
    request: ControlRequest | None
    warnings: tuple[str, ...]
    job_started: float | None
    restarts: int
    inputs: tuple[InputCheckpoint, ...] = ()
    wall_time: float = field(default_factory=time.time)


class Monitor:
    """Watch (and steer) a distributed Estimator job through its ``model_dir``.

    ``interval``: seconds between two polls of the files. ``lost_after``: a task not heard from
    for this long (and not ended) shows as ``"silent"``. ``truncated_after``: an event file
    ending in an incomplete record that has not grown for this long is skipped as truncated.
    ``start=False`` polls only when :meth:`poll` is called (no thread). Display it in a notebook
    for live curves, progress, tasks and checkpoints with Stop / Pause / Resume buttons.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        interval: float = 1.0,
        lost_after: float = 10.0,
        truncated_after: float = 300.0,
        start: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (
            ("interval", interval),
            ("lost_after", lost_after),
            ("truncated_after", truncated_after),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.model_dir = os.fspath(model_dir).rstrip("/")
        if not tf().io.gfile.isdir(self.model_dir):
            raise FileNotFoundError(
                f"model_dir {self.model_dir!r} does not exist: pass the job's model_dir (the "
                "RunConfig(model_dir=...) of its chief), on storage this machine can read"
            )
        self.interval = float(interval)
        self.lost_after = float(lost_after)
        self.metrics = MetricHistory()
        self.events = EventBus()
        self.files = JobFiles(self.model_dir)
        self._clock = clock
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._warnings: list[str] = []
        self._chief = EventDirReader(
            self.model_dir, truncated_after=truncated_after, warn=self.warn
        )
        self._evals: dict[str, EventDirReader] = {}
        self._truncated_after = truncated_after
        self._chief_step: int | None = None
        self._chief_seen: float | None = None
        self._chief_rate: float | None = None
        self._eval_seen: dict[str, tuple[float, int]] = {}  # evaluation -> (wall_time, step)
        self._beats: dict[str, Heartbeat] = {}
        self._rate_points: list[tuple[float, int]] = []  # (time, step) of the chief's beats
        self._checkpoints: tuple[Checkpoint, ...] = ()
        self._inputs: dict[str, InputCheckpoint] = {}  # by path; complete ones never change
        self._ckpt_state_mtime: int | None = None
        self._job_started: float | None = None
        self.restarts = 0  #: how often a new job start was seen in model_dir since watching
        self._request: ControlRequest | None = None
        self._last: JobEvent | None = None
        self.polls = 0
        self._face: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.poll()
        if start:
            self._thread = threading.Thread(target=self._loop, name="nbhooks-monitor", daemon=True)
            self._thread.start()

    # -- what users read ------------------------------------------------------------------
    @property
    def history(self) -> pd.DataFrame:
        """Every evaluation the evaluator wrote: step, evaluation, metric, value, wall_time."""
        return self.metrics.to_frame()

    @property
    def global_step(self) -> int | None:
        """The job's latest known global step (chief's events and heartbeats, checkpoints)."""
        with self._lock:
            steps = [b.step for b in self._beats.values() if b.step is not None]
            steps += [c.step for c in self._checkpoints]
            if self._chief_step is not None:
                steps.append(self._chief_step)
            return max(steps, default=None)

    @property
    def steps_per_sec(self) -> float | None:
        """Training speed: from the chief's heartbeats, else its ``global_step/sec``."""
        with self._lock:
            points = self._rate_points
            if len(points) >= 2 and points[-1][0] > points[0][0]:
                (t0, s0), (t1, s1) = points[0], points[-1]
                return (s1 - s0) / (t1 - t0)
            return self._chief_rate

    @property
    def tasks(self) -> pd.DataFrame:
        """One row per task seen: task, state, last_seen (epoch seconds), step, host, pid."""
        rows = self._task_rows()
        frame = pd.DataFrame([_row_dict(r) for r in rows], columns=list(TASK_COLUMNS))
        return frame.astype({"step": "Int64", "pid": "Int64", "last_seen": "float64"})

    @property
    def checkpoints(self) -> pd.DataFrame:
        """The job's model checkpoints: step, path, size_bytes, saved_at (epoch seconds)."""
        with self._lock:
            items = self._checkpoints
        frame = pd.DataFrame(
            [(c.step, c.path, c.size_bytes, c.saved_at) for c in items],
            columns=list(CHECKPOINT_COLUMNS),
        )
        return frame.astype({"step": "int64", "size_bytes": "int64", "saved_at": "float64"})

    @property
    def input_checkpoints(self) -> pd.DataFrame:
        """Each training task's input-pipeline checkpoints: task, step, kind ("auto" or
        "manual"), path, size_bytes, saved_at; by task, then step."""
        items = self._input_list()
        frame = pd.DataFrame(
            [(c.task, c.step, c.kind, c.path, c.size_bytes, c.saved_at) for c in items],
            columns=list(INPUT_COLUMNS),
        )
        return frame.astype({"step": "int64", "size_bytes": "int64", "saved_at": "float64"})

    def _input_list(self) -> tuple[InputCheckpoint, ...]:
        with self._lock:
            items = list(self._inputs.values())
        return tuple(sorted(items, key=lambda c: (_task_key(c.task), c.step, c.kind)))

    @property
    def warnings(self) -> list[str]:
        """What was skipped and why (corrupt or truncated event files), and what went wrong
        with the job as its LocalCluster saw it (a failed task)."""
        with self._lock:
            return list(self._warnings)

    @property
    def request(self) -> ControlRequest | None:
        """The job's current control request (stop, pause or resume), if any."""
        return self._request

    # -- steering -------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask every task running :class:`~nbhooks.ClusterControlHook` to stop at its next
        check (the chief saves a last checkpoint). Raises RuntimeError, writing nothing, when
        no training task runs the hook or every one has ended (no task would read it)."""
        self._send("stop")

    def pause(self) -> None:
        """Hold every task at its next check until :meth:`resume` or :meth:`stop` (refused as
        :meth:`stop` is)."""
        self._send("pause")

    def resume(self) -> None:
        """Let paused tasks go on (each at its next check of the control file; refused as
        :meth:`stop` is)."""
        self._send("resume")

    def _send(self, action: str) -> None:
        self._check_reachable(action)
        request = self.files.request(action, now=self._clock())
        with self._lock:
            self._request = request
        self._publish(force=True)

    def _check_reachable(self, action: str) -> None:
        """Refuse a request no task would act on: the hooks' heartbeats, read now, show no
        training task (a request made before the job starts is stale for it anyway), or show
        every training task ended."""
        training = [b for b in self.files.read_heartbeats() if not b.task.startswith("evaluator")]
        if not training:
            raise RuntimeError(
                f"cannot {action} this job: no training task has started "
                f"nh.ClusterControlHook in {self.model_dir} (each writes a heartbeat to "
                f"{self.files.tasks_dir} when it starts), so none would read the request. "
                "Give the chief and every worker the hook, TrainSpec(..., "
                "hooks=[nh.ClusterControlHook(estimator.model_dir)]), and start the job again; "
                "if it is starting now, try again when its tasks show up here"
            )
        if all(b.state == "ended" for b in training):
            step = max((b.step for b in training if b.step is not None), default=None)
            at = "" if step is None else f" at step {step:,}"
            raise RuntimeError(
                f"cannot {action} this job: it has ended{at} (every training task's hook "
                f"reported 'ended'); a request now would be stale for its next start"
            )

    # -- polling --------------------------------------------------------------------------
    def poll(self) -> JobEvent:
        """Read what is new in model_dir now (the thread calls it every ``interval``)."""
        with self._poll_lock:
            self._read_chief()
            self._read_evals()
            self._read_heartbeats()
            self._read_checkpoints()
            self._read_inputs()
            self._read_job()
            self.polls += 1
            return self._publish()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:
                log.exception("nbhooks: the monitor of %s failed to poll", self.model_dir)

    def _read_chief(self) -> None:
        for scalar in self._chief.scalars():
            with self._lock:
                if self._chief_step is None or scalar.step >= self._chief_step:
                    self._chief_step = scalar.step
                self._chief_seen = max(self._chief_seen or 0.0, scalar.wall_time)
                if scalar.tag == _STEPS_PER_SEC:
                    self._chief_rate = scalar.value

    def _read_evals(self) -> None:
        gfile = tf().io.gfile
        try:
            dirs = {
                p.rsplit("/", 2)[-2] for p in gfile.glob(f"{self.model_dir}/eval*/{EVENTS_GLOB}")
            }
        except tf().errors.OpError:
            dirs = set()
        for name in sorted(dirs - set(self._evals)):
            self._evals[name] = EventDirReader(
                f"{self.model_dir}/{name}", truncated_after=self._truncated_after, warn=self.warn
            )
        for dirname, reader in self._evals.items():
            evaluation = dirname[len("eval_") :] if dirname.startswith("eval_") else dirname
            by_step: dict[int, dict[str, Scalar]] = {}
            for event in reader.read():
                start = session_start(event)
                if start is None:
                    for scalar in scalars_of(event):
                        by_step.setdefault(scalar.step, {})[scalar.tag] = scalar
                    continue
                self._record_evals(evaluation, by_step)
                by_step = {}
                last = self.metrics.last_step([evaluation])
                if last is not None and last >= start:  # a rewound or restarted training's
                    self.metrics.fork(start - 1, [evaluation])  # steps, evaluated again
            self._record_evals(evaluation, by_step)

    def _record_evals(self, evaluation: str, by_step: dict[int, dict[str, Scalar]]) -> None:
        for step, values in sorted(by_step.items()):
            wall_time = max(s.wall_time for s in values.values())
            metrics = {tag: s.value for tag, s in values.items()}
            if self.metrics.record(evaluation, step, metrics, wall_time):
                self.events.emit(EvalEvent(evaluation, step, metrics, wall_time))
            with self._lock:
                seen = self._eval_seen.get(evaluation)
                if seen is None or wall_time >= seen[0]:
                    self._eval_seen[evaluation] = (wall_time, step)

    def _read_heartbeats(self) -> None:
        beats = self.files.read_heartbeats()
        with self._lock:
            for beat in beats:
                self._beats[beat.task] = beat
                if beat.task in ("chief:0", "master:0") and beat.step is not None:
                    points = self._rate_points
                    if not points or beat.time > points[-1][0]:
                        if points and beat.step < points[-1][1]:
                            points.clear()  # a restart from an earlier checkpoint
                        points.append((beat.time, beat.step))
                        cutoff = beat.time - 10 * self.interval - 5
                        while len(points) > 2 and points[0][0] < cutoff:
                            points.pop(0)

    def _read_checkpoints(self) -> None:
        t = tf()
        state_path = f"{self.model_dir}/checkpoint"
        try:
            mtime = int(t.io.gfile.stat(state_path).mtime_nsec)
        except t.errors.OpError:
            return
        if mtime == self._ckpt_state_mtime:
            return
        try:
            state = t.train.get_checkpoint_state(self.model_dir)
        except Exception as exc:  # a state file being replaced: try again next poll
            log.debug("nbhooks: could not read %s: %s", state_path, exc)
            return
        if state is None:
            return
        items, whole = [], True
        for path in state.all_model_checkpoint_paths:
            match = _CKPT_STEP.search(path)
            if match is None:
                continue
            size, saved = _files_size(path)
            if size is None:  # not written yet, deleted by rotation, or renamed meanwhile
                whole = False
                continue
            items.append(Checkpoint(int(match[1]), path, size, saved))
        with self._lock:
            self._checkpoints = tuple(sorted(items, key=lambda c: c.step))
        # The state file may not change again (the job's last save): read it again next poll
        # unless every checkpoint it lists was read.
        self._ckpt_state_mtime = mtime if whole else None

    def _read_inputs(self) -> None:
        """List every task's input checkpoints; a complete one (its ``.index`` written to the
        end, last) never changes, so only new ones are measured."""
        t = tf()
        try:
            indexes = t.io.gfile.glob(f"{self.model_dir}/input*.ckpt-*.index")
        except t.errors.OpError:
            return
        found: dict[str, InputCheckpoint] = {}
        for index in indexes:
            path = index[: -len(".index")]
            parsed = parse_any(path.rsplit("/", 1)[-1])
            if parsed is None:
                continue
            known = self._inputs.get(path)
            if known is None:
                if not _whole_index(index):
                    continue  # being written (or cut short by a killed save)
                task, kind, step = parsed
                size, saved = _files_size(path)
                if size is None:
                    continue  # deleted by its task's rotation meanwhile
                known = InputCheckpoint(task or SINGLE_TASK, step, kind, path, size, saved)
            found[path] = known
        with self._lock:
            self._inputs = found

    def _read_job(self) -> None:
        started = self.files.read_job_start()
        request = self.files.read_request()
        with self._lock:
            if (
                started is not None
                and self._job_started is not None
                and started != self._job_started
            ):
                self.restarts += 1
            if started is not None:
                self._job_started = started
            self._request = request

    def warn(self, message: str) -> None:
        """Add ``message`` to :attr:`warnings`, shown in red on the panel from the next poll
        (a :class:`~nbhooks.LocalCluster` reports a failed task to its monitors this way)."""
        log.warning("nbhooks: %s", message)
        with self._lock:
            self._warnings.append(message)

    # -- derived --------------------------------------------------------------------------
    def _task_rows(self) -> list[TaskRow]:
        now = self._clock()
        with self._lock:
            beats = dict(self._beats)
            chief = (self._chief_seen, self._chief_step)
            evals = dict(self._eval_seen)
        rows: dict[str, TaskRow] = {}
        for beat in beats.values():
            state: str = beat.state
            if state not in ("ended", "waiting") and now - beat.time > self.lost_after:
                state = "silent"
            rows[beat.task] = TaskRow(beat.task, state, beat.time, beat.step, beat.host, beat.pid)
        if chief[0] is not None:
            row = rows.get("chief:0")
            if row is None:
                silent = now - chief[0] > self.lost_after
                rows["chief:0"] = TaskRow("chief:0", "silent" if silent else "running", *chief)
            elif row.last_seen is None or chief[0] > row.last_seen:
                rows["chief:0"] = TaskRow(
                    row.task,
                    row.state,
                    chief[0],
                    max(row.step or 0, chief[1] or 0),
                    row.host,
                    row.pid,
                )
        if evals and not any(k.startswith("evaluator:") for k in rows):
            wall_time, step = max(evals.values())
            rows["evaluator:0"] = TaskRow("evaluator:0", "evaluated", wall_time, step)
        elif evals:
            key = next(k for k in rows if k.startswith("evaluator:"))
            row = rows[key]
            wall_time, step = max(evals.values())
            if row.step is None or step > row.step:
                rows[key] = TaskRow(
                    key, row.state, max(wall_time, row.last_seen or 0), step, row.host, row.pid
                )
        return sorted(rows.values(), key=lambda r: _task_key(r.task))

    def snapshot(self) -> JobEvent:
        """What the monitor knows now (the event a poll emits)."""
        with self._lock:
            return JobEvent(
                global_step=self.global_step,
                steps_per_sec=self.steps_per_sec,
                tasks=tuple(self._task_rows()),
                checkpoints=self._checkpoints,
                request=self._request,
                warnings=tuple(self._warnings),
                job_started=self._job_started,
                restarts=self.restarts,
                inputs=self._input_list(),
            )

    def _publish(self, force: bool = False) -> JobEvent:
        event = self.snapshot()
        last = self._last
        self._last = event
        if force or last is None or _changed(last, event):
            self.events.emit(event)  # type: ignore[arg-type]  # views accept any event
            if event.global_step is not None:
                self.events.emit(StepEvent(event.global_step, None, event.steps_per_sec, 0.0, None))
        return event

    # -- lifetime and display -------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the polling thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def close(self, widgets: bool = True) -> None:
        """Stop polling and end the widget updates (the job itself goes on: see :meth:`stop`).
        ``widgets=False`` leaves the displayed widgets showing the last state."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self._face is not None:
            self._face.close(widgets=widgets)
            self._face = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def widget(self) -> Any:
        """The monitor's widget (built on first use, on the main thread)."""
        if self._face is None:
            from nbhooks.views.monitor import MonitorPanel

            self._face = MonitorPanel(self)
        return self._face.widget

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return (
            f"<nbhooks.Monitor of {self.model_dir}: step {self.global_step}, "
            f"{len(self.metrics.names)} evaluation(s), {len(self._checkpoints)} checkpoint(s)>"
        )


def _changed(a: JobEvent, b: JobEvent) -> bool:
    fields = ("global_step", "steps_per_sec", "tasks", "checkpoints", "inputs", "request")
    return any(getattr(a, f) != getattr(b, f) for f in (*fields, "warnings"))


def _whole_index(index: str) -> bool:
    t = tf()
    try:
        return whole_index(index, t.io.gfile.GFile)
    except t.errors.OpError:
        return False


def _files_size(prefix: str) -> tuple[int | None, float | None]:
    """The total size and latest change of a checkpoint's files; (None, None) when it has none
    or one went away while they were read."""
    t = tf()
    size, saved = 0, None
    try:
        for part in t.io.gfile.glob(f"{prefix}.*"):
            stat = t.io.gfile.stat(part)
            size += int(stat.length)
            saved = max(saved or 0.0, stat.mtime_nsec / 1e9)
    except t.errors.OpError:
        return None, None
    return (size, saved) if saved is not None else (None, None)


def _task_key(task: str) -> tuple[int, int, str]:
    kind, _, index = task.partition(":")
    order = {"chief": 0, "master": 0, "worker": 1, "evaluator": 2, "ps": 3}.get(kind, 4)
    return order, int(index) if index.isdigit() else 0, task


def _row_dict(row: TaskRow) -> dict[str, Any]:
    return {
        "task": row.task,
        "state": row.state,
        "last_seen": row.last_seen,
        "step": row.step,
        "host": row.host,
        "pid": row.pid,
    }
