"""PipelineCheckpointHook with the inputs users bring, and a start that follows the model.

Inputs it cannot hold turn the default ("auto") off with the reason, or fail clearly when
asked for explicitly; a finite input that ended starts again; an input checkpoint of another
step than the model's is not restored; no save at the start; one warning for large saves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import models
import numpy as np
import pytest
import zoo
from test_pipeline import (
    Recorder,
    collect,
    ids_estimator,
    ids_input_fn,
    model_steps,
    reference,
)

import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.hooks.pipeline import PipelineCheckpointHook
from nbhooks.stores.pipeline_files import PipelineCheckpointError
from nbhooks.views.checkpoints import PipelineCheckpointPanel


def numpy_fn() -> Any:
    x, y = models.make_data(64)
    return tf().compat.v1.estimator.inputs.numpy_input_fn(
        {"x": x}, y, batch_size=8, num_epochs=None, shuffle=False
    )


def tensors_fn() -> Any:
    x, y = models.make_data(64)
    return lambda: ({"x": tf().constant(x)}, tf().constant(y))


def generator_fn() -> Any:
    t = tf()
    x, y = models.make_data(64)
    signature = ({"x": t.TensorSpec((4,), t.float32)}, t.TensorSpec((), t.int32))

    def fn():
        rows = lambda: (({"x": a}, b) for a, b in zip(x, y, strict=True))  # noqa: E731
        return t.data.Dataset.from_generator(rows, output_signature=signature).batch(8).repeat()

    return fn


def stateful_fn() -> Any:
    t = tf()

    def fn():
        x, y = models.make_data(64)
        ds = t.data.Dataset.from_tensor_slices(({"x": x}, y))
        ds = ds.map(lambda f, label: ({"x": f["x"] + t.random.uniform([4])}, label))
        return ds.batch(8).repeat()

    return fn


UNSUPPORTED: dict[str, tuple[Callable[[], Any], str]] = {
    "numpy_input_fn": (numpy_fn, "queue runners (numpy_input_fn or pandas_input_fn)"),
    "tensors": (tensors_fn, "returns tensors, not a tf.data.Dataset"),
    "from_generator": (generator_fn, "GeneratorDataset does not support checkpointing"),
    "stateful map": (stateful_fn, "RandomUniform is stateful"),
}


def global_step(est: Any) -> int:
    return int(est.get_variable_value("global_step"))


# -- 1. inputs it cannot hold -------------------------------------------------------------------
@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_the_default_turns_itself_off_on_inputs_it_cannot_hold_and_says_why(model_dir, name):
    make, cause = UNSUPPORTED[name]
    est = models.make_estimator(model_dir, save_checkpoints_steps=2)
    hook = PipelineCheckpointHook(est, unsupported="off")
    events = collect(hook)
    est.train(make(), hooks=[hook], steps=3)
    assert global_step(est) == 3  # trained as without the hook
    off = [e for e in events if e.action == "off"]
    assert len(off) == 1 and cause in (off[0].message or "")
    assert hook.status.startswith("pipeline checkpoints off: ") and cause in hook.status
    assert hook.checkpoints.empty and not list(model_dir.glob("input*"))
    panel = PipelineCheckpointPanel(hook)  # shown after the event: the status says it alike
    assert cause in panel.status.value and "⚠ pipeline checkpoints off" in panel.status.value
    panel.on_events(events)
    assert "⚠ pipeline checkpoints off" in panel.status.value
    panel.close()


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def test_asked_for_explicitly_they_fail_before_the_session_naming_cause_and_fix(model_dir, name):
    make, cause = UNSUPPORTED[name]
    est = models.make_estimator(model_dir, save_checkpoints_steps=2)
    with pytest.raises(PipelineCheckpointError) as info:
        est.train(make(), hooks=[PipelineCheckpointHook(est)], steps=3)
    message = str(info.value)
    assert cause in message and "Fix:" in message and "pipeline_checkpoints=False" in message
    assert model_steps(model_dir) == []  # refused in begin(): no session, no checkpoint


def test_a_distribution_strategy_is_refused_at_once_or_turned_off(tmp_path):
    t = tf()
    strategy = t.distribute.MirroredStrategy(["/cpu:0"])
    est = models.make_estimator(
        tmp_path / "model", save_checkpoints_steps=2, train_distribute=strategy
    )
    with pytest.raises(PipelineCheckpointError, match=r"train_distribute.*GeneratorDataset"):
        PipelineCheckpointHook(est)
    assert not (tmp_path / "model").exists()  # before anything was made
    with pytest.raises(PipelineCheckpointError, match="train_distribute"):
        nh.Dashboard(est, models.input_fn(), pipeline_checkpoints=True)

    dash = nh.Dashboard(est, models.input_fn(), steps=3)  # the default: "auto"
    try:
        dash.train()
        assert dash.wait(120) == "finished"
        assert "pipeline checkpoints off: the estimator trains with a distribution strategy" in (
            dash.pipeline.status
        )
        assert global_step(est) == 3
    finally:
        dash.close()


def test_the_dashboard_default_trains_numpy_input_and_true_fails_clearly(tmp_path):
    est = models.make_estimator(tmp_path / "a", save_checkpoints_steps=2)
    dash = nh.Dashboard(est, numpy_fn(), steps=3)
    try:
        dash.train()
        assert dash.wait(120) == "finished"
        assert "queue runners" in dash.pipeline.status
    finally:
        dash.close()
    est = models.make_estimator(tmp_path / "b", save_checkpoints_steps=2)
    dash = nh.Dashboard(est, numpy_fn(), steps=3, pipeline_checkpoints=True)
    try:
        dash.train()
        with pytest.raises(PipelineCheckpointError, match="queue runners"):
            dash.wait(120)
    finally:
        dash.close()
    with pytest.raises(TypeError, match="'auto'"):
        nh.Dashboard(est, numpy_fn(), pipeline_checkpoints="yes")


# -- 2. a finite input that ended ---------------------------------------------------------------
def test_a_second_train_on_a_finite_input_trains_as_bare_estimator_train(tmp_path):
    finite = models.input_fn(n=40, batch=4, repeat=False)  # 10 batches
    bare = models.make_estimator(tmp_path / "bare", save_checkpoints_steps=4)
    bare.train(finite)
    bare.train(finite)
    est = models.make_estimator(tmp_path / "hooked", save_checkpoints_steps=4)
    hook = PipelineCheckpointHook(est)
    est.train(finite, hooks=[hook])
    first = hook.store.latest()
    assert first is not None and first.step == 10 and hook.store.ended(first)
    events = collect(hook)
    est.train(finite, hooks=[hook])
    assert global_step(est) == global_step(bare) == 20
    notes = [e for e in events if e.action == "warning"]
    assert len(notes) == 1 and "at the end of the input: it starts again" in notes[0].message
    np.testing.assert_array_equal(
        est.get_variable_value("dense/kernel"), bare.get_variable_value("dense/kernel")
    )
    latest = hook.store.latest()
    assert latest is not None and latest.step == 20 and hook.store.ended(latest)


def test_restoring_an_ended_position_mid_run_starts_the_input_again(tmp_path):
    finite = models.input_fn(n=40, batch=4, repeat=False)
    est = models.make_estimator(tmp_path / "m", save_checkpoints_steps=4)
    hook = PipelineCheckpointHook(est)
    est.train(finite, hooks=[hook])  # 10 steps: input.ckpt-10 is at the end
    hook.restore(8).wait(0)  # not ended: 2 batches left
    est.train(finite, hooks=[hook])
    assert global_step(est) == 12
    handles: list[Any] = []

    class RestoreEnded(tf().estimator.SessionRunHook):
        def after_run(self, run_context, run_values):
            if not handles:
                handles.append(hook.restore(12))

    est.train(finite, hooks=[RestoreEnded(), hook])
    assert handles[0].wait(0).step == 12
    assert "input.ckpt-12 is at the end of the input: it starts again" in hook.status
    assert global_step(est) == 12 + 1 + 10  # one step, then the whole input again


# -- 3. an input checkpoint of another step than the model's ------------------------------------
def test_a_fresh_model_does_not_resume_a_pipeline_that_ran_ahead(model_dir):
    est = ids_estimator(model_dir, every=5)
    est.train(ids_input_fn(), hooks=[PipelineCheckpointHook(est)], steps=10)
    for f in [*model_dir.glob("model.ckpt-*"), model_dir / "checkpoint"]:
        f.unlink()
    hook = PipelineCheckpointHook(est)
    events = collect(hook)
    rec = Recorder()
    est.train(ids_input_fn(), hooks=[rec, hook], steps=3)
    assert rec.steps == [1, 2, 3]
    assert rec.batches == ids_batches(3)  # from the beginning, as the fresh model needs
    warnings = [e.message or "" for e in events if e.action == "warning"]
    assert len(warnings) == 1
    assert "input.ckpt-10 is of step 10 but the model resumes at step 0" in warnings[0]
    assert "input starts from the beginning" in hook.status


def test_a_model_trained_on_without_the_hook_starts_the_input_afresh(model_dir):
    est = ids_estimator(model_dir, every=5)
    est.train(ids_input_fn(), hooks=[PipelineCheckpointHook(est)], steps=5)
    est.train(ids_input_fn(), steps=7)  # no pipeline hook: model at 12, input at 5
    hook = PipelineCheckpointHook(est)
    events = collect(hook)
    rec = Recorder()
    est.train(ids_input_fn(), hooks=[rec, hook], steps=2)
    assert rec.steps == [13, 14] and rec.batches == ids_batches(2)
    assert [e.action for e in events if e.action in {"warning", "restored"}] == ["warning"]


def ids_batches(n: int) -> list[list[int]]:
    from test_pipeline import reference

    return reference(n)


# -- 8. nothing saved at the start; large saves said once ---------------------------------------
def test_no_save_at_the_start_and_a_crash_before_the_first_save_restarts_the_input(model_dir):
    est = ids_estimator(model_dir, every=5)
    hook = PipelineCheckpointHook(est)
    with pytest.raises(RuntimeError, match="simulated crash"):
        est.train(ids_input_fn(), hooks=[Recorder(crash_at=3), hook], steps=10)
    assert not list(model_dir.glob("input*")) and hook.store.state_path() is None
    rec = Recorder()
    est.train(ids_input_fn(), hooks=[rec, hook], steps=2)
    assert rec.steps == [1, 2] and rec.batches == ids_batches(2)  # model and input afresh


def test_a_save_larger_than_10_mb_is_said_once_with_the_fix(model_dir):
    t = tf()
    rows = 12_000  # x 1 KB of (incompressible) padding: a 12 MB shuffle buffer

    def row(i):
        f = t.cast(i, t.float32)
        pad = t.sin(t.cast(t.range(256), t.float32) * (f + 1.0))
        return {"x": t.fill([models.N_FEATURES], f), "pad": pad}, t.cast(i % 2, t.int32)

    def big_buffer():
        ds = t.data.Dataset.range(rows).map(row)
        return ds.shuffle(rows, seed=1).batch(4).repeat()

    est = models.make_estimator(model_dir, save_checkpoints_steps=2)
    hook = PipelineCheckpointHook(est)
    events = collect(hook)
    est.train(big_buffer, hooks=[hook], steps=4)
    assert hook.checkpoints.step.tolist() == [2, 4]
    assert (hook.checkpoints.size_bytes > 10_000_000).all()
    warnings = [e.message or "" for e in events if e.action == "warning"]
    assert len(warnings) == 1
    assert "smaller shuffle buffer" in warnings[0] and "pipeline_checkpoints=False" in warnings[0]
    panel = PipelineCheckpointPanel(hook)  # the panel says it, with the fix
    panel.on_events(events)
    assert "⚠ each pipeline checkpoint writes" in panel.status.value
    assert "smaller shuffle buffer" in panel.status.value
    panel.close()


# -- every estimator of the compatibility zoo -----------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("case", zoo.CASES, ids=[c.id for c in zoo.CASES])
def test_the_dashboard_default_trains_every_estimator_of_the_zoo(case, model_dir):
    """Pipeline checkpoints on by default: saved and resumed, or off with the reason."""
    est, train_fn, _ = case.make(model_dir)
    dash = nh.Dashboard(est, train_fn, steps=zoo.EVERY)
    try:
        for _ in range(2):
            dash.train()
            assert dash.wait(180) == "finished"
        hook = dash.pipeline
        assert dash.run.global_step == 2 * zoo.EVERY
        if hook.off is None:
            assert hook.checkpoints.step.tolist() == [zoo.EVERY, 2 * zoo.EVERY]
            assert hook.status == f"resumed pipeline at step {zoo.EVERY}"
        else:
            assert hook.status.startswith("pipeline checkpoints off: ")
            assert hook.checkpoints.empty
    finally:
        dash.close()


# -- a price only when asked (the Dashboard's default) --------------------------------------------
def test_automatic_saves_of_a_costly_buffer_wait_for_a_persons_first_save(model_dir):
    """Each save estimated over ``automatic_limit``: none until a person saves (said once, with
    the fix), then at every model checkpoint on the model's steps; the input is untouched."""
    ref = reference(20)
    est = ids_estimator(model_dir)  # model checkpoints every 5 steps
    hook = PipelineCheckpointHook(est, automatic_limit=1000)  # the buffer: 7 x ~250 bytes
    events = collect(hook)
    handles: dict[str, Any] = {}
    rec = Recorder({7: lambda: handles.setdefault("save", hook.save())})
    est.train(ids_input_fn(), hooks=[rec, hook], steps=12)
    assert rec.batches == ref[:12]
    warnings = [e.message or "" for e in events if e.action == "warning"]
    assert len(warnings) == 1 and "automatic input checkpoints paused" in warnings[0]
    assert "Press Save" in warnings[0] and "pipeline_checkpoints=True" in warnings[0]
    assert handles["save"].wait(0).step == 7
    frame = hook.checkpoints
    assert frame[frame.kind == "manual"].step.tolist() == [7]
    assert frame[frame.kind == "auto"].step.tolist() == [10, 12]  # none at 5: paused then
    assert {10, 12} <= set(model_steps(model_dir)) and hook.paused is None
    saved = [e.message or "" for e in events if e.action == "saved" and e.step == 7]
    assert saved[0].endswith("automatic saves on from now")
    rec = Recorder()
    est.train(ids_input_fn(), hooks=[rec, hook], steps=3)  # resumes where it stopped
    assert rec.batches == ref[12:15] and hook.paused is None
    assert [e.action for e in events].count("warning") == 1


def test_the_dashboard_pays_no_costly_save_nobody_asked_for(model_dir):
    """Dashboard default ("auto"): a 6000-row shuffle (~1.6 MB a save) is not saved and the
    panel says why; pipeline_checkpoints=True saves it; an idle Save turns saves on."""
    train_fn = models.input_fn(n=6000, shuffle=True)
    dash = nh.Dashboard(models.make_estimator(model_dir, save_checkpoints_steps=5), train_fn)
    try:
        panel = dash.widget and dash._views["pipeline"]
        dash.train(steps=6)
        assert dash.wait(timeout=120) == "finished"
        assert dash.pipeline.checkpoints.empty and 6 in model_steps(model_dir)
        assert "⚠ automatic input checkpoints paused: each would write about 1.6 MB" in (
            panel.status.value
        )
        late = PipelineCheckpointPanel(dash.pipeline)  # shown after the warning was sent
        assert "⚠ automatic input checkpoints paused" in late.status.value
        late.close()
        with pytest.raises(PipelineCheckpointError, match="on from the next train"):
            dash.pipeline.save().wait(10)
        dash.train(steps=4)
        assert dash.wait(timeout=120) == "finished"
        assert dash.pipeline.checkpoints.step.tolist() == [10]
    finally:
        dash.close()
    other = model_dir / "forced"
    est = models.make_estimator(other, save_checkpoints_steps=5)
    forced = nh.Dashboard(est, train_fn, pipeline_checkpoints=True)
    try:
        forced.train(steps=6)
        assert forced.wait(timeout=120) == "finished"
        assert forced.pipeline.checkpoints.step.tolist() == [5, 6]
        assert forced.pipeline.paused is None
    finally:
        forced.close()
