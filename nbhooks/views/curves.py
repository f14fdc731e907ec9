"""Live evaluation curves: a plotly FigureWidget fed from a MetricHistory, updated in place.

One subplot per metric, one colour per evaluation, the best value of each curve marked with a
star, and a readout of the latest and best values. The history keeps every value; the figure
draws each curve downsampled (:class:`Downsampler`: the lowest and highest value of each
bucket of evaluations, updated with the new values only), with a point budget shared by all
curves, so that one update, whatever the number of curves and the length of the run, sends at
most ``budget_bytes`` (50 KB) and costs O(new values).

Every update makes the browser redraw the figure (SVG, one element per marker), which costs
tens of milliseconds on a small machine: the view asks for at most two updates a second
(``interval``) and drops the markers once a curve has more than ``markers_up_to`` points, so
a long run keeps the page responsive (``bench/bench_browser.py``).

plotly's FigureWidget sends its data as widget state only when created and later changes as
one-off messages, so a page that connects later (Voila, a reloaded tab, the widget state
nbclient saves) would show an empty plot. Each update goes out once, as a restyle message to
open pages, and is written into the kernel's synced state in place, unsent
(:func:`~nbhooks.views._widget_internals.restyle`): a page that connects later asks the
kernel for the state and draws every point. plotly's front end keeps a copy of the state that
its messages do not update (used when an open page draws the figure again, and by nbclient's
saved widget state): :meth:`CurvesView.resync` resends it when curves appear and when the run
pauses or ends, one-offs outside the budget of an ordinary update.

The figure follows the page: a small style sheet (:data:`THEME_CSS`) draws it on a
transparent background with JupyterLab's theme colours (dark in JupyterLab Dark, switched
live, no kernel round trip), fills the width it is given, and uses projector-sized text.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from typing import Any

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from nbhooks.atomic import write_text
from nbhooks.checks import check_int
from nbhooks.events import EvalEvent, EvalPreparedEvent, RunStateEvent, StopRequestEvent
from nbhooks.stores.metrics import MetricHistory, Mode, check_mode, guess_mode
from nbhooks.views._widget_internals import (
    on_layout_reported,
    restyle,
    resync_figure_state,
    watch_sent_messages,
)
from nbhooks.views.base import View
from nbhooks.views.format import ERROR_COLOUR, MUTED_COLOUR, coloured

CSS_CLASS = "nbh-curves"
PALETTE: tuple[str, ...] = tuple(qualitative.Plotly)
MARKER_LIMIT = 100  #: curves with more drawn points than this are drawn without markers
#: The most bytes one update of the curves sends (all curves together; performance issue).
BUDGET_BYTES = 50_000
#: Bytes a drawn point costs in an update: its step (int32) and value (float32), sent once.
BYTES_PER_POINT = 8
#: Bytes of JSON per changed curve in an update (buffer references, best-value star, mode).
BYTES_PER_CURVE = 400
#: Bytes of an update that depend neither on the curves nor on the readout (message framing).
BYTES_FIXED = 2000
_ROW_HEIGHT = 260
_TOP_MARGIN = 52  # px above the first row: its subplot titles below the mode bar
_BOTTOM_MARGIN = 40
_ROW_GAP = 64  # px between rows: one row's tick labels, the next row's subplot titles
_LEGEND_BELOW = 46  # px from the lowest subplots to the legend: below their "step"
_UNSIZED_WIDTH = 700  # what plotly.js draws a figure with in a box with no width yet
_MAX_REFITS = 8
FONT_SIZE = 14  #: ticks, legend and titles, in px (a 1280x800 projector)
ABANDONED_OPACITY = 0.35  #: the faded lines of values a rewind abandoned

#: The figure in the page's theme: plotly draws colours inline, so the theme's are applied
#: with ``!important`` from JupyterLab's CSS variables (Voila and Notebook 7 have them too;
#: the fallbacks are plotly's light ones). Switching the theme restyles it with no kernel
#: round trip. Hover labels keep plotly's colours (text on the curve's colour). Every axis:
#: plotly names the groups of the second one ``x2tick`` and ``g-x2title``, not ``xtick``.
THEME_CSS = """<style>
.nbh-curves .js-plotly-plot {width: 100%; min-width: 0;}
.nbh-curves .js-plotly-plot .main-svg :is(.xaxislayer-above, .yaxislayer-above) text,
.nbh-curves .js-plotly-plot .main-svg .infolayer :is([class^="g-x"], [class^="g-y"]) text,
.nbh-curves .js-plotly-plot .main-svg :is(.legendtext, .annotation-text, .legendtitletext) {
  fill: var(--jp-ui-font-color1, #2a3f5f) !important;}
.nbh-curves .js-plotly-plot .main-svg :is(.annotation, .shapelayer, .layer-above) text {
  fill: var(--jp-ui-font-color1, #2a3f5f) !important;}
.nbh-curves .js-plotly-plot .main-svg :is(.gridlayer, .zerolinelayer) path {
  stroke: var(--jp-border-color2, #ebf0f8) !important;}
.nbh-curves .js-plotly-plot .main-svg .legend .bg {fill: transparent !important;}
.nbh-curves .js-plotly-plot .modebar-btn path {fill: var(--jp-ui-font-color2, #555) !important;}
.nbh-curves .nbh-curves-readout, .nbh-curves .nbh-curves-status {font-size: 14px;}
.nbh-curves .nbh-curves-readout small {font-size: 13px;}
.nbh-curves .nbh-curves-readout {max-width: 100%; overflow-x: auto;}
</style>"""


def lttb(x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` points that keep the shape of ``y(x)`` (Largest-Triangle-Three-Buckets).

    The first and last points are always kept; returns all indices when ``len(x) <= n``.
    """
    size = len(x)
    if n >= size:
        return np.arange(size)
    if n < 3:
        raise ValueError(f"lttb needs n >= 3 points to keep, got {n}")
    xf, yf = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    edges = np.linspace(1, size - 1, n - 1).astype(np.int64)  # n - 2 buckets, none empty
    counts = np.diff(edges)
    # The average of the bucket after each bucket (the last point after the last bucket).
    next_x = np.append(np.add.reduceat(xf[:-1], edges[:-1]) / counts, xf[-1])[1:]
    next_y = np.append(np.add.reduceat(yf[:-1], edges[:-1]) / counts, yf[-1])[1:]
    keep = np.empty(n, dtype=np.int64)
    keep[0], keep[-1] = 0, size - 1
    a = 0
    for i in range(n - 2):
        lo, hi = edges[i], edges[i + 1]
        area = np.abs(
            (xf[a] - next_x[i]) * (yf[lo:hi] - yf[a]) - (xf[a] - xf[lo:hi]) * (next_y[i] - yf[a])
        )
        a = lo + int(np.argmax(area))
        keep[i + 1] = a
    return keep


def downsample(
    steps: np.ndarray, values: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` finite points of a curve, as compact arrays for the wire.

    NaNs are dropped; the first, last and extreme-shaped points are kept (LTTB). Both go out
    as binary buffers: steps as int32, values as float32 (TensorFlow computes metrics in
    float32, so nothing is lost for them).
    """
    finite = np.isfinite(values)
    steps, values = np.asarray(steps)[finite], np.asarray(values, dtype=np.float64)[finite]
    keep = lttb(steps, values, max_points)
    x = steps[keep]
    x = x.astype(np.int32) if x.size == 0 or x.max() < 2**31 else x.astype(np.float64)
    return x, values[keep].astype(np.float32)


# Columns of a bucket row: the lowest value (its index, step, value), then the highest.
_LO, _HI = slice(0, 3), slice(3, 6)


def _extremes(i: np.ndarray, x: np.ndarray, y: np.ndarray, width: int) -> np.ndarray:
    """One row per ``width`` consecutive points (``len(y)`` is a multiple of it): the lowest
    and the highest point of each run of points (the first one on ties)."""
    runs = y.reshape(-1, width)
    base = np.arange(len(runs)) * width
    lo, hi = base + runs.argmin(axis=1), base + runs.argmax(axis=1)
    return np.column_stack([i[lo], x[lo], y[lo], i[hi], x[hi], y[hi]])


def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of buckets ``a`` joined with the following buckets ``b``, row by row."""
    out = a.copy()
    lower, higher = b[:, 2] < a[:, 2], b[:, 5] > a[:, 5]
    out[lower, _LO] = b[lower, _LO]
    out[higher, _HI] = b[higher, _HI]
    return out


class Downsampler:
    """At most ``limit`` points of a growing curve, updated with the new points only.

    The finite points are cut into buckets of ``width`` consecutive points (1, 2, 4, ...),
    each drawn by its lowest and highest point (so spikes and the envelope stay); when the
    points outgrow ``limit`` the width doubles and pairs of buckets merge (O(limit), rarely).
    The first and the latest points are always drawn. :meth:`add` costs O(new points), and a
    few microseconds for the one new point of an ordinary update.
    """

    def __init__(self, limit: int) -> None:
        check_int("limit", limit, minimum=3)
        self.limit = limit
        self.width = 1
        self.count = 0  #: finite points seen
        self._done = np.empty((0, 6))  # full buckets, in order
        self._open: list[float] | None = None  # the bucket being filled, as a row
        self._filled = 0  # points in the open bucket
        self._first: tuple[float, float] = (0.0, 0.0)
        self._last: tuple[float, float] = (0.0, 0.0)
        self._drawn: np.ndarray | None = None  # points of the first point and full buckets
        self._wide = False  # a step beyond int32

    def add(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Take the next points of the curve (NaN and infinities are skipped)."""
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        x, y = np.asarray(steps, dtype=np.float64)[finite], values[finite]
        n = len(y)
        if not n:
            return
        if not self.count:
            self._first = (float(x[0]), float(y[0]))
        self._last = (float(x[-1]), float(y[-1]))
        self._wide = self._wide or bool(np.abs(x).max() >= 2**31)
        start, self.count = self.count, self.count + n
        if n <= 16:  # an ordinary update: a point or two, cheaper in plain Python
            for k, (step, value) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
                self._add_one(float(start + k), step, value)
        else:
            self._add_many(np.arange(start, start + n, dtype=np.float64), x, y)
        self._fit()

    def _add_one(self, i: float, x: float, y: float) -> None:
        row = self._open
        if row is None:
            self._open, self._filled = [i, x, y, i, x, y], 1
        else:
            if y < row[2]:
                row[0:3] = [i, x, y]
            if y > row[5]:
                row[3:6] = [i, x, y]
            self._filled += 1
        if self._filled == self.width:
            self._close_open()

    def _add_many(self, i: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        at, width = 0, self.width
        if self._open is not None:  # fill the open bucket first
            at = min(width - self._filled, len(y))
            row = _extremes(i[:at], x[:at], y[:at], at)
            self._open = _merge(np.array([self._open]), row)[0].tolist()
            self._filled += at
            if self._filled == width:
                self._close_open()
        full = (len(y) - at) // width * width
        if full:
            end = at + full
            self._done = np.vstack([self._done, _extremes(i[at:end], x[at:end], y[at:end], width)])
            self._drawn = None
            at = end
        if at < len(y):
            self._open = _extremes(i[at:], x[at:], y[at:], len(y) - at)[0].tolist()
            self._filled = len(y) - at

    def _close_open(self) -> None:
        self._done = np.vstack([self._done, [self._open]])
        self._open, self._filled, self._drawn = None, 0, None

    def set_limit(self, limit: int) -> bool:
        """Draw at most ``limit`` points from now on; False when that needs the points again
        (a higher limit: create a new Downsampler and add them)."""
        check_int("limit", limit, minimum=3)
        if limit > self.limit:
            return False
        self.limit = limit
        self._fit()
        return True

    def _fit(self) -> None:
        # At most 2 points per bucket (1 while they hold 1), the open one too, and both ends.
        while min(2, self.width) * (
            len(self._done) + (self._open is not None)
        ) + 2 > self.limit and len(self._done):
            done = self._done
            if len(done) % 2:  # the odd last bucket joins the open one (< 2 x width points)
                last = done[-1:]
                opened = last if self._open is None else _merge(last, np.array([self._open]))
                self._open, self._filled = opened[0].tolist(), self._filled + self.width
                done = done[:-1]
            self._done = _merge(done[0::2], done[1::2])
            self._drawn = None
            self.width *= 2

    def _full_buckets(self) -> np.ndarray:
        """Rows (index, step, value) of the first point and the full buckets, in order."""
        if self._drawn is None:
            rows = self._done
            lo_first = (rows[:, 0] <= rows[:, 3])[:, None]
            first = np.where(lo_first, rows[:, _LO], rows[:, _HI])
            second = np.where(lo_first, rows[:, _HI], rows[:, _LO])
            both = np.stack([first, second], axis=1).reshape(-1, 3)
            if self.count:
                both = np.vstack([[0.0, *self._first], both])
            keep = np.ones(len(both), dtype=bool)
            keep[1:] = np.diff(both[:, 0]) != 0  # each point once
            self._drawn = both[keep]
        return self._drawn

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` to draw, in the order recorded, as int32 (float64 beyond its
        range) and float32 arrays (TensorFlow's metrics are float32: nothing lost)."""
        drawn = self._full_buckets()
        tail: list[list[float]] = []
        if self._open is not None:
            lo, hi = self._open[_LO], self._open[_HI]
            tail = [lo, hi] if lo[0] <= hi[0] else [hi, lo]
        tail.append([self.count - 1.0, *self._last])
        previous = drawn[-1, 0] if len(drawn) else -1.0
        rows = []
        for row in tail:
            if row[0] > previous:
                rows.append(row)
                previous = row[0]
        both = np.concatenate([drawn, np.reshape(rows, (-1, 3))]) if self.count else drawn
        x, y = both[:, 1], both[:, 2]
        if len(x) > self.limit:  # only with a limit below a handful of buckets
            index = lttb(x, y, self.limit)
            x, y = x[index], y[index]
        return x.astype(np.float64 if self._wide else np.int32), y.astype(np.float32)


def _count_sent(widget: Any, counter: list[int]) -> None:
    """Add the size of every message ``widget`` sends to ``counter[0]``."""

    def count(msg: Any, buffers: Sequence[Any] | None) -> None:
        size = len(json.dumps(msg, default=str))
        size += sum(memoryview(b).nbytes for b in buffers or ())
        counter[0] += size

    watch_sent_messages(widget, count)


class _Curve:
    """One drawn curve: its line trace (the best-value star follows it), the values of the
    history read so far, their downsampling, and what was last sent of it. ``forked``: a
    rewind left some of the values drawn off the live line (draw it again)."""

    __slots__ = ("best", "forked", "index", "mode", "read", "sampler")

    def __init__(self, index: int, limit: int) -> None:
        self.index = index
        self.read = 0
        self.sampler = Downsampler(limit)
        self.best: tuple[int, float] | None = None
        self.mode = "lines+markers"
        self.forked = False


class CurvesView(View):
    """Live curves of a :class:`~nbhooks.stores.metrics.MetricHistory`.

    ``max_points``: the most points drawn per curve (the history keeps all). ``budget_bytes``:
    the most bytes one update sends, shared by all curves (more curves, fewer points each).
    ``modes``: "min" or "max" per metric for the best-value marker (default: "min" for losses
    and errors, "max" for accuracy, auc, precision, recall...; no marker for a metric whose
    name does not tell, such as ``prediction/mean``). ``interval``: the least time between
    two redraws, in seconds. ``markers_up_to``: curves with more drawn points are drawn as
    lines, without a marker per evaluation. Create it on the main thread; the publisher calls
    :meth:`on_events`. It draws what the history already holds when created.
    """

    def __init__(
        self,
        metrics: MetricHistory,
        max_points: int = 500,
        *,
        budget_bytes: int = BUDGET_BYTES,
        modes: Mapping[str, str] | None = None,
        columns: int = 2,
        interval: float = 0.5,
        markers_up_to: int = MARKER_LIMIT,
    ) -> None:
        if not isinstance(metrics, MetricHistory):
            raise TypeError(
                f"metrics must be a nbhooks.MetricHistory (e.g. hook.store), got "
                f"{type(metrics).__name__}"
            )
        check_int("max_points", max_points, minimum=3, hint="the most points drawn per curve")
        check_int("budget_bytes", budget_bytes, minimum=1000, hint="bytes per update, e.g. 50_000")
        check_int("columns", columns)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
            raise ValueError(f"interval must be a number of seconds >= 0, got {interval!r}")
        check_int("markers_up_to", markers_up_to, minimum=0)
        self.interval = float(interval)
        self.markers_up_to = markers_up_to
        self.metrics = metrics
        self.max_points = max_points
        self.budget_bytes = budget_bytes
        self.columns = columns
        self.modes: dict[str, Mode] = {k: check_mode(v) for k, v in (modes or {}).items()}
        self.figure = go.FigureWidget(layout=_base_layout())
        self.readout = widgets.HTML()
        self.status = widgets.HTML()
        style = widgets.HTML(THEME_CSS, layout=widgets.Layout(display="none"))
        self.widget = widgets.VBox([style, self.figure, self.readout, self.status])
        for w in (self.widget, self.figure):
            w.add_class(CSS_CLASS)
        self.readout.add_class("nbh-curves-readout")
        self.status.add_class("nbh-curves-status")
        self._lock = threading.RLock()
        self._metrics: list[str] = []
        self._curves: dict[tuple[str, str], _Curve] = {}  # (evaluation, metric) -> its curve
        # (evaluation, metric, branch) -> the faded trace of what a rewind abandoned of it
        self._abandoned: dict[tuple[str, str, int], int] = {}
        self._branch = 0  # the history's branch when last drawn
        self._version = -1
        self._marks: list[tuple[int, str]] = []  # (step, text): vertical lines on every subplot
        self._sent = [0]
        for w in (self.figure, self.readout, self.status):
            _count_sent(w, self._sent)
        self.updates = 0  #: how many updates went out
        self.last_update_bytes = 0  #: bytes the last update sent to the frontend
        self._refits = 0  # re-measures asked for since a page drew the figure without a width
        self._remeasures = 0  # all of them (the value of the relayout that asks for one)
        on_layout_reported(self.figure, self._on_layout_reported)
        self.refresh()

    @property
    def bytes_sent(self) -> int:
        """Bytes of widget messages sent since creation (JSON plus binary buffers)."""
        return self._sent[0]

    @property
    def points_per_curve(self) -> int:
        """The most points each curve is drawn with now: ``max_points``, or less when the
        curves share ``budget_bytes``."""
        curves = max(1, len(self._curves))
        readout = len(self.readout.value)
        left = self.budget_bytes - BYTES_FIXED - readout - BYTES_PER_CURVE * curves
        return max(3, min(self.max_points, left // (BYTES_PER_POINT * curves)))

    # -- View -----------------------------------------------------------------------------
    def on_events(self, events: Sequence[Any]) -> None:
        settled = False  # paused or ended: a moment to resend the whole state
        for event in events:
            if isinstance(event, RunStateEvent):
                if event.state in ("running", "idle"):  # a new run: the last end is old news
                    self._clear_status()
                elif event.reason:
                    self._show_status(event.state, event.reason)
                settled = event.state not in ("running", "idle", "stopping")
            elif isinstance(event, StopRequestEvent):
                self._show_status("stopping", event.reason)
        for event in events:
            if isinstance(event, EvalPreparedEvent):
                self.expect(event.name, event.metrics)
        if any(isinstance(e, EvalEvent) for e in events):
            self.refresh()
        if settled:
            self.resync()

    def resync(self) -> None:
        """Send the figure's whole state (every drawn point, once more).

        Updates reach open pages as restyles and the kernel's state quietly; plotly's front
        end keeps its own copy of the state, which a figure drawn again on an open page (its
        cell scrolled back into view, a second display) and nbclient's saved widget state
        use. The view resends it when new curves appear and when the run pauses or ends.
        """
        with self._lock:
            resync_figure_state(self.figure)

    def expect(self, name: str, metrics: Sequence[str]) -> None:
        """Draw the subplots of ``metrics`` and the empty curves of evaluation ``name`` before
        any value (an evaluation prepared before training says which metrics it gives): the
        first values then only fill them in. plotly draws a subplot's frame only once a trace
        is on it, so without the curves the first subplot showed default axes and the others
        nothing. A ``name`` the history has not declared gets its curves with its values."""
        with self._lock:
            if self.metrics.metrics:  # values came first: refresh() draws what they need
                return
            grid = self._grid_with(metrics)
            grid_changed = grid != self._metrics
            if grid_changed:
                self._draw_grid(grid)
            added = name in self.metrics.order and self._add_curves([(name, m) for m in metrics])
            if grid_changed or added:
                resync_figure_state(self.figure, layout=grid_changed, data=added)

    def refresh(self) -> bool:
        """Draw what the history holds now; False when nothing changed since the last time.

        Sends one restyle of the curves that changed (each point once) and writes it into the
        kernel's synced state unsent, for pages that connect later.
        """
        with self._lock:
            version = self.metrics.version
            if version == self._version:
                return False
            before = self._sent[0]
            # No hold_sync() here: plotly sends each change by setting a trait, then None.
            traces = len(self.figure.data)
            layout_changed = self._add_new_curves()
            if self.metrics.branch != self._branch:  # a rewind: rare
                self._draw_abandoned()
            self._draw_changed()  # within the budget left by the last readout (~ this one)
            self.readout.value = self._readout_html()
            if layout_changed or len(self.figure.data) != traces:  # new curves: rare, early
                resync_figure_state(self.figure, layout=layout_changed)
            self._version = version
            self.updates += 1
            self.last_update_bytes = self._sent[0] - before
            return True

    # -- export ---------------------------------------------------------------------------
    def export_html(self, path: str | PathLike[str], all_points: bool = False) -> None:
        """Write the figure to a standalone HTML file that works offline (plotly.js inlined).

        ``all_points=True`` draws every recorded value instead of the downsampled curves.
        """
        with self._lock:
            figure = go.Figure(self.figure)
        if all_points:
            for key, curve in self._curves.items():
                steps, values, branch, live = self.metrics.lineage(*key)
                figure.data[curve.index].update(x=steps[live], y=values[live])
                for (*faded, b), trace in self._abandoned.items():
                    if tuple(faded) == key:
                        x, y = _abandoned_points(steps, values, branch, live, b)
                        figure.data[trace].update(x=x, y=y)
        write_text(path, figure.to_html(include_plotlyjs=True, full_html=True))

    def to_csv(self, path: str | PathLike[str]) -> None:
        """Write the full history (not the downsampled curves) as CSV."""
        self.metrics.to_csv(path)

    # -- drawing --------------------------------------------------------------------------
    def _mode(self, metric: str) -> Mode | None:
        return self.modes.get(metric) or guess_mode(metric)

    def _add_new_curves(self) -> bool:
        """Add subplots for new metrics and curves for new values; True if the grid changed.
        Subplots keep their places: new metrics are added after those drawn."""
        metrics = self._grid_with(self.metrics.metrics)
        grid_changed = metrics != self._metrics
        if grid_changed:
            self._draw_grid(metrics)
        self._add_curves(
            [
                (name, metric)
                for name in self.metrics.names
                for metric in metrics
                if (name, metric) not in self._curves and self.metrics.series(name, metric)[0].size
            ]
        )
        return grid_changed

    def _grid_with(self, metrics: Sequence[str]) -> list[str]:
        """The subplots' metrics with ``metrics`` added: those drawn keep their places."""
        return list(dict.fromkeys([*self._metrics, *metrics]))

    def _add_curves(self, keys: Sequence[tuple[str, str]]) -> bool:
        """Add the line and best-value star of each new (evaluation, metric) curve on its
        metric's subplot, in its evaluation's colour; True if any was added."""
        order = self.metrics.order
        new = [key for key in dict.fromkeys(keys) if key not in self._curves]
        for name, metric in new:
            in_legend = all(drawn != name for drawn, _ in self._curves)
            self._curves[(name, metric)] = _Curve(len(self.figure.data), self.max_points)
            axes = _axes(self._metrics.index(metric) + 1)
            self.figure.add_traces(_curve_traces(name, metric, order.index(name), axes, in_legend))
        return bool(new)

    def _draw_grid(self, metrics: list[str]) -> None:
        """One subplot per metric (and the marks on each)."""
        self._metrics = metrics
        grid = _grid_layout(metrics, self.columns)
        # plotly sends a new axis and its attributes in one relayout ("xaxis2" with
        # "xaxis2.anchor"), which plotly.js rejects: create new axes empty first.
        have = set(self.figure.layout.to_plotly_json())
        self.figure.update_layout({k: {} for k in grid if _AXIS.fullmatch(k) and k not in have})
        self.figure.update_layout(grid)
        if self._marks:
            self.figure.layout.shapes = _mark_shapes(self._marks, len(metrics))

    def _draw_abandoned(self) -> None:
        """After a rewind: each curve's values left off the live line, faded (one trace per
        curve and abandoned branch, sent once); the live lines are drawn again."""
        self._branch = self.metrics.branch
        new: list[go.Scatter] = []
        xs: list[Any] = []
        ys: list[Any] = []
        indexes: list[int] = []
        for key, curve in self._curves.items():
            curve.forked = True
            steps, values, branch, live = self.metrics.lineage(*key)
            for b in np.unique(branch[~live]).tolist():
                x, y = _abandoned_points(steps, values, branch, live, b)
                x, y = downsample(x, y, max(3, self.max_points))
                index = self._abandoned.get((*key, b))
                if index is None:
                    self._abandoned[(*key, b)] = len(self.figure.data) + len(new)
                    line = self.figure.data[curve.index]
                    axes = {"xaxis": line.xaxis, "yaxis": line.yaxis}
                    new.append(_abandoned_trace(*key, b, line.line.color, axes, x, y))
                else:
                    xs.append(x)
                    ys.append(y)
                    indexes.append(index)
        if new:
            self.figure.add_traces(new)
        if indexes:
            restyle(self.figure, {"x": xs, "y": ys}, indexes)

    def _draw_changed(self) -> None:
        """One restyle of every curve with new values (or fewer points to fit the budget)."""
        limit = self.points_per_curve
        xs: list[Any] = []
        ys: list[Any] = []
        modes: list[str] = []
        indexes: list[int] = []
        for key, curve in self._curves.items():
            steps, values = self.metrics.series(*key, start=curve.read)
            refit = curve.sampler.limit != limit
            if not steps.size and not refit and not curve.forked:
                continue  # unchanged: send nothing for this curve
            if curve.forked or (refit and not curve.sampler.set_limit(limit)):
                # more points, or values off the live line: read the live line again
                every, values, _, live = self.metrics.lineage(*key)
                curve.sampler, curve.read, curve.forked = Downsampler(limit), len(every), False
                steps, values = every[live], values[live]
            else:
                curve.read += len(steps)
            curve.sampler.add(steps, values)
            x, y = curve.sampler.points()
            curve.mode = "lines+markers" if len(x) <= self.markers_up_to else "lines"
            xs.append(x)
            ys.append(y)
            modes.append(curve.mode)
            indexes.append(curve.index)
            point = self.metrics.best(key[1], self._mode(key[1]), evaluation=key[0])
            best = (point.step, point.value) if point is not None else None
            if best != curve.best:
                curve.best = best
                xs.append([best[0]] if best else [])
                ys.append([best[1]] if best else [])
                modes.append("markers")
                indexes.append(curve.index + 1)
        if indexes:
            restyle(self.figure, {"x": xs, "y": ys, "mode": modes}, indexes)

    def mark(self, step: int, text: str) -> None:
        """Draw a dashed vertical line labelled ``text`` at ``step`` on every subplot (e.g. a
        knob change). Any thread; marks are kept when subplots are added."""
        with self._lock:
            self._marks.append((int(step), str(text)))
            self.figure.layout.shapes = _mark_shapes(self._marks, len(self._metrics))
            resync_figure_state(self.figure, data=False)  # the layout: small, rarely changed

    def _readout_html(self) -> str:
        latest = self.metrics.latest()
        if not latest:
            return "<i>no evaluation yet</i>"
        names, order, metrics = self.metrics.names, self.metrics.order, self._metrics

        def evaluation(name: str) -> str:
            swatch = f'<span style="color:{colour_of(order.index(name))}">&#9632;</span>'
            return f"{swatch} {html.escape(name)} <small>@{latest[name].step}</small>"

        def row(head: str, cells: Iterable[str]) -> str:
            return f"<tr><th>{head}</th>{''.join(cells)}</tr>"

        def cell(name: str, metric: str) -> str:
            return self._cell(name, metric, latest[name].metrics.get(metric))

        if len(metrics) > len(names):  # a metric a row: a head's ten metrics fit the width
            rows = [row("", (f"<th>{evaluation(n)}</th>" for n in names))]
            rows += [row(html.escape(m), (cell(n, m) for n in names)) for m in metrics]
        else:  # an evaluation a row
            rows = [row("", (f"<th>{html.escape(m)}</th>" for m in metrics))]
            rows += [row(evaluation(n), (cell(n, m) for m in metrics)) for n in names]
        return f'<table class="nbh-curves-table">{"".join(rows)}</table>'

    def _cell(self, name: str, metric: str, value: float | None) -> str:
        if value is None:
            return "<td>–</td>"
        curve = self._curves.get((name, metric))
        if curve is not None:  # drawn: its star has the best value already
            best = curve.best
        else:
            point = self.metrics.best(metric, self._mode(metric), evaluation=name)
            best = (point.step, point.value) if point is not None else None
        best_txt = f"best {best[1]:.4g} @{best[0]}" if best is not None else ""
        return f"<td><b>{value:.4g}</b><br><small>{best_txt}</small></td>"

    def _on_layout_reported(self, layout: Mapping[str, Any]) -> None:
        """A page drew the figure before it had a width (plotly then takes 700 px): make it
        measure its box again, a few times at most (a box that is hidden, or 700 px wide,
        reports 700 each time).

        plotly.js measures the box of an autosized figure at its first draw and at every
        relayout, never at a restyle: a relayout of a key nothing reads (``datarevision``,
        used by ``Plotly.react`` only) makes it fill the width it has now."""
        if layout.get("width") != _UNSIZED_WIDTH:
            self._refits = 0
            return
        with self._lock:
            if self.figure.data and self._refits < _MAX_REFITS:
                self._refits += 1
                self._remeasures += 1
                self.figure.plotly_relayout({"datarevision": self._remeasures})

    def _clear_status(self) -> None:
        if self.status.value:
            self.status.value = ""

    def _show_status(self, state: str, reason: str) -> None:
        colour = ERROR_COLOUR if state == "failed" else MUTED_COLOUR
        self.status.value = coloured(f"{state}: {reason}", colour)


def _base_layout() -> dict[str, Any]:
    """No width (the figure fills its box), no background (the page's shows through),
    text readable from the back of a classroom."""
    return {
        "height": _ROW_HEIGHT,
        "autosize": True,
        # the top margin keeps the subplot titles clear of plotly's mode bar (shown on hover)
        "margin": {"l": 60, "r": 20, "t": _TOP_MARGIN, "b": _BOTTOM_MARGIN},
        "legend": {"orientation": "h", "font": {"size": FONT_SIZE}},  # placed by the grid
        "font": {"size": FONT_SIZE},
        "hovermode": "closest",
        "template": "plotly_white",
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
    }


_AXIS = re.compile(r"[xy]axis\d*")


def _grid_layout(metrics: Sequence[str], columns: int) -> dict[str, Any]:
    """Axes domains and subplot titles for one subplot per metric (row-major); "step" under
    the lowest subplot of each column; rows and the legend at fixed distances in pixels."""
    count = len(metrics)
    cols = max(1, min(columns, count))
    rows = max(1, -(-count // cols))
    # no taller: a 1280x800 projector shows the quickstart's dashboard whole (teacher test)
    height = _ROW_HEIGHT * rows + 40
    area = height - _TOP_MARGIN - _BOTTOM_MARGIN  # the subplots and the gaps between rows
    grid = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=list(metrics),
        horizontal_spacing=0.08,
        vertical_spacing=_ROW_GAP / area if rows > 1 else 0.0,
    )
    layout = grid.layout.to_plotly_json()
    layout.pop("template", None)
    for k in range(rows * cols):
        lowest = k < count <= k + cols  # no subplot under this one
        title = "step" if lowest else ""  # (set either way: a grid that grew loses it)
        layout[f"xaxis{_suffix(k + 1)}"]["title"] = {"text": title, "standoff": 2}
    layout["height"] = height
    layout["legend"] = {"y": -_LEGEND_BELOW / area}
    return layout


def _mark_shapes(marks: Sequence[tuple[int, str]], subplots: int) -> list[dict[str, Any]]:
    """A labelled vertical line per mark on each of ``subplots`` subplots (label on the first)."""
    shapes = []
    for k in range(1, max(1, subplots) + 1):
        suffix = _suffix(k)
        for step, text in marks:
            shapes.append(
                {
                    "type": "line",
                    "xref": f"x{suffix}",
                    "yref": f"y{suffix} domain",
                    "x0": step,
                    "x1": step,
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": "#888", "width": 1, "dash": "dot"},
                    "label": {
                        "text": text if k == 1 else "",
                        # along the line, ending at its top: plotly centres the text of a
                        # vertical line on the end, which cut it at the figure's edge
                        "textposition": "end",
                        "xanchor": "right",
                        "font": {"size": FONT_SIZE - 1},
                    },
                }
            )
    return shapes


def _axes(k: int) -> dict[str, str]:
    return {"xaxis": f"x{_suffix(k)}", "yaxis": f"y{_suffix(k)}"}


def _suffix(k: int) -> str:
    """What plotly appends to the names of the ``k``-th subplot's axes (1: none)."""
    return "" if k == 1 else str(k)


def _abandoned_points(
    steps: np.ndarray, values: np.ndarray, branch: np.ndarray, live: np.ndarray, b: int
) -> tuple[np.ndarray, np.ndarray]:
    """The values of branch ``b`` off the live line, from the last one on it (where the
    rewind went back to) when there is one: what a faded line draws."""
    own = np.flatnonzero(branch == b)
    off = own[~live[own]]
    before = own[own < off[0]][-1:] if off.size else own[:0]
    keep = np.concatenate([before, off])
    return steps[keep], values[keep]


def _abandoned_trace(
    name: str,
    metric: str,
    branch: int,
    colour: str,
    axes: Mapping[str, str],
    x: np.ndarray,
    y: np.ndarray,
) -> go.Scatter:
    """What a rewind abandoned of a curve: a thin dotted line of its colour, faded."""
    return go.Scatter(
        x=x,
        y=y,
        mode="lines",
        name=f"{name} · branch {branch} (abandoned)",
        legendgroup=name,
        showlegend=False,
        opacity=ABANDONED_OPACITY,
        line={"color": colour, "width": 1.5, "dash": "dot"},
        hovertemplate=f"{html.escape(name)} {html.escape(metric)}, abandoned branch {branch}:"
        " %{y:.5g}<br>step %{x}<extra></extra>",
        **axes,
    )


def colour_of(place: int) -> str:
    """The colour of the evaluation at ``place`` in :attr:`MetricHistory.order`."""
    return PALETTE[place % len(PALETTE)]


def _curve_traces(
    name: str, metric: str, place: int, axes: Mapping[str, str], in_legend: bool
) -> list[go.Scatter]:
    """The line of one curve and its best-value star (always at index line + 1), in the
    colour and legend rank of the evaluation's ``place``."""
    colour = colour_of(place)
    line = go.Scatter(
        x=np.empty(0, dtype=np.int32),
        y=np.empty(0, dtype=np.float32),
        mode="lines+markers",
        name=name,
        legendgroup=name,
        legendrank=1000 + place,
        showlegend=in_legend,
        line={"color": colour, "width": 2},
        marker={"size": 4, "color": colour},
        hovertemplate=f"{html.escape(name)} {html.escape(metric)}: %{{y:.5g}}<br>"
        "step %{x}<extra></extra>",
        **axes,
    )
    best = go.Scatter(
        x=[],
        y=[],
        mode="markers",
        name=f"best {name}",
        legendgroup=name,
        showlegend=False,
        marker={"symbol": "star", "size": 13, "color": colour, "line": {"width": 1}},
        hovertemplate=f"best {html.escape(name)} {html.escape(metric)}: %{{y:.5g}}<br>"
        "step %{x}<extra></extra>",
        **axes,
    )
    return [line, best]
