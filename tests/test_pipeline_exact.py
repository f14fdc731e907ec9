"""The exactness promise, as a property over random pipelines and save/restore/crash points.

With shuffle(seed), map, batch and repeat (real TensorFlow), the batches read after a
save and a restore, mid-run, across a resume and across a crash, are those an uninterrupted
run reads from the restored position: none lost, none repeated, same order.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_pipeline import Recorder, ids_estimator, ids_input_fn, model_steps, reference

from nbhooks.hooks.pipeline import PipelineCheckpointHook

FIRST_RUN = 9


@st.composite
def scenarios(draw):
    n = draw(st.integers(6, 24))
    params = {
        "n": n,
        "buffer": draw(st.integers(1, n)),
        "batch": draw(st.integers(1, 4)),
        "seed": draw(st.integers(0, 2**16)),
    }
    save_at = draw(st.integers(1, FIRST_RUN - 2))
    restore_at = draw(st.integers(save_at + 1, FIRST_RUN - 1))
    return {
        "params": params,
        "every": draw(st.integers(2, 4)),
        "save_at": save_at,
        "restore_at": restore_at,
        "crash_after": draw(st.integers(1, 6)),
    }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
@example(  # a crash right after a save step: the pipeline catches up with the model
    {
        "params": {"n": 6, "buffer": 1, "batch": 1, "seed": 0},
        "every": 2,
        "save_at": 1,
        "restore_at": 2,
        "crash_after": 2,
    }
)
def test_save_restore_resume_and_crash_read_exactly_what_an_uninterrupted_run_reads(case):
    params, save_at, restore_at = case["params"], case["save_at"], case["restore_at"]
    ref = reference(40, **params)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        est = ids_estimator(model_dir, every=case["every"])
        hook = PipelineCheckpointHook(est)
        saved = {}

        def save() -> None:
            saved["handle"] = hook.save()

        def restore() -> None:
            saved["restore"] = hook.restore(saved["handle"].wait(0).step)

        # 1. mid-run: save after save_at, restore it after restore_at
        first = Recorder({save_at: save, restore_at: restore})
        est.train(ids_input_fn(**params), hooks=[first, hook], steps=FIRST_RUN)
        assert saved["restore"].wait(0).step == save_at
        position = save_at + FIRST_RUN - restore_at  # where the pipeline stands after run 1
        assert first.batches == ref[:restore_at] + ref[save_at:position]

        # 2. resume, then crash (no end(): like a kill)
        crash = FIRST_RUN + case["crash_after"]
        second = Recorder(crash_at=crash)
        try:
            est.train(ids_input_fn(**params), hooks=[second, hook], steps=20)
        except RuntimeError as exc:
            assert "simulated crash" in str(exc)
        assert second.batches == ref[position : position + case["crash_after"]]

        # 3. resume after the crash: model and pipeline from the same step
        # A crash right after the model's save (which runs first) leaves the pipeline's own
        # save at that step undone: the hook then catches up from the one before.
        resumed = model_steps(model_dir)[-1]
        assert resumed - hook.store.latest().step in (0, case["every"])
        third = Recorder()
        est.train(ids_input_fn(**params), hooks=[third, hook], steps=3)
        start = position + resumed - FIRST_RUN
        assert third.steps == [resumed + 1, resumed + 2, resumed + 3]
        assert third.batches == ref[start : start + 3]
