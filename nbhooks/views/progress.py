"""A progress bar with step / target, steps/s, elapsed, ETA and the run's state; red on error."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as w

from nbhooks.errors import describe_error
from nbhooks.events import RunStateEvent, StepEvent
from nbhooks.views.base import View
from nbhooks.views.format import ERROR_COLOUR, MUTED_COLOUR, coloured, progress_line

_BAR_STYLE = {
    "running": "info",
    "paused": "warning",
    "stopping": "warning",
    "finished": "success",
    "stopped": "warning",
    "failed": "danger",
    "idle": "",
}


class ProgressView(View):
    """Shows the latest StepEvent and RunStateEvent; a failure shows its message, and its
    traceback behind a toggle."""

    def __init__(self, run: Any) -> None:
        self.bar = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="auto", flex="1"))
        self.line = w.HTML()
        self.badge = w.HTML()
        self.error = w.HTML(layout=w.Layout(display="none", flex="1 1 auto", min_width="0"))
        self.show_traceback = w.ToggleButton(
            description="Traceback",
            icon="bug",
            # never squeezed by a long error message into "Tr…"
            layout=w.Layout(display="none", width="auto", min_width="fit-content", flex="0 0 auto"),
        )
        self.traceback = w.HTML(layout=w.Layout(display="none"))
        self.show_traceback.observe(self._toggle_traceback, names="value")
        for widget, css in (
            (self.bar, "nbh-progress"),
            (self.line, "nbh-progress-line"),
            (self.badge, "nbh-state"),
            (self.error, "nbh-error"),
            (self.show_traceback, "nbh-traceback-toggle"),
            (self.traceback, "nbh-traceback"),
        ):
            widget.add_class(css)
        self.widget = w.VBox(
            [
                w.HBox([self.badge, self.bar], layout=w.Layout(align_items="center")),
                self.line,
                w.HBox([self.error, self.show_traceback], layout=w.Layout(align_items="center")),
                self.traceback,
            ]
        )
        self.widget.add_class("nbh-progress-view")
        self._running = run.running
        self._show_step(run.meter.snapshot())
        self._show_state(
            RunStateEvent(
                run.state,
                step=run.global_step,
                reason=run.reason,
                error=run.error,
                traceback=run.error_traceback,
            )
        )

    def on_events(self, events: Sequence[Any]) -> None:
        with self.widget.hold_sync():
            for event in events:
                if isinstance(event, StepEvent):
                    self._show_step(event)
                elif isinstance(event, RunStateEvent):
                    self._show_state(event)

    def _show_step(self, event: StepEvent) -> None:
        self._step = event
        if event.target is None:  # how far along is unknown (not yet started): no fill
            self.bar.max, self.bar.value = 1, 0
        else:
            self.bar.max = max(event.target, 1)
            self.bar.value = min(event.step, self.bar.max)
        self._show_line()

    def _show_line(self) -> None:
        e = self._step
        eta = e.eta if self._running else None  # an ended run is not going anywhere
        self.line.value = html.escape(
            progress_line(e.step, e.target, e.steps_per_sec, e.elapsed, eta)
        )

    def _show_state(self, event: RunStateEvent) -> None:
        self._running = event.state in ("running", "paused", "stopping")
        self._show_line()
        self.bar.bar_style = _BAR_STYLE[event.state]
        if event.state == "finished" and self._step.target is None:  # done, wherever it was
            self.bar.max = self.bar.value = 1
        show_reason = event.reason and event.state != "failed"
        reason = f" — {html.escape(event.reason)}" if event.reason and show_reason else ""
        colour = ERROR_COLOUR if event.state == "failed" else "inherit"
        self.badge.value = f"{coloured(event.state, colour, bold=True)}{reason}"
        failed = event.state == "failed" and event.error is not None
        self.error.layout.display = None if failed else "none"
        self.show_traceback.layout.display = None if failed and event.traceback else "none"
        if failed:
            message = event.reason or describe_error(event.error)  # the root cause, one line
            self.error.value = coloured(f"Training failed: {message}", ERROR_COLOUR, bold=True)
            self.traceback.value = (
                f'<pre style="white-space:pre-wrap;font-size:11px">'
                f"{html.escape(event.traceback or '')}</pre>"
            )
        else:
            self.show_traceback.value = False

    def _toggle_traceback(self, change: dict[str, Any]) -> None:
        self.traceback.layout.display = None if change["new"] else "none"


class StatusLineKeeper(View):
    """Keeps another view's status line (e.g. the curves' "finished: reached step 3,000") from
    outliving its run: cleared when training starts again, "paused" while paused.

    It takes the other view's ``interval``: added to the same publisher after that view, both
    get the same batches in the same pass, so this one always has the last word.
    """

    def __init__(self, status: w.HTML, interval: float | None = None) -> None:
        self.status = status
        self.interval = interval

    def on_events(self, events: Sequence[Any]) -> None:
        states = [e for e in events if isinstance(e, RunStateEvent)]
        if not states:
            return
        last = states[-1]
        if last.state in ("running", "idle"):
            self.status.value = ""
        elif last.state == "paused":
            self.status.value = coloured(f"paused at step {last.step or 0:,}", MUTED_COLOUR)

    def close(self) -> None:
        """The status line belongs to the other view."""
