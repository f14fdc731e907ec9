"""Start / Pause-Resume / Stop buttons, enabled only when they make sense."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w

from nbhooks.events import RunStateEvent
from nbhooks.views.base import View, attempt, message_line

#: state -> (start enabled, pause/resume enabled, stop enabled, pause button shows "Resume")
_ENABLED: dict[str, tuple[bool, bool, bool, bool]] = {
    "idle": (True, False, False, False),
    "running": (False, True, True, False),
    "paused": (False, True, True, True),
    "stopping": (False, False, False, False),
    "finished": (True, False, False, False),
    "stopped": (True, False, False, False),
    "failed": (True, False, False, False),
}


class ControlsView(View):
    """Buttons that post requests to the run; their states follow the run's state events."""

    def __init__(self, run: Any) -> None:
        self.run = run
        self.start = w.Button(
            description="Start",
            icon="play",
            button_style="success",
            tooltip="Train in the background",
        )
        self.pause = w.Button(description="Pause", icon="pause", tooltip="Hold at the next step")
        self.stop = w.Button(
            description="Stop",
            icon="stop",
            button_style="danger",
            tooltip="Stop cleanly at the next step (final checkpoint written)",
        )
        self.steps = w.BoundedIntText(
            value=run.steps or 1000,
            min=1,
            max=10**9,
            description="steps",
            layout=w.Layout(width="160px"),
            style={"description_width": "40px"},
            tooltip="How many steps Start trains",
        )
        # Start trains the box's steps; a run made with max_steps (or neither: until the input
        # ends) starts as it was made, without the box.
        self.steps.layout.display = None if run.steps is not None else "none"
        # Beside the buttons when there is room, else on a line under them: never squeezing
        # them to "..." (a refusal can be three lines long).
        self.message = message_line("nbh-controls-message", flex="1 1 240px", min_width="0")
        for widget, css in (
            (self.start, "nbh-start"),
            (self.pause, "nbh-pause"),
            (self.stop, "nbh-stop"),
            (self.steps, "nbh-steps"),
        ):
            widget.add_class(css)
            widget.layout.flex = "0 0 auto"
        self.start.on_click(self._on_start)
        self.pause.on_click(self._on_pause)
        self.stop.on_click(self._on_stop)
        self.widget = w.HBox(
            [self.start, self.pause, self.stop, self.steps, self.message],
            layout=w.Layout(flex_flow="row wrap", align_items="center"),
        )
        self.widget.add_class("nbh-controls")
        self.show_state(run.state)

    # Clicks run on the kernel's main thread: they only post requests (errors shown here, the
    # run's API raises them to callers).
    def _on_start(self, _: Any) -> None:
        steps = self.steps.value if self.run.steps is not None else None
        attempt(lambda: self.run.start(steps=steps), self.message)

    def _on_pause(self, _: Any) -> None:
        attempt(self.run.resume if self.run.state == "paused" else self.run.pause, self.message)

    def _on_stop(self, _: Any) -> None:
        attempt(self.run.stop, self.message)

    def show_state(self, state: str) -> None:
        start, pause, stop, resume = _ENABLED[state]
        with self.widget.hold_sync():
            self.start.disabled, self.pause.disabled, self.stop.disabled = (
                not start,
                not pause,
                not stop,
            )
            self.pause.description = "Resume" if resume else "Pause"
            self.pause.icon = "play" if resume else "pause"

    def on_events(self, events: Sequence[Any]) -> None:
        states = [e.state for e in events if isinstance(e, RunStateEvent)]
        if states:
            self.show_state(states[-1])


class NewRunButton:
    """ "New run": a fresh run in a new folder (the earlier runs are kept on disk).

    The button outlives the runs it makes; :meth:`follow` gives a view for each run's
    publisher that keeps it enabled only while that run is not training.
    """

    def __init__(self, new_run: Callable[[], Any]) -> None:
        self._new_run = new_run
        self.button = w.Button(
            description="New run",
            icon="plus",
            tooltip="Start over in a new run folder: fresh weights, empty curves",
            layout=w.Layout(width="auto", flex="0 0 auto"),
        )
        self.button.add_class("nbh-new-run")
        self.message = message_line("nbh-new-run-message")
        self.button.on_click(self._on_click)
        self.widget = w.HBox([self.button, self.message], layout=w.Layout(align_items="center"))

    def _on_click(self, _: Any) -> None:
        attempt(self._new_run, self.message)  # dash.new_run() raises it to callers

    def follow(self, state: str) -> View:
        """A view (no widget of its own) that enables the button when a run is not training."""
        return _NewRunFollower(self, state)

    def show_state(self, state: str) -> None:
        self.button.disabled = state in ("running", "paused", "stopping")


class _NewRunFollower(View):
    def __init__(self, owner: NewRunButton, state: str) -> None:
        self.owner = owner
        owner.show_state(state)

    def on_events(self, events: Sequence[Any]) -> None:
        states = [e.state for e in events if isinstance(e, RunStateEvent)]
        if states:
            self.owner.show_state(states[-1])

    def close(self) -> None:
        """The button belongs to the dashboard, not to the run this follows."""
