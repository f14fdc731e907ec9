"""dash.rewind(step): model and input checkpoints of a step, replayed bit for bit; branches."""

from __future__ import annotations

import models
import numpy as np
import pytest

import nbhooks as nh
from nbhooks.stores.metrics import MetricHistory

NAMES = ("dense/kernel", "dense/bias")


def make_dash(model_dir):
    estimator = models.make_estimator(
        model_dir, tf_random_seed=0, save_checkpoints_steps=50, keep_checkpoint_max=20
    )
    return nh.Dashboard(
        estimator,
        models.input_fn(shuffle=True),
        evals={"eval": models.input_fn(n=128, repeat=False, seed=1)},
        every_n_iter=50,
        keep_checkpoints=20,
    )


@pytest.mark.fast
def test_a_fork_starts_a_branch_and_lets_later_steps_be_recorded_again() -> None:
    history = MetricHistory()
    for step in (0, 100, 200):
        history.record("eval", step, {"loss": 1.0 / (step + 1)})
    assert "branch" not in history.to_frame()  # no rewind, no branch column
    assert history.fork(100) == 1 and history.branch == 1
    assert history.has("eval", 100) and not history.has("eval", 200)
    assert history.record("eval", 200, {"loss": 5.0})
    frame = history.to_frame()
    assert frame[["step", "value", "branch"]].values.tolist() == [
        [0, 1.0, 0],
        [100, pytest.approx(1 / 101), 0],
        [200, pytest.approx(1 / 201), 0],
        [200, 5.0, 1],
    ]


def test_a_fork_of_some_evaluations_leaves_the_others_on_their_branch() -> None:
    """A Compare forks one run's evaluations when that run rewinds or restarts."""
    history = MetricHistory()
    for step in (0, 100, 200):
        history.record("a", step, {"loss": 1.0})
        history.record("b", step, {"loss": 2.0})
    assert history.fork(100, ["a"]) == 1 and history.last_step(["a"]) == 100
    assert history.last_step(["b"]) == history.last_step() == 200
    assert history.record("a", 200, {"loss": 5.0}) and not history.record("b", 200, {"loss": 9})
    history.record("b", 300, {"loss": 3.0})
    frame = history.to_frame()
    assert frame[["evaluation", "step", "branch"]].values.tolist() == [
        ["a", 0, 0], ["b", 0, 0], ["a", 100, 0], ["b", 100, 0], ["a", 200, 0], ["b", 200, 0],
        ["a", 200, 1], ["b", 300, 0],
    ]  # fmt: skip
    _, values, branch, live = history.lineage("a", "loss")
    assert values[live].tolist() == [1.0, 1.0, 5.0] and branch.tolist() == [0, 0, 0, 1]
    assert history.lineage("b", "loss")[3].all()  # b's line is all live


def faded_and_live(view) -> tuple[dict, dict]:
    """The eval loss traces of the figure's synced state (what a page draws), by name:
    the abandoned ones and the live line."""
    state = view.figure.get_state()["_widget_data"]
    loss = [t for t in state if " loss" in t["hovertemplate"] and t["name"] != "best eval"]
    faded = {t["name"]: t for t in loss if "abandoned" in t["name"]}
    (live,) = [t for t in loss if t["name"] == "eval"]
    return faded, live


def xs(trace: dict) -> list:
    x = trace["x"]
    return np.frombuffer(x["buffer"], dtype=x["dtype"]).tolist() if "buffer" in x else list(x)


@pytest.mark.fast
def test_the_abandoned_branch_is_drawn_faded_and_the_new_one_live(comm_log) -> None:
    from nbhooks.views._widget_internals import watch_sent_messages
    from nbhooks.views.curves import ABANDONED_OPACITY, CurvesView

    history = MetricHistory()
    for step in range(0, 400, 100):
        history.record("eval", step, {"loss": 1.0 - step / 1000})
    view = CurvesView(history)
    sent: list[dict] = []
    watch_sent_messages(view.figure, lambda msg, buffers: sent.append(msg["state"]))
    history.fork(200)
    history.record("eval", 300, {"loss": 0.5})
    assert view.refresh()
    faded, live = faded_and_live(view)
    assert xs(live) == [0, 100, 200, 300]  # the line the training follows now
    assert live.get("opacity", 1) == 1 and live["line"].get("dash") in (None, "solid")
    assert set(faded) == {"eval · branch 0 (abandoned)"}
    old = faded["eval · branch 0 (abandoned)"]
    assert xs(old) == [200, 300]  # from the step rewound to, where it leaves the live line
    assert old["opacity"] == ABANDONED_OPACITY < 1 and old["line"]["dash"] == "dot"
    assert old["line"]["color"] == live["line"]["color"] and not old["showlegend"]
    assert any("_py2js_addTraces" in m for m in sent)  # open pages get it too
    # A second rewind, further back: what branch 1 did is abandoned as well.
    history.fork(100)
    history.record("eval", 200, {"loss": 0.2})
    assert view.refresh()
    faded, live = faded_and_live(view)
    assert xs(live) == [0, 100, 200]
    assert xs(faded["eval · branch 0 (abandoned)"]) == [100, 200, 300]
    assert xs(faded["eval · branch 1 (abandoned)"]) == [300]
    view.close()


@pytest.mark.slow
def test_replaying_from_a_rewind_gives_the_same_weights(tmp_path, comm_log) -> None:
    dash = make_dash(tmp_path / "m")
    assert dash.widget is not None  # shown: its curves draw both branches
    dash.train(steps=200)
    dash.wait(timeout=300)
    straight = {n: dash.estimator.get_variable_value(n) for n in NAMES}
    assert {100, 150, 200} <= set(dash.checkpoints_to_rewind)
    dash.rewind(100)
    faded, live = faded_and_live(dash._views["curves"])  # drawn by rewind() itself
    assert xs(live) == [0, 50, 100] and xs(faded.popitem()[1]) == [100, 150, 200]
    dash.train(steps=100)
    dash.wait(timeout=300)
    assert dash.run.global_step == 200
    for name in NAMES:
        diff = np.abs(dash.estimator.get_variable_value(name) - straight[name]).max()
        assert diff == 0.0, name
    history = dash.history
    loss = history[(history.metric == "loss") & (history.evaluation == "eval")]
    first = loss[loss.branch == 0].set_index("step").value
    second = loss[loss.branch == 1].set_index("step").value
    assert sorted(first.index) == [0, 50, 100, 150, 200]
    assert sorted(second.index) == [150, 200]  # 100 was evaluated before the rewind
    assert second.loc[200] == first.loc[200]  # the same weights evaluate the same
    curves = dash._views["curves"]
    curves.refresh()  # the publisher's next batch (nothing left to draw if it came first)
    faded, live = faded_and_live(curves)
    assert xs(live) == [0, 50, 100, 150, 200] and xs(faded.popitem()[1]) == [100, 150, 200]
    assert not faded  # one abandoned branch
    dash.close()


@pytest.mark.slow
def test_a_missing_checkpoint_is_named_with_the_steps_that_have_both(tmp_path) -> None:
    dash = make_dash(tmp_path / "m")
    dash.train(steps=100)
    dash.wait(timeout=300)
    both = dash.checkpoints_to_rewind
    with pytest.raises(ValueError, match=r"no model checkpoint and no input-pipeline checkpoint"):
        dash.rewind(75)
    (tmp_path / "m" / "model.ckpt-50.index").unlink()
    with pytest.raises(
        ValueError,
        match=r"step 50: no model checkpoint of that step .*steps with both: \[0?,? ?100\]",
    ):
        dash.rewind(50)
    with pytest.raises(TypeError, match="an int >= 0"):
        dash.rewind("50")
    assert dash.history.columns.tolist()[-1] == "wall_time"  # nothing changed
    assert 50 in both
    dash.train(steps=1_000_000)
    try:
        with pytest.raises(RuntimeError, match="rewind needs an idle run"):
            dash.rewind(100)
    finally:
        dash.stop()
        dash.wait(timeout=60)
    plain = nh.Dashboard(
        models.make_estimator(tmp_path / "p"), models.input_fn(), pipeline_checkpoints=False
    )
    with pytest.raises(ValueError, match=r"no model checkpoint of that step .*checkpoint: none"):
        plain.rewind(0)
    plain.close()


@pytest.mark.slow
def test_the_rewind_control_of_the_dashboard(tmp_path, comm_log) -> None:
    from nbhooks.views.base import walk_widgets

    dash = make_dash(tmp_path / "m")
    dash.train(steps=100)
    dash.wait(timeout=300)
    found = {
        css: w
        for w in walk_widgets(dash.widget)
        for css in getattr(w, "_dom_classes", ())
        if css.startswith("nbh-rewind")
    }
    assert list(found["nbh-rewind-step"].options) == [100, 50]
    found["nbh-rewind"].click()  # nothing chosen yet
    assert "choose a step first" in found["nbh-rewind-msg"].value
    found["nbh-rewind-step"].value = 50
    found["nbh-rewind"].click()
    assert "the next training starts from step 50" in found["nbh-rewind-msg"].value
    assert dash.run.global_step == 50  # and the progress says so
    assert dash.run.panel().publisher.wait_idle(timeout=30)
    lines = [
        w.value
        for w in walk_widgets(dash.widget)
        if "nbh-progress-line" in getattr(w, "_dom_classes", ())
    ]
    assert lines and all(line.startswith("step 50 ·") for line in lines), lines
    state = (tmp_path / "m" / "checkpoint").read_text()
    assert state.splitlines()[0].endswith('model.ckpt-50"') and "model.ckpt-100" not in state
    dash.train(steps=10)
    dash.wait(timeout=300)
    assert dash.run.global_step == 60 and dash.history.branch.max() == 1
    dash.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "input_style", ["numpy_input_fn", "pipeline checkpoints off", "a shuffle too large to save"]
)
def test_without_input_positions_the_model_alone_is_rewound(tmp_path, comm_log, input_style):
    """Before: a numpy_input_fn (no position to save) or a shuffle buffer whose automatic
    saves wait for a person's Save could not be rewound at all, and the error spoke of a
    missing input checkpoint; pipeline_checkpoints=False had no Rewind."""
    from nbhooks._tf import tf
    from nbhooks.views.base import walk_widgets

    estimator = models.make_estimator(
        tmp_path / "m", tf_random_seed=0, save_checkpoints_steps=20, keep_checkpoint_max=20
    )
    evals = {"eval": models.input_fn(n=128, repeat=False, seed=1)}
    if input_style == "numpy_input_fn":
        x, y = models.make_data(512)
        train_fn = tf().compat.v1.estimator.inputs.numpy_input_fn(
            {"x": x}, y, batch_size=32, num_epochs=None, shuffle=True
        )
        dash = nh.Dashboard(estimator, train_fn, evals=evals, every_n_iter=20)
    elif input_style == "pipeline checkpoints off":
        train_fn = models.input_fn(shuffle=True)
        dash = nh.Dashboard(
            estimator, train_fn, evals=evals, every_n_iter=20, pipeline_checkpoints=False
        )
    else:  # 6000 rows shuffled: ~1.6 MB a save, paused by default
        dash = nh.Dashboard(estimator, models.input_fn(n=6000, shuffle=True), evals=evals,
                            every_n_iter=20)  # fmt: skip
    try:
        found = {
            css: w
            for w in walk_widgets(dash.widget)
            for css in getattr(w, "_dom_classes", ())
            if css.startswith("nbh-rewind")
        }
        assert found["nbh-rewind-step"].options == ()
        dash.train(steps=60)
        dash.wait(timeout=300)
        assert dash.checkpoints_to_rewind == [0, 20, 40, 60]
        # The list followed the run's end (before: it stayed as built until Refresh).
        assert dash.run.panel().publisher.wait_idle(timeout=30)
        assert list(found["nbh-rewind-step"].options) == [60, 40, 20, 0]
        found["nbh-rewind-step"].value = 20
        found["nbh-rewind"].click()
        message = found["nbh-rewind-msg"].value
        assert message.startswith("the next training starts from step 20 (the model; the input")
        kernel = estimator.get_variable_value("dense/kernel")  # the newest checkpoint's
        reader = tf().train.load_checkpoint(str(tmp_path / "m" / "model.ckpt-20"))
        assert np.array_equal(kernel, reader.get_tensor("dense/kernel"))
        dash.train(steps=20)
        dash.wait(timeout=300)
        assert dash.run.global_step == 40
        branch = dash.history.query("branch == 1 and metric == 'loss'")
        assert branch.step.tolist() == [40]  # the new branch: step 20 itself stays on branch 0
        expected = estimator.evaluate(
            evals["eval"], checkpoint_path=str(tmp_path / "m" / "model.ckpt-40")
        )
        assert branch.value.item() == pytest.approx(expected["loss"], rel=1e-6)
    finally:
        dash.close()


@pytest.mark.slow
def test_a_dashboard_made_again_shows_the_history_it_goes_on_from(tmp_path, comm_log) -> None:
    """A restarted kernel's dashboard on the same model_dir draws the earlier evaluations,
    read from the eval folder, up to the checkpoint it goes on from; none of the branch a
    rewind abandoned (for TensorBoard either), though its steps are on disk."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dash = make_dash(tmp_path / "m")
    dash.train(steps=230)  # evaluated at 0, 50, ..., 200 and 230
    dash.wait(timeout=300)
    dash.rewind(100)
    dash.train(steps=150)  # the new branch: 150, 200 and 250; 230 is abandoned
    dash.wait(timeout=300)
    history = dash.history
    loss = history[(history.metric == "loss") & (history.evaluation == "eval")]
    live = loss[(loss.branch == 1) | (loss.step <= 100)].drop_duplicates("step", keep="last")
    expected = live.set_index("step").value
    assert sorted(expected.index) == [0, 50, 100, 150, 200, 250]
    assert 230 in set(loss.step)  # recorded, on the abandoned branch
    dash.close()

    again = make_dash(tmp_path / "m")
    loss = again.history[again.history.metric == "loss"].set_index("step").value
    assert sorted(loss.index) == sorted(expected.index)  # not 230
    assert again.eval_status.endswith(
        f"6 earlier evaluations (steps 0-250) read from {tmp_path / 'm' / 'eval_eval'}"
    )
    np.testing.assert_array_equal(
        loss.sort_index().to_numpy(np.float32), expected.sort_index().to_numpy(np.float32)
    )
    assert again.widget is not None
    faded, drawn = faded_and_live(again._views["curves"])
    assert xs(drawn) == [0, 50, 100, 150, 200, 250] and not faded
    board = EventAccumulator(str(tmp_path / "m" / "eval_eval"), size_guidance={"scalars": 0})
    board.Reload()
    assert [e.step for e in board.Scalars("loss")] == [0, 50, 100, 150, 200, 250]
    again.train(steps=50)  # goes on: 250 is not evaluated again
    again.wait(timeout=300)
    steps = again.history[again.history.metric == "loss"].step.tolist()
    assert steps == [0, 50, 100, 150, 200, 250, 300]
    again.close()


def test_a_monitor_following_a_rewound_training_draws_its_new_branch(tmp_path, comm_log):
    """A Monitor that follows a model_dir while its training is rewound draws the new
    branch's evaluations as the live line (the abandoned ones faded), not both as one."""
    dash = make_dash(tmp_path / "m")
    dash.train(steps=230)  # evaluated at 0, 50, ..., 200 and 230
    dash.wait(timeout=300)
    monitor = nh.Monitor(tmp_path / "m", start=False)
    monitor.widget  # noqa: B018 - shown
    face = monitor._face
    face.publisher.flush()
    assert xs(faded_and_live(face.curves)[1]) == [0, 50, 100, 150, 200, 230]
    dash.rewind(100)
    dash.train(steps=150)  # the new branch: 150, 200 and 250; 230 is abandoned
    dash.wait(timeout=300)
    monitor.poll()
    face.publisher.flush()
    faded, live = faded_and_live(face.curves)
    assert xs(live) == [0, 50, 100, 150, 200, 250]
    assert [xs(trace) for trace in faded.values()] == [[100, 150, 200, 230]]

    def live_loss(history):  # branch 1, and branch 0 up to the rewind
        loss = history[(history.metric == "loss") & ((history.branch == 1) | (history.step <= 100))]
        return loss.drop_duplicates("step", keep="last").set_index("step").value.sort_index()

    expected = live_loss(dash.history)
    assert list(expected.index) == [0, 50, 100, 150, 200, 250]
    np.testing.assert_array_equal(live_loss(monitor.history), expected)
    later = nh.Monitor(tmp_path / "m", start=False)  # one that reads it all at once
    np.testing.assert_array_equal(live_loss(later.history), expected)
    for closing in (later, monitor, dash):
        closing.close()
