"""CurvesView and its downsampling: pure functions, headless widgets (real widgets, no kernel)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbhooks.events import EvalEvent, EventBus, RunStateEvent
from nbhooks.publish import Publisher
from nbhooks.stores.metrics import MetricHistory
from nbhooks.views._widget_internals import watch_sent_messages
from nbhooks.views.curves import CSS_CLASS, CurvesView, downsample, lttb


@given(size=st.integers(0, 3000), n=st.integers(3, 600), seed=st.integers(0, 2**16))
def test_lttb_keeps_n_sorted_points_with_both_ends(size: int, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.arange(size)
    keep = lttb(x, rng.normal(size=size), n)
    assert len(keep) == min(n, size)
    assert (np.diff(keep) > 0).all()
    if size:
        assert keep[0] == 0 and keep[-1] == size - 1


def test_lttb_keeps_a_spike_and_rejects_tiny_n() -> None:
    y = np.zeros(10_000)
    y[6543] = 5.0
    assert 6543 in lttb(np.arange(10_000), y, 50)
    with pytest.raises(ValueError, match="n >= 3"):
        lttb(np.arange(10), np.zeros(10), 2)


def test_downsample_drops_nan_and_uses_compact_dtypes() -> None:
    steps = np.arange(0, 20_000, 2)
    values = np.linspace(1, 0, steps.size)
    values[5] = np.nan
    x, y = downsample(steps, values, 100)
    assert len(x) == len(y) == 100
    assert x.dtype == np.int32 and y.dtype == np.float32
    assert not np.isnan(y).any()
    assert (x[0], x[-1]) == (0, 19_998)
    small_x, small_y = downsample(steps[:4], values[:4], 100)
    assert small_x.tolist() == [0, 2, 4, 6] and small_y.tolist() == pytest.approx(values[:4])


def fill(history: MetricHistory, names=("train", "eval"), upto: int = 10, start: int = 0) -> None:
    for step in range(start, upto):
        for k, name in enumerate(names):
            loss = 1.0 / (1 + step) + 0.01 * k
            history.record(name, step * 10, {"loss": loss, "accuracy": 1 - loss})


def decode(array: dict) -> list:
    """A numpy array as plotly's widget serializer puts it in the state."""
    return np.frombuffer(array["buffer"], dtype=array["dtype"]).tolist()


def is_line(trace) -> bool:
    """A curve's line (not its best-value star)."""
    return not trace["name"].startswith("best ")


def lines(figure) -> list:
    return [t for t in figure.data if is_line(t)]


def drawn(view: CurvesView) -> dict[tuple[str, str], list[int]]:
    """The x values of each curve in the synced widget state (what a late page would show)."""
    state = view.figure.get_state()["_widget_data"]
    return {
        (t["legendgroup"], t["hovertemplate"].split(":")[0].split()[-1]): decode(t["x"])
        for t in state
        if is_line(t)
    }


@pytest.fixture
def history() -> MetricHistory:
    h = MetricHistory()
    fill(h)
    return h


def test_created_late_it_draws_the_whole_history(history) -> None:
    view = CurvesView(history)
    fig = view.figure
    assert [a.text for a in fig.layout.annotations] == ["loss", "accuracy"]
    assert len(fig.data) == 8  # 2 evaluations x 2 metrics x (line + best star)
    curves = lines(fig)
    assert all(t.mode == "lines+markers" for t in curves)  # few points: each one marked
    assert {(t.legendgroup, t.xaxis) for t in curves} == {
        ("train", "x"),
        ("eval", "x"),
        ("train", "x2"),
        ("eval", "x2"),
    }
    assert [t.name for t in curves if t.showlegend] == ["train", "eval"]  # one legend entry each
    colours = {t.legendgroup: set() for t in curves}
    for t in curves:
        colours[t.legendgroup].add(t.line.color)
    assert all(len(c) == 1 for c in colours.values()) and len(set.union(*colours.values())) == 2
    assert drawn(view)[("eval", "loss")] == list(range(0, 100, 10))
    assert CSS_CLASS in view.widget._dom_classes and CSS_CLASS in fig._dom_classes
    view.close()


def test_updates_in_place_and_keeps_the_synced_state_current(history) -> None:
    view = CurvesView(history)
    fig, traces = view.figure, view.figure.data
    fill(history, upto=15, start=10)
    view.on_events([EvalEvent("eval", 140, {})])
    assert view.figure is fig and all(a is b for a, b in zip(view.figure.data, traces, strict=True))
    assert drawn(view)[("train", "accuracy")] == list(range(0, 150, 10))
    assert view.updates == 2
    # Nothing new: nothing sent.
    assert not view.refresh()
    sent = view.bytes_sent
    view.on_events([EvalEvent("eval", 140, {})])
    assert view.bytes_sent == sent


def test_only_changed_curves_are_restyled(history) -> None:
    view = CurvesView(history, max_points=50)
    sent: list[dict] = []
    watch_sent_messages(view.figure, lambda msg, buffers: sent.append(msg))
    history.record("eval", 10_000, {"loss": 0.5, "accuracy": 0.5})
    view.refresh()
    updates = [m["state"]["_py2js_update"] for m in sent if m["state"].get("_py2js_update")]
    eval_lines = [i for i, t in enumerate(view.figure.data) if t.name == "eval"]
    assert len(updates) == 1 and updates[0]["style_traces"] == eval_lines


def test_bytes_per_update_stay_flat_and_small() -> None:
    history = MetricHistory()
    view = CurvesView(history, max_points=500)
    sizes = {}
    for total in (100, 10_000, 100_000):
        fill(history, upto=total // 4, start=len(history) // 4)
        view.on_events([EvalEvent("eval", 0, {})])
        sizes[total] = view.last_update_bytes
        assert len(history) == total
    assert all(size < 50_000 for size in sizes.values()), sizes
    assert sizes[100_000] == pytest.approx(sizes[10_000], rel=0.05), sizes
    curves = lines(view.figure)
    assert max(len(t.x) for t in curves) == 500
    assert curves[0].x[-1] == (100_000 // 4 - 1) * 10  # the latest point is always drawn
    assert all(t.mode == "lines" for t in curves)  # no marker per point: a light redraw


def test_best_value_is_marked_and_the_readout_shows_latest_and_best() -> None:
    history = MetricHistory()
    for step, loss in enumerate([0.9, 0.4, 0.2, 0.3, 0.35]):
        history.record("eval", step * 100, {"loss": loss, "accuracy": 1 - loss})
    view = CurvesView(history)
    stars = {
        t.hovertemplate.split(":")[0]: (t.x, t.y) for t in view.figure.data if t.mode == "markers"
    }
    assert stars["best eval loss"] == ((200,), (0.2,))
    assert stars["best eval accuracy"] == ((200,), (pytest.approx(0.8),))
    text = view.readout.value
    assert "<b>0.35</b>" in text and "best 0.2 @200" in text and "@400" in text
    minded = CurvesView(history, modes={"accuracy": "min"})
    stars = {t.hovertemplate.split(":")[0]: t.x for t in minded.figure.data if t.mode == "markers"}
    assert stars["best eval accuracy"] == (0,)


def test_stop_reason_is_shown(history) -> None:
    view = CurvesView(history)
    view.on_events([RunStateEvent("stopping", step=90, reason="early stopping: loss flat")])
    assert "early stopping: loss flat" in view.status.value
    view.on_events([RunStateEvent("failed", step=90, reason="ValueError: <bad>")])
    assert "&lt;bad&gt;" in view.status.value and "--jp-error-color1" in view.status.value


def test_export_html_works_offline_and_csv_keeps_everything(history, tmp_path) -> None:
    view = CurvesView(history, max_points=5)
    view.export_html(tmp_path / "curves.html")
    page = (tmp_path / "curves.html").read_text()
    assert "<script src=" not in page and "<script>" in page  # nothing fetched from a CDN
    assert len(page) > 1_000_000  # plotly.js inlined
    assert "eval loss" in page
    view.export_html(tmp_path / "all.html", all_points=True)
    view.to_csv(tmp_path / "h.csv")
    frame = pd.read_csv(tmp_path / "h.csv")
    assert len(frame) == len(history) == 40


def test_publisher_feeds_the_view_from_the_bus(history) -> None:
    bus = EventBus()
    view = CurvesView(history)
    publisher = Publisher(bus, [view], interval=0.05)
    fill(history, upto=20, start=10)
    for step in range(100, 200, 10):
        bus.emit(EvalEvent("eval", step, {}))
    assert publisher.wait_idle(timeout=10)
    publisher.flush()
    assert drawn(view)[("eval", "loss")][-1] == 190
    assert view.updates <= 1 + publisher.batches  # batched: not one update per event
    publisher.close()


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (({"loss": 1},), TypeError, "MetricHistory"),
        ((MetricHistory(), 2), ValueError, "max_points must be an int >= 3"),
    ],
)
def test_bad_arguments(args, error, match) -> None:
    with pytest.raises(error, match=match):
        CurvesView(*args)
    with pytest.raises(ValueError, match='"min" or "max"'):
        CurvesView(MetricHistory(), modes={"loss": "lowest"})


@pytest.mark.parametrize(
    ("keywords", "match"),
    [
        ({"interval": -1}, "interval must be a number of seconds >= 0"),
        ({"interval": "fast"}, "interval must be a number of seconds >= 0"),
        ({"markers_up_to": -1}, "markers_up_to must be an int >= 0"),
        ({"columns": 0}, "columns must be a positive int"),
    ],
)
def test_bad_keywords(keywords, match) -> None:
    with pytest.raises(ValueError, match=match):
        CurvesView(MetricHistory(), **keywords)


def test_markers_only_while_a_curve_is_short() -> None:
    history = MetricHistory()
    fill(history, upto=30)
    view = CurvesView(history, markers_up_to=20)
    assert {t.mode for t in lines(view.figure)} == {"lines"}
    view.close()
    view = CurvesView(history, markers_up_to=30)
    assert {t.mode for t in lines(view.figure)} == {"lines+markers"}
    fill(history, upto=31, start=30)
    view.refresh()
    assert {t.mode for t in lines(view.figure)} == {"lines"}  # switched as the curve grew
    view.close()
