"""ipywidgets' and plotly's private internals, behind named functions: the only module using them.

Two needs have no public API: seeing every message a widget sends (to count the bytes of the
curves' updates), and setting a ``FigureWidget``'s synced state from its figure, so that a
page that connects later (Voila, a reloaded tab, saved widget state) draws every point.
:data:`CONTRACT` lists each private attribute used; ``tests/test_tf_internals.py`` checks
them against the installed ipywidgets and plotly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Private:
    """One private attribute nbhooks relies on: where it lives and what it must be."""

    owner: str  #: the class it belongs to
    name: str  #: the attribute
    kind: str  #: what it must be (checked by the contract test)
    used_by: str  #: the function(s) of this module that use it


#: Every private attribute of ipywidgets and plotly used here, one row each.
CONTRACT: tuple[Private, ...] = (
    Private("ipywidgets.Widget", "_send", "method(msg, buffers)", "watch_sent_messages"),
    Private("plotly FigureWidget", "_widget_data", "synced list", "resync_figure_state"),
    Private("plotly FigureWidget", "_widget_layout", "synced dict", "resync_figure_state"),
    Private("plotly FigureWidget", "_data", "list", "resync_figure_state"),
    Private("plotly FigureWidget", "_layout_obj", "layout", "resync_figure_state"),
    Private("plotly Layout", "_props", "dict", "resync_figure_state"),
)

MessageListener = Callable[[Any, Sequence[Any] | None], None]


def watch_sent_messages(widget: Any, listener: MessageListener) -> None:
    """Call ``listener(msg, buffers)`` for every message ``widget`` sends, before it goes out."""
    send = widget._send

    def watched_send(msg: Any, buffers: Sequence[Any] | None = None) -> None:
        listener(msg, buffers)
        send(msg, buffers=buffers)

    widget._send = watched_send


def resync_figure_state(figure: Any, layout: bool = True) -> None:
    """Set a ``FigureWidget``'s synced data (and ``layout``) state from the figure itself."""
    with figure.hold_sync():
        figure._widget_data = deepcopy(figure._data)
        if layout:
            figure._widget_layout = deepcopy(figure._layout_obj._props)
