"""Fault injection: kill -9 during saves, a full disk, corrupt and missing files.

After each fault nothing is lost: every listed pipeline checkpoint is readable, the state
file names a complete one, and the next start resumes exactly where the model resumes (the
batches read are those an uninterrupted run reads from the model's step).

    .venv/bin/python -m pytest -m faults tests/test_faults.py
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from test_pipeline import Recorder, collect, ids_estimator, ids_input_fn, model_steps, reference

from nbhooks.hooks.pipeline import PipelineCheckpointHook, _read_all
from nbhooks.stores.pipeline_files import STATE_FILE, PipelineCheckpointError, PipelineStore

pytestmark = [pytest.mark.faults, pytest.mark.slow]

HERE = Path(__file__).parent
PARAMS: dict[str, Any] = {"n": 300, "buffer": 300, "batch": 4, "seed": 11}


@pytest.fixture(scope="module")
def ref() -> list[list[int]]:
    return reference(1500, **PARAMS)  # the trials train a few hundred steps in all


def assert_nothing_lost(model_dir: Path) -> PipelineStore:
    """Every listed checkpoint reads back; the state file names a complete one."""
    store = PipelineStore(model_dir)
    for checkpoint in store.list():
        _read_all(checkpoint.path)  # raises on a partial or corrupt checkpoint
    target = store.state_path()
    if target is not None:
        latest = store.latest()
        assert latest is not None, f"the state file names {target}, which is not complete"
    return store


def resume_and_check(model_dir: Path, ref: list[list[int]], steps: int = 3) -> Recorder:
    """Train ``steps`` more in this process: the batches follow the model's step exactly."""
    est = ids_estimator(model_dir, every=1)
    rec = Recorder()
    est.train(ids_input_fn(**PARAMS), hooks=[rec, PipelineCheckpointHook(est)], steps=steps)
    start = rec.steps[0] - 1
    assert rec.batches == ref[start : start + steps]
    return rec


# -- kill -9 -----------------------------------------------------------------------------------
TRAINER = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = [{tests!r}]
    from pathlib import Path
    from test_pipeline import ids_estimator, ids_input_fn, Recorder
    from nbhooks.hooks.pipeline import PipelineCheckpointHook

    est = ids_estimator(Path({model_dir!r}), every=1)
    hook = PipelineCheckpointHook(est, keep=3)
    rec = Recorder()

    def started() -> None:
        print(json.dumps({{"step": rec.steps[0], "ids": rec.batches[0]}}), flush=True)

    class Every(Recorder):
        def after_run(self, run_context, run_values):
            super().after_run(run_context, run_values)
            if len(self.steps) == 1:
                started()
            if self.steps[-1] % 3 == 0:
                hook.save()  # manual saves too, at the next step boundary

    rec = Every()
    est.train(ids_input_fn(**{params!r}), hooks=[rec, hook], steps=1_000_000)
    """
)


def test_kill_9_during_saves_loses_nothing_and_resumes_exactly(model_dir, ref):
    rng = random.Random(20261202)
    script = TRAINER.format(tests=str(HERE), model_dir=str(model_dir), params=PARAMS)
    resumed_at: list[int] = []
    for _trial in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=HERE
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line, f"the trainer died before its first step (rc {proc.poll()})"
            first = json.loads(line)
            time.sleep(rng.uniform(0.05, 1.0))  # the fault: SIGKILL at a random moment
        finally:
            proc.kill()
            proc.wait()
        # the first batch of every resumed run is the one after the model's step
        assert first["ids"] == ref[first["step"] - 1]
        resumed_at.append(first["step"])
        assert_nothing_lost(model_dir)
    assert resumed_at == sorted(resumed_at) and resumed_at[-1] > resumed_at[0]
    rec = resume_and_check(model_dir, ref)
    assert rec.steps[0] - 1 == model_steps(model_dir)[-4]  # resumed at the model's step
    assert PipelineStore(model_dir).leftovers() == []  # killed saves' files: cleaned


def test_an_index_cut_short_by_a_kill_is_never_listed_and_is_cleaned(model_dir, ref):
    """TensorFlow writes a checkpoint's ``.index`` last but in place: a save killed meanwhile
    leaves it cut short. Such a checkpoint is not listed (nor offered, nor restored); the next
    start removes its files and resumes exactly."""
    est = trained(model_dir)
    for src in model_dir.glob("input.ckpt-6.*"):  # a manual save of step 7, killed mid-index
        dst = model_dir / src.name.replace("input.ckpt-6", "input.manual.ckpt-7")
        content = src.read_bytes()
        dst.write_bytes(content[: len(content) // 2] if src.suffix == ".index" else content)
    hook = PipelineCheckpointHook(est)
    assert [c.step for c in PipelineStore(model_dir).list()] == [2, 4, 6]
    assert hook.checkpoints.step.tolist() == [2, 4, 6]
    assert [p.name for p in PipelineStore(model_dir).leftovers()] == [
        "input.manual.ckpt-7.data-00000-of-00001",
        "input.manual.ckpt-7.index",
    ]
    rec = Recorder()
    est.train(ids_input_fn(**PARAMS), hooks=[rec, hook], steps=2)
    assert rec.batches == ref[6:8]
    assert not list(model_dir.glob("input.manual.ckpt-7.*"))


# -- a full disk -------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmpfs):
    """An 8 MB tmpfs (root only), unmounted afterwards."""
    return tmpfs("size=8m")


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` with a ballast file, then free ``leave`` bytes of it."""
    ballast = disk / "ballast"
    with open(ballast, "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    os.truncate(ballast, max(ballast.stat().st_size - leave, 0))
    return ballast


def test_a_full_disk_fails_clearly_and_loses_nothing(small_disk, ref):
    model_dir = small_disk / "model"
    est = ids_estimator(model_dir, every=1)
    hook = PipelineCheckpointHook(est, keep=2)
    est.train(ids_input_fn(**PARAMS), hooks=[hook], steps=3)
    ballast = fill(small_disk, leave=120_000)  # room for a few saves, then none
    with pytest.raises(Exception, match=r"(?i)space|resource|write|fail") as info:
        est.train(ids_input_fn(**PARAMS), hooks=[hook], steps=500)
    assert "No space left on device" in str(info.value) or "space" in str(info.value).lower()
    store = assert_nothing_lost(model_dir)
    assert store.latest() is not None

    fill(small_disk, leave=0)  # now nothing fits: a pin must fail cleanly
    before = sorted(p.name for p in model_dir.iterdir())
    with pytest.raises(PipelineCheckpointError, match=r"pipeline save failed.*space"):
        hook.save().wait(0)
    after = sorted(p.name for p in model_dir.iterdir())
    assert after == before  # no temporary, no half-copied checkpoint
    assert_nothing_lost(model_dir)

    ballast.unlink()
    resume_and_check(model_dir, ref)
    assert PipelineStore(model_dir).leftovers() == []


# -- corrupt and missing files -----------------------------------------------------------------
def trained(model_dir: Path, steps: int = 6) -> Any:
    est = ids_estimator(model_dir, every=2)
    est.train(ids_input_fn(**PARAMS), hooks=[PipelineCheckpointHook(est)], steps=steps)
    return est


def test_a_corrupt_latest_is_refused_before_a_step_and_an_earlier_one_resumes(model_dir, ref):
    est = trained(model_dir)
    data = next(model_dir.glob("input.ckpt-6.data-*"))
    data.write_bytes(data.read_bytes()[:7])
    hook = PipelineCheckpointHook(est)
    rec = Recorder()
    with pytest.raises(PipelineCheckpointError, match=r"input\.ckpt-6 cannot be read.*delete"):
        est.train(ids_input_fn(**PARAMS), hooks=[rec, hook], steps=2)
    assert rec.batches == [] and model_steps(model_dir)[-1] == 6
    assert hook.restore(4).wait(0).step == 4  # chosen by a person: resumed exactly there
    est.train(ids_input_fn(**PARAMS), hooks=[rec, hook], steps=2)
    assert rec.batches == ref[4:6]


def test_a_garbled_state_file_starts_the_input_afresh_with_a_warning(model_dir, ref):
    est = trained(model_dir)
    (model_dir / STATE_FILE).write_text("\0\0garbage")
    hook = PipelineCheckpointHook(est)
    events = collect(hook)
    rec = Recorder()
    est.train(ids_input_fn(**PARAMS), hooks=[rec, hook], steps=2)
    assert rec.batches == ref[:2]  # from the beginning, not silently from somewhere
    warnings = [e for e in events if e.action == "warning"]
    assert len(warnings) == 1 and "checkpoint_input" in (warnings[0].message or "")


def test_leftovers_of_killed_saves_are_cleaned_at_the_next_start(model_dir, ref):
    est = trained(model_dir)
    shard = model_dir / "input.ckpt-98_temp"
    shard.mkdir()
    (shard / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x" * 100)
    (model_dir / "input.ckpt-9.data-00000-of-00001").write_bytes(b"x" * 100)
    (model_dir / "input.manual.ckpt-3.index.tmp").write_bytes(b"x")
    model_temp = model_dir / "model.ckpt-99_temp"  # the model's own: not ours to remove
    model_temp.mkdir()
    rec = Recorder()
    est.train(ids_input_fn(**PARAMS), hooks=[rec, PipelineCheckpointHook(est)], steps=2)
    assert rec.batches == ref[6:8]
    assert PipelineStore(model_dir).leftovers() == []
    assert not shard.exists() and model_temp.exists()
    shutil.rmtree(model_temp)
