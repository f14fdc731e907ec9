"""``FinalOpsView``: the final-op values table as an ipywidgets HTML table.

The HTML comes from pandas with ``escape=True``: every name, value and message is text, never
markup. Sorting, filtering and CSV export are plain widgets (no custom JavaScript). The table
is redrawn when a session ends (a :class:`~nbhooks.events.FinalOpsEvent`) or when the sort or
filter changes.
"""

from __future__ import annotations

import html
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

from nbhooks.stores.final_values import FinalValuesTable
from nbhooks.views.base import View, resync_widget_tree
from nbhooks.views.format import ERROR_COLOUR, coloured, plural

#: Shown columns: (header, column of FinalValuesTable.to_frame()).
DISPLAY: tuple[tuple[str, str], ...] = (
    ("status", "status"),
    ("run", "run_id"),
    ("mode", "mode"),
    ("step", "step"),
    ("name", "name"),
    ("dtype", "dtype"),
    ("shape", "shape"),
    ("value", "value"),
    ("mean", "mean"),
    ("std", "std"),
    ("min", "min"),
    ("max", "max"),
    ("L2 norm", "l2"),
    ("note", "message"),
)
SORTABLE: tuple[tuple[str, str], ...] = tuple(
    (header, column) for header, column in DISPLAY if column not in {"status", "message"}
)
_TEXT_COLUMNS = frozenset({"mode", "name", "dtype", "shape"})

_CSS = """<style>
.nbh-final-ops-scroll {max-height: %s; overflow: auto; max-width: 100%%; border: 1px solid #ddd;}
.nbh-final-ops .widget-html, .nbh-final-ops .widget-html-content {min-width: 0; max-width: 100%%;}
.nbh-final-ops-table {border-collapse: collapse; font-size: 12px; white-space: nowrap;}
.nbh-final-ops-table th, .nbh-final-ops-table td {padding: 2px 8px; text-align: right;}
.nbh-final-ops-table thead th {position: sticky; top: 0; z-index: 1;
  background: var(--jp-layout-color2, #eee);}
.nbh-final-ops-table tr.nbh-failed td {color: #b00020; background: #fdecea;}
.nbh-final-ops-banner {color: var(--jp-error-color1, #b00020);}
</style>"""


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        return "×".join(map(str, value)) if value else "scalar"
    return str(value)


def _sort_key(series: pd.Series) -> pd.Series:
    if series.name in _TEXT_COLUMNS:
        return series.map(_cell).str.lower()
    return pd.to_numeric(series, errors="coerce")


def display_frame(
    frame: pd.DataFrame, sort_by: str = "run_id", descending: bool = False, contains: str = ""
) -> pd.DataFrame:
    """The rows to show, sorted and filtered (failed runs always shown), as text cells."""
    if contains:
        keep = frame["name"].fillna("").str.contains(contains, case=False, regex=False)
        frame = frame[keep | (frame["status"] == "failed")]
    frame = frame.sort_values(
        sort_by, ascending=not descending, kind="stable", key=_sort_key, na_position="last"
    )
    shown = pd.DataFrame({header: frame[column].map(_cell) for header, column in DISPLAY})
    shown["status"] = shown["status"].map({"ok": "ok", "failed": "FAILED"})
    return shown


def table_html(shown: pd.DataFrame, max_height: str = "24em") -> str:
    """The escaped HTML table (fixed header, scroll box); failed rows get ``nbh-failed``."""
    body = shown.to_html(
        index=False, escape=True, border=0, classes="nbh-final-ops-table", na_rep=""
    )
    # Cells are escaped, so a literal "<td>FAILED</td>" can only be our own status cell.
    body = re.sub(r"<tr>(\s*<td>FAILED</td>)", r'<tr class="nbh-failed">\1', body)
    return f'{_CSS % max_height}<div class="nbh-final-ops-scroll">{body}</div>'


def failure_banner(frame: pd.DataFrame) -> str:
    """One escaped line per failed session: the table must not pass for stale values."""
    failed = frame[frame["status"] == "failed"]
    lines = [
        f"run {run} ({mode}): {html.escape(str(message))}"
        for run, mode, message in zip(
            failed["run_id"], failed["mode"], failed["message"], strict=True
        )
    ]
    return "".join(f'<div class="nbh-final-ops-banner">⚠ {line}</div>' for line in lines)


def summary_line(frame: pd.DataFrame) -> str:
    ok = frame[frame["status"] == "ok"]
    failed = int((frame["status"] == "failed").sum())
    text = f"{plural(len(ok), 'value')} · {plural(frame['run_id'].nunique(), 'session')}"
    return text + (f" · {failed} failed" if failed else "")


class FinalOpsView(View):
    """A table widget of a :class:`~nbhooks.stores.final_values.FinalValuesTable`.

    Args:
        table: the store to show (e.g. ``hook.table``).
        export_dir: where the "Export CSV" button writes (created when needed).
        max_height: CSS height of the scroll box (the header row stays visible).

    Create it on the main thread; :meth:`on_events` (the publisher's thread) and
    :meth:`refresh` redraw it.
    """

    def __init__(
        self,
        table: FinalValuesTable,
        export_dir: str | os.PathLike[str] = ".",
        max_height: str = "24em",
    ) -> None:
        if not isinstance(table, FinalValuesTable):
            raise TypeError(
                f"FinalOpsView needs a FinalValuesTable (e.g. hook.table), got "
                f"{type(table).__name__}"
            )
        self.table = table
        self.export_dir = Path(export_dir)
        self.max_height = max_height
        self._lock = threading.Lock()
        self._drawn: tuple[Any, ...] | None = None
        self.sort_by = widgets.Dropdown(
            options=SORTABLE, value="run_id", description="sort by", layout={"width": "12em"}
        )
        self.descending = widgets.ToggleButton(
            value=False, description="descending", icon="sort-amount-desc"
        )
        self.contains = widgets.Text(
            placeholder="filter names", continuous_update=False, layout={"width": "14em"}
        )
        self.export = widgets.Button(description="Export CSV", icon="download")
        self.summary = widgets.Label()
        self.status = widgets.HTML()
        self.banner = widgets.HTML()
        self.html = widgets.HTML()
        for control in (self.sort_by, self.descending, self.contains):
            control.observe(lambda _change: self.refresh(), names="value")
        self.export.on_click(self._on_export)
        header = widgets.HBox(
            [self.sort_by, self.descending, self.contains, self.export, self.summary]
        )
        self.widget = widgets.VBox([header, self.status, self.banner, self.html])
        self.widget.add_class("nbh-final-ops")
        self.refresh()

    def on_events(self, events: Sequence[Any]) -> None:
        # Any batch may follow a change: a shared table is also fed by hooks on other buses.
        self.refresh()

    def resync(self) -> None:
        """Send the whole current state again from this thread.

        Updates made on the publisher's thread reach a live frontend, but a snapshot taken by
        the cell that is running (nbclient's saved widget state) only records messages of
        that cell: call this on the main thread before such a snapshot.
        """
        self.refresh()
        resync_widget_tree(self.widget)

    def refresh(self) -> None:
        """Redraw from the table (skipped when neither the table nor the controls changed)."""
        with self._lock:
            state = (
                self.table.version,
                self.sort_by.value,
                self.descending.value,
                self.contains.value,
            )
            if state == self._drawn:
                return
            frame = self.table.to_frame()
            shown = display_frame(frame, *state[1:])
            with self.widget.hold_sync():
                self.html.value = table_html(shown, self.max_height)
                self.banner.value = failure_banner(frame)
                self.summary.value = summary_line(frame)
            self._drawn = state

    def export_csv(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the whole table as CSV (to a fresh file in ``export_dir`` by default)."""
        target = Path(path) if path is not None else self._fresh_path()
        return self.table.to_csv(target)

    def _fresh_path(self) -> Path:
        stem = f"final_ops-{time.strftime('%Y%m%d-%H%M%S')}"
        path = self.export_dir / f"{stem}.csv"
        counter = 1
        while path.exists():
            counter += 1
            path = self.export_dir / f"{stem}-{counter}.csv"
        return path

    def _on_export(self, _button: Any) -> None:
        try:
            path = self.export_csv()
        except OSError as exc:
            self.status.value = coloured(f"CSV export failed: {exc}", ERROR_COLOUR)
        else:
            self.status.value = f"Saved <code>{html.escape(str(path))}</code>"
