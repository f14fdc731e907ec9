"""What a resync sends from the main thread: each widget a recorder of the running cell
(nbclient keeps the main thread's messages only) may lack, and nothing else. Real widgets,
recorded through the ``comm_log`` fixture's comm."""

from __future__ import annotations

import threading

import ipywidgets as w
import plotly.graph_objects as go

from nbhooks.views._widget_internals import restyle
from nbhooks.views.base import resync_widget_tree, watch_widget_tree


def _off_main(change) -> None:
    thread = threading.Thread(target=change)
    thread.start()
    thread.join()


def _resent(comm_log, since: int) -> set[str]:
    return {comm_id for comm_id, main, _ in comm_log.sent[since:] if main}


def test_only_what_changed_off_the_main_thread_is_sent_again(comm_log) -> None:
    shown, quiet, later = w.HTML("a"), w.HTML("q"), w.HTML("made later")
    box = w.VBox([shown, quiet])
    watch_widget_tree(box)
    _off_main(lambda: setattr(shown, "value", "b"))
    box.children = (shown, quiet, later)  # on the main thread: recorded as it is sent
    _off_main(lambda: setattr(quiet, "layout", w.Layout(width="50%")))  # a new, unseen child
    before = len(comm_log.sent)
    resync_widget_tree(box)
    resent = _resent(comm_log, before)
    assert shown.comm.comm_id in resent and quiet.comm.comm_id in resent
    assert quiet.layout.comm.comm_id in resent  # never watched: always sent
    assert later.comm.comm_id in resent  # likewise
    assert box.comm.comm_id not in resent  # changed on the main thread only
    assert shown.layout.comm.comm_id not in resent  # unchanged
    recorded = comm_log.recorded()
    assert recorded[shown.comm.comm_id]["value"] == "b"
    before = len(comm_log.sent)
    resync_widget_tree(box)  # nothing changed since
    assert _resent(comm_log, before) == set()


def test_state_written_in_place_on_the_main_thread_is_sent_again(comm_log) -> None:
    figure = go.FigureWidget(data=[go.Scatter(x=[0, 1], y=[1.0, 2.0])])
    watch_widget_tree(figure)
    restyle(figure, {"y": [[3.0, 4.0]]}, [0])  # an update message, but not of the points
    assert [t["y"] for t in comm_log.recorded()[figure.comm.comm_id]["_widget_data"]] != [
        [3.0, 4.0]
    ]
    resync_widget_tree(figure)
    data = comm_log.recorded()[figure.comm.comm_id]["_widget_data"]
    assert [list(t["y"]) for t in data] == [[3.0, 4.0]]


def test_a_resync_off_the_main_thread_leaves_the_widget_to_send_again(comm_log) -> None:
    label = w.HTML("a")
    watch_widget_tree(label)
    _off_main(lambda: setattr(label, "value", "b"))
    _off_main(lambda: resync_widget_tree(label))  # a recorder of the cell does not see it
    before = len(comm_log.sent)
    resync_widget_tree(label)
    assert _resent(comm_log, before) == {label.comm.comm_id}
