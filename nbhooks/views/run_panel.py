"""A run's controls and progress in one widget, fed by a publisher the panel owns."""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from nbhooks.publish import Publisher
from nbhooks.views.base import View, close_widget_tree, resync_widget_tree, watch_widget_tree
from nbhooks.views.controls import ControlsView
from nbhooks.views.progress import ProgressView


class RunPanel:
    """Controls + progress for a :class:`~nbhooks.run.TrainingRun`; more views can be added
    with :meth:`add`. Created on the main thread; ``close()`` ends the publisher and widgets."""

    def __init__(self, run: Any, views: tuple[View, ...] = (), interval: float = 0.1) -> None:
        self.controls = ControlsView(run)
        self.progress = ProgressView(run)
        fed = [self.controls, self.progress, *views]
        self.widget = w.VBox([v.widget for v in fed if v.widget is not None])
        self.widget.add_class("nbh-run-panel")
        watch_widget_tree(self.widget)  # before the publisher can touch it
        self.publisher = Publisher(run.events, fed, interval=interval)

    @property
    def views(self) -> list[View]:
        """Every view this panel feeds (and closes)."""
        return self.publisher.views

    def add(self, view: View, show: bool = True) -> None:
        """Feed ``view`` too; ``show`` also appends its widget to the panel's own box."""
        if view.widget is not None:
            watch_widget_tree(view.widget)  # before the publisher can touch it
        self.publisher.add(view)
        if show and view.widget is not None:
            self.widget.children = (*self.widget.children, view.widget)

    def resync(self) -> None:
        """Deliver pending events, then send the state of every widget a recorder of the
        running cell may lack (main thread; see :func:`~nbhooks.views.base.resync_widget_tree`)."""
        self.publisher.flush()
        for view in self.views:
            if view.widget is not None:
                resync_widget_tree(view.widget)

    def close(self) -> None:
        self.publisher.close()
        close_widget_tree(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
