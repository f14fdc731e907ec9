"""The notebook face of a :class:`~nbhooks.monitor.Monitor`: buttons, progress, tasks,
checkpoints and the live curves, fed from the monitor's events by a throttled Publisher."""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import Any

import ipywidgets as w

from nbhooks.publish import Publisher
from nbhooks.units import size
from nbhooks.views.base import (
    View,
    attempt,
    close_widget_tree,
    message_line,
    on_main_thread,
    resync_widget_tree,
)
from nbhooks.views.curves import CurvesView
from nbhooks.views.format import ERROR_COLOUR, MUTED_COLOUR, coloured, duration, rate

_STATE_COLOURS = {"silent": ERROR_COLOUR, "paused": "var(--jp-warn-color1, #ef6c00)"}


class JobView(View):
    """Stop / Pause / Resume, the job's step and speed, one row per task, the checkpoints and
    each task's input-pipeline checkpoints."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self.buttons = {
            "stop": w.Button(description="Stop", icon="stop", button_style="danger"),
            "pause": w.Button(description="Pause", icon="pause"),
            "resume": w.Button(description="Resume", icon="play"),
        }
        for action, button in self.buttons.items():
            button.add_class(f"nbh-job-{action}")
            button.on_click(lambda _b, action=action: self._request(action))
        self.message = message_line("nbh-job-message")  # why a request was refused
        self.line = w.HTML()
        self.tasks = w.HTML(layout=w.Layout(margin="0 2em 0 0"))
        self.checkpoints = w.HTML(layout=w.Layout(margin="0 2em 0 0"))
        self.inputs = w.HTML()
        self.problems = w.HTML()
        for widget, css in (
            (self.line, "nbh-job-line"),
            (self.tasks, "nbh-job-tasks"),
            (self.checkpoints, "nbh-job-checkpoints"),
            (self.inputs, "nbh-job-inputs"),
            (self.problems, "nbh-job-warnings"),
        ):
            widget.add_class(css)
        self.widget = w.VBox(
            [
                w.HBox([*self.buttons.values(), self.line], layout=w.Layout(align_items="center")),
                self.message,
                w.HBox([self.tasks, self.checkpoints, self.inputs]),
                self.problems,
            ]
        )
        self.widget.add_class("nbh-job")
        self.show(monitor.snapshot())

    def _request(self, action: str) -> None:
        attempt(getattr(self.monitor, action), self.message)  # the monitor raises it to callers

    def on_events(self, events: Sequence[Any]) -> None:
        latest = [e for e in events if type(e).__name__ == "JobEvent"]
        if latest:
            with self.widget.hold_sync():
                self.show(latest[-1])

    def show(self, job: Any) -> None:
        """Render one :class:`~nbhooks.monitor.JobEvent`."""
        step = "–" if job.global_step is None else f"{job.global_step:,}"
        parts = [f"<b>step {step}</b>", rate(job.steps_per_sec)]
        if job.job_started is not None:
            parts.append(f"job started {duration(time.time() - job.job_started)} ago")
        if job.request is not None:
            parts.append(f"last request: <b>{html.escape(job.request.action)}</b>")
        if job.restarts:
            parts.append(f"restarted {job.restarts}×")
        self.line.value = " · ".join(parts)
        self.tasks.value = _tasks_table(job.tasks)
        self.checkpoints.value = _checkpoints_table(job.checkpoints)
        self.inputs.value = _inputs_table(job.inputs)
        self.problems.value = "<br>".join(coloured(m, ERROR_COLOUR) for m in job.warnings[-5:])


def _tasks_table(rows: Sequence[Any]) -> str:
    if not rows:
        return coloured("no task heard from yet", MUTED_COLOUR)
    now = time.time()
    body = []
    for row in rows:
        colour = _STATE_COLOURS.get(row.state)
        state = coloured(row.state, colour) if colour else html.escape(row.state)
        seen = "–" if row.last_seen is None else f"{duration(max(0.0, now - row.last_seen))} ago"
        step = "–" if row.step is None else f"{row.step:,}"
        body.append(
            f"<tr><td>{html.escape(row.task)}</td><td>{state}</td><td>{seen}</td>"
            f"<td style='text-align:right'>{step}</td></tr>"
        )
    head = "<tr><th>task</th><th>state</th><th>last seen</th><th>step</th></tr>"
    return f"<table class='nbh-tasks-table'>{head}{''.join(body)}</table>"


def _checkpoints_table(items: Sequence[Any]) -> str:
    if not items:
        return coloured("no checkpoint yet", MUTED_COLOUR)
    body = "".join(
        f"<tr><td style='text-align:right'>{c.step:,}</td><td>{size(c.size_bytes)}</td></tr>"
        for c in items[-8:]
    )
    return f"<table><tr><th>checkpoint</th><th>size</th></tr>{body}</table>"


def _inputs_table(items: Sequence[Any]) -> str:
    """One row per training task: its input checkpoints' steps (newest last) and size."""
    if not items:
        return ""  # no PipelineCheckpointHook in this job: nothing to say
    by_task: dict[str, list[Any]] = {}
    for c in items:  # sorted by task, then step
        by_task.setdefault(c.task, []).append(c)
    body = "".join(
        f"<tr><td>{html.escape(task)}</td>"
        f"<td style='text-align:right'>{', '.join(f'{c.step:,}' for c in saved[-3:])}</td>"
        f"<td>{size(saved[-1].size_bytes)}</td></tr>"
        for task, saved in by_task.items()
    )
    head = "<tr><th>task</th><th>input checkpoints</th><th>size</th></tr>"
    return f"<table class='nbh-inputs-table'>{head}{body}</table>"


class MonitorPanel:
    """The monitor's widget: :class:`JobView` above a :class:`CurvesView` of its history.

    Created on the main thread; owns its Publisher (the only thing that updates the widgets)
    and closes it, and the widgets, in :meth:`close`."""

    def __init__(self, monitor: Any, max_points: int = 500) -> None:
        self.job = JobView(monitor)
        self.curves = CurvesView(monitor.metrics, max_points=max_points)
        # The publisher closes what it feeds: it gets feeds, so that the widgets can outlive it.
        self.publisher = Publisher(monitor.events, [_Feed(self.job), _Feed(self.curves)])
        self.widget = w.VBox([self.job.widget, self.curves.widget])
        self.widget.add_class("nbh-monitor")

    def resync(self) -> None:
        """Deliver pending events, then send the state of every widget a recorder of the
        running cell may lack (main thread; see :func:`~nbhooks.views.base.resync_widget_tree`)."""
        self.publisher.flush()
        resync_widget_tree(self.widget)

    def close(self, widgets: bool = True) -> None:
        """End the updates (after delivering what is pending); ``widgets=False`` leaves the
        widgets showing their last state (a finished job's page keeps its curves)."""
        self.publisher.close()
        if widgets:
            close_widget_tree(self.widget)
        elif on_main_thread():
            resync_widget_tree(self.widget)  # recorders of the cell now running see the end


class _Feed(View):
    """Passes a view its events; closing the feed leaves the view open."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.interval = view.interval

    def on_events(self, events: Sequence[Any]) -> None:
        self.view.on_events(events)

    def close(self) -> None:
        pass
