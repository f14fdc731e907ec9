"""The face of a :class:`~nbhooks.compare.Compare`: a table of runs and the shared live curves.

Both are created on the main thread and fed by one publisher on the Compare's event bus. The
curves of every run share one byte budget per update: the more curves, the fewer points each
is drawn with (the history keeps every value).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as w

from nbhooks.events import EvalEvent, RunStateEvent, StepEvent
from nbhooks.publish import Publisher
from nbhooks.stores.metrics import guess_mode
from nbhooks.views.base import View, close_widget_tree, resync_widget_tree
from nbhooks.views.curves import CurvesView
from nbhooks.views.format import ERROR_COLOUR, MUTED_COLOUR

#: Bytes a drawn point costs per update: x (int32) and y (float32), sent with the changed
#: traces and again in the synced state kept current for late pages.
BYTES_PER_POINT = 16
#: Bytes of JSON per curve per update (its attributes in the synced state, the update message).
BYTES_PER_CURVE = 1200
#: Bytes of an update that do not depend on the curves (framing, the readout table).
BYTES_FIXED = 3000


class CompareCurves(CurvesView):
    """A :class:`CurvesView` of every run whose points per curve follow the byte budget."""

    def __init__(self, compare: Any, max_points: int, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.ceiling = max_points
        super().__init__(compare.metrics, max_points=max_points)
        self.figure.add_class("nbh-compare-curves")

    def refresh(self) -> bool:
        with self._lock:
            curves = max(1, len(self.metrics.names) * len(self.metrics.metrics))
            left = self.budget_bytes - BYTES_FIXED - BYTES_PER_CURVE * curves
            share = left // (BYTES_PER_POINT * curves)
            self.max_points = max(3, min(self.ceiling, share))
            return super().refresh()


class CompareTable(View):
    """One row per run: settings, state, step, steps/s, best values and a Stop button."""

    interval = 0.25
    HEAD = ("run", "settings", "state", "step", "steps/s", "best")

    def __init__(self, compare: Any) -> None:
        from nbhooks.compare import settings_of

        self.compare = compare
        self.cells: dict[str, dict[str, w.HTML]] = {}
        rows: list[Any] = [w.HTML(f"<b>{h}</b>") for h in (*self.HEAD, "")]
        for name, dash in compare.dashboards.items():
            cells = {h: w.HTML() for h in self.HEAD}
            cells["run"].value = f"<b>{html.escape(name)}</b>"
            settings = settings_of(dash)
            cells["settings"].value = html.escape(
                ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in settings.items()
                )
            )
            stop = w.Button(description="Stop", icon="stop", layout=w.Layout(width="80px"))
            stop.add_class("nbh-compare-stop")
            stop.on_click(lambda _, name=name: compare.stop_run(name))
            cells["state"].add_class("nbh-compare-state")
            cells["step"].add_class("nbh-compare-step")
            self.cells[name] = cells
            rows += [*cells.values(), stop]
        self.widget = w.GridBox(
            rows,
            layout=w.Layout(
                grid_template_columns="auto auto auto auto auto 1fr auto", grid_gap="2px 12px"
            ),
        )
        self.widget.add_class("nbh-compare-table")
        self.show()

    def on_events(self, events: Sequence[Any]) -> None:
        if any(isinstance(e, StepEvent | RunStateEvent | EvalEvent) for e in events):
            self.show()

    def show(self) -> None:
        """Set every row from the runs' current state."""
        states = self.compare.states
        for name, dash in self.compare.dashboards.items():
            cells, run = self.cells[name], dash.run
            state = states[name]
            colour = ERROR_COLOUR if state == "failed" else MUTED_COLOUR
            with _held(cells.values()):
                cells["state"].value = f'<span style="color:{colour}">{state}</span>'
                cells["step"].value = f"{run.global_step:,}"
                rate = run.steps_per_sec
                cells["steps/s"].value = "–" if rate is None else f"{rate:,.0f}"
                cells["best"].value = _best_html(dash)


def _best_html(dash: Any) -> str:
    parts = []
    for evaluation in dash.metrics.names:
        for metric in dash.metrics.metrics:
            best = dash.metrics.best(metric, guess_mode(metric), evaluation=evaluation)
            if best is not None:
                parts.append(
                    f"{html.escape(evaluation)} {html.escape(metric)} <b>{best.value:.4g}</b>"
                    f"<small>@{best.step}</small>"
                )
    return "; ".join(parts) or "<i>no evaluation yet</i>"


class _held:
    """``hold_sync()`` on several widgets at once."""

    def __init__(self, widgets: Any) -> None:
        self.holds = [x.hold_sync() for x in widgets]

    def __enter__(self) -> None:
        for hold in self.holds:
            hold.__enter__()

    def __exit__(self, *exc: Any) -> None:
        for hold in reversed(self.holds):
            hold.__exit__(*exc)


class CompareFace:
    """The widget of a Compare: table and curves, their publisher; ``close()`` ends them."""

    def __init__(self, compare: Any) -> None:
        self.table = CompareTable(compare)
        self.curves = CompareCurves(compare, compare.max_points, compare.budget_bytes)
        self.publisher = Publisher(compare.events, [self.table, self.curves])
        title = w.HTML(
            f"<b>nbhooks</b> · comparing {len(compare.dashboards)} runs, "
            f"{compare.parallel} at a time"
        )
        self.widget = w.VBox(
            [title, self.table.widget, self.curves.widget], layout=w.Layout(max_width="1200px")
        )
        self.widget.add_class("nbh-compare")

    def resync(self) -> None:
        """Deliver pending events, then send the state of every widget a recorder of the
        running cell may lack (main thread; see :func:`~nbhooks.views.base.resync_widget_tree`)."""
        self.publisher.flush()
        resync_widget_tree(self.widget)

    def close(self) -> None:
        self.publisher.close()
        close_widget_tree(self.widget)
