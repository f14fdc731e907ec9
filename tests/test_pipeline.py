"""PipelineCheckpointHook on real TensorFlow: requests at step boundaries, files, errors.

The helpers at the top (an input_fn whose elements carry their id, a recorder hook, the
reference order) are shared with test_pipeline_exact.py and test_pipeline_panel.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import models
import pytest
from waiting import wait_for

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf
from nbhooks.events import PipelineEvent
from nbhooks.hooks.pipeline import PipelineCheckpointHook
from nbhooks.stores.pipeline_files import PipelineCheckpointError

IDS = "nbhooks_test_ids"


def ids_input_fn(
    n: int = 20, buffer: int = 7, batch: int = 3, seed: int = 3, stateful: bool = False
) -> Callable[[], Any]:
    """range(n) -> shuffle(seed) -> map -> batch -> repeat: each element carries its id."""

    def fn():
        t = tf()

        @t.autograph.experimental.do_not_convert  # re-created per call: see tensorflow/docs#1767
        def to_features(i):
            x = t.fill([models.N_FEATURES], t.cast(i, t.float32) / n)
            if stateful:
                x += t.random.uniform([models.N_FEATURES])
            return {"id": i, "x": x}, t.cast(i % 2, t.int32)

        ds = t.data.Dataset.range(n).shuffle(buffer, seed=seed).map(to_features)
        return ds.batch(batch).repeat()

    return fn


def reference(batches: int, **params: Any) -> list[list[int]]:
    """What an uninterrupted run reads: the dataset iterated eagerly."""
    features = ids_input_fn(**params)()
    return [f["id"].numpy().tolist() for (f, _), _ in zip(features, range(batches), strict=False)]


def _model_fn(features, labels, mode, params):
    tf().compat.v1.add_to_collection(IDS, features["id"])
    return models.model_fn(features, labels, mode, params)


def ids_estimator(model_dir: Path, every: int = 5, secs: float | None = None) -> Any:
    """The test model, fed ids; checkpoints (model and pipeline) every ``every`` steps, or
    every ``secs`` seconds when given."""
    t = tf()
    config = t.estimator.RunConfig(
        model_dir=str(model_dir),
        save_checkpoints_steps=None if secs else every,
        save_checkpoints_secs=secs,
        save_summary_steps=None,
        log_step_count_steps=None,
    )
    return t.estimator.Estimator(_model_fn, config=config, params={"learning_rate": 0.1})


class Recorder(tf().estimator.SessionRunHook):
    """Records the ids of every batch read; runs ``actions[step]()`` after global step ``step``.

    ``crash_at``: raise after that step, like a kill (no end(), no final checkpoints).
    """

    def __init__(
        self, actions: dict[int, Callable[[], Any]] | None = None, crash_at: int | None = None
    ) -> None:
        self.batches: list[list[int]] = []
        self.steps: list[int] = []
        self.actions = actions or {}
        self.crash_at = crash_at

    def begin(self) -> None:
        self._ids = tf().compat.v1.get_collection(IDS)[0]
        self._global_step = tf().compat.v1.train.get_global_step()

    def after_create_session(self, session, coord) -> None:
        # Counted, not fetched with the train op: that read may come before or after it.
        self._step = int(session.run(self._global_step))

    def before_run(self, run_context):
        return tf().estimator.SessionRunArgs(self._ids)

    def after_run(self, run_context, run_values) -> None:
        ids = run_values.results
        self._step += 1
        step = self._step
        self.batches.append(ids.tolist())
        self.steps.append(step)
        if step in self.actions:
            self.actions[step]()
        if step == self.crash_at:
            raise RuntimeError(f"simulated crash after step {step}")


def collect(hook: PipelineCheckpointHook) -> list[PipelineEvent]:
    events: list[PipelineEvent] = []
    hook.events.subscribe(events.append)
    return events


def model_steps(model_dir: Path) -> list[int]:
    return sorted(
        int(p.name[len("model.ckpt-") : -6]) for p in model_dir.glob("model.ckpt-*.index")
    )


@pytest.fixture
def ref() -> list[list[int]]:
    return reference(80)


# -- mid-run requests -------------------------------------------------------------------------
def test_save_and_restore_mid_run_resume_exactly_at_step_boundaries(model_dir, ref):
    est = ids_estimator(model_dir)
    hook = PipelineCheckpointHook(est)
    events = collect(hook)
    handles: dict[str, Any] = {}
    rec = Recorder(
        {
            3: lambda: handles.setdefault("save", hook.save()),
            8: lambda: handles.setdefault("restore", hook.restore(3)),
        }
    )
    est.train(ids_input_fn(), hooks=[rec, hook], steps=12)

    saved = handles["save"].wait(0)
    assert (saved.step, saved.kind) == (3, "manual")
    assert handles["restore"].wait(0) == saved
    assert rec.batches == ref[:8] + ref[3:7]  # the position after step 3, read again
    assert hook.status == "restored position of step 3"
    assert hook.restored_from == saved
    actions = [(e.action, e.step) for e in events if e.action != "saved" or e.step == 3]
    assert ("requested", None) in actions and ("saved", 3) in actions
    assert actions.index(("saved", 3)) < actions.index(("restored", 3))
    frame = hook.checkpoints
    assert list(frame.columns[:4]) == ["step", "path", "size_bytes", "saved_at"]
    assert frame[frame.kind == "auto"].step.tolist() == [5, 10, 12]  # none at the start
    assert frame[frame.kind == "manual"].step.tolist() == [3]
    assert (frame.size_bytes > 0).all()
    assert frame.latest.tolist() == [False, False, False, True]


def test_resume_lands_input_and_model_checkpoints_on_the_same_steps(model_dir, ref):
    est = ids_estimator(model_dir, every=5)
    est.train(ids_input_fn(), hooks=[PipelineCheckpointHook(est)], steps=7)
    hook = PipelineCheckpointHook(est)
    with pytest.raises(RuntimeError, match="simulated crash"):
        est.train(ids_input_fn(), hooks=[Recorder(crash_at=14), hook], steps=20)
    # TF's own hook saves input.ckpt-8 and -13 here (timer not re-armed on resume).
    inputs = hook.checkpoints.step.tolist()
    assert inputs == [5, 7, 12] == model_steps(model_dir)[1:]  # the model also saves step 0

    rec = Recorder()
    est.train(ids_input_fn(), hooks=[rec, PipelineCheckpointHook(est)], steps=3)
    assert rec.steps == [13, 14, 15]
    assert rec.batches == ref[12:15]  # nothing skipped, nothing repeated


class _DueDuringStep(tf().estimator.SessionRunHook):
    """Lets a second pass in ``before_run`` of step ``step`` (after the hooks listed before
    it): a schedule of one second falls due during that step, as it does inside a step."""

    def __init__(self, step: int) -> None:
        self.step, self.runs, self.started = step, 0, 0.0

    def before_run(self, run_context: Any) -> None:
        self.runs += 1
        if self.runs == 1:
            self.started = time.time()
        elif self.runs == self.step:
            assert wait_for(lambda: time.time() > self.started + 1.05, 10)


def test_a_seconds_schedule_adds_no_fetch_to_steps_and_saves_with_the_model(
    model_dir, ref, monkeypatch
):
    """RunConfig's default schedule saves every N seconds: while no save is due the hook adds
    no fetch to the training steps (and reads TF's timer once per save, not at every step); a
    save that falls due during a step lands on that step, with the model's, and training
    resumes there exactly."""
    timer_reads = []
    next_save_time = tfi.next_save_time

    def counted(saver_hook: Any) -> float:
        timer_reads.append(saver_hook)
        return next_save_time(saver_hook)

    monkeypatch.setattr(tfi, "next_save_time", counted)
    est = ids_estimator(model_dir, secs=1)
    hook = PipelineCheckpointHook(est)
    fetches: list[Any] = []
    before_run = hook.before_run

    def recording_before_run(run_context: Any) -> Any:
        fetches.append(before_run(run_context))
        return fetches[-1]

    hook.before_run = recording_before_run  # type: ignore[method-assign]
    rec = Recorder()
    est.train(ids_input_fn(), hooks=[hook, _DueDuringStep(4), rec], steps=10)

    assert len(fetches) == 10 and not any(fetches)
    assert len(timer_reads) == 2  # at the first step, and at the first after the save at 4
    assert hook.checkpoints.step.tolist() == [4, 10]
    assert model_steps(model_dir) == [0, 4, 10]
    assert rec.batches == ref[:10]
    rec = Recorder()
    est.train(ids_input_fn(), hooks=[rec, PipelineCheckpointHook(est)], steps=3)
    assert rec.batches == ref[10:13]


# -- idle requests ----------------------------------------------------------------------------
def test_idle_save_pins_the_next_start_and_idle_restore_picks_the_next_start(model_dir, ref):
    est = ids_estimator(model_dir, every=4)
    hook = PipelineCheckpointHook(est, keep=2)
    with pytest.raises(PipelineCheckpointError, match="nothing to save yet"):
        hook.save().wait(0)
    est.train(ids_input_fn(), hooks=[hook], steps=6)
    pinned = hook.save().wait(0)  # idle: done at once
    assert (pinned.step, pinned.kind) == (6, "manual")
    est.train(ids_input_fn(), hooks=[hook], steps=9)  # auto saves 6, 10, 14, 15: keep 2
    frame = hook.checkpoints
    assert frame[frame.kind == "auto"].step.tolist() == [14, 15]
    assert frame[frame.kind == "manual"].step.tolist() == [6]

    assert hook.restore(6).wait(0) == pinned
    assert "next train() resumes the pipeline at the position of step 6" in hook.status
    rec = Recorder()
    est.train(ids_input_fn(), hooks=[rec, hook], steps=2)
    assert rec.steps == [16, 17]  # the model goes on...
    assert rec.batches == ref[6:8]  # ...reading what followed step 6


def test_idle_restore_of_an_automatic_checkpoint_behind_the_model_is_kept(model_dir, ref):
    """A chosen position is not mistaken for a crash between the model's and the input's save
    (which the next train() would catch up with the model's step)."""
    est = ids_estimator(model_dir, every=4)
    hook = PipelineCheckpointHook(est)
    est.train(ids_input_fn(), hooks=[hook], steps=8)
    assert hook.restore(4).wait(0).kind == "auto"
    rec = Recorder()
    est.train(ids_input_fn(), hooks=[rec, hook], steps=2)
    assert rec.steps == [9, 10]
    assert rec.batches == ref[4:6]
    assert hook.status == "resumed pipeline at step 4"
    rec = Recorder()
    est.train(ids_input_fn(), hooks=[rec, hook], steps=2)  # TF's own state file again
    assert rec.batches == ref[6:8]


def test_delete_removes_files_but_refuses_the_next_start(model_dir):
    est = ids_estimator(model_dir, every=2)
    hook = PipelineCheckpointHook(est)
    est.train(ids_input_fn(), hooks=[hook], steps=5)
    assert hook.checkpoints.step.tolist() == [2, 4, 5]
    events = collect(hook)
    assert hook.delete(2).wait(0).step == 2
    assert not list(model_dir.glob("input.ckpt-2.*"))
    assert hook.checkpoints.step.tolist() == [4, 5]
    assert ("deleted", 2) in [(e.action, e.step) for e in events]
    with pytest.raises(PipelineCheckpointError, match="restore another checkpoint first"):
        hook.delete(5)
    assert events[-1].action == "failed"
    assert (model_dir / "input.ckpt-5.index").exists()


# -- bad input and failures -------------------------------------------------------------------
def test_bad_arguments_are_refused_before_anything_starts(model_dir, tmp_path):
    est = ids_estimator(model_dir)
    with pytest.raises(ValueError, match="keep must be a positive int"):
        PipelineCheckpointHook(est, keep=0)
    with pytest.raises(ValueError, match="'fail', 'warn' or 'ignore'"):
        PipelineCheckpointHook(est, external_state_policy="never")
    no_saves = models.make_estimator(tmp_path / "m2", save_checkpoints_steps=None)
    no_saves._config = no_saves.config.replace(save_checkpoints_secs=None)
    with pytest.raises(ValueError, match="save_checkpoints_steps=100"):
        PipelineCheckpointHook(no_saves)
    with pytest.raises(TypeError, match=r"needs a tf\.estimator\.Estimator"):
        PipelineCheckpointHook(object())
    fresh = ids_estimator(tmp_path / "not-yet", every=2)
    for bad in ({"keep": 0}, {"external_state_policy": "never"}):
        with pytest.raises(ValueError):
            PipelineCheckpointHook(fresh, **bad)
    assert not (tmp_path / "not-yet").exists()  # refused before model_dir was made


def test_missing_outside_and_corrupt_targets_are_refused_with_clear_errors(model_dir, tmp_path):
    est = ids_estimator(model_dir, every=3)
    hook = PipelineCheckpointHook(est)
    est.train(ids_input_fn(), hooks=[hook], steps=6)
    with pytest.raises(PipelineCheckpointError, match=r"no pipeline checkpoint at step 4 .*3, 6"):
        hook.restore(4)
    outside = tmp_path / "elsewhere" / "input.ckpt-3"
    with pytest.raises(PipelineCheckpointError, match="must be in model_dir"):
        hook.restore(outside)
    with pytest.raises(PipelineCheckpointError, match="must be in model_dir"):
        hook.restore(str(model_dir / ".." / "input.ckpt-3"))
    with pytest.raises(PipelineCheckpointError, match="not a pipeline checkpoint name"):
        hook.restore("model.ckpt-3")
    data = next(model_dir.glob("input.ckpt-3.data-*"))
    data.write_bytes(data.read_bytes()[:10])
    with pytest.raises(PipelineCheckpointError, match=r"input\.ckpt-3 cannot be read.*corrupt"):
        hook.restore(3)
    assert hook.store.state_path().endswith("input.ckpt-6")  # nothing was changed
    est.train(ids_input_fn(), hooks=[hook], steps=3)
    assert hook.restore("input.ckpt-9").wait(0).step == 9  # a name works too


def test_a_checkpoint_corrupted_after_the_request_fails_and_training_goes_on(model_dir, ref):
    est = ids_estimator(model_dir, every=3)
    hook = PipelineCheckpointHook(est)
    events = collect(hook)
    handles: list[Any] = []

    def restore_then_corrupt() -> None:
        handles.append(hook.restore(3))  # validated now; corrupted before it is served
        data = next(model_dir.glob("input.ckpt-3.data-*"))
        data.write_bytes(b"\0" * data.stat().st_size)

    rec = Recorder({5: restore_then_corrupt})
    est.train(ids_input_fn(), hooks=[rec, hook], steps=8)
    with pytest.raises(PipelineCheckpointError, match="pipeline restore failed"):
        handles[0].wait(0)
    assert rec.batches == ref[:8]  # the running pipeline was not touched
    assert [e.action for e in events].count("failed") == 1
    assert hook.restored_from is None


def test_an_interrupted_save_leaves_the_previous_checkpoints_restorable(model_dir, ref):
    est = ids_estimator(model_dir, every=3)
    hook = PipelineCheckpointHook(est)
    (model_dir / "input.manual.ckpt-4.index").mkdir(parents=True)  # the save will fail here
    handles: list[Any] = []
    rec = Recorder({4: lambda: handles.append(hook.save())})
    est.train(ids_input_fn(), hooks=[rec, hook], steps=6)
    with pytest.raises(PipelineCheckpointError, match="pipeline save failed"):
        handles[0].wait(0)
    assert not list(model_dir.glob("*_temp*"))
    assert hook.checkpoints.step.tolist() == [3, 6]
    rec = Recorder()
    est.train(ids_input_fn(), hooks=[rec, hook], steps=2)
    assert rec.batches == ref[6:8]


def test_stateful_ops_with_the_default_policy_explain_the_choices(model_dir):
    est = ids_estimator(model_dir)
    with pytest.raises(PipelineCheckpointError) as info:
        est.train(ids_input_fn(stateful=True), hooks=[PipelineCheckpointHook(est)], steps=2)
    message = str(info.value)
    for word in ("external_state_policy", "'warn'", "'ignore'", "'fail'", "stateless_uniform"):
        assert word in message
    assert "RandomUniform is stateful" in message
    assert not model_dir.exists() or model_steps(model_dir) == []  # refused before a session

    hook = PipelineCheckpointHook(est, external_state_policy="ignore")
    est.train(ids_input_fn(stateful=True), hooks=[hook], steps=2)
    assert hook.checkpoints.step.tolist() == [2]


def test_a_missing_next_start_is_reported_before_the_first_step(model_dir):
    est = ids_estimator(model_dir, every=3)
    hook = PipelineCheckpointHook(est)
    est.train(ids_input_fn(), hooks=[hook], steps=3)
    for f in model_dir.glob("input.ckpt-3.*"):
        f.unlink()
    sessions: list[object] = []

    class SessionSpy(tf().estimator.SessionRunHook):
        def after_create_session(self, session, coord) -> None:
            sessions.append(session)

    with pytest.raises(PipelineCheckpointError, match=r"which is missing\. Restore another"):
        est.train(ids_input_fn(), hooks=[hook, SessionSpy()], steps=3)
    assert sessions == []  # raised in begin(): no session, so no in-memory evaluation either
    assert model_steps(model_dir) == [0, 3]


@pytest.mark.slow
def test_a_killed_training_leaves_a_restorable_checkpoint(model_dir, ref):
    """SIGKILL a training process mid-run, many saves in: the next run resumes exactly."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(Path(__file__).parent)!r}]
        from test_pipeline import ids_estimator, ids_input_fn, Recorder
        from nbhooks.hooks.pipeline import PipelineCheckpointHook
        from pathlib import Path
        est = ids_estimator(Path({str(model_dir)!r}), every=1)
        rec = Recorder({{3: lambda: print("started", flush=True)}})
        est.train(ids_input_fn(), hooks=[rec, PipelineCheckpointHook(est, keep=3)], steps=100000)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        wait_for(lambda: len(model_steps(model_dir)) >= 3, 60)  # files of another process
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    est = ids_estimator(model_dir, every=1)
    hook = PipelineCheckpointHook(est)
    latest = hook.store.latest()
    assert latest is not None and hook.restore().wait(0) == latest  # readable
    events = collect(hook)
    rec = Recorder()
    est.train(ids_input_fn(), hooks=[rec, hook], steps=2)
    resumed = rec.steps[0] - 1  # the model's step
    assert [e.step for e in events if e.action == "restored"] == [resumed]
    assert rec.batches == ref[resumed : resumed + 2]
    shutil.rmtree(model_dir, ignore_errors=True)


# -- files that travel --------------------------------------------------------------------------
def test_a_moved_model_dir_resumes_exactly_like_an_unmoved_one(model_dir, tmp_path, ref):
    est = ids_estimator(model_dir, every=3)
    est.train(ids_input_fn(), hooks=[PipelineCheckpointHook(est)], steps=7)
    moved_dir = tmp_path / "elsewhere" / "model"
    shutil.copytree(model_dir, moved_dir)

    unmoved = Recorder()
    est.train(ids_input_fn(), hooks=[unmoved, PipelineCheckpointHook(est)], steps=4)
    expected = est.get_variable_value("dense/kernel")
    shutil.rmtree(model_dir)  # nothing may be read from the old place

    moved = ids_estimator(moved_dir, every=3)
    hook = PipelineCheckpointHook(moved)
    rec = Recorder()
    moved.train(ids_input_fn(), hooks=[rec, hook], steps=4)
    assert unmoved.batches == ref[7:11]
    assert rec.batches == unmoved.batches and rec.steps == unmoved.steps
    assert (moved.get_variable_value("dense/kernel") == expected).all()
    assert hook.restored_from is not None and hook.restored_from.path.startswith(str(moved_dir))
    assert not model_dir.exists()


def test_restore_accepts_a_step_read_from_the_checkpoints_frame(model_dir, ref):
    est = ids_estimator(model_dir, every=4)
    hook = PipelineCheckpointHook(est)
    est.train(ids_input_fn(), hooks=[hook], steps=8)
    step = hook.checkpoints.query("step == 4").step.iloc[0]  # a numpy integer
    assert type(step).__name__ == "int64"
    assert hook.restore(step=step).wait(0).step == 4
    handles = []
    rec = Recorder({10: lambda: handles.append(hook.restore(step=step))})
    est.train(ids_input_fn(), hooks=[rec, hook], steps=4)
    assert handles[0].wait(0).step == 4
    assert rec.batches == ref[4:6] + ref[4:6]
