"""Distributed jobs: event files read incrementally, the control file, and a real
parameter-server cluster of processes on 127.0.0.1 watched and stopped by a Monitor."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness
import models
import pipeline_tasks
import psutil
import pytest
from waiting import interrupted_when

from nbhooks._tf import tf
from nbhooks.cluster import TASK_MEMORY, LocalCluster, _task_hooks
from nbhooks.eventfiles import EventDirReader
from nbhooks.hooks.cluster_control import ClusterControlHook
from nbhooks.hooks.pipeline import PipelineCheckpointHook
from nbhooks.jobfiles import Heartbeat, JobFiles
from nbhooks.memory import headroom
from nbhooks.monitor import Monitor
from nbhooks.rewind import checkpoint_step
from nbhooks.units import size
from nbhooks.views.monitor import JobView

pytestmark = pytest.mark.slow
#: Enough steps for both workers to join: Estimator starts worker i (i + 1) * 5 s late.
STEPS = 2000


@pytest.fixture(autouse=True)
def _no_process_left():
    """Fail a test that leaves a process of its own running (earlier ones are not its own)."""
    before = set(harness.live_descendants())
    yield
    left = {pid: cmd for pid, cmd in harness.live_descendants().items() if pid not in before}
    for pid in left:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    assert not left, f"processes left running: {left}"


make_estimator = models.estimator_with  # a task's factory: RunConfig -> Estimator
#: Every task builds the Estimator: a factory that raises fails the chief and the parameter
#: server alike, and the failure names whichever ended first.
EITHER = r"task (chief|ps):0"


def failure(cluster: LocalCluster, timeout: float) -> tuple[str, str]:
    """The first line of the RuntimeError ``cluster.wait(timeout)`` raises, and the rest."""
    with pytest.raises(RuntimeError) as failed:
        cluster.wait(timeout)
    first, _, rest = str(failed.value).partition("\n")
    return first, rest


def write_evals(directory: Path, steps: range, suffix: str = ".a") -> Path:
    """An event file as the Estimator's evaluator writes it; returns its path."""
    t = tf()
    with t.Graph().as_default():
        writer = t.compat.v1.summary.FileWriter(str(directory / "eval"), filename_suffix=suffix)
        for step in steps:
            summary = t.compat.v1.Summary()
            summary.value.add(tag="loss", simple_value=1.0 / (step + 1))
            summary.value.add(tag="accuracy", simple_value=step / 1000)
            writer.add_summary(summary, step)
        writer.close()
    (path,) = (directory / "eval").glob(f"events.out.tfevents.*{suffix}")
    return path


def events_on_disk(eval_dir: str) -> set[tuple[int, str, float]]:
    """Every scalar the evaluator wrote, read with TensorFlow's own summary iterator."""
    found = set()
    for path in tf().io.gfile.glob(f"{eval_dir}/events.out.tfevents.*"):
        for event in tf().compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found.add((event.step, value.tag, round(value.simple_value, 5)))
    return found


def monitor_values(monitor: Monitor) -> set[tuple[int, str, float]]:
    frame = monitor.history
    return {
        (int(r.step), r.metric, round(float(r.value), 5))
        for r in frame.itertuples()
        if r.evaluation == "eval"
    }


# -- event files --------------------------------------------------------------------------
def test_event_files_are_read_incrementally(tmp_path):
    path = write_evals(tmp_path, range(0, 300, 100))
    reader = EventDirReader(str(tmp_path / "eval"))
    first = reader.scalars()
    assert sorted({s.step for s in first}) == [0, 100, 200]
    assert reader.scalars() == []  # nothing new: nothing re-read
    write_evals(tmp_path, range(300, 500, 100), ".b")  # a second file, as after a restart
    assert sorted({s.step for s in reader.scalars()}) == [300, 400]
    assert reader.files[str(path)].offset == path.stat().st_size


def test_a_file_written_anew_under_its_name_is_read_afresh(tmp_path):
    """A job restarted within the same second reuses the event file's name: the new writer
    truncates it and writes more than was there; the reader notices and reads it from 0."""
    first = write_evals(tmp_path / "a", range(0, 200, 100))
    again = write_evals(tmp_path / "b", range(300, 700, 100))
    assert again.stat().st_size > first.stat().st_size
    path = tmp_path / "eval" / "events.out.tfevents.1.same"
    path.parent.mkdir()
    path.write_bytes(first.read_bytes())
    reader = EventDirReader(str(path.parent))
    assert sorted({s.step for s in reader.scalars()}) == [0, 100]
    path.write_bytes(again.read_bytes())  # same name, same inode, longer
    assert sorted({s.step for s in reader.scalars()}) == [300, 400, 500, 600]
    assert reader.scalars() == []


def test_corrupt_and_truncated_event_files_are_skipped_with_a_warning(tmp_path, caplog):
    data = write_evals(tmp_path, range(0, 500, 100)).read_bytes()
    eval_dir = tmp_path / "model" / "eval"
    eval_dir.mkdir(parents=True)
    corrupt = bytearray(data)
    corrupt[len(data) - 30] ^= 0xFF  # in the last record: its checksum fails
    (eval_dir / "events.out.tfevents.1.corrupt").write_bytes(bytes(corrupt))
    # a writer that died mid-record: the file ends in an incomplete record
    (eval_dir / "events.out.tfevents.2.truncated").write_bytes(data[: len(data) - 25])
    with caplog.at_level(logging.WARNING, logger="nbhooks"):
        monitor = Monitor(tmp_path / "model", start=False, truncated_after=2)
        assert len(monitor.warnings) == 1 and "corrupt" in monitor.warnings[0]
        # the record may still be being written: not skipped before truncated_after
        harness.poll(
            lambda: monitor.poll() and len(monitor.warnings) == 2, 10, "the truncated file"
        )
    assert "truncated" in monitor.warnings[1]
    assert sum("nbhooks: event file" in r.getMessage() for r in caplog.records) == 2
    # every complete record before the bad ones was read
    assert sorted(monitor.history.step.unique()) == [0, 100, 200, 300]
    monitor.poll()
    assert len(monitor.warnings) == 2  # one warning per file
    monitor.close()


# -- the control file ---------------------------------------------------------------------
def train_with_hook(model_dir: Path, steps: int, **hook_options) -> tuple[threading.Thread, list]:
    """Train in a thread with a ClusterControlHook; returns the thread and a result list."""
    estimator = models.make_estimator(model_dir)
    hook = ClusterControlHook(estimator.model_dir, check_secs=0.05, **hook_options)
    result: list = []

    def train() -> None:
        try:
            estimator.train(models.input_fn(), max_steps=steps, hooks=[hook])
            result.append(int(estimator.get_variable_value("global_step")))
        except BaseException as exc:  # reported by the test
            result.append(exc)

    thread = threading.Thread(target=train, name="test-train")
    thread.start()
    return thread, result


def test_stale_or_unreadable_control_files_never_stop_a_job(tmp_path):
    model_dir = tmp_path / "model"
    files = JobFiles(model_dir)
    files.request("stop", now=time.time() - 60)  # from an earlier job
    thread, result = train_with_hook(model_dir, 300)
    thread.join(120)
    assert result == [300]
    Path(files.control_path).write_text("{not json")
    thread, result = train_with_hook(model_dir, 500)
    thread.join(120)
    assert result == [500]
    Path(files.control_path).write_text(json.dumps({"action": "explode", "time": 1e12, "id": 1}))
    thread, result = train_with_hook(model_dir, 600)
    thread.join(120)
    assert result == [600]


def test_pause_resume_and_stop_from_a_monitor(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    with Monitor(model_dir, interval=0.1) as monitor:
        thread, result = train_with_hook(model_dir, 1_000_000, heartbeat_secs=0.1)
        files = JobFiles(model_dir)

        def beat_step() -> int:
            beats = files.read_heartbeats()
            return (beats[0].step or 0) if beats else 0

        harness.poll(lambda: beat_step() > 50, 60, "the heartbeat to report training")
        step = beat_step()
        harness.poll(lambda: beat_step() > step, 10, "the heartbeat to follow the global step")
        monitor.pause()
        harness.poll(lambda: monitor.tasks.state.tolist() == ["paused"], 10, "the pause")
        held = monitor.tasks.step.iloc[0]
        polls = monitor.polls
        harness.poll(lambda: monitor.polls >= polls + 5, 10, "five polls while paused")
        assert monitor.tasks.step.iloc[0] == held
        monitor.resume()
        harness.poll(lambda: monitor.tasks.step.iloc[0] > held, 10, "the resume")
        monitor.stop()
        thread.join(60)
        assert not thread.is_alive()
        assert isinstance(result[0], int) and result[0] < 1_000_000
        monitor.poll()
        assert monitor.tasks.state.tolist() == ["ended"]
        assert monitor.checkpoints.step.max() == result[0]  # the chief's last checkpoint


def test_a_checkpoint_unreadable_at_one_poll_is_listed_at_the_next(tmp_path):
    """The chief's last save: its state file lists the checkpoint before every file is in
    place (TensorFlow renames its .meta in after it), and then never changes again. Before: a
    poll that caught it half-written kept the list without it for good."""
    model_dir = tmp_path / "model"
    models.make_estimator(model_dir).train(models.input_fn(), max_steps=20)
    last = sorted(model_dir.glob("model.ckpt-20.*"))
    aside = tmp_path / "aside"
    aside.mkdir()
    for part in last:  # listed by the state file, its files not (yet) there
        part.rename(aside / part.name)
    with Monitor(model_dir, start=False) as monitor:
        assert monitor.checkpoints.step.tolist() == [0]  # not shown as 0 bytes
        for part in last:  # in place now; the state file untouched
            (aside / part.name).rename(part)
        monitor.poll()
        listed = monitor.checkpoints.set_index("step")
        assert listed.loc[20, "size_bytes"] == sum(part.stat().st_size for part in last)


def test_a_request_no_task_would_read_is_refused_before_it_is_written(tmp_path):
    model_dir = tmp_path / "model"
    models.make_estimator(model_dir).train(models.input_fn(), max_steps=20)  # no hook
    control = Path(JobFiles(model_dir).control_path)
    with Monitor(model_dir, start=False) as monitor:
        for action in ("stop", "pause", "resume"):
            with pytest.raises(RuntimeError, match=f"cannot {action} this job: no training task"):
                getattr(monitor, action)()
        assert not control.exists() and monitor.request is None
        view = JobView(monitor)  # a click shows the refusal in the panel
        view.buttons["stop"].click()
        assert "ClusterControlHook" in view.message.value and not control.exists()
        thread, result = train_with_hook(model_dir, 40)  # the job again, with the hook
        thread.join(120)
        assert result == [40]
        with pytest.raises(RuntimeError, match="it has ended at step 40"):
            monitor.stop()
        view.buttons["pause"].click()
        assert "it has ended at step 40" in view.message.value and not control.exists()
        view.close()


# -- a real cluster -----------------------------------------------------------------------
def test_a_cluster_runs_to_the_end_and_the_monitor_sees_every_evaluation(tmp_path):
    # TF starts worker i (i + 1) * 5 s late (and must: workers started in the same second as
    # the chief write event files of the same name): the job outlasts that on a quiet machine.
    steps = 3 * STEPS
    cluster = LocalCluster(
        make_estimator,
        models.input_fn(),
        models.input_fn(n=256, repeat=False, seed=1),
        steps=steps,
        workers=2,
        ps=1,
        model_dir=tmp_path / "job",
        throttle_secs=1,
        save_checkpoints_steps=steps // 5,
    )
    try:
        cluster.start()
        monitor = cluster.monitor(interval=0.2)
        seen: set[int | None] = set()

        def ended() -> bool:
            seen.add(monitor.global_step)
            return cluster.state != "running"

        harness.poll(ended, 150, "the job to end")
        assert len(seen) > 3  # progress was seen live, not only at the end
        assert cluster.wait(0) == "finished"
        monitor.poll()
        assert set(monitor.tasks.task) == {"chief:0", "worker:0", "worker:1", "evaluator:0"}
        assert monitor.tasks.set_index("task").state["chief:0"] == "ended"
        assert monitor.global_step >= steps
        assert all(monitor.tasks.step > 0), monitor.tasks  # the workers trained too
        on_disk = events_on_disk(f"{cluster.model_dir}/eval")
        assert on_disk and monitor_values(monitor) == on_disk
        assert monitor.history.step.max() >= steps  # the final evaluation
        assert monitor.checkpoints.step.max() >= steps
        assert {"ps:0": -signal.SIGTERM}.items() <= cluster.returncodes.items()
        assert cluster.returncodes["chief:0"] == 0 and cluster.returncodes["evaluator:0"] == 0
        assert "Traceback" not in cluster.logs("chief")
        assert monitor.warnings == []  # no task said lost at the job's normal end
    finally:
        cluster.stop()
    assert not monitor.running


def test_a_killed_worker_shows_and_stop_from_the_monitor_ends_the_job(tmp_path):
    cluster = LocalCluster(
        make_estimator,
        models.input_fn(),
        models.input_fn(n=256, repeat=False, seed=1),
        steps=10_000_000,
        workers=2,
        ps=1,
        model_dir=tmp_path / "job",
        throttle_secs=1,
        save_checkpoints_secs=3,
        keep_checkpoint_max=20,
    )
    try:
        cluster.start()
        monitor = cluster.monitor(interval=0.2, lost_after=3)

        def row(task: str):
            tasks = monitor.tasks.set_index("task")
            return tasks.loc[task] if task in tasks.index else None

        harness.poll(
            lambda: (r := row("worker:0")) is not None and r.state == "running",
            120,
            "worker 0 to train",
        )
        harness.poll(lambda: len(monitor.history) >= 4, 120, "two evaluations")
        os.kill(cluster.pids["worker:0"], signal.SIGKILL)
        harness.poll(
            lambda: row("worker:0").state == "silent", 20, "the killed worker to go silent"
        )
        # A poll in flight moves the step before it counts itself: wait for the step and for
        # a poll begun after this read.
        step, polls = monitor.global_step, monitor.polls
        harness.poll(
            lambda: monitor.global_step > step + 100 and monitor.polls > polls + 1,
            30,
            "the job to go on, the monitor polling it",
        )
        assert row("chief:0").state == "running"
        monitor.stop()
        assert cluster.wait(120) == "stopped"
        monitor.poll()
        last = monitor.checkpoints.step.max()
        assert last < 10_000_000
        assert monitor.tasks.set_index("task").state["chief:0"] == "ended"
        assert cluster.returncodes["worker:0"] == -signal.SIGKILL
        assert monitor.warnings == [  # said, where before the worker only went silent
            "task worker:0 of the local cluster ended (killed by SIGKILL, exit code -9, which "
            "the cluster did not send: the system sends it when memory runs out (each task is "
            "a TensorFlow process of 250 MB or more: ask for fewer tasks, or free memory)); "
            "the job goes on without it"
        ]
        assert monitor_values(monitor) == events_on_disk(f"{cluster.model_dir}/eval")
    finally:
        cluster.stop()


def test_interrupting_wait_stops_the_job_cleanly(tmp_path):
    """Before: the KeyboardInterrupt left wait() and the job went on in its processes."""
    cluster = models.small_cluster(
        make_estimator, tmp_path / "job", 10_000_000, workers=1, save_checkpoints_secs=1
    )
    try:
        cluster.start()
        with (
            interrupted_when(lambda: (checkpoint_step(cluster.model_dir) or 0) > 0),
            pytest.raises(KeyboardInterrupt, match=r"the cluster's job stopped, .* at step \d+"),
        ):
            cluster.wait(120)
        assert cluster.state == "stopped"
        assert cluster.returncodes["chief:0"] == 0
        assert 0 < checkpoint_step(cluster.model_dir) < 10_000_000
    finally:
        cluster.stop()


def gated_estimator(gate: Path, ready: Path) -> Callable[[Any], Any]:
    """A task's estimator factory that holds the task before its job begins (polling, in the
    task's own process) until ``gate`` exists; it touches ``ready`` when it gets there."""

    def make(config: Any) -> Any:
        ready.touch()
        while not gate.exists():
            time.sleep(0.05)  # a polling interval in the task process
        return make_estimator(config)

    return make


def test_interrupting_wait_before_the_job_began_ends_it_at_once(tmp_path):
    """Before: the stop request was older than the job's start, so every task took it for an
    earlier job's and trained on; wait() waited for the whole job."""
    gate, ready = tmp_path / "gate", tmp_path / "ready"
    cluster = models.small_cluster(
        gated_estimator(gate, ready), tmp_path / "job", 10_000_000, workers=1
    )
    deadline = time.monotonic() + 90  # without the fix: a second interrupt, not a hang
    try:
        cluster.start()
        with (
            interrupted_when(ready.exists, lambda: time.monotonic() > deadline),
            pytest.raises(KeyboardInterrupt) as interrupted,
        ):
            cluster.wait(120)
        assert str(interrupted.value) == (
            "the cluster's job stopped, before its first checkpoint: wait() was interrupted"
        )
        gate.touch()  # too late: every process has ended, none trained
        assert cluster.state == "stopped"
        assert all(code is not None for code in cluster.returncodes.values())
        assert checkpoint_step(cluster.model_dir) is None
    finally:
        gate.touch()
        cluster.stop()


def test_a_killed_parameter_server_fails_the_job_at_once_naming_the_signal(tmp_path, comm_log):
    """Before: the chief waited for the lost parameter server for ever, the cluster "running"
    (the out-of-memory killer ends a task this way on a small machine, such as Binder's)."""
    cluster = models.small_cluster(make_estimator, tmp_path / "job", 10_000_000)
    try:
        cluster.start()
        monitor = cluster.monitor(interval=0.2)
        harness.poll(lambda: (monitor.global_step or 0) > 0, 120, "the chief to train")
        os.kill(cluster.pids["ps:0"], signal.SIGKILL)
        first, _ = failure(cluster, 60)
        assert first.startswith(
            "task ps:0 of the local cluster failed (killed by SIGKILL, exit code -9, which the "
            "cluster did not send: the system sends it when memory runs out (each task is a "
            "TensorFlow process of 250 MB or more"
        ), first
        assert first.endswith(
            "the job cannot go on without its parameter server: the cluster ended it)"
        )
        assert cluster.state == "failed"
        assert cluster.returncodes["chief:0"] == -signal.SIGTERM  # ended by the cluster
        assert monitor.warnings == [first]  # on the monitor's panel too
        monitor.poll()
        assert first in JobView(monitor).problems.value
    finally:
        cluster.stop()


def test_a_cluster_the_free_memory_cannot_hold_is_refused_before_it_starts(tmp_path):
    """Before: it started, and the system's out-of-memory killer ended processes (in a 1.5 GB
    container, the kernel running the notebook)."""
    room = headroom()
    assert room is not None
    workers = room.available // TASK_MEMORY + 8  # 2 GB more than is free
    cluster = models.small_cluster(make_estimator, tmp_path / "job", workers=workers)
    with pytest.raises(MemoryError) as refused:
        cluster.start()
    assert str(refused.value).startswith(
        f"a LocalCluster of {workers + 2} tasks (chief:0, worker:0, worker:1, "
    )
    assert f"needs {size((workers + 2) * TASK_MEMORY)} of memory or more" in str(refused.value)
    assert f"and {room.where} has " in str(refused.value)
    assert cluster.state == "idle" and cluster.pids == {}
    assert not os.path.exists(cluster.model_dir)  # nothing written


def test_a_factory_that_ignores_its_run_config_is_refused(tmp_path, monkeypatch):
    """Before: a Dashboard-style factory (model_dir -> Estimator) trained the job in a folder
    named after the RunConfig ("<...RunConfig object at 0x...>") in the working directory."""
    monkeypatch.chdir(tmp_path)
    # models.make_estimator takes a model_dir: it is given the task's RunConfig
    cluster = models.small_cluster(models.make_estimator, tmp_path / "job")
    try:
        cluster.start()
        first, _ = failure(cluster, 120)
        assert re.match(
            rf"{EITHER} of the local cluster failed \(exit code 1\): ValueError: "
            r"make_estimator\(config\) built an Estimator whose model_dir is "
            "'<tensorflow_estimator",
            first,
        ), first
        assert "a LocalCluster's takes a RunConfig" in first
        assert sorted(p.name for p in tmp_path.iterdir()) == ["job"]  # nothing else written
        assert checkpoint_step(cluster.model_dir) is None
    finally:
        cluster.stop()


def test_each_worker_saves_and_restores_its_own_input_position(tmp_path, comm_log):
    """A hook factory gives chief and worker each its own PipelineCheckpointHook: each saves
    its input position under its own names; the Monitor lists them by task; a restart of the
    job resumes each task from its own position."""
    every, job_dir = 20, tmp_path / "job"

    def run_job(
        until_seen: Callable[[LocalCluster, Monitor], bool], what: str
    ) -> dict[str, list[dict]]:
        cluster = LocalCluster(
            pipeline_tasks.make_estimator,
            pipeline_tasks.ids_input_fn,
            None,
            steps=10_000_000,
            workers=1,
            evaluator=False,
            model_dir=job_dir,
            save_checkpoints_steps=every,
            hooks=[pipeline_tasks.EachTask],  # made in each task with its Estimator
        )
        try:
            cluster.start()
            monitor = cluster.monitor(interval=0.2)
            harness.poll(
                lambda: until_seen(cluster, monitor) or cluster.state != "running", 90, what
            )
            monitor.stop()
            assert cluster.wait(60) == "stopped", cluster.logs("worker:0")
            monitor.poll()
            listed[:] = [monitor.input_checkpoints, JobView(monitor)]
            return {t: pipeline_tasks.reports(cluster.logs(t)) for t in ("chief:0", "worker:0")}
        finally:
            cluster.stop()

    listed: list = []
    tasks = {"chief:0", "worker:0"}
    first = run_job(lambda c, m: tasks <= set(m.input_checkpoints.task), "both tasks' saves")
    inputs, view = listed
    on_disk = {str(p)[: -len(".index")] for p in job_dir.glob("input*.index")}
    assert set(inputs.path) == on_disk
    assert set(inputs.task) == tasks
    for row in inputs.itertuples():
        name = Path(row.path).name
        assert name == f"input_{row.task.replace(':', '_')}.ckpt-{row.step}", name
    assert (job_dir / "checkpoint_input_chief_0").is_file()
    assert (job_dir / "checkpoint_input_worker_0").is_file()
    assert not (job_dir / "checkpoint_input").exists()  # no single-worker names
    assert "worker:0" in view.inputs.value and "chief:0" in view.inputs.value

    def restored(cluster: LocalCluster, monitor: Monitor) -> bool:
        return all('"action": "restored"' in cluster.logs(task) for task in tasks)

    second = run_job(restored, "each task of the restarted job to restore its position")
    for task in tasks:
        saved = {
            r["path"]: r["last"]
            for r in first[task]
            if r["what"] == "event" and r["action"] == "saved"
        }
        (restore,) = [r for r in second[task] if r.get("action") == "restored"]
        assert Path(restore["path"]).name.startswith(f"input_{task.replace(':', '_')}.ckpt-")
        (read,) = [r["ids"] for r in second[task] if r["what"] == "first"]
        # the first batch after the restart follows the last one that task read before its save
        assert read[0] == saved[restore["path"]][-1] + 1, (task, restore, read)


def test_local_cluster_checks_its_arguments_before_anything(tmp_path):
    with pytest.raises(ValueError, match="evaluator=True needs an eval_fn"):
        LocalCluster(make_estimator, models.input_fn(), None, steps=10, model_dir=tmp_path / "x")
    with pytest.raises(TypeError, match="steps must be a positive int"):
        LocalCluster(make_estimator, models.input_fn(), None, steps="10", evaluator=False)
    with pytest.raises(TypeError, match="could not send the functions"):
        lock = threading.Lock()
        LocalCluster(lambda c: lock, models.input_fn(), None, steps=10, evaluator=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Monitor(tmp_path / "nowhere")


def test_local_cluster_takes_hooks_and_hook_factories(tmp_path, monkeypatch):
    """Checked in the notebook process, before anything is made; factories are called in the
    training tasks only, each with its task's Estimator."""
    target = tmp_path / "x"
    for hooks, error in [
        (PipelineCheckpointHook, "hooks must be a list, got type"),
        (ClusterControlHook(str(tmp_path)), "hooks must be a list, got ClusterControlHook"),
        (["input"], "hooks\\[0\\] is str 'input', neither a hook nor a hook factory"),
        ([ClusterControlHook(str(tmp_path)), lambda: None], "hooks\\[1\\] .* one argument"),
    ]:
        with pytest.raises(TypeError, match=error) as caught:
            LocalCluster(
                make_estimator,
                models.input_fn(),
                None,
                10,
                evaluator=False,
                model_dir=target,
                hooks=hooks,
            )
        assert "hooks=[nh.PipelineCheckpointHook]" in str(caught.value)
    assert not target.exists()

    ready = ClusterControlHook(str(tmp_path))
    hooks = (ready, PipelineCheckpointHook, lambda estimator: "not a hook")
    LocalCluster(
        make_estimator, models.input_fn(), None, 10, evaluator=False, model_dir=target, hooks=hooks
    ).stop()

    def task_estimator(kind: str) -> object:
        cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"], "ps": ["127.0.0.1:3"]}
        monkeypatch.setenv(
            "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": kind, "index": 0}})
        )
        config = tf().estimator.RunConfig(model_dir=str(tmp_path), save_checkpoints_steps=5)
        return make_estimator(config)

    with pytest.raises(TypeError, match=r"returned str, not a tf\.estimator\.SessionRunHook"):
        _task_hooks(hooks, task_estimator("worker"))
    first, made = _task_hooks(hooks[:2], task_estimator("worker"))
    assert first is ready and isinstance(made, PipelineCheckpointHook)
    assert made.store.task == "worker:0"
    assert _task_hooks(hooks, task_estimator("ps")) == [ready]  # no factory runs there


def test_the_monitor_widget_is_fed_by_its_publisher_only(tmp_path, comm_log):
    write_evals(tmp_path / "model", range(0, 300, 100))
    monitor = Monitor(tmp_path / "model", start=False)
    panel_widget = monitor.widget  # built on this (the main) thread
    face = monitor._face
    assert face.curves.metrics is monitor.metrics
    drawn = len(face.curves.figure.data[0].x)
    write_evals(tmp_path / "model", range(300, 500, 100), ".b")
    JobFiles(tmp_path / "model").request("pause")
    updates = len(comm_log.updates())
    monitor.poll()  # emits events; the publisher (its own thread, flushed here) updates
    face.publisher.flush()
    assert len(comm_log.updates()) > updates
    assert len(face.curves.figure.data[0].x) == drawn + 2
    assert "pause" in face.job.line.value
    assert "nbh-monitor" in panel_widget._dom_classes
    now = time.time()  # a chief's hook reports, as ClusterControlHook does: a task to reach
    JobFiles(tmp_path / "model").write_heartbeat(
        Heartbeat("chief:0", "running", 400, now, now, "host", os.getpid())
    )
    face.job.buttons["stop"].click()  # the button writes the job's control file
    assert JobFiles(tmp_path / "model").read_request().action == "stop"
    assert face.job.message.value == ""  # nothing refused
    monitor.close()
    assert panel_widget.comm is None  # closed with the monitor


def test_a_restarted_job_is_followed(tmp_path):
    model_dir = tmp_path / "model"
    eval_fn = models.input_fn(n=64, repeat=False, seed=1)

    def run_job(max_steps: int) -> None:
        """One life of the job: trains from the last checkpoint, evaluates, ends."""
        tf().compat.v1.summary.FileWriterCache.clear()  # a new process: new writers
        estimator = models.make_estimator(model_dir)
        hook = ClusterControlHook(estimator.model_dir)
        estimator.train(models.input_fn(), max_steps=max_steps, hooks=[hook])
        estimator.evaluate(eval_fn)

    run_job(100)
    monitor = Monitor(model_dir, start=False)
    assert monitor.history.step.unique().tolist() == [100]
    assert monitor.restarts == 0
    run_job(200)
    monitor.poll()
    assert monitor.history.step.unique().tolist() == [100, 200]
    assert monitor.restarts == 1
    assert monitor.global_step == 200
    assert monitor.tasks.set_index("task").state.to_dict() == {
        "chief:0": "ended",
        "evaluator:0": "evaluated",  # no hook there: seen from its event files
    }
    monitor.close()


PARENT = """
import json, sys, time
sys.path.insert(0, {tests!r})
import models
from nbhooks.cluster import LocalCluster, _task_hooks

def make_estimator(config):
    from nbhooks._tf import tf
    return tf().estimator.Estimator(models.model_fn, config=config)

cluster = LocalCluster(make_estimator, models.input_fn(), models.input_fn(n=64, repeat=False),
                       steps=10**7, workers=1, ps=1, model_dir=sys.argv[1])
cluster.start()
print(json.dumps(list(cluster.pids.values())), flush=True)
time.sleep(600)
"""


def test_the_processes_end_when_their_parent_dies(tmp_path):
    """A kernel that dies (or restarts) takes its cluster with it."""
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(tests=str(Path(__file__).parent)))
    parent = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "job")], stdout=subprocess.PIPE, text=True
    )
    try:
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 4
        harness.poll(lambda: all(psutil.pid_exists(p) for p in pids), 5, "the tasks to start")
    finally:
        parent.kill()
        parent.wait(30)
        parent.stdout.close()

    def gone(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    try:
        harness.poll(lambda: all(gone(p) for p in pids), 30, "the orphaned tasks to end")
    finally:
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_failing_chief_fails_the_cluster_with_its_log(tmp_path):
    def make_broken_estimator(config):
        raise ValueError("no estimator today")

    cluster = models.small_cluster(make_broken_estimator, tmp_path / "job")
    try:
        cluster.start()
        first, rest = failure(cluster, 120)  # the task's own error first
        assert re.fullmatch(
            rf"{EITHER} of the local cluster failed \(exit code 1\): "
            "ValueError: no estimator today",
            first,
        ), first
        assert "Traceback (most recent call last)" in rest  # then the end of its log
        assert cluster.state == "failed"
        assert all(code is not None for code in cluster.returncodes.values())
    finally:
        cluster.stop()
