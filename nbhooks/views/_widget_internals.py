"""ipywidgets' and plotly's private internals, behind named functions: the only module using them.

Three needs have no public API: seeing every message a widget sends (to count the bytes of
the curves' updates); sending one restyle while keeping the kernel's synced state current
without sending the points again (:func:`restyle`: a page that connects later asks the kernel
for the state and draws every point); and sending a ``FigureWidget``'s whole state from its
figure (:func:`resync_figure_state`). plotly 7's front end never applies its own messages to
the state it keeps (it updates a copy), so an open page that renders the figure again, and
nbclient's saved widget state, need that resend now and then.
:data:`CONTRACT` lists each private attribute used; ``tests/test_tf_internals.py`` checks
them against the installed ipywidgets and plotly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from typing import Any

from nbhooks.contract import Private

#: Every private attribute of ipywidgets and plotly used here, one row each.
CONTRACT: tuple[Private, ...] = (
    Private("ipywidgets.Widget", "_send", "method(msg, buffers)", "watch_sent_messages"),
    Private(
        "plotly FigureWidget",
        "_send_restyle_msg",
        "method(restyle_data, trace_indexes, source_view_id)",
        "restyle",
    ),
    Private(
        "plotly FigureWidget",
        "_widget_data",
        "synced list",
        "restyle, resync_figure_state",
    ),
    Private(
        "plotly FigureWidget",
        "_widget_layout",
        "synced dict",
        "resync_figure_state",
    ),
    Private(
        "plotly FigureWidget",
        "_data",
        "list",
        "restyle, resync_figure_state",
    ),
    Private("plotly FigureWidget", "_layout_obj", "layout", "resync_figure_state"),
    Private("plotly Layout", "_props", "dict", "resync_figure_state"),
    Private("plotly FigureWidget", "_js2py_layoutDelta", "dict or None", "on_layout_reported"),
)

MessageListener = Callable[[Any, Sequence[Any] | None], None]


def watch_sent_messages(widget: Any, listener: MessageListener) -> None:
    """Call ``listener(msg, buffers)`` for every message ``widget`` sends, before it goes out."""
    send = widget._send

    def watched_send(msg: Any, buffers: Sequence[Any] | None = None) -> None:
        listener(msg, buffers)
        send(msg, buffers=buffers)

    widget._send = watched_send


def restyle(figure: Any, values: Mapping[str, Sequence[Any]], indexes: Sequence[int]) -> None:
    """Set ``values[key][k]`` as ``key`` of trace ``indexes[k]``, in the figure and in its
    synced state, and send it to open pages once (a restyle message).

    What ``figure.plotly_restyle`` does, without its validation of every key path of every
    trace (two thirds of an update's time with 20 curves): the values must be valid already.
    The state written in place is marked for the next resync (no update message carries it).
    """
    from nbhooks.views.base import mark_unrecorded  # base imports this module

    data, state = figure._data, figure._widget_data
    del state[len(data) :]  # the state's traces are the figure's (added ones: copied once)
    state.extend(deepcopy(data[len(state) :]))
    for key, per_trace in values.items():
        for index, value in zip(indexes, per_trace, strict=True):
            data[index][key] = value
            state[index][key] = value
    mark_unrecorded(figure)
    figure._send_restyle_msg(dict(values), trace_indexes=list(indexes))


#: The key under which plotly 7.1's front end reports the layout it drew: a misspelling of
#: the synced trait ``_js2py_layoutDelta``, so ipywidgets drops the report (no such trait)
#: unless the figure has a synced trait of that name (:func:`on_layout_reported` adds one).
FRONT_END_LAYOUT_KEY = "_js2py_widget_layoutDelta"


def on_layout_reported(figure: Any, callback: Callable[[Mapping[str, Any]], None]) -> None:
    """Call ``callback(layout)`` with the layout a page drew ``figure`` with (its ``width``...),
    each time a page reports it: after its first draw and after every change it draws."""
    if not hasattr(figure, "_js2py_layoutDelta"):  # a plotly without it: nothing reported
        return
    if not figure.has_trait(FRONT_END_LAYOUT_KEY):
        from plotly.serializers import custom_serializers
        from traitlets import Dict

        trait = Dict(allow_none=True).tag(sync=True, **custom_serializers)
        figure.add_traits(**{FRONT_END_LAYOUT_KEY: trait})
        figure.keys = [*figure.keys, FRONT_END_LAYOUT_KEY]  # synced: updates are applied

    def reported(change: Any) -> None:
        if change["new"]:
            callback(change["new"].get("layout_delta") or {})

    figure.observe(reported, names=["_js2py_layoutDelta", FRONT_END_LAYOUT_KEY])


def resync_figure_state(figure: Any, layout: bool = True, data: bool = True) -> None:
    """Set a ``FigureWidget``'s synced ``data`` and ``layout`` state from the figure itself,
    and send it (every point of every trace, when ``data``)."""
    with figure.hold_sync():
        if data:
            figure._widget_data = deepcopy(figure._data)
        if layout:
            figure._widget_layout = deepcopy(figure._layout_obj._props)
