"""A run's notebook face: its panel or its console report, its display, and the runs each
notebook cell owns.

:class:`~nbhooks.run.TrainingRun` is headless; importing this module sets
``TrainingRun.face_factory`` so that every run made afterwards gets a :class:`NotebookFace`
(``nbhooks`` imports it whenever ``nh.TrainingRun`` or ``nh.Dashboard`` is first used).

Re-running a notebook cell replaces the runs its earlier execution made
(:class:`~nbhooks.cells.CellRegistry`).
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from nbhooks import NbhooksWarning
from nbhooks.cells import CellRegistry, current_cell
from nbhooks.run import TrainingRun, retire

__all__ = ["NotebookFace", "TrainingRun", "adopt", "current_cell", "in_kernel"]


class NotebookFace:
    """Shows one run: a :class:`~nbhooks.views.run_panel.RunPanel` when displayed in a
    notebook, a console report in scripts (``report="auto"``) or on request."""

    def __init__(self, run: TrainingRun, report: str | None = "auto") -> None:
        self.run = run
        self._panel: Any = None
        self._console: Any = None
        _claim_cell(run)
        if report == "console" or (report == "auto" and not in_kernel()):
            self.report_to_console()

    def panel(self) -> Any:
        """The controls-and-progress widget (created once, closed with the run)."""
        if self._panel is None:
            from nbhooks.views.run_panel import RunPanel

            self._panel = RunPanel(self.run)
        return self._panel

    def report_to_console(self, interval: float = 2.0) -> None:
        """Print progress and state changes to stderr."""
        if self._console is not None:
            self._console.view.interval = interval
        else:
            from nbhooks.views.console import ConsoleReport

            self._console = ConsoleReport(self.run, interval=interval)

    def after_wait(self) -> None:
        if self._console is not None:
            self._console.publisher.flush()  # the last lines, before a script goes on or exits
        if self._panel is not None and threading.current_thread() is threading.main_thread():
            self._panel.resync()

    def mimebundle(self, **kwargs: Any) -> dict[str, Any] | None:
        try:
            widget = self.panel().widget
        except ImportError as exc:
            warnings.warn(
                f"ipywidgets is not available ({exc}); reporting to the console instead",
                NbhooksWarning,
                stacklevel=3,
            )
            self.report_to_console()
            return {"text/plain": repr(self.run)}
        bundle: dict[str, Any] = widget._repr_mimebundle_(**kwargs)
        return bundle

    def close(self) -> None:
        for part in (self._console, self._panel):
            if part is not None:
                part.close()
        self._panel = self._console = None


def in_kernel() -> bool:
    """Whether this is a notebook kernel (IPython with a kernel), not a script or terminal."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


# -- the runs each notebook cell owns ---------------------------------------------------------
_RUNS: CellRegistry[TrainingRun] = CellRegistry()


def _claim_cell(run: TrainingRun) -> None:
    """Record ``run`` as made by the cell running now; retire what an earlier execution of
    the same cell made."""
    for earlier in _RUNS.claim(run):
        retire(earlier, why="re-running a notebook cell replaces the runs it made")


def adopt(run: TrainingRun, like: TrainingRun) -> None:
    """Record ``run`` as made by the cell that made ``like`` (a run made by a button click
    belongs to no cell otherwise): running that cell again replaces it too."""
    _RUNS.adopt(run, like)


TrainingRun.face_factory = NotebookFace
