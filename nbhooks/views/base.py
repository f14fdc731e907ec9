"""The view plugin contract: a widget (or console), fed batches of events, closed by its owner."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any


class View(ABC):
    """A small output plugin.

    ``on_events`` is called by the :class:`~nbhooks.publish.Publisher` only, on its own thread,
    at most ~10 times a second, with every event since the last call (consecutive
    :class:`~nbhooks.events.StepEvent` s coalesced to the latest). It should batch its widget
    changes (``hold_sync()``, ``fig.batch_update()``). ``close()`` releases its widgets.
    """

    #: The ipywidgets widget to display (``None`` for non-widget views such as the console).
    widget: Any = None

    @abstractmethod
    def on_events(self, events: Sequence[Any]) -> None: ...

    def close(self) -> None:
        if self.widget is not None:
            close_widget_tree(self.widget)


def close_widget_tree(widget: Any) -> None:
    """Close ``widget`` and every widget it holds (children, layout, style...).

    ``Widget.close()`` closes only the widget itself; its children would stay alive in the
    kernel (and in the frontend's widget manager) until the kernel restarts.
    """
    from ipywidgets import Widget

    seen: set[int] = set()
    stack = [widget]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for name in current.keys:
            value = getattr(current, name, None)
            values = value if isinstance(value, list | tuple) else (value,)
            stack.extend(v for v in values if isinstance(v, Widget))
        current.close()
