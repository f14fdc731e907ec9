"""The Rewind tab: the steps a dashboard can go back to, kept current, and a Rewind button.

The list is read again when a run ends and when an input checkpoint is saved or deleted (the
publisher hands this view those events), and on Refresh. Rewinding runs on the main thread
(the button's click): it needs an idle run, and says what the next training starts from or,
in red, why it cannot.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w

from nbhooks.events import FINAL_STATES, PipelineEvent, RunStateEvent
from nbhooks.views.base import View
from nbhooks.views.format import ERROR_COLOUR, coloured


class RewindView(View):
    """``steps()``: the steps to rewind to; ``rewind(step)``: rewinds, returns what the next
    training starts from (one line), raises ValueError, TypeError or RuntimeError when it
    cannot."""

    def __init__(self, steps: Callable[[], list[int]], rewind: Callable[[int], str]) -> None:
        self._steps, self._rewind = steps, rewind
        self.step = w.Dropdown(description="step", options=[], layout=w.Layout(width="200px"))
        refresh = w.Button(description="Refresh", icon="refresh")
        go = w.Button(description="Rewind", icon="undo")
        self.message = w.HTML()
        for widget, css in (
            (self.step, "nbh-rewind-step"),
            (refresh, "nbh-rewind-refresh"),
            (go, "nbh-rewind"),
            (self.message, "nbh-rewind-msg"),
        ):
            widget.add_class(css)
        refresh.on_click(lambda _: self.refresh())
        go.on_click(lambda _: self._go())
        self.widget = w.VBox([w.HBox([self.step, refresh, go]), self.message])
        self.refresh()

    def refresh(self) -> None:
        """List the steps again, newest first (the chosen one stays chosen while listed)."""
        chosen = self.step.value
        options = self._steps()[::-1]
        with self.step.hold_sync():
            self.step.options = options
            self.step.value = chosen if chosen in options else None

    def _go(self) -> None:
        if self.step.value is None:
            self.message.value = coloured("choose a step first", ERROR_COLOUR)
            return
        try:
            self.message.value = html.escape(self._rewind(int(self.step.value)))
        except (ValueError, TypeError, RuntimeError) as exc:
            self.message.value = coloured(str(exc), ERROR_COLOUR)

    def on_events(self, events: Sequence[Any]) -> None:
        if any(_changes_the_steps(e) for e in events):
            self.refresh()


def _changes_the_steps(event: Any) -> bool:
    """A run ended (new model checkpoints; its input may have turned out to have no position),
    or an input checkpoint was saved or deleted; requests, restores and warnings list nothing
    new."""
    if isinstance(event, PipelineEvent):
        return event.action in ("saved", "deleted")
    return isinstance(event, RunStateEvent) and event.state in FINAL_STATES
