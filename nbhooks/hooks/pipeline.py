"""``PipelineCheckpointHook``: save, list and restore the ``tf.data`` position from a notebook.

Built on ``tf.data.experimental.CheckpointInputPipelineHook`` (automatic saves at RunConfig's
``save_checkpoints_steps|secs``, ``input.ckpt-N`` files, a ``checkpoint_input`` state file),
with three changes:

* the resume defect is fixed: after a restore TF does not re-arm its saver timer, so input
  checkpoints land one step after the model's (121 vs 120) and a crash then skips a batch;
  here the timer is re-armed with the restored global step, so both land on the same steps;
* requests: :meth:`save`, :meth:`restore` and :meth:`delete` may be called from any thread.
  While a session is open, save and restore run in the training thread at the next step
  boundary (a paused :class:`~nbhooks.run.TrainingRun` serves them when resumed, before its
  next step); while idle they act on the files at once;
* file hygiene: no meta graph per input checkpoint (60 KB each, never read back), rotation per
  kind (``keep`` automatic and ``keep`` manual), the state file written last and atomically,
  missing or corrupt files reported before the running session is touched.

Manual saves (``input.manual.ckpt-N``) never move the state file: after a crash the model
resumes from its latest checkpoint, and the pipeline must resume from the automatic input
checkpoint of that same step.
"""

from __future__ import annotations

import logging
import numbers
import os
import re
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf
from nbhooks.events import EventBus, PipelineEvent, RunAttached, RunStateEvent
from nbhooks.requests import PipelineRequest
from nbhooks.stores.pipeline_files import Checkpoint, PipelineCheckpointError, PipelineStore

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger("nbhooks")

POLICIES = ("fail", "warn", "ignore")
_STATEFUL_HELP = (
    "the input pipeline uses a stateful op (for example tf.random.uniform inside map()), whose "
    "state a pipeline checkpoint cannot hold. Choose how PipelineCheckpointHook(estimator, "
    "external_state_policy=...) treats it: 'fail' (the default) refuses to save; 'warn' saves "
    "the position without that state and logs a warning; 'ignore' does the same silently. "
    "With 'warn' or 'ignore' a restored run reads the same elements in the same order, but "
    "the random values drawn in map() differ. Or make the op stateless: "
    "tf.random.stateless_uniform(shape, seed=...)."
)


class PipelineCheckpointHook(RunAttached, tf().estimator.SessionRunHook):
    """Save and restore the position of the training ``tf.data`` pipeline, on request.

    ``keep``: automatic checkpoints kept (like TF's ``max_to_keep``); manual ones are rotated
    apart and also kept up to ``keep``. ``events`` receives :class:`PipelineEvent` s (the
    run's bus once attached to a :class:`~nbhooks.run.TrainingRun`).
    """

    def __init__(
        self, estimator: Any, external_state_policy: str | None = None, keep: int = 5
    ) -> None:
        config = _check_estimator(estimator)
        if external_state_policy is not None and external_state_policy not in POLICIES:
            raise ValueError(
                f"external_state_policy must be None (= 'fail'), 'fail', 'warn' or 'ignore', "
                f"got {external_state_policy!r}"
            )
        self.store = PipelineStore(config.model_dir, keep)
        Path(config.model_dir).mkdir(parents=True, exist_ok=True)  # every argument is checked
        self.external_state_policy = external_state_policy or "fail"
        self._tf_hook = tf().data.experimental.CheckpointInputPipelineHook(
            estimator, external_state_policy=self.external_state_policy
        )
        self._saver_hook = tfi.saver_hook_of(self._tf_hook)
        tfi.skip_meta_graph(self._saver_hook)  # no .meta per input checkpoint
        tfi.add_save_listener(self._saver_hook, _AutoSaveListener(self._on_auto_save, self._emit))
        self.events: EventBus = EventBus()
        self.restored_from: Checkpoint | None = None
        self.status = "no pipeline checkpoint restored yet"
        self._lock = threading.Lock()
        self._queue: list[PipelineRequest] = []
        self._open = False  # a training session uses this hook (begin .. end)
        self._thread: threading.Thread | None = None
        self._session: Any = None

    # -- the public API (any thread) -------------------------------------------------------
    def save(self) -> PipelineRequest:
        """Save the pipeline position: at the next step boundary, or at once when idle.

        Idle, it pins the position the next ``train()`` starts from (the latest input
        checkpoint) as a manual checkpoint, so rotation does not remove it.
        """
        return self._post(PipelineRequest("save"))

    def restore(self, step: int | str | os.PathLike[str] | None = None) -> PipelineRequest:
        """Restore a checkpoint (a step, name or path in model_dir; latest when None).

        Running: the iterator is reset at the next step boundary. Idle: the checkpoint becomes
        the one the next ``train()`` starts from. Missing, corrupt or outside-model_dir
        targets raise here, before anything is touched.
        """
        checkpoint = self._checked(lambda: self._validate(self.store.find(step)), step)
        return self._post(PipelineRequest("restore", checkpoint))

    def delete(self, step: int | str | os.PathLike[str]) -> PipelineRequest:
        """Delete a checkpoint (at once, any time; not the one the next train() restores)."""
        checkpoint = self._checked(
            lambda: self.store.deletable(self.store.find(_given(step))), step
        )
        request = PipelineRequest("delete", checkpoint)
        self._emit("requested", checkpoint, f"delete {checkpoint.name}")
        self._serve_idle(request)
        return request

    def _checked(self, check: Callable[[], Checkpoint], target: Any) -> Checkpoint:
        """Run ``check``; on a bad target report it as a failed event and raise."""
        try:
            return check()
        except (PipelineCheckpointError, TypeError) as exc:
            step = int(target) if isinstance(target, numbers.Integral) else None
            self.events.emit(PipelineEvent("failed", step, None, str(exc)))
            raise

    @property
    def checkpoints(self) -> pd.DataFrame:
        """The saved checkpoints: step, path, size_bytes, saved_at, kind, name, latest."""
        import pandas as pd

        latest = self.store.state_path()
        rows = [
            {
                "step": c.step,
                "path": c.path,
                "size_bytes": c.size_bytes,
                "saved_at": pd.Timestamp(c.saved_at, unit="s"),
                "kind": c.kind,
                "name": c.name,
                "latest": c.path == latest,
            }
            for c in self.store.list()
        ]
        columns = ["step", "path", "size_bytes", "saved_at", "kind", "name", "latest"]
        return pd.DataFrame(rows, columns=columns)

    @property
    def pending(self) -> int:
        """How many save/restore requests wait for the next step boundary."""
        with self._lock:
            return len(self._queue)

    @property
    def running(self) -> bool:
        """True while a training session uses this hook (requests wait for a step boundary)."""
        with self._lock:
            return self._is_open()

    # -- SessionRunHook (the training thread) ----------------------------------------------
    def begin(self) -> None:
        # TF builds its saver only once, in the first graph: a hook reused for a second
        # train() would run the old graph's ops. Rebuild it for every graph.
        target = self.store.state_path()
        if target is not None and self.store.latest() is None:
            raise self._missing(target)  # before the session (and any evaluation) starts
        tfi.forget_saver(self._saver_hook)
        self._tf_hook.begin()
        self._saver().saver_def.max_to_keep = 0  # rotation is ours, per kind
        with self._lock:
            self._open = True
            self._thread = threading.current_thread()

    def after_create_session(self, session: Any, coord: Any) -> None:
        self._tf_hook.after_create_session(session, coord)
        self._session = session

    def before_run(self, run_context: Any) -> Any:
        if tfi.first_run_pending(self._tf_hook):
            self._restore_or_save_initial(run_context.session)
            tfi.finish_first_run(self._tf_hook)
            self._serve_queue(run_context.session)  # left over from a session that crashed
        return self._saver_hook.before_run(run_context)

    def after_run(self, run_context: Any, run_values: Any) -> None:
        self._saver_hook.after_run(run_context, run_values)
        if self._queue:  # unlocked peek: cheap on the hot path, re-checked under the lock
            self._serve_queue(run_context.session)

    def end(self, session: Any) -> None:
        self._saver_hook.end(session)
        self._serve_queue(session, closing=True)

    # -- serving ---------------------------------------------------------------------------
    def _post(self, request: PipelineRequest) -> PipelineRequest:
        target = request.target
        with self._lock:
            queued = self._is_open()
            if queued:
                self._queue.append(request)
        when = "at the next step boundary" if queued else "now (no training running)"
        self._emit("requested", target, f"{request.action} requested: {when}")
        if not queued:
            self._serve_idle(request)
        return request

    def _is_open(self) -> bool:
        return self._open and self._thread is not None and self._thread.is_alive()

    def _serve_queue(self, session: Any, closing: bool = False) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
            if closing:
                self._open = False
                self._session = None
        for request in batch:
            if closing and request.action == "restore":
                self._serve_idle(request)  # the session ends: it is for the next train()
            else:
                self._serve(request, lambda r: self._act_in_session(session, r))

    def _serve_idle(self, request: PipelineRequest) -> None:
        self._serve(request, self._act_on_files)

    def _serve(
        self, request: PipelineRequest, act: Callable[[PipelineRequest], Checkpoint]
    ) -> None:
        try:
            checkpoint = act(request)
        except Exception as exc:
            error = exc if isinstance(exc, PipelineCheckpointError | TypeError) else None
            error = error or PipelineCheckpointError(f"pipeline {request.action} failed: {exc}")
            if error is not exc:
                error.__cause__ = exc
            self._emit("failed", request.target, str(error))
            request.set_error(error)
        else:
            request.set_result(checkpoint)

    def _act_in_session(self, session: Any, request: PipelineRequest) -> Checkpoint:
        if request.action == "save":
            step = int(session.run(tfi.global_step_tensor(self._saver_hook)))
            return self._save_manual(session, step)
        if request.action == "restore":
            checkpoint = request.target
            self._saver().restore(session, checkpoint.path)
            return self._restored(checkpoint, f"restored position of step {checkpoint.step}")
        return self._act_on_files(request)

    def _act_on_files(self, request: PipelineRequest) -> Checkpoint:
        if request.action == "save":
            latest = self.store.latest()
            if latest is None:
                raise PipelineCheckpointError(
                    "nothing to save yet: the pipeline has no position before the first "
                    "train() with this hook (it starts from the beginning)"
                )
            pinned = self.store.pin(latest)
            self.store.rotate("manual")
            self._emit("saved", pinned, f"pinned position of step {pinned.step} ({pinned.name})")
            return pinned
        checkpoint = request.target
        if request.action == "delete":
            self.store.delete(checkpoint)
            self._emit("deleted", checkpoint, f"deleted {checkpoint.name}")
            return checkpoint
        self.store.point_at(self._validate(checkpoint))
        message = f"next train() resumes the pipeline at the position of step {checkpoint.step}"
        return self._restored(checkpoint, message)

    def _save_manual(self, session: Any, step: int) -> Checkpoint:
        prefix = self.store.path("manual", step)
        try:
            self._saver().save(
                session,
                self.store.prefix("manual"),
                global_step=step,
                write_meta_graph=False,
                write_state=False,  # the state file follows automatic saves (model-aligned)
            )
        except BaseException:
            self.store.discard_partial(prefix)
            raise
        checkpoint = self.store.find(prefix)
        self.store.rotate("manual")
        self._emit("saved", checkpoint, f"saved position of step {step} ({checkpoint.name})")
        return checkpoint

    def _restored(self, checkpoint: Checkpoint, message: str) -> Checkpoint:
        self.restored_from = checkpoint
        self.status = message
        self._emit("restored", checkpoint, message)
        return checkpoint

    def _restore_or_save_initial(self, session: Any) -> None:
        """TF's first-run logic, with the timer re-armed and clear errors."""
        step = int(session.run(tfi.global_step_tensor(self._saver_hook)))
        target = self.store.state_path()
        if target is None:
            try:
                tfi.save_checkpoint(self._saver_hook, session, step)
            except tf().errors.OpError as exc:
                raise _explain(exc) from exc
        else:
            chosen = self.store.chosen()  # by a person: exactly there, no catch-up
            checkpoint = self._resume_point(step, chosen)
            if checkpoint is None:
                raise self._missing(target)
            try:
                self._saver().restore(session, checkpoint.path)
            except tf().errors.OpError as exc:
                raise self._unreadable(checkpoint, exc) from exc
            behind = step - checkpoint.step if checkpoint.kind == "auto" and not chosen else 0
            if 0 < behind <= self._max_catch_up() and self._catch_up(session, behind):
                message = f"resumed pipeline at step {step} ({checkpoint.name} + {behind} batches)"
                self._restored(replace(checkpoint, step=step), message)
            else:
                self._restored(checkpoint, f"resumed pipeline at step {checkpoint.step}")
        tfi.rearm_saver_timer(self._saver_hook, step)  # the resume-defect fix

    def _resume_point(self, step: int, chosen: bool) -> Checkpoint | None:
        """The state file's checkpoint, unless it is an automatic one ahead of the model.

        The pipeline hook saves just before the model's saver at the same step, so a kill in
        between leaves the input one step group ahead; resume from the input checkpoint of the
        model's own step then (a manual or older choice made with restore() is kept).
        """
        checkpoint = self.store.latest()
        if chosen:
            return checkpoint
        if checkpoint is not None and checkpoint.kind == "auto" and checkpoint.step > step:
            aligned = [c for c in self.store.list() if c.kind == "auto" and c.step == step]
            return aligned[-1] if aligned else checkpoint
        return checkpoint

    def _missing(self, target: str) -> PipelineCheckpointError:
        return PipelineCheckpointError(
            f"the pipeline state file {self.store.dir / 'checkpoint_input'} names "
            f"{target}, which is missing. Restore another checkpoint with "
            f"hook.restore(step) (see hook.checkpoints), or delete that state file to "
            f"start the pipeline from the beginning."
        )

    def _max_catch_up(self) -> int:
        every = tfi.save_every_steps(self._saver_hook)
        return every if every else 0

    def _catch_up(self, session: Any, batches: int) -> bool:
        """Read ``batches`` batches: the model's saver ran, the pipeline's did not (a kill).

        Only with exactly one ``IteratorGetNext`` (one batch per step, as in an Estimator).
        """
        graph = session.graph
        ops = [op for op in graph.get_operations() if op.type.startswith("IteratorGetNext")]
        if len(ops) != 1:
            return False
        for _ in range(batches):
            session.run(ops[0])
        return True

    def _validate(self, checkpoint: Checkpoint) -> Checkpoint:
        """Read every tensor of ``checkpoint`` (catches missing and corrupt files)."""
        try:
            names = _read_all(checkpoint.path)
        except Exception as exc:
            raise self._unreadable(checkpoint, exc) from exc
        expected = self._expected_keys()
        if expected and not expected <= set(names):
            raise PipelineCheckpointError(
                f"pipeline checkpoint {checkpoint.name} holds {sorted(names)}, not this "
                f"pipeline's iterators {sorted(expected)}: it was saved from another input_fn"
            )
        return checkpoint

    def _unreadable(self, checkpoint: Checkpoint, exc: Exception) -> PipelineCheckpointError:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return PipelineCheckpointError(
            f"pipeline checkpoint {checkpoint.name} cannot be read ({type(exc).__name__}: "
            f"{first_line}); its files in {self.store.dir} are missing or corrupt. Pick "
            f"another one (hook.checkpoints) or delete it with hook.delete({checkpoint.step})."
        )

    def _expected_keys(self) -> set[str]:
        return tfi.checkpoint_keys(self._saver_hook)

    def _saver(self) -> Any:
        return tfi.saver_of(self._saver_hook)

    def _on_auto_save(self, step: int) -> None:
        deleted = self.store.rotate("auto")
        checkpoint = self.store.find(self.store.path("auto", step))
        self._emit("saved", checkpoint, f"automatic save at step {step}", automatic=True)
        for old in deleted:
            message = f"rotated out {old.name} (keep={self.store.keep})"
            self._emit("deleted", old, message, automatic=True)

    def on_run_state(self, event: RunStateEvent) -> None:
        if event.state in {"finished", "stopped", "failed"}:
            with self._lock:
                self._open = False
                batch, self._queue = self._queue, []
            for request in batch:  # the session is gone: act on the files
                self._serve_idle(request)

    def _emit(
        self, action: str, checkpoint: Checkpoint | None, message: str, automatic: bool = False
    ) -> None:
        step = checkpoint.step if isinstance(checkpoint, Checkpoint) else None
        path = checkpoint.path if isinstance(checkpoint, Checkpoint) else None
        event = PipelineEvent(action, step, path, message, automatic)  # type: ignore[arg-type]
        self.events.emit(event)


class _AutoSaveListener(tf().estimator.CheckpointSaverListener):
    """Rotates and reports after each automatic save (TF's own rotation is switched off)."""

    def __init__(
        self, on_save: Callable[[int], None], emit: Callable[[str, Checkpoint | None, str], None]
    ) -> None:
        self._on_save, self._emit = on_save, emit

    def after_save(self, session: Any, global_step_value: int) -> None:
        try:
            self._on_save(int(global_step_value))
        except Exception as exc:  # never break training over bookkeeping
            log.exception("nbhooks: pipeline checkpoint rotation failed")
            self._emit("failed", None, f"rotation after step {global_step_value}: {exc}")


def _given(step: Any) -> Any:
    if step is None:
        raise TypeError(
            "delete() needs the checkpoint to delete: its step, name or path (see .checkpoints)"
        )
    return step


def _check_estimator(estimator: Any) -> Any:
    config = getattr(estimator, "config", None)
    if config is None or not getattr(estimator, "model_dir", None):
        raise TypeError(
            f"PipelineCheckpointHook needs a tf.estimator.Estimator with a model_dir, "
            f"got {type(estimator).__name__}"
        )
    if config.save_checkpoints_steps is None and config.save_checkpoints_secs is None:
        raise ValueError(
            "the estimator's RunConfig saves no checkpoints (save_checkpoints_steps and "
            "save_checkpoints_secs are both None); set one, e.g. RunConfig(save_checkpoints_"
            "steps=100): pipeline checkpoints follow the model's"
        )
    if config.num_worker_replicas > 1:
        raise ValueError("PipelineCheckpointHook supports single-worker training only")
    return config


def _read_all(path: str) -> list[str]:
    """Read (and checksum) every tensor of a checkpoint in a scratch session; returns names.

    Iterator states are variant tensors, which the Python checkpoint reader cannot return, so
    a ``RestoreV2`` op does the reading. Works from any thread, the training one included.
    """
    t = tf()
    dtypes = t.train.load_checkpoint(path).get_variable_to_dtype_map()
    names = sorted(dtypes)
    with t.Graph().as_default(), t.compat.v1.Session() as session:
        op = t.raw_ops.RestoreV2(
            prefix=path,
            tensor_names=names,
            shape_and_slices=[""] * len(names),
            dtypes=[dtypes[n] for n in names],
        )
        session.run([t.size(x) for x in op])
    return names


def _explain(exc: Exception) -> Exception:
    match = re.search(r"^.*\bis stateful\b.*$", str(exc), re.MULTILINE)
    if match:
        return PipelineCheckpointError(f"{_STATEFUL_HELP} (TensorFlow said: {match[0].strip()})")
    return exc
