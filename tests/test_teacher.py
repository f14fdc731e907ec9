"""The teacher's hour, headless: a pace to watch, fresh runs, readable tables and reports, the
names a model's variables will have, a Voila demo that prints one URL."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import harness
import models
import nbformat
import pytest
from waiting import wait_for

import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.events import RunStateEvent
from nbhooks.hooks.pace import PaceHook
from nbhooks.views.final_ops import summary_line
from nbhooks.views.format import plural

ROOT = Path(__file__).parents[1]


# -- pace --------------------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(round(seconds, 6))
        self.now += seconds


@pytest.mark.fast
def test_pace_spaces_steps_and_does_not_make_up_for_lost_time() -> None:
    clock = FakeClock()
    hook = PaceHook(10, clock=clock, wait=clock.wait)
    hook.after_create_session(None, None)
    for _ in range(3):
        clock.now += 0.02  # the step itself
        hook.after_run(None, None)
    assert clock.waits == [0.1, 0.08, 0.08]  # 10 steps/s
    clock.now += 5  # an evaluation or a pause: no burst of fast steps afterwards
    hook.after_run(None, None)
    assert clock.waits[-1] == 0.1
    hook.steps_per_sec = None
    hook.after_run(None, None)
    assert len(clock.waits) == 4
    with pytest.raises(ValueError, match="steps per second"):
        hook.steps_per_sec = 0


@pytest.mark.fast
def test_a_stop_does_not_wait_for_the_next_slot() -> None:
    hook = PaceHook(0.01)  # one step per 100 s
    hook.on_run_state(RunStateEvent("running"))
    hook.after_run(None, None)  # the first slot is now + 100 s
    threading.Timer(0.2, hook.on_run_state, [RunStateEvent("stopping")]).start()
    started = time.monotonic()
    hook.after_run(None, None)
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_a_paced_dashboard_trains_at_the_pace_and_can_be_let_go(tmp_path, train_fn) -> None:
    dash = nh.Dashboard(
        models.make_estimator(tmp_path / "m"),
        train_fn,
        steps=40,
        pace=20,
        pipeline_checkpoints=False,
    )
    started = time.monotonic()
    dash.train()
    dash.wait(timeout=60)
    assert time.monotonic() - started >= 1.8  # 40 steps at 20 steps/s
    dash.pace = None
    started = time.monotonic()
    dash.train(steps=200)
    dash.wait(timeout=60)
    assert dash.run.global_step == 240 and time.monotonic() - started < 8
    dash.close()


# -- fresh runs --------------------------------------------------------------------------------
@pytest.fixture
def fresh(tmp_path, train_fn, eval_fn, comm_log):
    dash = nh.Dashboard(
        models.make_estimator,
        train_fn,
        evals={"eval": eval_fn},
        every_n_iter=10,
        final_ops={"step": "global_step"},
        steps=20,
        runs_dir=tmp_path / "runs",
    )
    yield dash
    dash.close()


@pytest.mark.slow
def test_each_run_starts_fresh_in_a_new_folder(fresh, tmp_path) -> None:
    runs = tmp_path / "runs"
    assert Path(fresh.run_dir) == (runs / "001").resolve()
    box = fresh.widget
    assert "runs/001" in box.children[1].children[0].value or "001" in fresh._frame.title.value
    fresh.train()
    fresh.wait(timeout=120)
    first = fresh.run
    assert fresh.history.step.max() == 20

    fresh.new_run()
    assert Path(fresh.run_dir) == (runs / "002").resolve()
    assert fresh.widget is box and box.comm is not None  # the same dashboard on the page
    assert first.face is not None and first.face._panel is None  # the old run's views closed
    assert fresh.history.empty and fresh.state == "idle"
    assert "002" in fresh._frame.title.value
    fresh.train()
    fresh.wait(timeout=120)
    assert fresh.run.global_step == 20  # from scratch, not from step 20
    assert sorted(p.name for p in runs.iterdir()) == ["001", "002"]  # the earlier one kept
    assert (runs / "001" / "checkpoint").exists()


@pytest.mark.slow
def test_the_new_run_button_is_off_while_training(fresh) -> None:
    fresh.widget  # noqa: B018 - builds it
    button = fresh._frame.new_run.button
    assert "nbh-new-run" in button._dom_classes and not button.disabled
    fresh.pace = 20
    fresh.train(steps=1000)
    panel = fresh.run.panel()
    assert wait_for(lambda: (panel.publisher.flush(), button.disabled)[1], timeout=30)
    with pytest.raises(RuntimeError, match="stop"):
        fresh.new_run()
    fresh.stop()
    fresh.wait(timeout=60)
    panel.publisher.flush()
    assert not button.disabled
    button.click()
    assert fresh.run is not None and fresh.run_dir.endswith("002")


@pytest.mark.slow
def test_a_dashboard_given_an_estimator_continues_and_says_so(tmp_path, train_fn) -> None:
    dash = nh.Dashboard(models.make_estimator(tmp_path / "m"), train_fn, steps=5)
    with pytest.raises(RuntimeError, match="function model_dir -> Estimator"):
        dash.new_run()
    dash.close()


@pytest.mark.fast
def test_a_factory_that_ignores_its_model_dir_is_refused_leaving_nothing(tmp_path) -> None:
    def elsewhere(model_dir):
        return models.make_estimator(tmp_path / "elsewhere")

    with pytest.raises(ValueError, match="in the model_dir it is given"):
        nh.Dashboard(elsewhere, models.input_fn(), runs_dir=tmp_path / "runs")
    with pytest.raises(TypeError, match="must return an Estimator"):
        nh.Dashboard(lambda d: 42, models.input_fn(), runs_dir=tmp_path / "runs")
    assert list((tmp_path / "runs").iterdir()) == []  # no empty run folder left behind


@pytest.mark.slow
def test_the_curves_status_line_follows_the_next_start(tmp_path, train_fn, eval_fn, comm_log):
    dash = nh.Dashboard(
        models.make_estimator(tmp_path / "m"),
        train_fn,
        evals={"eval": eval_fn},
        steps=10,
        pipeline_checkpoints=False,
    )
    status = dash.widget and dash._views["curves"].status
    dash.train()
    dash.wait(timeout=60)
    publisher = dash.run.panel().publisher
    publisher.flush()
    assert "finished: reached step 10" in status.value
    dash.pace = 5
    dash.train(steps=1000)
    assert wait_for(lambda: (publisher.flush(), status.value == "")[1], timeout=30)
    dash.pause()
    assert wait_for(lambda: (publisher.flush(), "paused at step" in status.value)[1], timeout=30)
    dash.stop()
    dash.wait(timeout=60)
    publisher.flush()
    assert "stopped" in status.value
    dash.close()


# -- projector-sized views ---------------------------------------------------------------------
@pytest.mark.fast
def test_counts_are_plural_only_when_plural() -> None:
    import pandas as pd

    assert plural(1, "session") == "1 session" and plural(2, "session") == "2 sessions"
    frame = pd.DataFrame({"status": ["ok"], "run_id": [1]})
    assert summary_line(frame) == "1 value · 1 session"


@pytest.mark.slow
def test_the_traceback_button_is_never_squeezed(estimator, train_fn, comm_log) -> None:
    from nbhooks.views.progress import ProgressView

    view = ProgressView(nh.TrainingRun(estimator, train_fn, steps=1, report=None))
    assert view.show_traceback.layout.flex == "0 0 auto"
    assert view.show_traceback.layout.min_width == "fit-content"


@pytest.mark.slow
def test_a_new_save_is_selected_and_restore_says_what_it_restores(tmp_path, comm_log):
    from nbhooks.publish import Publisher
    from nbhooks.views.checkpoints import PipelineCheckpointPanel

    est = models.make_estimator(tmp_path / "m", save_checkpoints_steps=5)
    hook = nh.PipelineCheckpointHook(est)
    est.train(models.input_fn(), steps=10, hooks=[hook])  # automatic saves at 5 and 10
    panel = PipelineCheckpointPanel(hook)
    publisher = Publisher(hook.events, [panel])
    assert panel.restore_button.description == "Restore selected"
    assert "not the model's weights" in panel.widget.children[0].value
    assert panel.restore_button.disabled  # nothing selected: nothing to restore
    hook.save()  # idle: at once
    publisher.flush()
    manual = [c.path for c in hook.store.list() if c.kind == "manual"]
    assert len(manual) == 1 and panel.list.value == manual[0]
    assert not panel.restore_button.disabled
    publisher.close()


# -- the report --------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_report_says_what_a_reader_wants(tmp_path, train_fn, eval_fn, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dash = nh.Dashboard(
        models.make_estimator,
        train_fn,
        evals={"train": models.input_fn(repeat=False), "eval": eval_fn},
        every_n_iter=10,
        final_ops={"bias": "dense/bias", "step": "global_step"},
        steps=30,
        pace=1000,
    )
    dash.train()
    dash.wait(timeout=120)
    (tmp_path / "out").mkdir()
    page = dash.export_html(tmp_path / "out" / "report.html").read_text()
    dash.close()
    text = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "<nbhooks.Dashboard" not in text and "&lt;nbhooks" not in text  # no Python repr
    assert "finished at step 30" in text
    for setting in ("model", "steps per Start", "in-memory evaluations", "pace"):
        assert f"<td>{setting}</td>" in text
    assert "train, eval: every 10 steps" in text and "at most 1000 steps/s" in text
    assert "<th>best</th><th>at step</th>" in text  # best values with their steps
    assert "<td>../runs/001</td>" in text  # paths relative to the report
    assert str(tmp_path) not in text
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>", text)  # readable times
    assert not re.search(r"\d{16,}", text)  # no nanosecond timestamps
    assert "<td>bias</td>" in text and "plotly" in page


# -- variable names ----------------------------------------------------------------------------
@pytest.mark.slow
def test_variable_names_before_any_checkpoint(tmp_path) -> None:
    custom = models.make_estimator(tmp_path / "custom")
    assert nh.variable_names(custom, models.input_fn()) == [
        "dense/bias",
        "dense/kernel",
        "global_step",
    ]
    canned = models.make_linear_classifier(tmp_path / "canned")
    names = nh.variable_names(canned, models.input_fn())
    assert "global_step" in names and any(n.startswith("linear/linear_model/") for n in names)
    assert not (tmp_path / "canned").exists()  # nothing written: no checkpoint needed


@pytest.mark.slow
def test_a_wrong_name_fails_at_once_listing_the_models_names(tmp_path, comm_log) -> None:
    canned = models.make_linear_classifier(tmp_path / "canned")
    dash = nh.Dashboard(canned, models.input_fn(), final_ops={"w": "dense/kernel"}, steps=5)
    dash.widget  # noqa: B018 - displayed
    dash.train()
    with pytest.raises(ValueError, match="dense/kernel") as info:
        dash.wait(timeout=120)
    assert "'global_step'" in str(info.value) and "nh.variable_names" in str(info.value)
    assert dash.run.global_step == 0  # refused when training started, before any step
    progress = dash.run.panel().progress
    dash.run.panel().publisher.flush()
    assert "nh.variable_names" in progress.error.value
    dash.close()


@pytest.mark.slow
def test_the_readme_snippet_works_as_written_with_a_canned_estimator(tmp_path) -> None:
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"## Use\n\n```python\n(.*?)```", readme, re.S).group(1)
    final_ops = re.search(r"final_ops=(\{.*?\})", snippet).group(1)
    t = tf()
    column = t.feature_column.numeric_column("x", shape=(models.N_FEATURES,))
    config = t.estimator.RunConfig(model_dir=str(tmp_path / "dnn"))
    canned = t.estimator.DNNClassifier([8], [column], n_classes=2, config=config)
    dash = nh.Dashboard(
        canned, models.input_fn(), final_ops=eval(final_ops), steps=5, pipeline_checkpoints=False
    )
    dash.train()
    assert dash.wait(timeout=120) == "finished"
    assert set(dash.final_ops.name) == set(eval(final_ops))
    dash.close()


# -- the quickstart and the demo ----------------------------------------------------------------
@pytest.mark.fast
def test_the_quickstart_keeps_the_dashboard_in_view_and_shows_nothing_else() -> None:
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    after = nb.cells[nb.cells.index(code[-1]) + 1 :]
    # Run All scrolls to the last cell and keeps it in place as outputs above it grow: one
    # short (folded) cell after the dashboard keeps it in view (the browser test measures it).
    assert code[-1].source.startswith("dash  #") and len(code[-1].source.splitlines()) == 1
    assert len(after) == 1 and after[0].cell_type == "markdown"
    assert after[0].source.startswith("<details>")
    assert after[0].source.rstrip().endswith("</details>")
    assert "pace=20" in code[0].source and "    make_estimator," in code[0].source
    notebook_only = [c for c in nb.cells if "notebook-only" in c.metadata.get("tags", [])]
    assert notebook_only and "type `dash` in a new\ncell" in notebook_only[0].source
    for cell in code[:-1]:  # no output but the dashboard's: nothing left over in Voila
        assert not isinstance(ast.parse(cell.source).body[-1], ast.Expr), cell.source


@pytest.mark.slow
@pytest.mark.kernel
def test_the_voila_demo_prints_one_url_the_one_that_works(tmp_path) -> None:
    workdir = tmp_path / "demo"
    workdir.mkdir()
    harness.write_notebook(workdir / "quickstart.ipynb", "answer = 42")
    out = tmp_path / "out.txt"
    port = harness.free_port()
    with out.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbhooks", "demo", "--voila", "--no-browser",
             "--port", str(port), "--dir", str(workdir)],
            stdout=log, stderr=subprocess.STDOUT, env=harness.jupyter_env(tmp_path / "j"),
            start_new_session=True,
        )  # fmt: skip
    try:
        harness.poll(lambda: "?token=" in out.read_text(), 120, "the demo URL")
        urls = re.findall(r"https?://\S+", out.read_text())
        assert len(urls) == 1 and re.search(r"\?token=\w+$", urls[0]), out.read_text()
    finally:
        harness.stop_process_tree(proc)
    assert json.loads((workdir / ".nbhooks-demo.json").read_text())
