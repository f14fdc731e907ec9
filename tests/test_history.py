"""MetricHistory: pure model tests (no TensorFlow, no widgets)."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from nbhooks.stores.metrics import COLUMNS, MetricHistory, guess_mode, is_improvement

pytestmark = pytest.mark.fast


def test_record_stores_one_row_per_value_in_order() -> None:
    h = MetricHistory()
    assert h.record("eval", 0, {"loss": 0.7, "accuracy": 0.5}, wall_time=10.0)
    assert h.record("train", 0, {"loss": 0.6}, wall_time=11.0)
    assert h.record("eval", 100, {"loss": 0.3, "accuracy": 0.9}, wall_time=12.0)
    frame = h.to_frame()
    assert tuple(frame.columns) == COLUMNS
    assert len(h) == len(frame) == 5
    assert frame["step"].tolist() == [0, 0, 0, 100, 100]
    assert frame["evaluation"].tolist() == ["eval", "eval", "train", "eval", "eval"]
    assert frame["metric"].tolist() == ["loss", "accuracy", "loss", "loss", "accuracy"]
    assert frame["value"].tolist() == [0.7, 0.5, 0.6, 0.3, 0.9]
    assert frame["wall_time"].tolist() == [10.0, 10.0, 11.0, 12.0, 12.0]
    assert frame["step"].dtype == "int64"
    assert h.names == ["eval", "train"]
    assert h.metrics == ["loss", "accuracy"]


def test_declared_evaluations_keep_their_place_whatever_finishes_first() -> None:
    h = MetricHistory()
    h.declare("train")
    h.declare("eval")
    h.declare("train")  # again: keeps its place
    assert h.order == ["train", "eval"] and h.names == [] and len(h) == 0
    h.record("eval", 0, {"loss": 0.5})  # finished first (evaluations beside training)
    assert h.names == ["eval"] and h.order == ["train", "eval"]
    h.record("extra", 0, {"loss": 0.4})  # never declared: after the declared ones
    h.record("train", 0, {"loss": 0.6})
    assert h.names == ["train", "eval", "extra"] == h.order
    assert list(h.latest()) and set(h.latest()) == set(h.names)
    with pytest.raises(ValueError, match="non-empty string"):
        h.declare("")


def test_same_step_is_recorded_once_per_name() -> None:
    h = MetricHistory()
    assert h.record("eval", 5, {"loss": 1.0})
    assert not h.record("eval", 5, {"loss": 2.0})
    assert h.record("other", 5, {"loss": 3.0})
    assert h.has("eval", 5) and not h.has("eval", 6)
    assert h.series("eval", "loss")[1].tolist() == [1.0]
    assert len(h) == 2


def test_empty_history() -> None:
    h = MetricHistory()
    frame = h.to_frame()
    assert tuple(frame.columns) == COLUMNS and frame.empty
    assert h.best("loss") is None
    assert h.latest() == {}
    steps, values = h.series("eval", "loss")
    assert steps.size == values.size == 0


def test_best_and_latest() -> None:
    h = MetricHistory()
    for step, (a, b) in enumerate([(0.5, 0.4), (0.8, 0.9), (0.8, 0.7), (float("nan"), 0.95)]):
        h.record("eval", step, {"accuracy": a}, wall_time=100 + step)
        h.record("train", step, {"accuracy": b}, wall_time=100 + step)
    best = h.best("accuracy", "max", evaluation="eval")
    assert (best.step, best.value, best.wall_time) == (1, 0.8, 101.0)  # ties: earliest
    overall = h.best("accuracy", "max")
    assert (overall.evaluation, overall.step, overall.value) == ("train", 3, 0.95)
    assert h.best("accuracy", "min").value == 0.4
    latest = h.latest()
    assert latest["train"].step == 3 and latest["train"].metrics == {"accuracy": 0.95}
    with pytest.raises(ValueError, match='"min" or "max"'):
        h.best("accuracy", "biggest")


def test_bad_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        MetricHistory().record("", 0, {"loss": 1.0})


def test_to_csv_round_trips(tmp_path) -> None:
    h = MetricHistory()
    h.record("eval", 0, {"loss": 0.25}, wall_time=1.5)
    h.to_csv(tmp_path / "h.csv")
    back = pd.read_csv(tmp_path / "h.csv")
    assert back.to_dict("records") == [
        {"step": 0, "evaluation": "eval", "metric": "loss", "value": 0.25, "wall_time": 1.5}
    ]


def test_concurrent_writers_and_readers_lose_nothing() -> None:
    h = MetricHistory()
    errors: list[BaseException] = []

    def write(name: str) -> None:
        for step in range(2000):
            h.record(name, step, {"loss": float(step), "acc": 1.0})

    def read() -> None:
        try:
            while len(h) < 8000:
                frame = h.to_frame()
                steps, values = h.series("a", "loss")
                assert len(steps) == len(values)
                assert frame["step"].notna().all()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in "ab"]
    threads.append(threading.Thread(target=read))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(h) == 8000
    assert h.series("b", "loss")[0].tolist() == list(range(2000))


@pytest.mark.parametrize(
    ("metric", "mode"),
    [
        *[("loss", "min"), ("average_loss", "min"), ("mean_squared_error", "min")],
        *[("accuracy", "max"), ("auc", "max"), ("auc_precision_recall", "max")],
        *[("recall", "max"), ("mean_iou", "max")],
        # reported beside the model's metrics, or named by you: no better direction known
        *[("label/mean", None), ("prediction/mean", None), ("accuracy_baseline", None)],
        ("my_score", None),
    ],
)
def test_guess_mode(metric: str, mode: str | None) -> None:
    assert guess_mode(metric) == mode


def test_a_metric_with_no_mode_has_no_best() -> None:
    h = MetricHistory()
    h.record("eval", 10, {"prediction/mean": 3.0})
    assert h.best("prediction/mean", None) is None
    assert h.best("prediction/mean", "max") is not None


def test_is_improvement() -> None:
    assert is_improvement(1.0, None, "min", 0.0)
    assert is_improvement(0.5, 1.0, "min", 0.1)
    assert not is_improvement(0.95, 1.0, "min", 0.1)
    assert is_improvement(1.2, 1.0, "max", 0.1)
    assert not is_improvement(float("nan"), None, "max", 0.0)


def test_lineage_says_which_values_two_rewinds_left_off_the_live_line() -> None:
    h = MetricHistory()
    for step in range(0, 400, 100):
        h.record("eval", step, {"loss": 1.0})  # branch 0: 0..300
    steps, _, branch, live = h.lineage("eval", "loss")
    assert branch.tolist() == [0] * 4 and live.all()  # no rewind: all live
    h.fork(200)
    h.record("eval", 300, {"loss": 2.0})  # branch 1 from 200: 300
    h.fork(100)
    h.record("eval", 200, {"loss": 3.0})  # branch 2 from 100: 200, 300
    h.record("eval", 300, {"loss": 3.0})
    steps, values, branch, live = h.lineage("eval", "loss")
    assert steps.tolist() == [0, 100, 200, 300, 300, 200, 300]
    assert branch.tolist() == [0, 0, 0, 0, 1, 2, 2]
    assert live.tolist() == [True, True, False, False, False, True, True]
    assert values[live].tolist() == [1.0, 1.0, 3.0, 3.0]
    assert h.lineage("eval", "nothing")[0].size == 0


def test_replay_gives_another_history_the_same_values_and_branches() -> None:
    history = MetricHistory()
    history.record("eval", 0, {"loss": 1.0, "acc": 0.1}, wall_time=10.0)
    history.record("train", 0, {"loss": 0.9}, wall_time=11.0)
    history.record("eval", 50, {"loss": 0.5, "acc": 0.6}, wall_time=12.0)
    history.fork(0, ["eval"])
    history.record("eval", 50, {"loss": 0.4, "acc": 0.7}, wall_time=13.0)
    history.fork(50)
    copy = MetricHistory()
    for done in history.replay():
        if isinstance(done, tuple):
            copy.fork(*done)
        else:
            copy.record(done.evaluation, done.step, done.metrics, done.wall_time)
    pd.testing.assert_frame_equal(copy.to_frame(), history.to_frame())
    assert copy.branch == history.branch == 2
    assert history.replay()[-1] == (50, None)  # a fork after the last value is kept too
