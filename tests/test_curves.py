"""CurvesView and its downsampling: pure functions, headless widgets (real widgets, no kernel)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nbhooks.events import EvalEvent, EvalPreparedEvent, EventBus, RunStateEvent
from nbhooks.publish import Publisher
from nbhooks.stores.metrics import MetricHistory
from nbhooks.views._widget_internals import watch_sent_messages
from nbhooks.views.curves import (
    CSS_CLASS,
    CurvesView,
    Downsampler,
    colour_of,
    downsample,
    lttb,
)


@settings(deadline=None)  # a loaded 2-core machine
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
    return {curve_key(t): decode(t["x"]) for t in state if is_line(t)}


def curve_key(trace) -> tuple[str, str]:
    """(evaluation, metric) of a curve's line (a trace or its state)."""
    return trace["legendgroup"], trace["hovertemplate"].split(":")[0].split()[-1]


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


def test_colours_legend_and_readout_follow_the_declared_order_not_the_finish() -> None:
    """Evaluations beside training finish in any order: "train", declared first, keeps the
    first colour, legend entry and readout row although "eval" was recorded first."""
    history = MetricHistory()
    for name in ("train", "eval"):
        history.declare(name)
    fill(history, names=("eval",), upto=1)
    view = CurvesView(history)
    fill(history, names=("train", "eval"), upto=3, start=1)
    fill(history, names=("train",), upto=1)
    view.refresh()
    by_name: dict[str, set] = {}
    for t in lines(view.figure):
        by_name.setdefault(t.legendgroup, set()).add((t.line.color, t.legendrank))
    assert by_name == {"train": {(colour_of(0), 1000)}, "eval": {(colour_of(1), 1001)}}
    rows = view.readout.value.split("<tr>")[2:]
    assert "train" in rows[0] and colour_of(0) in rows[0] and "eval" in rows[1]
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
    updates = [m["state"]["_py2js_restyle"] for m in sent if m["state"].get("_py2js_restyle")]
    eval_lines = [i for i, t in enumerate(view.figure.data) if t.name == "eval"]
    assert len(updates) == 1 and updates[0]["restyle_traces"] == eval_lines


def test_each_point_is_sent_once_and_the_synced_state_is_the_figure(history) -> None:
    view = CurvesView(history)
    messages: list[tuple[dict, int]] = []
    watch_sent_messages(
        view.figure,
        lambda msg, buffers: messages.append(
            (msg, sum(memoryview(b).nbytes for b in buffers or ()))
        ),
    )
    fill(history, upto=11, start=10)
    view.refresh()
    # One restyle of the four changed lines; no state message with the data again.
    keys = [k for msg, _ in messages for k in msg["state"]]
    assert "_widget_data" not in keys and keys.count("_py2js_restyle") == 2  # the message, None
    drawn_points = sum(len(t.x) for t in lines(view.figure))
    assert sum(size for _, size in messages) == 8 * drawn_points  # int32 + float32 each
    # A page that connects now gets the figure as it is, every trace.
    state = view.figure.get_state()["_widget_data"]
    assert len(state) == len(view.figure.data)
    for synced, trace in zip(state, view.figure.data, strict=True):
        x = decode(synced["x"]) if isinstance(synced["x"], dict) else list(synced["x"])
        assert x == list(trace.x) and synced.get("mode") == trace.mode


def test_bytes_per_update_stay_small_however_long_the_run() -> None:
    history = MetricHistory()
    view = CurvesView(history, max_points=500)
    sizes = {}
    for total in (100, 10_000, 100_000):
        fill(history, upto=total // 4, start=len(history) // 4)
        view.on_events([EvalEvent("eval", 0, {})])
        sizes[total] = view.last_update_bytes
        assert len(history) == total
    assert sizes[100] < 50_000  # new curves: the whole state is sent once more (a one-off)
    assert sizes[10_000] < 20_000 and sizes[100_000] < 20_000, sizes
    curves = lines(view.figure)
    assert 250 <= max(len(t.x) for t in curves) <= 500
    assert curves[0].x[-1] == (100_000 // 4 - 1) * 10  # the latest point is always drawn
    assert all(t.mode == "lines" for t in curves)  # no marker per point: a light redraw


def test_the_point_budget_is_shared_by_all_curves() -> None:
    history = MetricHistory()
    metrics = [f"m{i}" for i in range(10)]
    for step in range(5000):  # 100 000 values: 2 evaluations x 10 metrics x 5000 steps
        for name in ("train", "eval"):
            history.record(name, step, {m: np.sin(step / 50 + k) for k, m in enumerate(metrics)})
    view = CurvesView(history, max_points=500)
    assert 100 < view.points_per_curve < 300  # 20 curves share 50 KB
    for step in range(5000, 5005):
        for name in ("train", "eval"):
            history.record(name, step, dict.fromkeys(metrics, 0.5))
        view.refresh()
        assert view.last_update_bytes <= 50_000
    assert max(len(t.x) for t in lines(view.figure)) <= view.points_per_curve
    assert all(t.x[-1] == 5004 for t in lines(view.figure))  # the latest point is drawn
    small = CurvesView(history, max_points=500, budget_bytes=20_000)
    assert small.points_per_curve < view.points_per_curve


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


def test_a_metric_with_no_better_direction_has_no_best() -> None:
    """A regression head's ``prediction/mean`` and ``label/mean`` are neither better high nor
    low: no star and no "best" for them (a star on the largest would be a wrong claim),
    unless ``modes`` names one."""
    history = MetricHistory()
    for step, loss in enumerate([0.9, 0.4, 0.2, 0.3]):
        history.record("eval", step * 100, {"loss": loss, "prediction/mean": 10.0 + step})
    view = CurvesView(history)
    stars = {t.hovertemplate.split(":")[0]: t.x for t in view.figure.data if t.mode == "markers"}
    assert stars["best eval loss"] == (200,) and stars["best eval prediction/mean"] == ()
    cells = view.readout.value.split("<td>")[1:]  # loss, prediction/mean
    assert "best 0.2 @200" in cells[0] and "<b>13</b>" in cells[1] and "best" not in cells[1]
    minded = CurvesView(history, modes={"prediction/mean": "max"})
    stars = {t.hovertemplate.split(":")[0]: t.x for t in minded.figure.data if t.mode == "markers"}
    assert stars["best eval prediction/mean"] == (300,)


@pytest.mark.parametrize(("metrics", "evaluations"), [(10, 2), (2, 2), (2, 5)])
def test_the_readout_lists_the_longer_of_metrics_and_evaluations_down(metrics, evaluations):
    """A binary head's ten metrics as ten columns overflowed the page (its last columns cut
    off): the readout puts whichever list is longer down the side."""
    history = MetricHistory()
    names = [f"run{k}" for k in range(evaluations)]
    for name in names:
        history.record(name, 100, {f"m{i}_loss": i + 0.5 for i in range(metrics)})
    table = CurvesView(history).readout.value
    rows = table.split("<tr>")[1:]
    assert len(rows) == 1 + max(metrics, evaluations)
    assert {row.count("<td>") for row in rows[1:]} == {min(metrics, evaluations)}
    side = [row.split("</th>")[0] for row in rows[1:]]
    down = [f"m{i}_loss" for i in range(metrics)] if metrics > evaluations else names
    assert [label for label in down if any(label in s for s in side)] == down
    assert "best 0.5 @100" in table


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


def test_a_prepared_evaluation_draws_its_subplots_and_empty_curves_before_its_values() -> None:
    history = MetricHistory()
    history.declare("eval")
    view = CurvesView(history)
    sent: list[dict] = []
    watch_sent_messages(view.figure, lambda msg, buffers: sent.append(msg))
    view.on_events([EvalPreparedEvent("eval", ("accuracy", "loss"))])
    assert [a.text for a in view.figure.layout.annotations] == ["accuracy", "loss"]
    # plotly draws a subplot's frame only with a trace on it: one (empty) curve on each
    assert [(t.xaxis, t.yaxis) for t in lines(view.figure)] == [("x", "y"), ("x2", "y2")]
    assert drawn(view) == {("eval", "accuracy"): [], ("eval", "loss"): []}
    assert "no evaluation yet" in view.readout.value
    state = {k for m in sent for k in m["state"]}
    assert {"_widget_layout", "_widget_data"} <= state  # open pages show them at once
    layout, traces = view.figure.layout.to_plotly_json(), len(view.figure.data)
    sent.clear()
    history.record("eval", 0, {"accuracy": 0.1, "loss": 2.3})
    view.refresh()
    # the first values only fill the curves in: no relayout, no trace added
    assert view.figure.layout.to_plotly_json() == layout and len(view.figure.data) == traces
    assert not any(
        k.startswith(("_py2js_relayout", "_py2js_addTraces")) for m in sent for k in m["state"]
    )
    assert drawn(view) == {("eval", "accuracy"): [0], ("eval", "loss"): [0]}
    view.on_events([EvalPreparedEvent("eval", ("auc",))])  # values came first: they decide
    assert [a.text for a in view.figure.layout.annotations] == ["accuracy", "loss"]
    view.close()


def test_subplots_keep_their_places_when_values_come_in_another_order() -> None:
    history = MetricHistory()
    history.declare("train")
    history.declare("eval")
    view = CurvesView(history)
    view.on_events(
        [EvalPreparedEvent("train", ("accuracy", "loss")), EvalPreparedEvent("eval", ("loss",))]
    )
    history.record("eval", 0, {"loss": 2.3, "auc": 0.5})  # another order, and a new metric
    history.record("train", 0, {"loss": 2.2, "accuracy": 0.2})
    view.refresh()
    assert [a.text for a in view.figure.layout.annotations] == ["accuracy", "loss", "auc"]
    places = {curve_key(t): t.xaxis for t in lines(view.figure)}
    assert places == {
        ("train", "accuracy"): "x",
        ("train", "loss"): "x2",
        ("eval", "loss"): "x2",
        ("eval", "auc"): "x3",
    }
    assert drawn(view)[("eval", "auc")] == [0]
    view.close()


def test_an_evaluation_the_history_does_not_name_gets_its_subplots_not_curves() -> None:
    view = CurvesView(MetricHistory())  # a history that names evaluations its own way
    view.on_events([EvalPreparedEvent("eval", ("accuracy", "loss"))])
    assert [a.text for a in view.figure.layout.annotations] == ["accuracy", "loss"]
    assert not view.figure.data
    view.close()


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


@settings(deadline=None)
@given(
    size=st.integers(0, 3000),
    limit=st.integers(3, 300),
    chunk=st.integers(1, 400),
    seed=st.integers(0, 2**16),
)
def test_downsampler_fed_in_pieces_draws_what_it_draws_fed_at_once(
    size: int, limit: int, chunk: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    steps, values = np.arange(size) * 10, rng.normal(size=size)
    values[rng.random(size) < 0.05] = np.nan
    pieces, whole = Downsampler(limit), Downsampler(limit)
    for start in range(0, size, chunk):
        pieces.add(steps[start : start + chunk], values[start : start + chunk])
    whole.add(steps, values)
    x, y = pieces.points()
    assert x.tolist() == whole.points()[0].tolist() and y.tolist() == whole.points()[1].tolist()
    finite = np.isfinite(values)
    assert len(x) <= limit and (np.diff(x) > 0).all()
    assert x.dtype == np.int32 and y.dtype == np.float32
    if finite.any():
        assert (x[0], x[-1]) == (steps[finite][0], steps[finite][-1])  # both ends drawn
        if limit >= 12:  # the lowest and highest values survive every merge
            assert y.min() == np.float32(values[finite].min())
            assert y.max() == np.float32(values[finite].max())
        if finite.sum() <= limit - 2:
            assert x.tolist() == steps[finite].tolist()  # few points: every one


def test_downsampler_limit_can_shrink_in_place_but_not_grow() -> None:
    sampler = Downsampler(400)
    sampler.add(np.arange(10_000), np.sin(np.arange(10_000) / 100))
    assert 200 <= len(sampler.points()[0]) <= 400
    assert sampler.set_limit(100) and len(sampler.points()[0]) <= 100
    assert not sampler.set_limit(200)  # needs the points again
    with pytest.raises(ValueError, match="limit must be an int >= 3"):
        Downsampler(2)


def test_a_new_run_clears_the_last_runs_end_and_a_pause_resends_the_state(history) -> None:
    view = CurvesView(history)
    view.on_events([RunStateEvent("finished", step=90, reason="reached step 90")])
    assert "finished: reached step 90" in view.status.value
    sent: list[dict] = []
    watch_sent_messages(view.figure, lambda msg, buffers: sent.append(msg))
    view.on_events([RunStateEvent("running", step=90)])
    assert view.status.value == "" and not sent  # running: nothing to resend
    fill(history, upto=12, start=10)
    view.on_events([EvalEvent("eval", 110, {}), RunStateEvent("paused", step=110)])
    keys = [k for msg in sent for k in msg["state"]]
    assert keys.count("_widget_data") == 1  # once, after the update: an open page redrawing
    assert drawn(view)[("eval", "loss")][-1] == 110  # the figure (or nbclient) gets it all


def test_the_figure_follows_the_page_theme_and_width() -> None:
    view = CurvesView(MetricHistory())
    style = view.widget.children[0]
    assert "var(--jp-ui-font-color1" in style.value and "var(--jp-border-color2" in style.value
    layout = view.figure.layout
    assert layout.width is None and layout.autosize
    assert layout.paper_bgcolor == layout.plot_bgcolor == "rgba(0,0,0,0)"
    assert layout.font.size >= 14 and layout.legend.font.size >= 14
    view.mark(5, "lr=0.1")
    assert view.figure.get_state()["_widget_layout"]["shapes"][0]["x0"] == 5


def test_a_figure_drawn_before_it_had_a_width_is_told_to_measure_its_box_again(history) -> None:
    view = CurvesView(history)
    sent: list[dict] = []
    watch_sent_messages(view.figure, lambda msg, buffers: sent.append(msg["state"]))

    def page_drew(width: int) -> list[dict]:
        """What the view sends when a page reports that it drew the figure ``width`` wide."""
        sent.clear()
        view.figure._js2py_layoutDelta = {"layout_delta": {"width": width}, "layout_edit_id": 1}
        view.figure._js2py_layoutDelta = None
        return [m["_py2js_relayout"] for m in sent if m.get("_py2js_relayout")]

    # plotly.js measures an autosized figure's box at a relayout, not at a restyle
    (relayout,) = page_drew(700)
    assert list(relayout["relayout_data"]) == ["datarevision"]
    assert page_drew(853) == []  # in place: nothing more
    asked = [page_drew(700) for _ in range(12)]  # a box that stays 700 px (or hidden)
    assert sum(map(len, asked)) == 8 and not asked[-1]  # a few times, then it stops
    view.close()
