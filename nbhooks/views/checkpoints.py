"""``PipelineCheckpointPanel``: Save / Restore / Delete buttons and the saved positions.

Clicks (main thread) only post requests to the hook; every widget change comes from
:meth:`on_events`, called by the publisher thread. Nothing here waits on training.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w

from nbhooks.events import PipelineEvent
from nbhooks.stores.pipeline_files import Checkpoint, PipelineCheckpointError
from nbhooks.units import size
from nbhooks.views.base import View
from nbhooks.views.format import ERROR_COLOUR, coloured


class PipelineCheckpointPanel(View):
    """The face of a :class:`~nbhooks.hooks.pipeline.PipelineCheckpointHook`.

    Restore and Delete act on the selected checkpoint (a new save is selected at once); a
    restore rewinds the input position only, not the model's weights.
    Buttons are disabled while a request waits for the next step boundary. Failures show in
    the error colour; warnings (the input started afresh, a large save) and "off" (the input
    cannot be checkpointed: why) with a ⚠ in the text colour.
    """

    def __init__(self, hook: Any) -> None:
        self.hook = hook
        self._new_save: str | None = None  # selected as soon as it is listed
        self.save_button = _button("Save", "save", "nbh-save", "Save the pipeline position now")
        self.restore_button = _button(
            "Restore selected",
            "undo",
            "nbh-restore",
            "Read the training data from the selected position next (the model is not rewound)",
        )
        self.restore_button.layout.width = "auto"  # its whole label, also on a projector
        self.delete_button = _button("Delete", "trash", "nbh-delete", "Delete the selection")
        self.list = w.Select(options=[], rows=6, layout=w.Layout(width="100%"))
        self.list.add_class("nbh-pipeline-list")
        self.status = w.HTML()
        self.status.add_class("nbh-pipeline-status")
        title = w.HTML(
            "<b>Input pipeline checkpoints</b> · Restore rewinds the position in the training "
            "data only (which batches come next), not the model's weights."
        )
        buttons = w.HBox([self.save_button, self.restore_button, self.delete_button])
        self.widget = w.VBox([title, buttons, self.list, self.status])
        self.widget.add_class("nbh-pipeline")
        self.save_button.on_click(lambda _: self._post(hook.save))
        self.restore_button.on_click(lambda _: self._post(lambda: hook.restore(self.list.value)))
        self.delete_button.on_click(lambda _: self._post(lambda: hook.delete(self.list.value)))
        self.list.observe(lambda _: self._sync_buttons(), names="value")
        # Shown after training started, it missed the hook's warning event: the status says it.
        self._show_hook_status()

    @property
    def buttons(self) -> tuple[w.Button, w.Button, w.Button]:
        return self.save_button, self.restore_button, self.delete_button

    def _post(self, action: Callable[[], Any]) -> None:
        """A click: post the request unless one is pending (errors come back as events)."""
        if self.hook.pending:
            return
        # On bad input the hook emits a "failed" event with the message: on_events shows it.
        with contextlib.suppress(PipelineCheckpointError, TypeError):
            action()

    def on_events(self, events: Sequence[Any]) -> None:
        if (self.hook.status, self.hook.status_warns) != self._status_read:
            self._show_hook_status()  # its event may have gone out before this view was fed
        pipeline = [e for e in events if isinstance(e, PipelineEvent)]
        if not pipeline:
            return
        personal = [e for e in pipeline if not e.automatic]
        if not personal:  # automatic saves and rotation: the list changes, the status stays
            self._show_list()
            return
        last = personal[-1]
        if last.action == "saved" and last.path is not None:
            self._new_save = last.path
        level = {"failed": "failed", "warning": "warning", "off": "warning"}.get(last.action, "")
        self._show(last.message or last.action, level or "note")

    def _show_hook_status(self) -> None:
        """Show the hook's own status, and remember it as read."""
        self._status_read = (self.hook.status, self.hook.status_warns)
        self._show(self.hook.status, "warning" if self.hook.status_warns else "note")

    def _sync_buttons(self) -> None:
        """Disabled while a request is pending; Delete also needs a selection."""
        pending = self.hook.pending > 0
        self.save_button.disabled = pending
        self.restore_button.disabled = pending or self.list.value is None
        self.delete_button.disabled = pending or self.list.value is None

    def _show(self, message: str, level: str) -> None:
        """``level``: "failed" (error colour), "warning" (⚠) or "note"."""
        text = f"⚠ {message}" if level in {"failed", "warning"} else message
        self.status.value = coloured(text, ERROR_COLOUR if level == "failed" else "inherit")
        self._show_list()

    def _show_list(self) -> None:
        checkpoints = self.hook.store.list()
        latest = self.hook.store.state_path()
        options = [(_label(c, c.path == latest), c.path) for c in reversed(checkpoints)]
        selected, self._new_save = self._new_save or self.list.value, None
        with self.list.hold_sync():
            self.list.options = options
            paths = [path for _, path in options]
            self.list.value = selected if selected in paths else None
        self._sync_buttons()


def _button(description: str, icon: str, css: str, tooltip: str) -> w.Button:
    button = w.Button(description=description, icon=icon, tooltip=tooltip)
    button.add_class(css)
    return button


def _label(checkpoint: Checkpoint, latest: bool) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(checkpoint.saved_at))
    mark = " · next start" if latest else ""
    return (
        f"step {checkpoint.step} · {when} · {size(checkpoint.size_bytes)} · {checkpoint.kind}{mark}"
    )
