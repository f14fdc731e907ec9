"""Headless widget tests: real ipywidgets with a recording comm, a real Estimator."""

from __future__ import annotations

import time

import models
import pytest
from waiting import wait_for

import nbhooks as nh
from nbhooks.events import EventBus, RunStateEvent, StepEvent
from nbhooks.meter import ProgressMeter
from nbhooks.publish import Publisher, coalesce
from nbhooks.views.base import View, walk_widgets
from nbhooks.views.format import duration, progress_line


class Recorder(View):
    def __init__(self, interval: float | None = None) -> None:
        self.batches: list[list] = []
        self.interval = interval

    def on_events(self, events) -> None:
        self.batches.append(list(events))


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
    controls = run.panel().controls
    assert controls.steps.layout.display == "none"  # no step count to choose
    controls.start.click()
    assert run.wait(timeout=120) == "finished"
    assert run.global_step == 4  # 64 rows in batches of 16, not the box's default 1000
    run.close()


def test_start_refused_shows_a_message(panel_run):
    run, panel = panel_run
    run.start()
    panel.controls._on_start(None)  # a second click that raced the button's disabling
    assert "already running" in panel.controls.message.value


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


# -- pure pieces ----------------------------------------------------------------------------
def test_coalesce_keeps_only_the_last_step_event():
    s1, s2 = StepEvent(1, 10, None, 0, None), StepEvent(2, 10, None, 0, None)
    r = RunStateEvent("running")
    assert coalesce([s1, r, s2]) == [r, s2]


def test_publisher_batches_by_time():
    now = [0.0]
    bus, view = EventBus(), Recorder()
    pub = Publisher(bus, [view], interval=0.1, clock=lambda: now[0])
    bus.emit(StepEvent(0, 100, None, 0, None))
    assert wait_for(lambda: view.batches)  # the first event goes out at once
    for step in range(1, 100):
        bus.emit(StepEvent(step, 100, None, 0, None))
    pub.flush()
    assert [[e.step for e in batch] for batch in view.batches] == [[0], [99]]
    pub.close()


def test_publisher_throttles_each_view_by_its_own_interval():
    now = [0.0]
    bus, fast, slow = EventBus(), Recorder(), Recorder(interval=1.0)
    pub = Publisher(bus, [fast, slow], interval=0.1, clock=lambda: now[0])
    bus.emit(RunStateEvent("running"))
    assert wait_for(lambda: fast.batches and slow.batches)
    for step in range(1, 101):
        bus.emit(StepEvent(step, 100, None, 0, None))
    assert pub.wait_idle(timeout=0.3) is False  # the clock stands still: nothing is due
    now[0] = 0.5
    assert wait_for(lambda: len(fast.batches) == 2)
    assert [e.step for e in fast.batches[1]] == [100]  # coalesced to the latest step
    assert len(slow.batches) == 1  # due only at 1.0
    now[0] = 1.0
    assert wait_for(lambda: len(slow.batches) == 2)
    assert [e.step for e in slow.batches[1]] == [100]
    pub.close()


def test_meter_rate_eta_and_pause_exclusion():
    now = [0.0]
    meter = ProgressMeter(interval=1.0, clock=lambda: now[0])
    meter.begin(0, 100)
    now[0] = 0.5
    assert meter.update(5) is None  # throttled
    now[0] = 1.0
    event = meter.update(10)
    assert event.steps_per_sec == pytest.approx(10) and event.eta == pytest.approx(9)
    meter.pause()
    now[0] = 11.0
    meter.resume()
    now[0] = 12.0
    assert meter.update(20).steps_per_sec == pytest.approx(10)  # the pause is not counted


def test_a_session_shorter_than_the_interval_gets_its_average_rate():
    now = [0.0]
    meter = ProgressMeter(interval=1.0, clock=lambda: now[0])
    meter.begin(100, 150)
    now[0] = 0.25
    assert meter.update(150) is None  # throttled: no rate yet
    assert meter.final().steps_per_sec == pytest.approx(200)


def test_formatting():
    assert duration(83.2) == "1:23" and duration(3725) == "1:02:05" and duration(None) == "–"
    assert progress_line(1200, 2000, 85.26, 14, 9) == (
        "step 1,200 / 2,000 · 85.3 steps/s · elapsed 0:14 · ETA 0:09"
    )
