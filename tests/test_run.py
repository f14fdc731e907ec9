"""TrainingRun with a real Estimator: states, pause/resume/stop, errors, restart, ownership."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
from pathlib import Path

import models
import pytest
from waiting import interrupted_when, wait_for

import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.events import RunStateEvent


def record_states(run) -> list[str]:
    states: list[str] = []
    run.events.subscribe(lambda e: states.append(e.state) if isinstance(e, RunStateEvent) else None)
    return states


def training_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nbhooks-training" and t.is_alive()]


@pytest.fixture
def run(estimator, train_fn):
    run = nh.TrainingRun(estimator, train_fn, steps=100_000, report=None)
    yield run
    run.close()


def test_import_does_not_import_tensorflow():
    code = "import sys, nbhooks; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_start_returns_at_once_and_finishes(estimator, train_fn):
    run = nh.TrainingRun(estimator, train_fn, steps=200, report=None)
    states = record_states(run)
    assert run.state == "idle"
    assert run.start() is None  # a command: the last line of a cell shows nothing more
    assert run.running
    assert run.wait(timeout=120) == "finished"
    assert run.global_step == 200
    assert states == ["running", "finished"]
    assert tf().train.latest_checkpoint(run.model_dir).endswith("-200")
    assert run.steps_per_sec and run.steps_per_sec > 0


def test_pause_holds_at_a_step_boundary_and_resume_continues(run):
    states = record_states(run)
    run.start()
    assert wait_for(lambda: run.global_step >= 50)
    run.pause()
    assert wait_for(lambda: run.state == "paused")
    held = run.global_step
    assert not wait_for(lambda: run.global_step != held, timeout=0.5), "steps ran while paused"
    run.resume()
    assert wait_for(lambda: run.global_step > held + 20)
    run.stop()
    assert run.wait(timeout=60) == "stopped"
    assert states == ["running", "paused", "running", "stopping", "stopped"]


def test_stop_ends_at_the_next_step_with_a_final_checkpoint(run):
    stopped_at: list[int] = []
    run.start()
    assert wait_for(lambda: run.global_step >= 30)
    run.events.subscribe(
        lambda e: stopped_at.append(e.step) if getattr(e, "state", None) == "stopping" else None
    )
    run.stop(reason="enough")
    assert run.wait(timeout=60) == "stopped"
    assert run.reason == "enough"
    # The stop request is honoured at the first step boundary after it.
    assert run.global_step <= stopped_at[0] + 1
    assert tf().train.latest_checkpoint(run.model_dir).endswith(f"-{run.global_step}")


def test_stop_while_paused(run):
    run.start()
    assert wait_for(lambda: run.global_step >= 10)
    run.pause()
    assert wait_for(lambda: run.state == "paused")
    run.stop()
    assert run.wait(timeout=60) == "stopped"


def test_interrupting_wait_stops_training_cleanly(run):
    """Before: the KeyboardInterrupt left wait() and training went on in the background."""
    run.start()
    with (
        interrupted_when(lambda: run.global_step >= 30),
        pytest.raises(KeyboardInterrupt, match=r"training stopped at step [\d,]+: wait\(\) was"),
    ):
        run.wait(timeout=120)
    assert run.state == "stopped" and not training_threads()
    assert run.reason == "interrupted (KeyboardInterrupt)"
    assert tf().train.latest_checkpoint(run.model_dir).endswith(f"-{run.global_step}")


def test_a_second_interrupt_stops_waiting_and_training_still_stops(estimator, train_fn):
    ending, release = threading.Event(), threading.Event()

    class SlowEnd(tf().estimator.SessionRunHook):
        def end(self, session):
            ending.set()
            release.wait(60)  # the clean stop takes as long as the test says

    run = nh.TrainingRun(estimator, train_fn, steps=100_000, hooks=[SlowEnd()], report=None)
    try:
        run.start()
        with (
            interrupted_when(lambda: run.global_step >= 10, ending.is_set),
            pytest.raises(KeyboardInterrupt, match="interrupted again: no longer waiting"),
        ):
            run.wait(timeout=120)
        assert run.state == "stopping"
        release.set()
        assert run.wait(timeout=60) == "stopped"
        assert run.reason == "interrupted (KeyboardInterrupt)"
    finally:
        release.set()
        run.close()


def test_error_is_surfaced_and_reraised(model_dir):
    def failing_input():
        @tf().autograph.experimental.do_not_convert  # plain graph code: no autograph needed
        def bad(x):
            tf().debugging.assert_less(x, tf().constant(40, tf().int64), message="bad batch 40")
            return {"x": tf().ones((4, 4))}, tf().zeros((4,), tf().int32)

        return tf().data.Dataset.range(1000).map(bad)

    run = nh.TrainingRun(models.make_estimator(model_dir), failing_input, steps=100, report=None)
    events: list[RunStateEvent] = []
    run.events.subscribe(lambda e: events.append(e) if isinstance(e, RunStateEvent) else None)
    run.start()
    with pytest.raises(tf().errors.InvalidArgumentError, match="bad batch 40"):
        run.wait(timeout=120)
    assert run.state == "failed"
    failed = events[-1]
    assert failed.state == "failed" and "bad batch 40" in failed.traceback
    assert isinstance(failed.error, tf().errors.InvalidArgumentError)


def failed_reason(run, error: type[BaseException] | None = None, match: str | None = None) -> str:
    """Start ``run``; it fails with ``error`` (TF's OpError by default): its one-line reason."""
    events: list[RunStateEvent] = []
    run.events.subscribe(lambda e: events.append(e) if isinstance(e, RunStateEvent) else None)
    run.start()
    with pytest.raises(error or tf().errors.OpError, match=match):
        run.wait(timeout=120)
    assert events[-1].state == "failed" and events[-1].traceback
    return events[-1].reason


def test_a_py_function_error_reads_as_its_root_cause(model_dir):
    def broken_input():
        def check(x):
            raise ValueError("bad pixel value in row 7")

        ds = tf().data.Dataset.range(100).map(lambda i: tf().py_function(check, [i], tf().int64))
        return ds.map(lambda v: ({"x": tf().ones((4,))}, tf().constant(0))).batch(2)

    run = nh.TrainingRun(models.make_estimator(model_dir), broken_input, steps=5, report=None)
    assert failed_reason(run) == "InvalidArgumentError: ValueError: bad pixel value in row 7"
    run.close()


def test_an_autograph_error_reads_as_its_root_cause(model_dir):
    """Keras layers and feature columns raise "in user code:", then the user's frames, then the
    error: the run's reason is the error."""

    def misnamed_input():  # the estimator's feature column reads "x"
        x, y = models.make_data(64)
        return tf().data.Dataset.from_tensor_slices(({"pixels": x}, y)).batch(8)

    run = nh.TrainingRun(models.make_linear_classifier(model_dir), misnamed_input, steps=5,
                         report=None)  # fmt: skip
    reason = failed_reason(run, ValueError, match="in user code")
    assert reason == "ValueError: Feature x is not in features dictionary."
    run.close()


def test_a_checkpoint_of_another_model_is_refused_before_it_is_restored(model_dir):
    """A notebook's model changed (8 hidden units -> 16) but kept its model_dir: TensorFlow
    restores the old weights with their old shapes and trains the old model, silently."""
    t = tf()
    column = t.feature_column.numeric_column("x", shape=(models.N_FEATURES,))

    def dnn(*units):
        config = t.estimator.RunConfig(model_dir=str(model_dir), save_summary_steps=None)
        return t.estimator.DNNClassifier(list(units), [column], config=config)

    dnn(8).train(models.input_fn(), steps=3)
    run = nh.TrainingRun(dnn(8, 8), models.input_fn(), steps=5, report=None)
    # A layer more, the shapes of the others alike: TensorFlow's own restore fails, read as
    # its cause (not its "Restoring from checkpoint failed. This is most likely ...").
    assert re.fullmatch(
        r"NotFoundError: Key dnn/hiddenlayer_1/\w+ not found in checkpoint "
        r"\(restoring from checkpoint failed\)",
        failed_reason(run),
    )
    run.close()

    def files():  # TF's chief hooks open an events file in begin(), before nbhooks' hooks
        return {
            p.name: p.stat().st_mtime_ns for p in model_dir.iterdir() if ".tfevents." not in p.name
        }

    before = files()
    run = nh.TrainingRun(dnn(16), models.input_fn(), steps=5, report=None)
    run.start()
    with pytest.raises(ValueError) as raised:
        run.wait(timeout=120)
    assert str(raised.value).startswith(
        "model_dir holds a checkpoint of another model: dnn/hiddenlayer_0/kernel is [4, 8] in "
        "model.ckpt-3, [4, 16] here (and "
    ), raised.value
    assert f"delete the checkpoints in {model_dir}" in str(raised.value)
    assert files() == before  # no checkpoint, graph or state file written
    run.close()
    # Why: bare TensorFlow trains the checkpoint's model instead, with no error.
    bare = dnn(16)
    bare.train(models.input_fn(), steps=1)
    assert bare.get_variable_value("dnn/hiddenlayer_0/kernel").shape == (4, 8)


def test_a_full_disk_reads_as_no_space_left(tmpfs):
    disk = tmpfs("size=300k")
    run = nh.TrainingRun(
        models.make_estimator(disk / "model"), models.input_fn(), steps=5, report=None
    )
    reason = failed_reason(run)
    run.close()
    assert reason.startswith("ResourceExhaustedError: No space left on device (writing or "), reason
    assert "Node:" not in reason and len(reason) <= 300


def test_a_run_on_a_trained_model_dir_starts_at_its_step(model_dir):
    """Before its first session, a run reports the step its checkpoint holds, not 0."""
    models.make_estimator(model_dir).train(models.input_fn(), steps=30)
    from nbhooks.views.console import ConsoleReport

    run = nh.TrainingRun(models.make_estimator(model_dir), models.input_fn(), steps=5,
                         report=None)  # fmt: skip
    assert run.global_step == 30
    report = ConsoleReport(run, stream=(out := io.StringIO()))
    run.start()
    assert run.wait(timeout=120) == "finished" and run.global_step == 35
    report.close()
    assert out.getvalue().splitlines()[0] == "[nbhooks] running at step 30", out.getvalue()
    run.close()
    fresh = nh.TrainingRun(models.make_estimator(model_dir.parent / "fresh"), models.input_fn(),
                           report=None)  # fmt: skip
    assert fresh.global_step == 0
    fresh.close()


def test_restart_after_finish_continues_from_the_checkpoint(estimator, train_fn):
    run = nh.TrainingRun(estimator, train_fn, steps=60, report=None)
    run.start()
    run.wait(timeout=120)
    run.start(steps=40)
    assert run.wait(timeout=120) == "finished"
    assert run.global_step == 100
    run.start(max_steps=130)
    run.wait(timeout=120)
    assert run.global_step == 130


def test_double_start_is_refused(run):
    run.start()
    with pytest.raises(RuntimeError, match="already running"):
        run.start()


def test_replacing_the_run_stops_the_old_thread(estimator, train_fn):
    """Re-executing the cell that makes a run leaves one training thread, not two."""
    old = nh.TrainingRun(estimator, train_fn, steps=100_000, report=None)
    old.start()
    assert wait_for(lambda: old.global_step > 5)
    with pytest.warns(nh.NbhooksWarning, match="stopping the earlier run"):
        new = nh.TrainingRun(estimator, train_fn, steps=20, report=None)
    assert not old.running and old.state == "stopped"
    new.start()
    assert len(training_threads()) == 1
    assert new.wait(timeout=120) == "finished"


class Writes(io.StringIO):
    """A stream that keeps each write() call apart."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return super().write(text)


def test_console_report_without_widgets(estimator, train_fn):
    run = nh.TrainingRun(estimator, train_fn, steps=50, report=None)
    stream = Writes()
    from nbhooks.views.console import ConsoleReport

    report = ConsoleReport(run, stream=stream)
    run.start()
    run.wait(timeout=120)
    report.close()
    text = stream.getvalue()
    assert "[nbhooks] running at step 0" in text
    assert "finished at step 50: reached step 50" in text
    # A line is one write (before: print() wrote its newline apart, so a script's own output
    # from another thread landed mid-line: "[nbhooks] running at step 0waiting").
    assert all(c.startswith("[nbhooks] ") and c.endswith("\n") for c in stream.calls)


@pytest.mark.parametrize("steps", [100, None])
def test_an_input_that_runs_out_says_so(estimator, steps):
    """An input without ``repeat()`` ends training quietly (TF's ``OutOfRangeError``): the
    reason says the data ran out, and before which target, not "reached step"."""
    finite = models.input_fn(n=16, batch=4, repeat=False)  # 4 batches
    run = nh.TrainingRun(estimator, finite, steps=steps, report=None)
    run.start()
    assert run.wait(timeout=120) == "finished"
    assert run.reason is not None and run.reason.startswith("the input ran out at step 4")
    assert ("before step 100" in run.reason) == (steps is not None)
    run.close()


def test_a_hook_that_stops_training_early_is_named_as_the_reason(estimator, train_fn):
    stop_at_7 = tf().estimator.StopAtStepHook(last_step=7)
    run = nh.TrainingRun(estimator, train_fn, steps=100, hooks=[stop_at_7], report=None)
    run.start()
    assert run.wait(timeout=120) == "finished"
    assert run.reason == "a hook asked to stop at step 7, before step 100"
    run.close()


def test_max_steps_already_reached_says_so(estimator, train_fn):
    run = nh.TrainingRun(estimator, train_fn, max_steps=10, report=None)
    run.start()
    run.wait(timeout=120)
    run.start()
    run.wait(timeout=120)
    assert "already at max_steps=10" in run.reason


class TestBadInput:
    def test_not_an_estimator(self, train_fn):
        with pytest.raises(TypeError, match=r"must be a tf\.estimator\.Estimator.*got str"):
            nh.TrainingRun("model", train_fn)

    def test_input_fn_not_callable(self, estimator, train_fn):
        with pytest.raises(TypeError, match="pass the function itself, not its result"):
            nh.TrainingRun(estimator, train_fn())

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"steps": 0}, ValueError, "steps must be a positive int, got 0"),
            ({"max_steps": -5}, ValueError, "max_steps must be a positive int"),
            ({"steps": 1.5}, TypeError, "steps must be a positive int"),
            ({"steps": 10, "max_steps": 20}, ValueError, "not both"),
        ],
    )
    def test_steps(self, estimator, train_fn, kwargs, error, match):
        with pytest.raises(error, match=match):
            nh.TrainingRun(estimator, train_fn, **kwargs)

    def test_start_checks_steps_too(self, run):
        with pytest.raises(ValueError, match="not both"):
            run.start(steps=1, max_steps=2)
        assert run.state == "idle"

    def test_hooks_must_be_session_run_hooks(self, estimator, train_fn):
        with pytest.raises(TypeError, match="SessionRunHook instance, got function"):
            nh.TrainingRun(estimator, train_fn, hooks=[lambda: None])

    def test_a_model_dir_inside_a_file(self, tmp_path, train_fn):
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        estimator = models.make_estimator(blocker / "model")
        with pytest.raises(NotADirectoryError, match=r"is inside '.*file', a file, not a dir"):
            nh.TrainingRun(estimator, train_fn)


def test_a_script_without_ipywidgets_reports_to_the_console(tmp_path):
    script = f"""
import sys
sys.modules["ipywidgets"] = None  # as if ipywidgets were not installed
sys.path.insert(0, {str(Path(__file__).parent)!r})
import models, nbhooks as nh
run = nh.TrainingRun(models.make_estimator({str(tmp_path / "m")!r}), models.input_fn(), steps=30)
run.start()
print(run.wait(timeout=120), run.global_step)
assert "ipywidgets" not in sys.modules or sys.modules["ipywidgets"] is None
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "finished 30"
    assert "[nbhooks] finished at step 30: reached step 30" in out.stderr
    assert "WARNING:tensorflow" not in out.stderr and "deprecat" not in out.stderr.lower()
