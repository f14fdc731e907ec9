"""The view plugin contract: a widget (or console), fed batches of events, closed by its owner."""

from __future__ import annotations

import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from nbhooks.views._widget_internals import watch_sent_messages
from nbhooks.views.format import ERROR_COLOUR, coloured


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


def message_line(css_class: str, **layout: str) -> Any:
    """An HTML widget for what a click says (see :func:`show_message`): hidden while empty, so it
    takes no line of its own until there is something to read."""
    import ipywidgets as w

    message = w.HTML(layout=w.Layout(display="none", **layout))
    message.add_class(css_class)
    return message


def show_message(message: Any, html_text: str) -> None:
    """Put ``html_text`` in a :func:`message_line` (shown) or clear it (hidden)."""
    message.value = html_text
    message.layout.display = None if html_text else "none"


def attempt(action: Callable[[], object], message: Any) -> None:
    """A click's ``action``: its error shown in ``message`` (a :func:`message_line`) in red,
    cleared when it succeeds. The API behind the button raises the same error to callers."""
    try:
        action()
    except Exception as exc:
        show_message(message, coloured(str(exc), ERROR_COLOUR))
    else:
        show_message(message, "")


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
    """Send again the state of each widget of ``widget``'s tree that a recorder may lack, all
    but its code, and watch the tree from now on.

    Updates sent from the publisher thread reach live pages, but a recorder that keeps only
    the messages of the cell now running (nbclient's saved widget state) misses them; calling
    this from the main thread after a run makes the recorded state current. A widget watched
    since it was made or last sent here (:func:`watch_widget_tree`) is sent only when it sent
    a message from another thread or had its state changed in place since
    (:func:`mark_unrecorded`); any other widget always.
    """
    on_main = on_main_thread()
    for each in walk_widgets(widget):
        if each.comm is None:
            continue
        key = id(each)
        stale = key not in _WATCHED or key in _UNRECORDED
        _UNRECORDED.discard(key)  # a mark made from now on is for a change this send may lack
        if stale:
            each.send_state(key=[k for k in each.keys if k not in CODE_KEYS])
        if on_main:
            _watch(each)


def watch_widget_tree(widget: Any) -> None:
    """Call on the main thread right after ``widget``'s tree was made (its state sent in the
    cell now running): :func:`resync_widget_tree` then sends only what changed out of a
    recorder's sight. A no-op on other threads."""
    if on_main_thread():
        for each in walk_widgets(widget):
            if each.comm is not None:
                _watch(each)


def on_main_thread() -> bool:
    """True on the kernel's main thread, whose messages a recorder of the running cell keeps."""
    return threading.current_thread() is threading.main_thread()


def mark_unrecorded(widget: Any) -> None:
    """``widget``'s synced state changed without an update message (written in place):
    :func:`resync_widget_tree` sends it again."""
    _UNRECORDED.add(id(widget))


#: Widgets whose every message is seen (see watch_widget_tree), by id (a FigureWidget is not
#: hashable), and the ids of those that sent a message a recorder of the running cell may have
#: missed since they were last sent in full. A widget's entries go when it is collected. Each
#: change is one dict or set operation, atomic under the GIL: no lock (a weakref callback may
#: run in the middle of any code, a lock held there included).
_WATCHED: dict[int, weakref.ref[Any]] = {}
_UNRECORDED: set[int] = set()


def _forget(key: int) -> None:
    _WATCHED.pop(key, None)
    _UNRECORDED.discard(key)


def _watch(widget: Any) -> None:
    """Watch ``widget`` (once; called on the main thread only)."""
    key = id(widget)
    if key in _WATCHED:
        return
    # (a weak reference: no cycle through the widget's own send; the entries go with it)
    ref = _WATCHED[key] = weakref.ref(widget, lambda _: _forget(key))

    def sent(msg: Any, buffers: Sequence[Any] | None) -> None:
        # Only state updates from the main thread reach the recorder's state; a custom message
        # (or one from another thread) does not.
        if not on_main_thread() or (isinstance(msg, dict) and msg.get("method") != "update"):
            current = ref()
            if current is not None:
                mark_unrecorded(current)

    watch_sent_messages(widget, sent)
