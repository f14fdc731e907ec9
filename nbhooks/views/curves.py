"""Live evaluation curves: a plotly FigureWidget fed from a MetricHistory, updated in place.

One subplot per metric, one colour per evaluation name, the best value of each curve marked
with a star, and a readout of the latest and best values. Each update sends only the traces
that changed, each downsampled to at most ``max_points`` (LTTB), so the bytes per update stay
flat however long the run; the DataFrame keeps every value.

Every update makes the browser redraw the figure (SVG, one element per marker), which costs
tens of milliseconds on a small machine: the view asks for at most two updates a second
(``interval``) and drops the markers once a curve has more than ``markers_up_to`` points, so
a long run keeps the page responsive (``bench/bench_browser.py``).

plotly's FigureWidget sends its data as widget state only when first displayed and later
changes as one-off messages, so a page that connects later (Voila, a reloaded tab, the widget
state nbclient saves) would show an empty plot. After every update the synced state
(``_widget_data``/``_widget_layout``) is set again from the figure to keep it current.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from nbhooks.checks import check_int
from nbhooks.events import EvalEvent, RunStateEvent, StopRequestEvent
from nbhooks.stores.metrics import MetricHistory, Mode, check_mode, guess_mode
from nbhooks.views._widget_internals import resync_figure_state, watch_sent_messages
from nbhooks.views.base import View
from nbhooks.views.format import ERROR_COLOUR, MUTED_COLOUR, coloured

CSS_CLASS = "nbh-curves"
PALETTE: tuple[str, ...] = tuple(qualitative.Plotly)
MARKER_LIMIT = 100  #: curves with more drawn points than this are drawn without markers
_ROW_HEIGHT = 260


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


def _count_sent(widget: Any, counter: list[int]) -> None:
    """Add the size of every message ``widget`` sends to ``counter[0]``."""

    def count(msg: Any, buffers: Sequence[Any] | None) -> None:
        size = len(json.dumps(msg, default=str))
        size += sum(memoryview(b).nbytes for b in buffers or ())
        counter[0] += size

    watch_sent_messages(widget, count)


class CurvesView(View):
    """Live curves of a :class:`~nbhooks.stores.metrics.MetricHistory`.

    ``max_points``: the most points drawn per curve (the history keeps all). ``modes``:
    "min" or "max" per metric for the best-value marker (default: "min" for losses and
    errors, "max" otherwise). ``interval``: the least time between two redraws, in seconds.
    ``markers_up_to``: curves with more drawn points are drawn as lines, without a marker per
    evaluation. Create it on the main thread; the publisher calls :meth:`on_events`. It draws
    what the history already holds when created.
    """

    def __init__(
        self,
        metrics: MetricHistory,
        max_points: int = 500,
        *,
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
        check_int("columns", columns)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
            raise ValueError(f"interval must be a number of seconds >= 0, got {interval!r}")
        check_int("markers_up_to", markers_up_to, minimum=0)
        self.interval = float(interval)
        self.markers_up_to = markers_up_to
        self.metrics = metrics
        self.max_points = max_points
        self.columns = columns
        self.modes: dict[str, Mode] = {k: check_mode(v) for k, v in (modes or {}).items()}
        self.figure = go.FigureWidget(layout=_base_layout())
        self.readout = widgets.HTML()
        self.status = widgets.HTML()
        self.widget = widgets.VBox([self.figure, self.readout, self.status])
        for w in (self.widget, self.figure):
            w.add_class(CSS_CLASS)
        self.readout.add_class("nbh-curves-readout")
        self.status.add_class("nbh-curves-status")
        self._lock = threading.RLock()
        self._metrics: list[str] = []
        self._traces: dict[tuple[str, str], int] = {}  # (evaluation, metric) -> line trace
        self._drawn_len: dict[tuple[str, str], int] = {}
        self._version = -1
        self._marks: list[tuple[int, str]] = []  # (step, text): vertical lines on every subplot
        self._sent = [0]
        for w in (self.figure, self.readout, self.status):
            _count_sent(w, self._sent)
        self.updates = 0  #: how many updates went out
        self.last_update_bytes = 0  #: bytes the last update sent to the frontend
        self.refresh()

    @property
    def bytes_sent(self) -> int:
        """Bytes of widget messages sent since creation (JSON plus binary buffers)."""
        return self._sent[0]

    # -- View -----------------------------------------------------------------------------
    def on_events(self, events: Sequence[Any]) -> None:
        for event in events:
            if isinstance(event, RunStateEvent) and event.reason and event.state != "running":
                self._show_status(event.state, event.reason)
            elif isinstance(event, StopRequestEvent):
                self._show_status("stopping", event.reason)
        if any(isinstance(e, EvalEvent) for e in events):
            self.refresh()

    def refresh(self) -> bool:
        """Draw what the history holds now; False when nothing changed since the last time."""
        with self._lock:
            version = self.metrics.version
            if version == self._version:
                return False
            before = self._sent[0]
            layout_changed = self._add_new_curves()
            if layout_changed and self._marks:
                self.figure.layout.shapes = _mark_shapes(self._marks, len(self._metrics))
            with self.figure.batch_update():
                for key, index in self._traces.items():
                    self._draw(key, index)
            self._sync_state(layout_changed)
            self.readout.value = self._readout_html()
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
            for (name, metric), index in self._traces.items():
                steps, values = self.metrics.series(name, metric)
                figure.data[index].update(x=steps, y=values)
        figure.write_html(path, include_plotlyjs=True, full_html=True)

    def to_csv(self, path: str | PathLike[str]) -> None:
        """Write the full history (not the downsampled curves) as CSV."""
        self.metrics.to_csv(path)

    # -- drawing --------------------------------------------------------------------------
    def _mode(self, metric: str) -> Mode:
        return self.modes.get(metric) or guess_mode(metric)

    def _add_new_curves(self) -> bool:
        """Add subplots for new metrics and traces for new curves; True if the grid changed."""
        metrics, names = self.metrics.metrics, self.metrics.names
        grid_changed = metrics != self._metrics
        if grid_changed:
            self._metrics = metrics
            grid = _grid_layout(metrics, self.columns)
            # plotly sends a new axis and its attributes in one relayout ("xaxis2" with
            # "xaxis2.anchor"), which plotly.js rejects: create new axes empty first.
            have = set(self.figure.layout.to_plotly_json())
            self.figure.update_layout({k: {} for k in grid if _AXIS.fullmatch(k) and k not in have})
            self.figure.update_layout(grid)
        new = [
            (name, metric)
            for name in names
            for metric in metrics
            if (name, metric) not in self._traces and self.metrics.series(name, metric)[0].size
        ]
        for name, metric in new:
            in_legend = all(drawn != name for drawn, _ in self._traces)
            self._traces[(name, metric)] = len(self.figure.data)
            colour = PALETTE[names.index(name) % len(PALETTE)]
            axes = _axes(metrics.index(metric) + 1)
            self.figure.add_traces(_curve_traces(name, metric, colour, axes, in_legend))
        return grid_changed

    def _draw(self, key: tuple[str, str], index: int) -> None:
        steps, values = self.metrics.series(*key)
        if self._drawn_len.get(key) == len(steps):
            return  # unchanged: send nothing for this curve
        self._drawn_len[key] = len(steps)
        x, y = downsample(steps, values, self.max_points)
        line, best = self.figure.data[index], self.figure.data[index + 1]
        line.x, line.y = x, y
        mode = "lines+markers" if len(x) <= self.markers_up_to else "lines"
        if line.mode != mode:
            line.mode = mode
        point = self.metrics.best(key[1], self._mode(key[1]), evaluation=key[0])
        if point is not None:
            best.x, best.y = [point.step], [point.value]

    def mark(self, step: int, text: str) -> None:
        """Draw a dashed vertical line labelled ``text`` at ``step`` on every subplot (e.g. a
        knob change). Any thread; marks are kept when subplots are added."""
        with self._lock:
            self._marks.append((int(step), str(text)))
            self.figure.layout.shapes = _mark_shapes(self._marks, len(self._metrics))
            self._sync_state(True)

    def _sync_state(self, layout_changed: bool) -> None:
        """Make the synced widget state match the figure, for pages that connect later."""
        resync_figure_state(self.figure, layout=layout_changed)

    def _readout_html(self) -> str:
        latest = self.metrics.latest()
        if not latest:
            return "<i>no evaluation yet</i>"
        names, metrics = self.metrics.names, self._metrics
        head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
        rows = [f"<tr><th></th>{head}</tr>"]
        for i, name in enumerate(names):
            colour = PALETTE[i % len(PALETTE)]
            record = latest[name]
            cells = "".join(self._cell(name, m, record.metrics.get(m)) for m in metrics)
            label = f'<span style="color:{colour}">&#9632;</span> {html.escape(name)}'
            rows.append(f"<tr><th>{label} <small>@{record.step}</small></th>{cells}</tr>")
        return f'<table class="nbh-curves-table">{"".join(rows)}</table>'

    def _cell(self, name: str, metric: str, value: float | None) -> str:
        if value is None:
            return "<td>–</td>"
        best = self.metrics.best(metric, self._mode(metric), evaluation=name)
        best_txt = f"best {best.value:.4g} @{best.step}" if best is not None else ""
        return f"<td><b>{value:.4g}</b><br><small>{best_txt}</small></td>"

    def _show_status(self, state: str, reason: str) -> None:
        colour = ERROR_COLOUR if state == "failed" else MUTED_COLOUR
        self.status.value = coloured(f"{state}: {reason}", colour)


def _base_layout() -> dict[str, Any]:
    return {
        "height": _ROW_HEIGHT,
        "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
        "legend": {"orientation": "h", "y": -0.15},
        "hovermode": "closest",
        "template": "plotly_white",
    }


_AXIS = re.compile(r"[xy]axis\d*")


def _grid_layout(metrics: Sequence[str], columns: int) -> dict[str, Any]:
    """Axes domains and subplot titles for one subplot per metric (row-major)."""
    cols = max(1, min(columns, len(metrics)))
    rows = max(1, -(-len(metrics) // cols))
    grid = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=list(metrics),
        horizontal_spacing=0.08,
        vertical_spacing=min(0.12, 0.3 / rows),
    )
    layout = grid.layout.to_plotly_json()
    layout.pop("template", None)
    for axis in (k for k in layout if k.startswith("xaxis")):
        layout[axis]["title"] = {"text": "step", "standoff": 2}
    layout["height"] = _ROW_HEIGHT * rows + 40
    return layout


def _mark_shapes(marks: Sequence[tuple[int, str]], subplots: int) -> list[dict[str, Any]]:
    """A labelled vertical line per mark on each of ``subplots`` subplots (label on the first)."""
    shapes = []
    for k in range(1, max(1, subplots) + 1):
        suffix = "" if k == 1 else str(k)
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
                        "textposition": "end",
                        "font": {"size": 10},
                    },
                }
            )
    return shapes


def _axes(k: int) -> dict[str, str]:
    suffix = "" if k == 1 else str(k)
    return {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}


def _curve_traces(
    name: str, metric: str, colour: str, axes: Mapping[str, str], in_legend: bool
) -> list[go.Scatter]:
    """The line of one curve and its best-value star (always at index line + 1)."""
    line = go.Scatter(
        x=np.empty(0, dtype=np.int32),
        y=np.empty(0, dtype=np.float32),
        mode="lines+markers",
        name=name,
        legendgroup=name,
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
