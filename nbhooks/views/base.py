"""The view plugin contract: a widget (or console), fed batches of events, closed by its owner."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any


class View(ABC):
    """A small output plugin.

    ``on_events`` is called by the :class:`~nbhooks.publish.Publisher` only, on its own thread,
    at most once per ``interval`` seconds, with every event since the last call (consecutive
    :class:`~nbhooks.events.StepEvent` s coalesced to the latest). It should batch its widget
    changes (``hold_sync()``, ``fig.batch_update()``). ``close()`` releases its widgets.
    """

    #: The ipywidgets widget to display (``None`` for non-widget views such as the console).
    widget: Any = None
    #: The least time between two batches, in seconds (``None``: the publisher's, 0.1 s).
    interval: float | None = None

    @abstractmethod
    def on_events(self, events: Sequence[Any]) -> None: ...

    def close(self) -> None:
        if self.widget is not None:
            close_widget_tree(self.widget)


def walk_widgets(widget: Any) -> list[Any]:
    """``widget`` and every widget it holds (children, layout, style...), each once."""
    from ipywidgets import Widget

    seen: dict[int, Any] = {}
    stack = [widget]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen[id(current)] = current
        for name in current.keys:
            value = getattr(current, name, None)
            values = value if isinstance(value, list | tuple) else (value,)
            stack.extend(v for v in values if isinstance(v, Widget))
    return list(seen.values())


def close_widget_tree(widget: Any) -> None:
    """Close ``widget`` and everything it holds: ``Widget.close()`` closes only the widget
    itself, its children would stay alive in the kernel and the frontend."""
    for each in walk_widgets(widget):
        each.close()


#: Synced keys that hold a widget's front-end code (anywidget's bundle: plotly's FigureWidget
#: carries ~5 MB of it), sent when the widget is displayed and never changed afterwards.
CODE_KEYS = frozenset({"_esm", "_css"})


def resync_widget_tree(widget: Any) -> None:
    """Send the state of ``widget`` and everything it holds, all but its code.

    Updates sent from the publisher thread reach live pages, but a recorder that keeps only
    the messages of the cell now running (nbclient's saved widget state) misses them; calling
    this from the main thread after a run makes the recorded state current.
    """
    for each in walk_widgets(widget):
        if each.comm is not None:
            each.send_state(key=[k for k in each.keys if k not in CODE_KEYS])
