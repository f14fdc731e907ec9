"""nh.Compare: a queue of real runs, one or several at a time, with real widgets (recorded comm)."""

from __future__ import annotations

import threading

import models
import numpy as np
import pytest
from waiting import interrupted_when, wait_for

import nbhooks as nh
from nbhooks.compare import BUDGET_BYTES
from nbhooks.events import BranchEvent, RunStateEvent

pytestmark = pytest.mark.slow

RATES = (0.05, 0.5)


def make_dash(tmp_path, rate: float, *, tag: str = "", **kwargs):
    estimator = models.make_estimator(
        tmp_path / f"lr{rate}{tag}", learning_rate=rate, tf_random_seed=0
    )
    kwargs.setdefault("evals", {"eval": models.input_fn(n=128, repeat=False, seed=1)})
    kwargs.setdefault("every_n_iter", 50)
    return nh.Dashboard(
        estimator, models.input_fn(shuffle=True), pipeline_checkpoints=False, **kwargs
    )


class Concurrency:
    """Counts how many of the watched runs train at once (from their own state events)."""

    def __init__(self, compare) -> None:
        self.lock = threading.Lock()
        self.now, self.most, self.order = 0, 0, []
        for name, dash in compare.dashboards.items():
            dash.run.events.subscribe(lambda e, name=name: self.on(name, e))

    def on(self, name: str, event) -> None:
        if not isinstance(event, RunStateEvent):
            return
        with self.lock:
            if event.state == "running" and name not in self.order:
                self.order.append(name)
                self.now += 1
            elif event.state in ("finished", "stopped", "failed"):
                self.now -= 1
            self.most = max(self.most, self.now)


def test_one_after_another_in_order_with_a_tidy_history(tmp_path) -> None:
    runs = {f"lr {r}": make_dash(tmp_path, r) for r in RATES}
    cmp = nh.Compare(runs, parallel=1)
    assert cmp.metrics.order == ["lr 0.05 · eval", "lr 0.5 · eval"]  # places kept from the start
    seen = Concurrency(cmp)
    try:
        cmp.train(steps=150)
        assert cmp.wait(timeout=300) == {"lr 0.05": "finished", "lr 0.5": "finished"}
        assert not cmp.running
        assert seen.order == ["lr 0.05", "lr 0.5"] and seen.most == 1
        history = cmp.history
        assert list(history.columns) == [
            "run",
            "step",
            "evaluation",
            "metric",
            "value",
            "wall_time",
        ]
        assert set(history.run) == set(runs)
        assert sorted(history[history.run == "lr 0.5"].step.unique()) == [0, 50, 100, 150]
        # the curves' own history holds the same values, under "<run> · <evaluation>"
        steps, values = cmp.metrics.series("lr 0.5 · eval", "loss")
        mine = history[(history.run == "lr 0.5") & (history.metric == "loss")]
        assert steps.tolist() == mine.step.tolist() and values.tolist() == mine.value.tolist()
        summary = cmp.summary
        assert summary.learning_rate.tolist() == list(RATES)
        assert summary.step.tolist() == [150, 150]
        assert (summary["best eval loss"] > 0).all()
        assert cmp.to_csv(tmp_path / "h.csv").read_text().startswith("run,step,evaluation")
        assert "nbhooks comparison" in cmp.export_html(tmp_path / "c.html").read_text()
        cmp.train(steps=50)  # again: every run continues from its checkpoint
        cmp.wait(timeout=300)
        assert cmp.summary.step.tolist() == [200, 200]
    finally:
        cmp.close()


def test_two_at_once_give_the_same_weights_as_each_alone(tmp_path) -> None:
    alone = {}
    for rate in RATES:
        estimator = models.make_estimator(
            tmp_path / f"alone{rate}", learning_rate=rate, tf_random_seed=0
        )
        estimator.train(models.input_fn(shuffle=True), steps=300)
        alone[rate] = estimator
    cmp = nh.Compare({str(r): make_dash(tmp_path, r, evals=None) for r in RATES}, parallel=2)
    seen = Concurrency(cmp)
    try:
        cmp.train(steps=300)
        cmp.wait(timeout=300)
        assert seen.most == 2  # they did train at the same time
        for rate in RATES:
            together = cmp.dashboards[str(rate)].estimator
            for name in ("dense/kernel", "dense/bias"):
                diff = np.abs(
                    together.get_variable_value(name) - alone[rate].get_variable_value(name)
                )
                assert diff.max() == 0.0, (rate, name)
    finally:
        cmp.close()


def test_stop_one_run_and_the_queue(tmp_path) -> None:
    runs = {f"r{i}": make_dash(tmp_path, 0.1, tag=str(i), evals=None) for i in range(3)}
    cmp = nh.Compare(runs, parallel=1)
    try:
        cmp.stop_run("r2")  # not started: taken off the queue when it is queued
        cmp.train(steps=1_000_000)
        assert cmp.states["r2"] == "queued"
        cmp.stop_run("r2")
        assert wait_for(lambda: runs["r0"].run.global_step > 10, timeout=120)
        cmp.stop_run("r0")  # the next one starts
        assert wait_for(lambda: runs["r1"].run.global_step > 10, timeout=120)
        cmp.stop()
        assert cmp.wait(timeout=120) == {"r0": "stopped", "r1": "stopped", "r2": "idle"}
        with pytest.raises(KeyError, match=r"no run named 'nope'.*r0"):
            cmp.stop_run("nope")
    finally:
        cmp.close()


def test_interrupting_wait_stops_every_run_and_the_queue(tmp_path) -> None:
    """Before: the KeyboardInterrupt left wait() and the runs went on in the background."""
    runs = {f"r{i}": make_dash(tmp_path, 0.1, tag=str(i), evals=None) for i in range(3)}
    cmp = nh.Compare(runs, parallel=2)
    try:
        cmp.train(steps=1_000_000)
        started = [runs["r0"].run, runs["r1"].run]
        with (
            interrupted_when(lambda: all(r.global_step > 10 for r in started)),
            pytest.raises(KeyboardInterrupt, match=r"the comparison stopped .* was interrupted"),
        ):
            cmp.wait(timeout=120)
        assert cmp.states == {"r0": "stopped", "r1": "stopped", "r2": "idle"}
        assert runs["r0"].run.reason == "interrupted (KeyboardInterrupt)"
    finally:
        cmp.close()


def test_a_closed_comparison_neither_trains_nor_shows_again(tmp_path) -> None:
    cmp = nh.Compare({"a": make_dash(tmp_path, 0.1, evals=None)})
    cmp.close()
    with pytest.raises(ValueError, match=r"runs\['a'\] was closed: pass a new"):
        nh.Compare({"a": cmp.dashboards["a"]})
    for again in (lambda: cmp.train(steps=5), lambda: cmp.widget):
        with pytest.raises(RuntimeError, match="this comparison was closed"):
            again()
    assert cmp._repr_mimebundle_() == {
        "text/plain": "<nbhooks.Compare parallel=1 (closed) {a: idle}>"
    }


def test_a_training_error_is_reraised_with_the_run_name(tmp_path) -> None:
    def broken():
        raise ValueError("no data today")

    bad = nh.Dashboard(models.make_estimator(tmp_path / "bad"), broken, pipeline_checkpoints=False)
    cmp = nh.Compare({"good": make_dash(tmp_path, 0.1, evals=None), "bad": bad})
    try:
        cmp.train(steps=20)
        with pytest.raises(ValueError, match="no data today") as info:
            cmp.wait(timeout=120)
        assert "in the compared run 'bad'" in info.value.__notes__
        assert cmp.states == {"good": "finished", "bad": "failed"}
    finally:
        cmp.close()


def test_bad_arguments_are_refused_before_anything_starts(tmp_path) -> None:
    dash = make_dash(tmp_path, 0.1, evals=None)
    with pytest.raises(TypeError, match=r"non-empty dict of name -> nh\.Dashboard"):
        nh.Compare({})
    with pytest.raises(TypeError, match=r"runs\['a'\] must be an nh.Dashboard"):
        nh.Compare({"a": dash.estimator})
    with pytest.raises(ValueError, match="parallel"):
        nh.Compare({"a": dash}, parallel=0)
    twin = nh.Dashboard(
        models.make_estimator(tmp_path / "twin"), models.input_fn(), pipeline_checkpoints=False
    )
    twin.run.model_dir = dash.run.model_dir  # as if both estimators wrote to one directory
    with pytest.raises(ValueError, match="share the model_dir"):
        nh.Compare({"a": dash, "b": twin})
    cmp = nh.Compare({"a": dash})
    try:
        dash.train(steps=1_000_000)
        with pytest.raises(RuntimeError, match="already training \\(a\\)"):
            cmp.train(steps=10)
    finally:
        cmp.close()
    assert not dash.run.running


# -- widgets (real widgets, recorded comm) ----------------------------------------------------
def test_all_curves_share_the_bytes_budget_of_an_update(tmp_path, comm_log) -> None:
    runs = {
        f"lr {r}": make_dash(
            tmp_path,
            r,
            evals={"train": models.input_fn(repeat=False), "eval": models.input_fn(repeat=False)},
        )
        for r in (0.01, 0.1, 0.5)
    }
    cmp = nh.Compare(runs)
    try:
        widget = cmp.widget
        assert "nbh-compare" in widget._dom_classes
        curves = cmp.face.curves
        rng = np.random.default_rng(0)

        def evaluate(steps):  # 3 runs x 2 evaluations x 2 metrics: 12 curves
            for step in steps:
                for run in runs:
                    for evaluation in ("train", "eval"):
                        cmp.metrics.record(
                            f"{run} · {evaluation}",
                            step,
                            {"loss": rng.random(), "accuracy": rng.random()},
                        )

        evaluate(range(0, 100, 10))
        assert curves.refresh()  # the first curves: the grid and the traces are made
        evaluate(range(100, 20_000, 10))  # then 2000 evaluations more, every curve changed
        before = comm_log.nbytes()
        assert curves.refresh()
        sent = comm_log.nbytes() - before
        assert curves.last_update_bytes == sent
        assert 0 < sent <= BUDGET_BYTES, sent  # every one of 12 curves redrawn, in budget
        assert len(curves.figure.data) == 24  # a line and a best-value star per curve
        drawn = [len(t.x) for t in curves.figure.data[::2]]
        assert max(drawn) <= curves.max_points < 500 and min(drawn) > 3
    finally:
        cmp.close()


def test_the_table_and_curves_follow_live_training(tmp_path, comm_log) -> None:
    runs = {f"lr {r}": make_dash(tmp_path, r, every_n_iter=20) for r in RATES}
    cmp = nh.Compare(runs, parallel=2)
    try:
        face = cmp.widget and cmp.face
        cmp.train(steps=200)
        cmp.wait(timeout=300)
        face.publisher.flush()
        assert face.curves.updates >= 2
        assert {t.name for t in face.curves.figure.data[::2]} == {"lr 0.05 · eval", "lr 0.5 · eval"}
        assert [len(t.x) for t in face.curves.figure.data[::2]] == [11] * 4
        cells = face.table.cells["lr 0.5"]
        assert "finished" in cells["state"].value and cells["step"].value == "200"
        assert "learning_rate=0.5" in cells["settings"].value
        assert "eval loss <b>" in cells["best"].value
        stop = [
            b for b in _walk(face.widget) if "nbh-compare-stop" in getattr(b, "_dom_classes", ())
        ]
        assert len(stop) == 2
        stop[0].click()  # a finished run: nothing to stop
        assert cmp.states["lr 0.05"] == "finished"
    finally:
        cmp.close()
    assert face.publisher._closed


def test_prepared_evaluations_draw_their_empty_curves_under_the_run_names(tmp_path) -> None:
    runs = {f"lr {r}": make_dash(tmp_path, r) for r in RATES}
    cmp = nh.Compare(runs)
    try:
        face = cmp.widget and cmp.face
        for dash in runs.values():  # shown: each prepares its evaluation before training
            assert dash.widget is not None and dash.eval_preparation.wait(timeout=60)
        face.publisher.flush()
        drawn = {(t.name, t.xaxis, len(t.x)) for t in face.curves.figure.data[::2]}
        assert drawn == {(f"{run} · eval", axis, 0) for run in runs for axis in ("x", "x2")}, (
            "each run's evaluation drawn empty on both subplots before any value"
        )
    finally:
        cmp.close()
        for dash in runs.values():
            dash.close()


def _walk(widget):
    from nbhooks.views.base import walk_widgets

    return walk_widgets(widget)


def kept_and_unsaved(tmp_path):
    """Two runs: one whose RunConfig saves checkpoints, one whose saves none (each train()
    restarts it from step 0: a branch)."""
    kept = make_dash(tmp_path, RATES[0])
    estimator = models.make_estimator(
        tmp_path / "unsaved", learning_rate=RATES[1], save_checkpoints_steps=None,
        save_checkpoints_secs=None,
    )  # fmt: skip
    with pytest.warns(nh.NbhooksWarning, match="saves no checkpoints"):
        unsaved = nh.Dashboard(estimator, models.input_fn(shuffle=True), every_n_iter=50,
                               evals={"eval": models.input_fn(n=128, repeat=False, seed=1)},
                               pipeline_checkpoints=False)  # fmt: skip
    return kept, unsaved


def test_a_run_that_starts_a_branch_starts_one_in_the_comparison_alone(tmp_path) -> None:
    """A run restarted from step 0 (its RunConfig saves no checkpoints) forks its own history;
    the comparison forks that run's part too, not the others', and shows the new values."""
    kept, unsaved = kept_and_unsaved(tmp_path)
    cmp = nh.Compare({"kept": kept, "unsaved": unsaved}, parallel=1)
    try:
        for _ in range(2):
            cmp.train(steps=100)
            assert cmp.wait(timeout=300) == {"kept": "finished", "unsaved": "finished"}
        frame = cmp.metrics.to_frame().query("metric == 'loss'")  # what its curves draw
        kept_rows = frame[frame.evaluation == "kept · eval"]
        assert set(kept_rows.branch) == {0}
        assert sorted(kept_rows.step) == [0, 50, 100, 150, 200]
        ours = frame[frame.evaluation == "unsaved · eval"].sort_values(["branch", "step"])
        own = unsaved.history.query("metric == 'loss'").sort_values(["branch", "step"])
        expected = [(b, s) for b in (0, 1) for s in (0, 50, 100)]
        assert list(zip(ours.branch, ours.step, strict=True)) == expected
        assert ours.value.tolist() == own.value.tolist()  # the run's own numbers, both branches
        _, values, _, live = cmp.metrics.lineage("unsaved · eval", "loss")
        assert values[live].tolist() == own[own.branch == 1].value.tolist()  # the live line
        assert set(cmp.history.query("run == 'kept'").branch) == {0}  # not NaN
    finally:
        cmp.close()


def test_a_comparison_of_runs_that_trained_before_draws_what_they_did(tmp_path) -> None:
    """Runs trained (and one restarted: a branch) before the comparison was made: its curves
    hold their values and branches from the start, as each run's own history has them (they
    were empty until the runs trained again), and go on from there."""
    kept, unsaved = kept_and_unsaved(tmp_path)
    for dash in (kept, unsaved, unsaved):
        dash.train(steps=100)
        assert dash.wait(timeout=300) == "finished"
    cmp = nh.Compare({"kept": kept, "unsaved": unsaved}, parallel=1)
    try:
        frame = cmp.metrics.to_frame().query("metric == 'loss'")
        for name, dash in (("kept", kept), ("unsaved", unsaved)):
            ours = frame[frame.evaluation == f"{name} · eval"]
            own = dash.history.query("metric == 'loss'")
            assert ours.step.tolist() == own.step.tolist()
            assert ours.value.tolist() == own.value.tolist()
            assert ours.wall_time.tolist() == own.wall_time.tolist()
        assert frame[frame.evaluation == "unsaved · eval"].branch.tolist() == [0, 0, 0, 1, 1, 1]
        assert set(frame[frame.evaluation == "kept · eval"].branch) == {0}
        _, values, _, live = cmp.metrics.lineage("unsaved · eval", "loss")
        own = unsaved.history.query("metric == 'loss' and branch == 1")
        assert values[live].tolist() == own.value.tolist()
        # a fork the copy had, told once more (its run forked while the comparison was made)
        unsaved.run.events.emit(BranchEvent(-1))
        assert cmp.metrics.forks("unsaved · eval") == unsaved.metrics.forks("eval") == 1
        cmp.train(steps=50)
        assert cmp.wait(timeout=300) == {"kept": "finished", "unsaved": "finished"}
        steps, _ = cmp.metrics.series("kept · eval", "loss")
        assert steps.tolist() == [0, 50, 100, 150]
    finally:
        cmp.close()
