"""Headless widget tests: real ipywidgets with a recording comm, a real Estimator."""

from __future__ import annotations

import time

import models
import pytest
from waiting import wait_for

import nbhooks as nh
from nbhooks.views.base import walk_widgets


@pytest.fixture
def panel_run(estimator, train_fn, comm_log):
    run = nh.TrainingRun(estimator, train_fn, steps=100_000, report=None)
    panel = run.panel()
    yield run, panel
    run.close()


def delivered(panel, predicate, timeout=30.0) -> bool:
    return wait_for(lambda: panel.publisher.wait_idle() and predicate(), timeout)


def test_buttons_drive_the_run_and_follow_its_state(panel_run):
    run, panel = panel_run
    c = panel.controls
    assert (c.start.disabled, c.pause.disabled, c.stop.disabled) == (False, True, True)
    c.steps.value = 100_000
    c.start.click()
    assert run.state == "running"
    assert delivered(panel, lambda: c.start.disabled and not c.pause.disabled)
    c.pause.click()
    assert delivered(panel, lambda: c.pause.description == "Resume")
    assert run.state == "paused"
    c.pause.click()
    assert delivered(panel, lambda: c.pause.description == "Pause" and run.state == "running")
    c.stop.click()
    assert run.wait(timeout=60) == "stopped"
    assert delivered(panel, lambda: not c.start.disabled and c.stop.disabled)
    assert "stopped" in panel.progress.badge.value
    assert panel.progress.bar.value == run.global_step


def test_start_button_trains_a_run_made_without_steps_until_its_input_ends(model_dir, comm_log):
    estimator = models.make_estimator(model_dir)
    run = nh.TrainingRun(estimator, models.input_fn(n=64, batch=16, repeat=False), report=None)
    panel = run.panel()
    controls, bar = panel.controls, panel.progress.bar
    assert controls.steps.layout.display == "none"  # no step count to choose
    assert bar.value == 0  # how far along is unknown: not filled
    controls.start.click()
    assert run.wait(timeout=120) == "finished"
    assert run.global_step == 4  # 64 rows in batches of 16, not the box's default 1000
    assert delivered(panel, lambda: "finished" in panel.progress.badge.value)
    assert (bar.value, bar.max, bar.bar_style) == (1, 1, "success")  # done: filled
    run.close()


def test_start_refused_shows_a_message(panel_run):
    run, panel = panel_run
    message = panel.controls.message
    assert message.layout.display == "none"  # no blank line while there is nothing to say
    run.start()
    panel.controls._on_start(None)  # a second click that raced the button's disabling
    assert "already running" in message.value and message.layout.display is None
    panel.controls._on_pause(None)  # a request that succeeds clears it
    assert (message.value, message.layout.display) == ("", "none")
    # a long message goes under the buttons, which keep their size (never "...")
    assert panel.controls.widget.layout.flex_flow == "row wrap"
    assert {panel.controls.start.layout.flex, panel.controls.stop.layout.flex} == {"0 0 auto"}


def test_progress_shows_step_target_rate_and_eta(estimator, train_fn, comm_log):
    run = nh.TrainingRun(estimator, train_fn, steps=300, report=None)
    panel = run.panel()
    run.start()
    run.wait(timeout=120)
    assert delivered(panel, lambda: "finished" in panel.progress.badge.value)
    p = panel.progress
    assert (p.bar.value, p.bar.max, p.bar.bar_style) == (300, 300, "success")
    assert "step 300 / 300" in p.line.value and "steps/s" in p.line.value
    assert p.line.value.endswith("ETA –")  # the run has ended
    run.close()


def test_updates_are_throttled_and_batched(estimator, train_fn, comm_log):
    """A message per step would cost +45-50 % training time: at most ~10 batches a second."""
    run = nh.TrainingRun(estimator, train_fn, steps=1500, report=None)
    panel = run.panel()
    before = len(comm_log.updates())
    t0 = time.monotonic()
    run.start()
    run.wait(timeout=120)
    elapsed = time.monotonic() - t0
    panel.publisher.wait_idle()
    updates = len(comm_log.updates()) - before
    assert panel.publisher.batches <= elapsed * 10 + 3
    # each batch updates a handful of widgets, one message each thanks to hold_sync(); wait()
    # then resends every widget's state once (for recorders that missed thread messages)
    resync = len(walk_widgets(panel.widget))
    assert 0 < updates <= panel.publisher.batches * 5 + resync
    assert updates < 1500 / 5
    run.close()


def test_failure_turns_red_with_message_and_traceback(model_dir, comm_log):
    def broken_input():
        raise ValueError("my input_fn is broken")

    run = nh.TrainingRun(models.make_estimator(model_dir), broken_input, steps=10, report=None)
    panel = run.panel()
    run.start()
    with pytest.raises(ValueError, match="my input_fn is broken"):
        run.wait(timeout=60)
    p = panel.progress
    assert delivered(panel, lambda: p.bar.bar_style == "danger")
    assert "Training failed: ValueError: my input_fn is broken" in p.error.value
    assert p.error.layout.display is None
    assert p.traceback.layout.display == "none"
    p.show_traceback.value = True
    assert p.traceback.layout.display is None and "broken_input" in p.traceback.value
    run.close()


def test_close_closes_widgets_and_publisher_thread(estimator, train_fn, comm_log):
    run = nh.TrainingRun(estimator, train_fn, steps=50, report=None)
    panel = run.panel()
    assert run.panel() is panel  # displaying twice shows one widget, not two
    run.start()
    run.wait(timeout=60)
    run.close()
    assert panel.widget.comm is None and panel.controls.start.comm is None
    assert panel.progress.bar.layout.comm is None and panel.controls.start.style.comm is None
    assert panel.publisher._thread is None or not panel.publisher._thread.is_alive()


def test_repr_mimebundle_is_the_panel_widget(estimator, train_fn, comm_log):
    run = nh.TrainingRun(estimator, train_fn, steps=5, report=None)
    bundle = run._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == (
        run.panel().widget.model_id
    )
    run.close()
