"""``PipelineCheckpointHook``: save, list and restore the ``tf.data`` position from a notebook.

Built on ``tf.data.experimental.CheckpointInputPipelineHook`` (automatic saves at RunConfig's
``save_checkpoints_steps|secs``, ``input.ckpt-N`` files, a ``checkpoint_input`` state file),
with these changes:

* the resume defect is fixed: after a restore TF does not re-arm its saver timer, so input
  checkpoints land one step after the model's (121 vs 120) and a crash then skips a batch;
  here the timer is re-armed with the restored global step, so both land on the same steps;
* the start follows the model: no save at the first step (nobody restores it: a crash before
  the first automatic save restarts the input, as a fresh model needs); an input checkpoint
  of another step than the model's is not restored (the input starts afresh, with a warning
  event), except one automatic interval behind after a kill (caught up) or a position chosen
  with :meth:`restore`; a position at the end of a finite input starts that input again;
* inputs it cannot hold (queue runners, plain tensors, ``Dataset.from_generator``, a
  distribution strategy's input, stateful ops under policy 'fail') are found in ``begin()``:
  an error naming cause and fix; or (``unsupported="off"``) the hook turns itself off for
  that session and says why in an event, the last two found only when a save fails (their
  check serializes the dataset: nothing is paid before something is saved);
* requests: :meth:`save`, :meth:`restore` and :meth:`delete` may be called from any thread.
  While a session is open, save and restore run in the training thread at the next step
  boundary (a paused :class:`~nbhooks.run.TrainingRun` serves them when resumed, before its
  next step); while idle they act on the files at once;
* file hygiene: no meta graph per input checkpoint (60 KB each, never read back), rotation per
  kind (``keep`` automatic and ``keep`` manual), the state file written last and atomically,
  with paths relative to model_dir (a moved model_dir resumes), missing or corrupt files
  reported before the running session is touched, leftovers of killed saves removed at the
  next start, one event when a save is larger than 10 MB;
* no price per step on a schedule of seconds (RunConfig's default, every 600 s): TF's hook
  fetches the global step with every training step; here it is read only once a save is due
  (with the step, or just after the step during which it fell due: the same step);
* a price only when asked (``automatic_limit``, the Dashboard's default): when the shuffle
  buffers saved with each position would weigh more than the limit (estimated from the graph
  before the session, see :mod:`~nbhooks.hooks.input_buffers`), automatic saves wait until a
  person saves once, and the hook says so once, with the fix.

Manual saves (``input.manual.ckpt-N``) never move the state file: after a crash the model
resumes from its latest checkpoint, and the pipeline must resume from the automatic input
checkpoint of that same step.

In a job of several workers (``tf.estimator.train_and_evaluate`` with a ``TF_CONFIG``) give
each training task (chief and workers) its own hook: each saves and restores its own position
under TensorFlow's per-task names (``input_worker_1.ckpt-N``, state file
``checkpoint_input_worker_1``). The workers move one global step together, so a task resumes
from its own newest position (see ``_resume_point``).
"""

from __future__ import annotations

import logging
import numbers
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf
from nbhooks.events import EventBus, PipelineAction, PipelineEvent, RunAttached, RunStateEvent
from nbhooks.hooks._bases import CheckpointSaverListener, SessionRunHook
from nbhooks.hooks.input_buffers import endless, iterator_datasets, shuffle_buffers
from nbhooks.requests import PipelineRequest
from nbhooks.stores.pipeline_files import (
    Checkpoint,
    PipelineCheckpointError,
    PipelineStore,
)
from nbhooks.thread_pools import open_process_pools
from nbhooks.units import size as format_size

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger("nbhooks")
_T = TypeVar("_T")

POLICIES = ("fail", "warn", "ignore")
UNSUPPORTED = ("raise", "off")
#: A save larger than this gets one warning event (a large shuffle buffer is saved with it).
LARGE_BYTES = 10_000_000
#: The Dashboard's ``automatic_limit``: automatic saves estimated larger than this (~30 ms of
#: training each on a laptop core) wait until a person saves once.
CHEAP_BYTES = 1_000_000
_STATEFUL_HELP = (
    "the input pipeline uses a stateful op (for example tf.random.uniform inside map()), whose "
    "state a pipeline checkpoint cannot hold. Choose how PipelineCheckpointHook(estimator, "
    "external_state_policy=...) treats it: 'fail' (the default) refuses to save; 'warn' saves "
    "the position without that state and logs a warning; 'ignore' does the same silently. "
    "With 'warn' or 'ignore' a restored run reads the same elements in the same order, but "
    "the random values drawn in map() differ. Or make the op stateless: "
    "tf.random.stateless_uniform(shape, seed=...)."
)


class PipelineCheckpointHook(RunAttached, SessionRunHook):
    """Save and restore the position of the training ``tf.data`` pipeline, on request.

    ``keep``: automatic checkpoints kept (like TF's ``max_to_keep``); manual ones are rotated
    apart and also kept up to ``keep``. ``unsupported``: what an input that cannot be
    checkpointed does, ``"raise"`` (an error before the session starts) or ``"off"`` (this
    hook does nothing for that session and emits an ``"off"`` event saying why; the
    Dashboard's default). ``events`` receives :class:`PipelineEvent` s (the run's bus once
    attached to a :class:`~nbhooks.run.TrainingRun`). ``automatic_limit``: bytes; when the
    shuffle buffers saved with each position are estimated larger (from the graph, before the
    session), automatic saves wait (:attr:`paused` says why, in one ``"warning"`` event) until
    the first :meth:`save` while training runs turns them on for good. None (the default):
    always on.
    """

    def __init__(
        self,
        estimator: Any,
        external_state_policy: str | None = None,
        keep: int = 5,
        *,
        unsupported: str = "raise",
        automatic_limit: int | None = None,
    ) -> None:
        config = _check_estimator(estimator)
        open_process_pools(estimator)  # before this hook's scratch sessions
        if external_state_policy is not None and external_state_policy not in POLICIES:
            raise ValueError(
                f"external_state_policy must be None (= 'fail'), 'fail', 'warn' or 'ignore', "
                f"got {external_state_policy!r}"
            )
        if unsupported not in UNSUPPORTED:
            raise ValueError(f"unsupported must be 'raise' or 'off', got {unsupported!r}")
        if automatic_limit is not None and (
            isinstance(automatic_limit, bool)
            or not isinstance(automatic_limit, numbers.Integral)
            or automatic_limit < 0
        ):
            raise ValueError(
                f"automatic_limit must be None (always save automatically) or a number of "
                f"bytes >= 0, got {automatic_limit!r}"
            )
        if unsupported == "raise" and config.train_distribute is not None:
            raise PipelineCheckpointError(_cannot(_DISTRIBUTED))
        self.store = PipelineStore(config.model_dir, keep, task=_task_of(config))
        Path(config.model_dir).mkdir(parents=True, exist_ok=True)  # every argument is checked
        self.external_state_policy = external_state_policy or "fail"
        self._tf_hook = tf().data.experimental.CheckpointInputPipelineHook(
            estimator, external_state_policy=self.external_state_policy
        )
        self._saver_hook = tfi.saver_hook_of(self._tf_hook)
        tfi.skip_meta_graph(self._saver_hook)  # no .meta per input checkpoint
        tfi.add_save_listener(self._saver_hook, _AutoSaveListener(self._on_auto_save, self._emit))
        tfi.gate_saves(self._saver_hook, lambda: self.paused is None)
        self.automatic_limit = automatic_limit
        #: Why automatic saves wait for a person's first save (None: they run).
        self.paused: str | None = None
        self._asked = False  # a person saved: automatic saves run from then on
        self._said_paused = False
        self._endless = False  # this session's input repeats forever
        self.events: EventBus = EventBus()
        self.unsupported = unsupported
        self.off: str | None = None  #: why this session runs without pipeline checkpoints
        self._off_reason: tuple[str, str] | None = None  # (cause, fix) of ``off``
        self._session_on = False  # begin() set this session up: end() closes it
        self.restored_from: Checkpoint | None = None
        self.status = "no pipeline checkpoint restored yet"
        self.status_warns = False  #: ``status`` is a warning (off, paused, not restored)
        self._distributed = config.train_distribute is not None
        self._warned_large = False
        self._moved_since_save = False  # a restore in session after the last automatic save
        self._lock = threading.Lock()
        self._queue: list[PipelineRequest] = []
        self._step_fetched = True  # this step's before_run fetched the global step
        self._quiet_until = 0.0  # time.time() before which no automatic save falls due
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
        # Everything that can refuse runs before the session (and any evaluation) starts.
        self.off, self._off_reason, self._session_on = None, None, False
        self._quiet_until = 0.0
        # "raise" refuses before the session; "off" leaves the costly check of the dataset's
        # serialization to a save that fails (nothing to pay until something is saved).
        deep = self.unsupported == "raise"
        reason = _unsupported_input(self.external_state_policy, self._distributed, deep)
        if reason is not None:
            if self.unsupported == "raise":
                raise PipelineCheckpointError(_cannot(reason))
            self._turn_off(reason)
            return
        target = self.store.state_path()
        if target is not None and self.store.latest() is None:
            raise self._missing(target)
        self._pause_if_costly()
        self._endless = endless(tf().compat.v1.get_default_graph())  # never marked as ended
        if self.store.begin_writing():  # no other session of this process writes here
            self._clean_leftovers()
        # TF builds its saver only once, in the first graph: a hook reused for a second
        # train() would run the old graph's ops. Rebuild it for every graph.
        tfi.forget_saver(self._saver_hook)
        self._tf_hook.begin()
        saver = self._saver()
        saver.saver_def.max_to_keep = 0  # rotation is ours, per kind
        tfi.write_relative_paths(saver)  # a moved or copied model_dir still resumes
        self._moved_since_save = False
        with self._lock:
            self._open = True
            self._thread = threading.current_thread()
            self._session = None
        self._session_on = True

    def after_create_session(self, session: Any, coord: Any) -> None:
        if self.off:
            return
        self._tf_hook.after_create_session(session, coord)
        self._session = session

    def before_run(self, run_context: Any) -> Any:
        # Saves every N seconds (RunConfig's default): no fetch of the step with every training
        # step while the next save is not due, and until then no more than this check.
        if time.time() < self._quiet_until:
            self._step_fetched = False
            return None
        if self.off:
            return None
        if tfi.first_run_pending(self._tf_hook):
            self._restore_at_start(run_context.session)
            tfi.finish_first_run(self._tf_hook)
            self._serve_queue(run_context.session)  # left over from a session that crashed
        self._quiet_until = tfi.next_save_time(self._saver_hook)  # 0: saves every N steps
        self._step_fetched = time.time() >= self._quiet_until
        return self._saver_hook.before_run(run_context) if self._step_fetched else None

    def after_run(self, run_context: Any, run_values: Any) -> None:
        if self._step_fetched or time.time() >= self._quiet_until:  # a save may be due
            if self.off:
                return
            if not self._step_fetched:
                # Due during this step: read the step, as if it had been fetched with it (TF's
                # hook reads it again before saving), so the save lands on this step.
                step = run_context.session.run(tfi.global_step_tensor(self._saver_hook))
                run_values = tf().estimator.SessionRunValues(
                    step, run_values.options, run_values.run_metadata
                )
            self._saving(
                run_context.session, lambda: self._saver_hook.after_run(run_context, run_values)
            )
        if self._queue:  # unlocked peek: cheap on the hot path, re-checked under the lock
            self._serve_queue(run_context.session)

    def end(self, session: Any) -> None:
        if not self._session_on:  # off since begin()
            return
        try:
            if self.off is None:
                self._saving(session, lambda: self._saver_hook.end(session))
            if self.off is None:  # (a failed save may have turned it off)
                self._mark_if_ended(session)
            self._serve_queue(session, closing=True)
        finally:
            self._session_on = False
            self.store.end_writing()

    def _saving(self, session: Any, save: Callable[[], _T]) -> _T | None:
        """Run ``save``. With ``unsupported="off"``, a save that fails because the input
        cannot be saved (found only now: see begin()) turns the hook off and returns None."""
        try:
            return save()
        except tf().errors.OpError:
            if self.unsupported == "raise":
                raise
            try:
                reason = _unserializable(_unfinalized(session.graph), self.external_state_policy)
            except Exception:  # the save's own error is the one to report
                log.debug("nbhooks: could not tell why a pipeline save failed", exc_info=True)
                reason = None
            if reason is None:
                raise
            self.store.clean_leftovers()  # what the failed save wrote
            self._turn_off(reason)
            return None

    def _pause_if_costly(self) -> None:
        """Pause automatic saves when each would write more than ``automatic_limit``."""
        self.paused = None
        if self.automatic_limit is None or self._asked:
            return
        try:
            buffers = shuffle_buffers(tf().compat.v1.get_default_graph())
        except Exception:  # an estimate is never worth a failed training: save as asked
            log.debug("nbhooks: could not size the input's shuffle buffers", exc_info=True)
            buffers = None
        size = sum(b.bytes for b in buffers or ())
        if size <= self.automatic_limit:  # (None: sizes unknown, saved and warned if large)
            return
        elements = sum(b.elements for b in buffers or ())
        self.paused = (
            f"automatic input checkpoints paused: each would write about {format_size(size)} "
            f"(the {elements:,} elements of the shuffle buffer are saved with the position), "
            f"a pause in training at every model checkpoint. Press Save while training runs "
            f"to save the position and turn them on (to resume or rewind the input later), "
            f"or pass pipeline_checkpoints=True; a smaller shuffle buffer makes them cheap"
        )
        self.status, self.status_warns = self.paused, True
        if not self._said_paused:
            self._said_paused = True
            self.events.emit(PipelineEvent("warning", None, None, self.paused))

    def _turn_off(self, reason: tuple[str, str]) -> None:
        self._off_reason = reason
        self.off = reason[0]
        self._quiet_until = 0.0  # before_run and after_run see ``off`` from now on
        self.status, self.status_warns = f"pipeline checkpoints off: {reason[0]}", True
        self.events.emit(PipelineEvent("off", None, None, self.status))

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
        """A session of this hook runs: begun, not ended, not closed by a train() that raised
        (which skips end()). Before the session exists the training thread itself is not in
        a step: its requests act on the files (it reaches here after a failed start)."""
        if not (self._open and self._thread is not None and self._thread.is_alive()):
            return False
        if self._session is None:
            return threading.current_thread() is not self._thread
        return not tfi.session_closed(self._session)

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
            note = "; automatic saves on from now" if self.paused else ""
            saved = (
                None
                if self.off
                else self._saving(session, lambda: self._save_manual(session, step, note))
            )
            if saved is None:
                raise PipelineCheckpointError(_cannot(self._off_reason or ("off", "")))
            self._asked, self.paused = True, None
            return saved
        if request.action == "restore":
            checkpoint = request.target
            self._moved_since_save = True
            if self.store.ended(checkpoint) and _restart_input(session):
                message = (
                    f"{checkpoint.name} is at the end of the input: it starts again from the "
                    f"beginning (as estimator.train would)"
                )
                return self._restored(checkpoint, message)
            self._saver().restore(session, checkpoint.path)
            return self._restored(checkpoint, f"restored position of step {checkpoint.step}")
        return self._act_on_files(request)

    def _act_on_files(self, request: PipelineRequest) -> Checkpoint:
        if request.action == "save":
            latest = self.store.latest()
            if latest is None and self.paused:
                self._asked, self.paused = True, None
                raise PipelineCheckpointError(
                    "no position to save while idle: the last training saved none (automatic "
                    "input checkpoints were paused for this input's large shuffle buffer). "
                    "They are on from the next train(), at every model checkpoint"
                )
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

    def _save_manual(self, session: Any, step: int, note: str = "") -> Checkpoint:
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
        self.store.mark_ended(checkpoint, ended=False)  # a stale marker of an earlier save
        self.store.rotate("manual")
        message = f"saved position of step {step} ({checkpoint.name}){note}"
        self._emit("saved", checkpoint, message)
        self._warn_if_large(checkpoint)
        return checkpoint

    def _restored(
        self, checkpoint: Checkpoint, message: str, action: PipelineAction = "restored"
    ) -> Checkpoint:
        self.restored_from = checkpoint
        self.status, self.status_warns = message, action == "warning"
        self._emit(action, checkpoint, message)
        return checkpoint

    def _restore_at_start(self, session: Any) -> None:
        """TF's first-run logic, following the model's step (see the module docstring).

        No save here: until the first automatic save, a crash restarts the input from the
        beginning, which is what a model at its start step without a checkpoint needs.
        """
        step = int(session.run(tfi.global_step_tensor(self._saver_hook)))
        try:
            self._resume(session, step)
        finally:
            tfi.rearm_saver_timer(self._saver_hook, step)  # the resume-defect fix

    def _resume(self, session: Any, step: int) -> None:
        target = self.store.state_path()
        if target is None:
            if self.store.has_state_file():
                self._afresh(
                    f"the state file {self.store.state_file} names no checkpoint (it is "
                    f"damaged): the input starts from the beginning"
                )
            return
        chosen = self.store.chosen()  # by a person: exactly there, no catch-up
        checkpoint, behind = self._resume_point(step, chosen, session.graph)
        if checkpoint is None:
            latest = self.store.latest()
            if latest is None:
                raise self._missing(target)
            self._afresh(
                f"the input checkpoint {latest.name} is of step {latest.step} but the model "
                f"resumes at step {step} (model checkpoints deleted or replaced, or trained "
                f"without pipeline checkpoints): the input starts from the beginning"
            )
            return
        if self.store.ended(checkpoint):
            message = (
                f"{checkpoint.name} is at the end of the input: it starts again from the "
                f"beginning (as estimator.train would)"
            )
            self._restored(checkpoint, message, action="warning")
            return
        try:
            self._saver().restore(session, checkpoint.path)
        except tf().errors.OpError as exc:
            raise self._unreadable(checkpoint, exc) from exc
        if behind and self._catch_up(session, behind):
            message = f"resumed pipeline at step {step} ({checkpoint.name} + {behind} batches)"
            self._restored(replace(checkpoint, step=step), message)
        elif self.store.task is not None and checkpoint.step != step:
            message = (
                f"resumed {self.store.task}'s pipeline at its position of step "
                f"{checkpoint.step} ({checkpoint.name}; the job is at step {step})"
            )
            self._restored(checkpoint, message)
        else:
            self._restored(checkpoint, f"resumed pipeline at step {checkpoint.step}")

    def _resume_point(self, step: int, chosen: bool, graph: Any) -> tuple[Checkpoint | None, int]:
        """The checkpoint to resume from at model step ``step``, and the batches to catch up.

        The state file's checkpoint when chosen with restore() or of the model's own step.
        Otherwise an automatic one: the pipeline hook saves just before the model's saver at
        the same step, so a kill in between leaves the input one save ahead (resume from the
        one of the model's step) or, killed between the model's save and the input's, one
        interval behind (caught up by reading the missing batches). None: no position fits.

        A task of several workers: the workers move the global step together, so no input
        position belongs to a model step. It resumes from its own newest automatic position
        saved at most one save interval past ``step`` (a restarted worker: its latest; a
        restarted job: the one nearest the model's checkpoint), never caught up.
        """
        latest = self.store.latest()
        if latest is None or chosen or latest.step == step:
            return latest, 0
        if self.store.task is not None:
            ahead = step + self._max_catch_up()
            own = [c for c in self.store.list() if c.kind == "auto" and c.step <= ahead]
            return max(own, key=lambda c: c.step, default=None), 0
        autos = [c for c in self.store.list() if c.kind == "auto" and c.step <= step]
        if autos:
            newest = max(autos, key=lambda c: c.step)
            behind = step - newest.step
            if behind == 0 or (behind <= self._max_catch_up() and _one_iterator(graph)):
                return newest, behind
        return None, 0

    def _afresh(self, message: str) -> None:
        self.restored_from = None
        self.status, self.status_warns = message, True
        self._emit("warning", None, message)

    def _missing(self, target: str) -> PipelineCheckpointError:
        return PipelineCheckpointError(
            f"the pipeline state file {self.store.state_file} names "
            f"{target}, which is missing. Restore another checkpoint with "
            f"hook.restore(step) (see hook.checkpoints), or delete that state file to "
            f"start the pipeline from the beginning."
        )

    def _max_catch_up(self) -> int:
        """The most batches caught up: one save interval (saves every N seconds: 1000)."""
        every = tfi.save_every_steps(self._saver_hook)
        return every if every else MAX_CATCH_UP_SECS

    def _catch_up(self, session: Any, batches: int) -> bool:
        """Read ``batches`` batches: the model's saver ran, the pipeline's did not (a kill).

        Only with exactly one input read (one batch per step, as in an Estimator).
        """
        get_next = _one_iterator(session.graph)
        if get_next is None:
            return False
        for _ in range(batches):
            session.run(get_next)
        return True

    def _mark_if_ended(self, session: Any) -> None:
        """After the last save: if the input is exhausted, mark the checkpoint of that step.

        Reads one more batch (the position is saved already); skipped when a restore moved
        the input after the last save, with several iterators, or for an endless input.
        """
        if self._endless:
            return
        latest = self.store.latest()
        step = int(session.run(tfi.global_step_tensor(self._saver_hook)))
        if latest is None or latest.step != step or self._moved_since_save:
            return
        get_next = _one_iterator(session.graph)
        if get_next is None:
            return
        try:
            session.run(get_next)
        except tf().errors.OutOfRangeError:
            self.store.mark_ended(latest)
        except tf().errors.OpError:
            log.debug("nbhooks: could not tell whether the input ended", exc_info=True)

    def _clean_leftovers(self) -> None:
        removed = self.store.clean_leftovers()
        if removed:
            names = ", ".join(p.name for p in removed)
            self._emit(
                "deleted", None, f"removed leftovers of interrupted saves: {names}", automatic=True
            )

    def _warn_if_large(self, checkpoint: Checkpoint) -> None:
        if self._warned_large or checkpoint.size_bytes <= LARGE_BYTES:
            return
        self._warned_large = True
        self._emit(
            "warning",
            checkpoint,
            f"each pipeline checkpoint writes {format_size(checkpoint.size_bytes)} "
            f"({checkpoint.name}): the shuffle buffer is saved with the position. Use a "
            f"smaller shuffle buffer, or pipeline_checkpoints=False if you never restore it",
        )

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
        self._moved_since_save = False
        deleted = self.store.rotate("auto")
        checkpoint = self.store.find(self.store.path("auto", step))
        self.store.mark_ended(checkpoint, ended=False)  # a stale marker of an earlier save
        self._emit("saved", checkpoint, f"automatic save at step {step}", automatic=True)
        for old in deleted:
            message = f"rotated out {old.name} (keep={self.store.keep})"
            self._emit("deleted", old, message, automatic=True)
        self._warn_if_large(checkpoint)

    def on_run_state(self, event: RunStateEvent) -> None:
        if event.state in {"finished", "stopped", "failed"}:
            with self._lock:
                self._open = False
                batch, self._queue = self._queue, []
            for request in batch:  # the session is gone: act on the files
                self._serve_idle(request)

    def _emit(
        self,
        action: PipelineAction,
        checkpoint: Checkpoint | None,
        message: str,
        automatic: bool = False,
    ) -> None:
        step = checkpoint.step if isinstance(checkpoint, Checkpoint) else None
        path = checkpoint.path if isinstance(checkpoint, Checkpoint) else None
        self.events.emit(PipelineEvent(action, step, path, message, automatic))


def check_input_savers(hooks: Sequence[Any], dashboard_saves: bool | None = None) -> None:
    """The input pipeline is saved by at most one hook, and not by TensorFlow's
    ``CheckpointInputPipelineHook``, which serves one ``train()`` call: it keeps the saver of
    that call's graph, and the next call restores the input with the new graph's model saver
    ("Key dnn/hiddenlayer_0/bias not found in checkpoint"), while a run gives its hooks to every
    ``train()``. ``dashboard_saves``: whether a Dashboard's ``pipeline_checkpoints`` adds a hook
    (None: not a Dashboard)."""
    if any(isinstance(h, tf().data.experimental.CheckpointInputPipelineHook) for h in hooks):
        instead = (
            "nh.PipelineCheckpointHook(estimator) in its place, which restores and saves the "
            "same input.ckpt files"
            if dashboard_saves is None
            else "the dashboard saves the input pipeline itself, with the same input.ckpt files "
            "(pipeline_checkpoints='auto', the default, or True)"
        )
        raise ValueError(
            f"TensorFlow's CheckpointInputPipelineHook serves one train() call: the next one "
            f"fails restoring the model (it keeps the first graph's saver), and a run gives its "
            f"hooks to every train(). Drop it from hooks: {instead}"
        )
    savers = [type(h).__name__ for h in hooks if isinstance(h, PipelineCheckpointHook)]
    if dashboard_saves:
        savers.append("the dashboard's pipeline_checkpoints")
    if len(savers) > 1:
        raise ValueError(
            f"{len(savers)} hooks save the input pipeline ({', '.join(savers)}): they would "
            f"write the same input.ckpt files in model_dir. Keep one (a Dashboard's: drop yours "
            f"from hooks, or pass pipeline_checkpoints=False)"
        )


class _AutoSaveListener(CheckpointSaverListener):
    """Rotates and reports after each automatic save (TF's own rotation is switched off)."""

    def __init__(
        self,
        on_save: Callable[[int], None],
        emit: Callable[[PipelineAction, Checkpoint | None, str], None],
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
    return config


def _task_of(config: Any) -> str | None:
    """This task of a job of several workers (``"worker:1"``), None for a single worker: as
    TensorFlow's own hook names the files (``input_worker_1.ckpt-N``)."""
    if config.num_worker_replicas > 1:
        return f"{config.task_type}:{config.task_id}"
    return None


MAX_CATCH_UP_SECS = 1000
_DISTRIBUTED = (
    "the estimator trains with a distribution strategy (RunConfig(train_distribute=...)), "
    "whose multi-device input TensorFlow cannot checkpoint (its GeneratorDataset does not "
    "support checkpointing)",
    "train without train_distribute to save input positions",
)


def _cannot(reason: tuple[str, str]) -> str:
    cause, fix = reason
    return (
        f"pipeline checkpoints cannot be used with this input: {cause}. Fix: {fix}, or pass "
        f"pipeline_checkpoints=False (Dashboard) / leave out PipelineCheckpointHook."
    )


def _unsupported_input(policy: str, distributed: bool, deep: bool) -> tuple[str, str] | None:
    """Why the default graph's training input cannot be checkpointed (cause, fix), or None.

    Called in ``begin()``: the graph exists, no session does. ``deep``: also serialize the
    dataset's own graph in a scratch session, as a checkpoint would but without its buffers
    (a generator or stateful op; 0.1-0.4 s with large in-graph data).
    """
    t = tf()
    graph = t.compat.v1.get_default_graph()
    if distributed or any(op.type == "MultiDeviceIterator" for op in graph.get_operations()):
        return _DISTRIBUTED
    if not tfi.pipeline_iterators(graph):
        if graph.get_collection(t.compat.v1.GraphKeys.QUEUE_RUNNERS):
            return (
                "the input is fed by queue runners (numpy_input_fn or pandas_input_fn), "
                "which have no position to save",
                "feed a tf.data.Dataset, e.g. tf.data.Dataset.from_tensor_slices((dict(x), y))"
                ".shuffle(1000).batch(32).repeat()",
            )
        return (
            "the input_fn returns tensors, not a tf.data.Dataset: there is no iterator whose "
            "position could be saved",
            "return the tf.data.Dataset itself from input_fn",
        )
    return _unserializable(graph, policy) if deep else None


def _unfinalized(graph: Any) -> Any:
    """``graph``, or a copy of it that ops may be added to when it is finalized (a session's)."""
    if not graph.finalized:
        return graph
    t = tf()
    copy = t.Graph()
    with copy.as_default():
        t.graph_util.import_graph_def(graph.as_graph_def(), name="")
    return copy


def _unserializable(graph: Any, policy: str) -> tuple[str, str] | None:
    t = tf()
    datasets = [op.outputs[0] for op in iterator_datasets(graph)]
    if not datasets:
        return None
    enum = {"warn": 0, "ignore": 1, "fail": 2}
    with graph.as_default():
        checks = [
            (
                t.raw_ops.DatasetToGraphV2(input_dataset=d, external_state_policy=enum["ignore"]),
                t.raw_ops.DatasetToGraphV2(input_dataset=d, external_state_policy=enum[policy]),
            )
            for d in datasets
        ]
    # A scratch session: no GPU; in a cluster the input's ops name this task's device, which a
    # local session places on its own CPU.
    config = t.compat.v1.ConfigProto(device_count={"GPU": 0}, allow_soft_placement=True)
    with t.compat.v1.Session(graph=graph, config=config) as session:
        for ignoring, checking in checks:
            try:
                graph_def = session.run(ignoring)
            except t.errors.OpError:
                return None  # not computable outside the training session: not checkable
            if b"GeneratorDataset" in graph_def:
                return (
                    "the input reads from tf.data.Dataset.from_generator, whose position "
                    "TensorFlow cannot save (GeneratorDataset does not support checkpointing)",
                    "build the dataset from tensors or files (from_tensor_slices, TFRecordDataset)",
                )
            try:
                session.run(checking)
            except t.errors.FailedPreconditionError as exc:
                match = re.search(r"(\w+) is stateful", str(exc))
                if match is None:
                    raise
                return (
                    f"{_STATEFUL_HELP} (TensorFlow said: {match[0]})",
                    "pass external_state_policy='warn' or 'ignore', or use stateless ops",
                )
    return None


def _one_iterator(graph: Any) -> Any:
    """The one op that reads ``graph``'s input (``IteratorGetNext``, or its synchronous twin
    in a :class:`~nbhooks.run.TrainingRun`), or None when there are several or none."""
    ops = tfi.input_reads(graph)
    return ops[0] if len(ops) == 1 else None


def _restart_input(session: Any) -> bool:
    """Re-initialize the one input iterator (its ``MakeIterator`` op); False if not one."""
    ops = [op for op in session.graph.get_operations() if op.type == "MakeIterator"]
    if len(ops) != 1:
        return False
    session.run(ops[0])
    return True


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
