"""One training process per model_dir: a second process (a notebook opened twice, a script
beside a notebook) is refused before it writes anything, and a killed holder frees it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import harness
import models
import pytest

import nbhooks as nh
from nbhooks.dirlock import LOCK_FILE
from nbhooks.rewind import checkpoint_step
from nbhooks.run import TrainingRun

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent

CHILD = textwrap.dedent(
    """
    import sys, models
    from nbhooks.hooks.pace import PaceHook
    from nbhooks.run import TrainingRun
    estimator = models.make_estimator(sys.argv[1], save_checkpoints_steps=20)
    run = TrainingRun(estimator, models.input_fn(), steps=1_000_000,
                      hooks=[PaceHook(100)], report=None)
    run.start()
    run.wait()
    """
)


def holder(model_dir: Path) -> dict:
    try:
        return json.loads((model_dir / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def test_a_second_process_is_refused_until_the_first_is_gone(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(model_dir)], env=env)
    try:
        harness.poll(
            lambda: holder(model_dir).get("pid") == child.pid and checkpoint_step(str(model_dir)),
            120,
            "the other process to train and save a checkpoint",
        )
        busy = r"is training there, since .*Two processes on one model_dir overwrite"
        who = rf"a Python process \(pid {child.pid} on .+\)"

        dash = nh.Dashboard(models.make_estimator(model_dir), models.input_fn(), steps=5)
        first = checkpoint_step(str(model_dir))
        with pytest.raises(RuntimeError, match=rf"cannot rewind in {model_dir}: {who}"):
            dash.rewind(first)
        dash.close()

        run = TrainingRun(models.make_estimator(model_dir), models.input_fn(), steps=5, report=None)
        with pytest.raises(RuntimeError, match=rf"cannot train in {model_dir}: {who} {busy}"):
            run.start()
        assert run.state == "idle" and run.wait(timeout=1) == "idle"  # nothing half-started

        cluster = models.small_cluster(models.estimator_with, model_dir)
        with pytest.raises(RuntimeError, match=rf"cannot train in {model_dir}: {who}"):
            cluster.start()
        assert cluster.state == "idle"  # no process launched
        cluster.stop()

        child.send_signal(signal.SIGKILL)  # no clean stop: the OS frees the lock
        child.wait(30)
        step = checkpoint_step(str(model_dir))
        run.start()
        assert run.wait(timeout=120) == "finished"
        assert run.global_step == step + 5
        assert holder(model_dir)["pid"] == os.getpid()  # the last holder, now released
        run.start(steps=1)  # released at the end: this run may train again
        run.wait(timeout=120)
        run.close()
    finally:
        child.kill()
        child.wait(30)


def test_one_process_keeps_one_run_per_model_dir_without_refusing_itself(tmp_path: Path) -> None:
    """A newer run on the model_dir retires the older one in this process (as before the
    lock), and takes the lock the older one gives back when it stops."""
    model_dir = tmp_path / "model"
    older = TrainingRun(
        models.make_estimator(model_dir), models.input_fn(), steps=10**6, report=None
    )
    older.start()
    harness.poll(lambda: older.global_step > 0, 60, "the older run to train")
    with pytest.warns(nh.NbhooksWarning, match="stopping the earlier run"):
        newer = TrainingRun(
            models.make_estimator(model_dir), models.input_fn(), steps=3, report=None
        )
    assert older.state == "stopped"
    newer.start()
    assert newer.wait(timeout=120) == "finished"
    newer.close()


def test_a_local_cluster_is_refused_a_model_dir_this_process_trains(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    run = TrainingRun(models.make_estimator(model_dir), models.input_fn(), steps=10**6, report=None)
    run.start()
    try:
        harness.poll(lambda: run.global_step > 0, 60, "the run to train")
        cluster = models.small_cluster(models.estimator_with, model_dir)
        with pytest.raises(
            RuntimeError,
            match=rf"cannot train in {model_dir}: another run in this process is training there",
        ):
            cluster.start()
        assert cluster.state == "idle" and run.state == "running"
    finally:
        run.close()
