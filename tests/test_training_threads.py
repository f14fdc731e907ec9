"""Training threads kept between trainings (nbhooks.training_threads), with real runs."""

from __future__ import annotations

import threading

import models
import pytest
from waiting import wait_for

import nbhooks as nh
from nbhooks import training_threads
from nbhooks._tf import tf


class ThreadOf(tf().estimator.SessionRunHook):
    """Records the thread each training session begins on."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def begin(self) -> None:
        self.threads.append(threading.current_thread())


def train(tmp_path, name: str, hook: ThreadOf, steps: int = 5) -> nh.TrainingRun:
    run = nh.TrainingRun(
        models.make_estimator(tmp_path / name), models.input_fn(), steps=steps, hooks=[hook],
        report=None,
    )  # fmt: skip
    run.start()
    return run


def test_the_next_training_runs_on_the_thread_the_last_one_trained_on(tmp_path):
    """Before: a new thread for each train(), whose first session paid oneDNN's per-thread
    set-up again (35 ms of the demo's first step, 50 ms of the 3x128 model's)."""
    hook = ThreadOf()
    first = train(tmp_path, "a", hook)
    assert first.wait(timeout=120) == "finished"
    # wait() returns once the thread is a spare: never seen named for training after it.
    assert hook.threads[0].name == training_threads.SPARE and hook.threads[0].is_alive()
    first.start(steps=5)  # the same run again
    assert first.wait(timeout=120) == "finished"
    second = train(tmp_path, "b", hook)  # another run, another model
    assert second.wait(timeout=120) == "finished"
    assert hook.threads[1:] == hook.threads[:1] * 2
    first.close()
    second.close()


def test_a_failed_training_leaves_its_thread_serving_the_next(tmp_path):
    hook, failed_on = ThreadOf(), []

    def broken():
        failed_on.append(threading.current_thread())
        raise ValueError("no data here")

    bad = nh.TrainingRun(models.make_estimator(tmp_path / "bad"), broken, steps=5, report=None)
    bad.start()
    with pytest.raises(ValueError, match="no data here"):  # wait() raises training's error
        bad.wait(timeout=120)
    assert bad.state == "failed"
    # Waiting already when wait() returns (before: some time after), so the next training,
    # started at once, gets it.
    assert failed_on[0].name == training_threads.SPARE
    good = train(tmp_path, "good", hook)
    assert good.wait(timeout=120) == "finished"
    assert hook.threads == failed_on
    bad.close()
    good.close()


def test_at_most_two_threads_wait_and_each_ends_when_idle_long_enough(tmp_path, monkeypatch):
    monkeypatch.setattr(training_threads, "IDLE_SECONDS", 0.5)
    hook = ThreadOf()
    runs = [train(tmp_path, f"m{i}", hook, steps=200) for i in range(3)]  # three at once
    for run in runs:
        assert run.wait(timeout=120) == "finished"
    assert len(set(hook.threads)) == 3
    # Two of them wait (briefly), the third ended at once.
    assert training_threads.waiting() <= training_threads.KEEP
    assert wait_for(lambda: sum(t.is_alive() for t in hook.threads) <= 2, timeout=10)
    assert wait_for(lambda: not any(t.is_alive() for t in hook.threads), timeout=10)
    assert training_threads.waiting() == 0
    for run in runs:
        run.close()


def test_a_training_started_as_soon_as_the_last_one_ends_gets_its_thread():
    """``then`` (what releases ``wait()``) runs once the thread waits for the next training,
    so a training started then runs on it. Before: on another thread, unless this one was
    quicker to wait than the caller to start."""
    ran_on: list[threading.Thread] = []
    done = threading.Event()

    def then_start_next() -> None:
        training_threads.start(lambda: ran_on.append(threading.current_thread()), "b", done.set)

    training_threads.start(lambda: ran_on.append(threading.current_thread()), "a", then_start_next)
    assert done.wait(timeout=10)
    assert ran_on[0] is ran_on[1]
