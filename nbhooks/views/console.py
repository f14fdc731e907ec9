"""Progress and state changes as plain text lines (scripts, or a kernel without ipywidgets)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from nbhooks.events import EvalEvent, PipelineEvent, RunStateEvent, StepEvent
from nbhooks.publish import Publisher
from nbhooks.views.base import View
from nbhooks.views.format import progress_line


class ConsoleView(View):
    """Writes a progress line at most every ``interval`` seconds, and every state change."""

    def __init__(
        self,
        stream: TextIO | None = None,
        interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self.interval: float = interval
        self._clock = clock
        self._last = float("-inf")

    def _write(self, line: str) -> None:
        # sys.stderr in a notebook (the cell's output); the process's own stderr in a script
        stream = self._stream or sys.stderr
        stream.write(f"[nbhooks] {line}\n")  # one write: print() writes the newline apart, and
        stream.flush()  # another thread's output could land between the two

    def on_events(self, events: Sequence[Any]) -> None:
        for event in events:
            if isinstance(event, StepEvent):
                now = self._clock()
                if now - self._last >= self.interval:
                    self._last = now
                    self._write(
                        progress_line(
                            event.step, event.target, event.steps_per_sec, event.elapsed, event.eta
                        )
                    )
            elif isinstance(event, RunStateEvent):
                detail = f": {event.reason}" if event.reason else ""
                self._write(f"{event.state} at step {event.step:,}{detail}")
                if event.traceback and event.state == "failed":
                    self._write(event.traceback.rstrip())
            elif isinstance(event, EvalEvent):
                values = ", ".join(f"{k}={v:.4g}" for k, v in sorted(event.metrics.items()))
                self._write(f"eval {event.name!r} at step {event.step:,}: {values}")
            elif isinstance(event, PipelineEvent):
                self._write(f"pipeline {event.action}: {event.message or event.path or ''}")


class ConsoleReport:
    """A console view fed by its own publisher from a run's events; ``close()`` ends both."""

    def __init__(self, run: Any, interval: float = 2.0, stream: TextIO | None = None) -> None:
        self.view = ConsoleView(stream=stream, interval=interval)
        self.publisher = Publisher(run.events, [self.view], interval=0.5)

    def close(self) -> None:
        self.publisher.close()
