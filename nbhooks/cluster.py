"""LocalCluster: a real parameter-server cluster of separate processes on 127.0.0.1.

Each task (chief, workers, parameter servers, evaluator) is a Python process with its own
``TF_CONFIG`` that runs ``tf.estimator.train_and_evaluate`` — the same code path as on a real
cluster. The notebook's functions reach the processes by cloudpickle, so functions defined in
a notebook work. The processes belong to the LocalCluster object: :meth:`LocalCluster.stop`
(also at interpreter exit and when the object is garbage collected) ends them, and each
process ends itself when its parent (the kernel) is gone. Parameter servers never end by
themselves: the cluster ends them once the chief, the workers and the evaluator are done.

Run as ``python -m nbhooks.cluster <spec.pkl>`` it is one task of such a cluster.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbhooks import NbhooksWarning
from nbhooks.cells import CellRegistry
from nbhooks.checks import check_int
from nbhooks.dirlock import ModelDirLock
from nbhooks.memory import headroom
from nbhooks.units import size

#: How long workers may go on after the chief ended before they are ended (they stop at once
#: when the chief reached max_steps or was stopped: this only catches a stuck one).
WORKER_GRACE = 30.0
#: How long the evaluator may go on after the chief ended (it ends itself after evaluating the
#: checkpoint of max_steps, or is ended once it evaluated the last one after a Stop).
EVALUATOR_GRACE = 180.0
#: The least memory a task takes: a TensorFlow process training a small model (its own pages
#: measured 230-290 MB; the libraries' pages are shared between the processes).
TASK_MEMORY = 250_000_000
_POLL = 0.2
log = logging.getLogger("nbhooks")


@dataclass(frozen=True)
class _Spec:
    """What every task process gets (pickled with cloudpickle)."""

    make_estimator: Callable[[Any], Any]
    train_fn: Callable[..., Any]
    eval_fn: Callable[..., Any] | None
    steps: int
    model_dir: str
    eval_steps: int | None
    throttle_secs: int
    save_checkpoints_steps: int | None
    save_checkpoints_secs: int | None
    keep_checkpoint_max: int
    hooks: tuple[Any, ...]


class LocalCluster:
    """Train ``make_estimator(config)`` with ``tf.estimator.train_and_evaluate`` on a local
    cluster: a chief, ``workers`` workers, ``ps`` parameter servers and (``evaluator=True``) an
    evaluator, each a separate process with its own ``TF_CONFIG`` on free 127.0.0.1 ports.

    ``make_estimator(config)`` must return the Estimator built with the ``tf.estimator.RunConfig``
    it is given; ``train_fn`` / ``eval_fn`` are the input_fns; ``steps`` the TrainSpec's
    ``max_steps``. ``model_dir``: the job's (a new temporary directory when None).
    ``throttle_secs``: the least time between two evaluations. Checkpoints are saved every
    ``save_checkpoints_secs`` (or ``save_checkpoints_steps``), ``keep_checkpoint_max`` kept: the
    evaluator must load a checkpoint before the chief deletes it, so keep them for longer than
    an evaluation takes to start. Every training task runs a
    :class:`~nbhooks.ClusterControlHook`, so :meth:`monitor` can stop, pause and resume it.

    ``hooks``: more training hooks for every training task (chief and workers), each either a
    ``tf.estimator.SessionRunHook`` object (sent to every task as a copy) or a hook factory,
    called in each training task with that task's Estimator (``factory(estimator) ->
    SessionRunHook``). A hook that needs its task's Estimator is passed as a factory:
    ``hooks=[nh.PipelineCheckpointHook]`` gives each task its own input checkpoints
    (``input_worker_1.ckpt-N``; ``Monitor.input_checkpoints`` lists them by task);
    ``lambda estimator: nh.PipelineCheckpointHook(estimator, keep=3)`` passes
    arguments.
    """

    def __init__(
        self,
        make_estimator: Callable[[Any], Any],
        train_fn: Callable[..., Any],
        eval_fn: Callable[..., Any] | None,
        steps: int,
        workers: int = 2,
        ps: int = 1,
        evaluator: bool = True,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        eval_steps: int | None = None,
        throttle_secs: int = 2,
        save_checkpoints_steps: int | None = None,
        save_checkpoints_secs: int | None = 5,
        keep_checkpoint_max: int = 10,
        hooks: Iterable[Any] = (),
    ) -> None:
        for name, fn in (("make_estimator", make_estimator), ("train_fn", train_fn)):
            if not callable(fn):
                raise TypeError(f"{name} must be a function, got {type(fn).__name__}")
        if eval_fn is not None and not callable(eval_fn):
            raise TypeError(f"eval_fn must be an input_fn or None, got {type(eval_fn).__name__}")
        if evaluator and eval_fn is None:
            raise ValueError("evaluator=True needs an eval_fn (or pass evaluator=False)")
        check_int("steps", steps, hint="the TrainSpec's max_steps")
        check_int("workers", workers, minimum=0)
        check_int("ps", ps, hint="between-graph training needs a parameter server")
        check_int("throttle_secs", throttle_secs, minimum=0)
        check_int("eval_steps", eval_steps, optional=True)
        check_int("save_checkpoints_steps", save_checkpoints_steps, optional=True)
        check_int("save_checkpoints_secs", save_checkpoints_secs, optional=True)
        check_int("keep_checkpoint_max", keep_checkpoint_max)
        hooks = _check_hooks(hooks)
        if save_checkpoints_steps is not None:
            save_checkpoints_secs = None  # one or the other (RunConfig refuses both)
        try:
            import cloudpickle
        except ImportError as exc:  # pragma: no cover - a dependency
            raise ImportError("LocalCluster needs cloudpickle: pip install cloudpickle") from exc
        self._made_dir = model_dir is None
        directory = model_dir if model_dir is not None else tempfile.mkdtemp(prefix="nbh-job-")
        self.model_dir = os.path.abspath(os.fspath(directory))
        self.workdir = Path(tempfile.mkdtemp(prefix="nbh-cluster-"))  # spec and logs
        spec = _Spec(
            make_estimator,
            train_fn,
            eval_fn,
            steps,
            self.model_dir,
            eval_steps,
            throttle_secs,
            save_checkpoints_steps,
            save_checkpoints_secs,
            keep_checkpoint_max,
            hooks,
        )
        try:
            payload = cloudpickle.dumps(spec)
        except Exception as exc:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise TypeError(
                f"LocalCluster could not send the functions to its processes ({exc}): pass "
                "functions whose closures hold only picklable values (no open sessions, "
                "estimators or files)"
            ) from exc
        (self.workdir / "spec.pkl").write_bytes(payload)
        self.steps = steps
        self.task_names = (
            ["chief:0"]
            + [f"worker:{i}" for i in range(workers)]
            + [f"ps:{i}" for i in range(ps)]
            + (["evaluator:0"] if evaluator else [])
        )
        self._procs = _Processes(self.workdir, self.model_dir)
        # at exit or when this object is collected: end the processes, delete spec and logs
        self._finalizer = weakref.finalize(self, _cleanup, self._procs, self.workdir)
        self._monitors: list[Any] = []
        self._launched_at = 0.0  # when start() launched the tasks (time.time())

    # -- lifetime ---------------------------------------------------------------------------
    def start(self) -> LocalCluster:
        """Start every task process (returns at once; returns self). Raises MemoryError,
        starting nothing, when the memory free here (or in this container) cannot hold
        ``TASK_MEMORY`` a task."""
        if self._procs.started:
            raise RuntimeError("this LocalCluster was started already: make a new one")
        _claim_cell(self._procs)  # first: ends what an earlier run of this cell started
        _check_memory(self.task_names)
        Path(self.model_dir).mkdir(parents=True, exist_ok=True)
        ModelDirLock(self.model_dir).check("train")  # the chief holds it while it runs
        self._launched_at = time.time()  # a job start recorded before it is an earlier job's
        ports = _free_ports(len([t for t in self.task_names if not t.startswith("evaluator")]))
        cluster: dict[str, list[str]] = {}
        for name in self.task_names:
            kind = name.split(":")[0]
            if kind != "evaluator":
                cluster.setdefault(kind, []).append(f"127.0.0.1:{ports.pop(0)}")
        for name in self.task_names:
            kind, index = name.split(":")
            tf_config = {"cluster": cluster, "task": {"type": kind, "index": int(index)}}
            self._procs.launch(name, tf_config)
        self._procs.supervise()
        return self

    def wait(self, timeout: float | None = None) -> str:
        """Block until the job is done (ps tasks ended by the cluster); returns the state:
        ``"finished"``, ``"stopped"`` or ``"failed"``. Raises TimeoutError on timeout and
        RuntimeError, with the end of its log, when the chief or the evaluator failed or a
        parameter server ended (a killed task: the signal named).
        Interrupted (the notebook's interrupt button, Ctrl-C), it asks every task to stop at
        its next check, as ``monitor().stop()`` does (the chief saves a last checkpoint), or
        ends the processes at once when the chief has not begun the job (nothing trained yet),
        waits for the job to end and raises ``KeyboardInterrupt``."""
        from nbhooks.rewind import checkpoint_step
        from nbhooks.run import wait_or_stop

        if not self._procs.started:
            raise RuntimeError("the cluster was not started: call start() first")
        done, interrupted = wait_or_stop(self._procs.done, timeout, self._stop_interrupted)
        if not done:
            raise TimeoutError(f"the cluster still runs after {timeout} s: {self.returncodes}")
        state = self.state
        if state == "failed":
            task = self._procs.failed or "chief:0"
            text = self._procs.log(task)
            raise RuntimeError(
                f"{self._procs.failure(task)}\n"
                + (
                    f"The end of its log (cluster.logs({task!r}) has all of it):\n{text[-3000:]}"
                    if text.strip()
                    else "Its log is empty."
                )
            )
        if interrupted:
            step = checkpoint_step(self.model_dir)
            at = (
                "before its first checkpoint"
                if step is None
                else f"its last checkpoint at step {step}"
            )
            raise KeyboardInterrupt(f"the cluster's job {state}, {at}: wait() was interrupted")
        return state

    def _stop_interrupted(self, reason: str) -> None:
        """A stop request for every task; before the chief has begun the job (its start not
        recorded) the tasks would take the request for an earlier job's and train on, so the
        processes are ended instead: this job has trained and saved nothing yet."""
        from nbhooks.jobfiles import JobFiles

        files = JobFiles(self.model_dir)
        began = files.read_job_start()
        if began is None or began < self._launched_at:
            self._procs.kill_all()
        else:
            files.request("stop")

    def stop(self) -> None:
        """End every process now (SIGTERM, then SIGKILL). For a clean stop at a step boundary
        with a last checkpoint use ``monitor().stop()`` and :meth:`wait` first."""
        self._procs.kill_all()
        for monitor in self._monitors:
            monitor.close(widgets=False)  # a displayed monitor keeps showing how the job ended
        self._monitors.clear()

    close = stop

    def __enter__(self) -> LocalCluster:
        return self.start() if not self._procs.started else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what users read --------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``"idle"``, ``"running"``, ``"finished"``, ``"stopped"`` or ``"failed"``."""
        procs = self._procs
        if not procs.started:
            return "idle"
        if not procs.done.is_set():
            return "running"
        if procs.failed:
            return "failed"
        if procs.killed_by_stop:
            return "stopped"
        from nbhooks.jobfiles import JobFiles

        return "stopped" if stop_requested(JobFiles(self.model_dir)) else "finished"

    @property
    def pids(self) -> dict[str, int]:
        """The process id of each task."""
        return {name: p.pid for name, p in self._procs.popen.items()}

    @property
    def returncodes(self) -> dict[str, int | None]:
        """Each task's exit code (None while it runs; negative: ended by that signal)."""
        return {name: p.poll() for name, p in self._procs.popen.items()}

    def logs(self, task: str) -> str:
        """What task ``task`` ("chief", "worker:1", "ps:0", "evaluator") printed."""
        name = task if ":" in task else f"{task}:0"
        if name not in self.task_names:
            raise KeyError(f"no task {task!r} in this cluster; its tasks: {self.task_names}")
        return self._procs.log(name)

    def monitor(self, **kwargs: Any) -> Any:
        """A :class:`~nbhooks.Monitor` on this cluster's model_dir, told when a task fails the
        job (a warning on its panel); :meth:`stop` ends its polling (its widgets stay, showing
        the end of the job)."""
        from nbhooks.monitor import Monitor

        monitor = Monitor(self.model_dir, **kwargs)
        self._monitors.append(monitor)
        self._procs.listeners.append(monitor.warn)
        return monitor

    def __repr__(self) -> str:
        return (
            f"<nbhooks.LocalCluster {self.state}: {', '.join(self.task_names)} in {self.model_dir}>"
        )


class _Processes:
    """The task processes and the supervisor thread (holds no reference to the cluster, so
    that an unreferenced LocalCluster is collected and its finalizer ends them)."""

    def __init__(self, workdir: Path, model_dir: str) -> None:
        self.workdir = workdir
        self.model_dir = model_dir
        self.ended: set[str] = set()  # the tasks this object ended (not failures)
        self.popen: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Any] = []
        self.started = False
        self.done = threading.Event()
        self.failed: str | None = None
        self.killed_by_stop = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: told, in a line, of a worker lost and of the job's failure (once its processes ended)
        self.listeners: list[Callable[[str], None]] = []
        self._lost: set[str] = set()  # the workers the listeners were told of

    def launch(self, name: str, tf_config: dict[str, Any]) -> None:
        self.started = True
        env = dict(os.environ)
        env.update(
            TF_CONFIG=json.dumps(tf_config),
            NBHOOKS_PARENT_PID=str(os.getpid()),
            TF_CPP_MIN_LOG_LEVEL="2",
            CUDA_VISIBLE_DEVICES="",
            PYTHONUNBUFFERED="1",
            # the parent's import path: modules the functions refer to import the same way
            PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path),
        )
        output = open(self.workdir / f"{name.replace(':', '-')}.log", "wb")  # noqa: SIM115
        self._logs.append(output)
        self.popen[name] = subprocess.Popen(
            [sys.executable, "-m", "nbhooks.cluster", str(self.workdir / "spec.pkl")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in a terminal goes to the parent only
        )

    def supervise(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nbhooks-cluster", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            self._supervise()
        except Exception:
            log.exception("nbhooks: the local cluster's supervisor failed; ending the cluster")
        self._finish()

    def log(self, name: str) -> str:
        """What task ``name`` printed."""
        path = self.workdir / f"{name.replace(':', '-')}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def failure(self, task: str, verb: str = "failed") -> str:
        """Why ``task`` failed (or another ``verb``), in a line: how it ended, its error if any."""
        error = _raised(self.log(task))
        how = _how_it_ended(task, self.popen[task].poll())
        return f"task {task} of the local cluster {verb} ({how}){f': {error}' if error else ''}"

    def _tell(self, line: str) -> None:
        if not self.listeners:  # a monitor logs what it is told
            log.warning("nbhooks: %s", line)
        for listener in self.listeners:
            listener(line)

    def _tell_lost_workers(self, codes: dict[str, int | None]) -> None:
        """Tell of each worker that ended with an error or a signal the cluster did not send:
        the job goes on without it, but nothing else would say why (a worker that fails before
        its first step never shows on a Monitor)."""
        for name, code in codes.items():
            lost = name.startswith("worker:") and code not in (None, 0)
            if lost and name not in self.ended and name not in self._lost:
                self._lost.add(name)
                self._tell(f"{self.failure(name, 'ended')}; the job goes on without it")

    def _supervise(self) -> None:
        chief_ended: float | None = None
        while not self._stopping.wait(_POLL):
            codes = {name: p.poll() for name, p in self.popen.items()}
            chief = codes.get("chief:0")
            if chief is not None and chief_ended is None:
                chief_ended = time.monotonic()
            self.failed = _failed_task(codes, self.ended)
            if self.failed:
                break
            self._tell_lost_workers(codes)
            if chief_ended is None:
                continue
            workers = [n for n in codes if n.startswith("worker:") and codes[n] is None]
            if workers and time.monotonic() - chief_ended > WORKER_GRACE:
                for name in workers:
                    self._end(name)
            if codes.get("evaluator:0", 0) is None and (
                time.monotonic() - chief_ended > EVALUATOR_GRACE or self._evaluated_last()
            ):
                self._end("evaluator:0")
            training = [n for n in codes if not n.startswith("ps:") and codes[n] is None]
            if not training:
                return

    def _evaluated_last(self) -> bool:
        """Whether the evaluator evaluated the chief's last checkpoint (after a stop it would
        wait for the next one for ever)."""
        from nbhooks.jobfiles import JobFiles
        from nbhooks.rewind import checkpoint_step

        files = JobFiles(self.model_dir)
        if not stop_requested(files):
            return False  # at max_steps the evaluator ends by itself
        step = checkpoint_step(files.model_dir)
        if step is None:
            return True
        beats = {b.task: b for b in files.read_heartbeats()}
        beat = beats.get("evaluator:0")
        return beat is not None and beat.state == "waiting" and (beat.step or 0) >= step

    def _end(self, name: str, grace: float = 5.0) -> None:
        proc = self.popen.get(name)
        if proc is None or proc.poll() is not None:
            return
        self.ended.add(name)
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def _finish(self) -> None:
        with self._lock:
            for name in list(self.popen):
                self._end(name)
            for output in self._logs:
                output.close()
            self._logs.clear()
            if self.failed and not self.done.is_set():  # told before wait() returns
                self._tell(self.failure(self.failed))
            self.done.set()

    def kill_all(self) -> None:
        if not self.started:
            return
        if not self.done.is_set():
            self.killed_by_stop = True
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._finish()


def _cleanup(procs: _Processes, workdir: Path) -> None:
    procs.kill_all()
    shutil.rmtree(workdir, ignore_errors=True)


_CLUSTERS: CellRegistry[_Processes] = CellRegistry()


def _claim_cell(procs: _Processes) -> None:
    """Record ``procs`` as started by the notebook cell running now; end the clusters an
    earlier execution of the same cell started (re-running the cell replaces them)."""
    for each in _CLUSTERS.claim(procs):
        if each.started and not each.done.is_set():
            warnings.warn(
                "re-running a notebook cell ends the local cluster it started before",
                NbhooksWarning,
                stacklevel=3,
            )
            each.kill_all()


def _failed_task(codes: dict[str, int | None], ended: set[str]) -> str | None:
    """The task whose end fails the job, if one did: the chief or the evaluator ending with an
    error or a signal the cluster did not send, or a parameter server ending at all while the
    chief runs (the variables it holds are gone; the others would wait for it for ever). A
    task killed by a signal comes first: the others' errors follow from it. A worker's end
    does not fail the job: the chief trains on, as on a real cluster (the listeners are told)."""
    chief_runs = codes.get("chief:0") is None
    failed = [
        name
        for name, code in codes.items()
        if code is not None
        and name not in ended
        and (
            (name.startswith("ps:") and chief_runs)
            or (code != 0 and name.split(":")[0] in ("chief", "evaluator"))
        )
    ]
    return min(failed, key=lambda name: (codes[name] or 0) >= 0, default=None)


def _how_it_ended(task: str, code: int | None) -> str:
    """How ``task`` ended, for the failure message: its exit code, and for a signal its name
    and what sends it."""
    if code is None or code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    text = f"killed by {name}, exit code {code}"
    if -code == signal.SIGKILL:
        text += (
            ", which the cluster did not send: the system sends it when memory runs out (each "
            f"task is a TensorFlow process of {size(TASK_MEMORY)} or more: ask for "
            "fewer tasks, or free memory)"
        )
    if task.startswith("ps:"):
        text += "; the job cannot go on without its parameter server: the cluster ended it"
    return text


def _check_memory(task_names: list[str]) -> None:
    """Refuse a cluster that the memory free here cannot hold: started, it would have the
    system's out-of-memory killer end a task, or this kernel."""
    room = headroom()
    need = len(task_names) * TASK_MEMORY
    if room is None or room.available >= need:
        return
    raise MemoryError(
        f"a LocalCluster of {len(task_names)} tasks ({', '.join(task_names)}) needs "
        f"{size(need)} of memory or more ({size(TASK_MEMORY)} a task, each a "
        f"TensorFlow process), and {room.where} has {size(room.available)} free: "
        "started, the system would end processes, this kernel perhaps among them. Ask for "
        "fewer tasks (workers=0, evaluator=False: the least is a chief and one ps) or free "
        "memory (shut down the kernels of notebooks you are not using)"
    )


def stop_requested(files: Any) -> bool:
    """Whether a Stop was requested for the current job (not a stale one for an earlier job)."""
    request = files.read_request()
    started = files.read_job_start()
    return bool(
        request is not None
        and request.action == "stop"
        and (started is None or request.time >= started)
    )


def _raised(log_text: str) -> str | None:
    """The exception a task's log ends with ("ValueError: no estimator today", the module path
    left out), or None when it holds no Python traceback."""
    lines = log_text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call")]
    if not starts:
        return None
    # the frames are indented; the exception's own line is the first that is not
    line = next((ln for ln in lines[starts[-1] + 1 :] if ln and not ln[0].isspace()), None)
    if line is None:
        return None
    name, colon, message = line.partition(":")
    return f"{name.rsplit('.', 1)[-1]}{colon}{message}" if " " not in name else line


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held together while they are chosen)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


_HOOKS_HELP = (
    "pass a list whose items are tf.estimator.SessionRunHook objects (every training task gets "
    "a copy) or hook factories, called in each training task with its Estimator: "
    "factory(estimator) -> SessionRunHook, e.g. hooks=[nh.PipelineCheckpointHook] or "
    "hooks=[lambda estimator: nh.PipelineCheckpointHook(estimator, keep=3)]"
)


def _is_hook(item: Any) -> bool:
    from nbhooks._tf import tf

    return isinstance(item, tf().estimator.SessionRunHook)


def _check_hooks(hooks: Any) -> tuple[Any, ...]:
    """``hooks`` as a tuple of hooks and hook factories; a TypeError saying what to pass."""
    if _is_hook(hooks) or callable(hooks) or isinstance(hooks, (str, bytes)):
        raise TypeError(
            f"hooks must be a list, got {type(hooks).__name__} {hooks!r}: {_HOOKS_HELP}"
        )
    try:
        items = tuple(hooks)
    except TypeError:
        raise TypeError(
            f"hooks must be a list, got {type(hooks).__name__}: {_HOOKS_HELP}"
        ) from None
    for i, item in enumerate(items):
        if _is_hook(item):
            continue
        if not callable(item):
            raise TypeError(
                f"hooks[{i}] is {type(item).__name__} {item!r}, neither a hook nor a hook "
                f"factory: {_HOOKS_HELP}"
            )
        try:
            inspect.signature(item).bind(None)
        except TypeError:
            raise TypeError(
                f"hooks[{i}] ({_name(item)}) cannot be called with one argument, the task's "
                f"Estimator: {_HOOKS_HELP}"
            ) from None
        except ValueError:  # pragma: no cover - no signature to check (some builtins)
            pass
    return items


def _name(factory: Any) -> str:
    return getattr(factory, "__qualname__", None) or type(factory).__name__


def _task_hooks(hooks: tuple[Any, ...], estimator: Any) -> list[Any]:
    """The training hooks of this task: the hooks as given, the factories' hooks for this
    task's ``estimator`` (made on training tasks only: ps and evaluator train nothing)."""
    training = estimator.config.task_type in ("chief", "worker", "master")
    made = []
    for item in hooks:
        if _is_hook(item):
            made.append(item)
        elif training:
            hook = item(estimator)
            if not _is_hook(hook):
                raise TypeError(
                    f"the hook factory {_name(item)} returned {type(hook).__name__}, not a "
                    f"tf.estimator.SessionRunHook: a factory must return the hook it makes"
                )
            made.append(hook)
    return made


# -- one task process -----------------------------------------------------------------------
def _watch_parent(parent: int) -> None:
    """End this process when its parent (the kernel) is gone: it would be adopted by init."""
    while True:
        if os.getppid() != parent:
            os._exit(3)
        time.sleep(0.5)


def _check_built_with(estimator: Any, config: Any) -> None:
    """Refuse, before anything is written, an Estimator not built with the task's RunConfig
    (a Dashboard's factory, which takes a model_dir, makes one named after the RunConfig)."""
    built = str(getattr(estimator, "model_dir", None))
    if os.path.realpath(built) != os.path.realpath(config.model_dir):
        raise ValueError(
            f"make_estimator(config) built an Estimator whose model_dir is {built!r}, not the "
            f"cluster's {config.model_dir!r}: build it with the RunConfig it is given, e.g. "
            "tf.estimator.DNNClassifier(..., config=config) (a Dashboard's factory takes a "
            "model_dir; a LocalCluster's takes a RunConfig)"
        )


def _run_task(spec_path: str) -> None:
    parent = int(os.environ.get("NBHOOKS_PARENT_PID", "0"))
    if parent:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    import cloudpickle

    spec: _Spec = cloudpickle.loads(Path(spec_path).read_bytes())
    from nbhooks._tf import tf
    from nbhooks.hooks.cluster_control import ClusterControlHook
    from nbhooks.jobfiles import task_from_env

    t = tf()
    if task_from_env()[0] == "chief":  # held (its descriptor open) until this process ends
        ModelDirLock(spec.model_dir).acquire("train", who="a LocalCluster's chief")
    config = t.estimator.RunConfig(
        model_dir=spec.model_dir,
        save_checkpoints_steps=spec.save_checkpoints_steps,
        save_checkpoints_secs=spec.save_checkpoints_secs,
        keep_checkpoint_max=spec.keep_checkpoint_max,
    )
    estimator = spec.make_estimator(config)
    _check_built_with(estimator, config)
    train_spec = t.estimator.TrainSpec(
        spec.train_fn,
        max_steps=spec.steps,
        hooks=[ClusterControlHook(spec.model_dir), *_task_hooks(spec.hooks, estimator)],
    )
    eval_spec = t.estimator.EvalSpec(
        spec.eval_fn or spec.train_fn,
        steps=spec.eval_steps,
        throttle_secs=spec.throttle_secs,
        start_delay_secs=0,
        hooks=[ClusterControlHook(spec.model_dir)],
    )
    t.estimator.train_and_evaluate(estimator, train_spec, eval_spec)


if __name__ == "__main__":
    _run_task(sys.argv[1])
