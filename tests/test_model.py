"""The pure model, fast (``-m fast``, no TensorFlow session, no widgets): events, the
publisher, the progress meter, argument checks, and which module may import what."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from waiting import wait_for

from nbhooks.checks import check_int, check_steps
from nbhooks.events import EventBus, RunAttached, RunStateEvent, StepEvent
from nbhooks.meter import ProgressMeter
from nbhooks.publish import Publisher, coalesce
from nbhooks.views.base import View
from nbhooks.views.format import duration, progress_line

pytestmark = pytest.mark.fast
PACKAGE = Path(__file__).resolve().parent.parent / "nbhooks"


class Recorder(View):
    def __init__(self, interval: float | None = None) -> None:
        self.batches: list[list] = []
        self.interval = interval

    def on_events(self, events) -> None:
        self.batches.append(list(events))


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


# -- checks -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [3, np.int64(3), np.int32(3), np.uint8(3)])
def test_check_int_takes_any_integer_type(value) -> None:
    assert check_int("steps", value) == 3 and type(check_int("steps", value)) is int


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (0, ValueError, "steps must be a positive int, got 0"),
        (True, TypeError, "steps must be a positive int, got bool True"),
        (2.0, TypeError, "steps must be a positive int, got float 2.0"),
        ("5", TypeError, "got str '5'"),
        (None, TypeError, "got NoneType None"),
    ],
)
def test_check_int_refuses_with_what_was_wrong(value, error, match) -> None:
    with pytest.raises(error, match=match):
        check_int("steps", value)


def test_check_int_minimum_optional_and_hint() -> None:
    assert check_int("n", None, optional=True) is None
    assert check_int("n", 0, minimum=0) == 0
    with pytest.raises(ValueError, match="n must be an int >= 3, got 2; at least a triangle"):
        check_int("n", 2, minimum=3, hint="at least a triangle")
    assert check_steps(np.int64(5), None) == (5, None)
    with pytest.raises(ValueError, match="not both"):
        check_steps(1, 2)


# -- the event bus ----------------------------------------------------------------------------
class _Run:
    def __init__(self) -> None:
        self.events = EventBus()

    def stop(self, reason: str | None = None) -> None:
        pass


class _Hook(RunAttached):
    def __init__(self) -> None:
        self.events = EventBus()
        self.seen: list[str] = []

    def on_run_state(self, event: RunStateEvent) -> None:
        self.seen.append(event.state)


def test_a_hook_attached_to_a_new_run_leaves_the_old_one() -> None:
    hook, first, second = _Hook(), _Run(), _Run()
    hook.attach(first)
    first.events.emit(RunStateEvent("running"))
    hook.attach(second)
    first.events.emit(RunStateEvent("failed"))  # no longer heard
    second.events.emit(RunStateEvent("finished"))
    assert hook.seen == ["running", "finished"] and hook.events is second.events
    hook.detach()
    second.events.emit(RunStateEvent("idle"))
    assert hook.seen == ["running", "finished"]


def test_a_failing_listener_never_breaks_the_emitter(caplog) -> None:
    bus, seen = EventBus(), []
    bus.subscribe(lambda e: 1 / 0)
    bus.subscribe(seen.append)
    bus.emit(RunStateEvent("running"))
    assert len(seen) == 1 and "listener failed" in caplog.text


# -- imports run downhill -----------------------------------------------------------------
HEADLESS = [
    "events.py",
    "meter.py",
    "run.py",
    "checks.py",
    "errors.py",
    "requests.py",
    "units.py",
    "memory.py",
    "dirlock.py",
    "niceness.py",
    "thread_pools.py",
    "eventfiles.py",
    "training_threads.py",
    "stores",
    "hooks",
    "_tf.py",
    "_tf_internals.py",
]
VIEW_SIDE = (
    "nbhooks.views",
    "nbhooks.notebook",
    "nbhooks.dashboard",
    "nbhooks.publish",
    "ipywidgets",
    "plotly",
    "IPython",
)


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_the_headless_core_imports_no_view_widget_or_notebook_module() -> None:
    files = [
        p
        for name in HEADLESS
        for p in (
            [PACKAGE / name] if name.endswith(".py") else sorted((PACKAGE / name).glob("*.py"))
        )
        if p.exists()
    ]
    assert len(files) >= 10
    offending = {
        str(f.relative_to(PACKAGE)): bad
        for f in files
        if (bad := [m for m in _imports(f) if m.startswith(VIEW_SIDE)])
    }
    assert offending == {}


def test_importing_nbhooks_imports_no_tensorflow_and_no_widgets() -> None:
    code = (
        "import sys, nbhooks, nbhooks.run, nbhooks.events, nbhooks.stores.metrics;"
        "bad = [m for m in ('tensorflow', 'ipywidgets', 'plotly') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
