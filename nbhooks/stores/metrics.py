"""Thread-safe history of evaluation metrics (no TensorFlow, no widgets).

The training thread records one evaluation at a time; views and users read it from other
threads. Values are kept per ``(evaluation, metric)`` series in growable numpy buffers, so a
view can fetch a series as arrays in O(n) copy without walking Python rows.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import groupby
from os import PathLike
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from nbhooks.atomic import write_text

Mode = Literal["min", "max"]
COLUMNS = ("step", "evaluation", "metric", "value", "wall_time")
_LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "mape", "entropy", "perplexity")
_HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall", "f1", "iou", "r2", "r_squared")
#: Reported beside a model's metrics, with no better direction (a constant, a mean).
_NO_BETTER = ("baseline", "/mean")


def check_mode(mode: str) -> Mode:
    """Return ``mode`` if it is "min" or "max", else raise a ValueError saying so."""
    if mode not in ("min", "max"):
        raise ValueError(f'mode must be "min" or "max", got {mode!r}')
    return mode  # type: ignore[return-value]


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"an evaluation name must be a non-empty string, got {name!r}")


def guess_mode(metric: str) -> Mode | None:
    """ "min" for losses and errors, "max" for accuracy, auc, precision, recall, f1...; None
    when the name does not tell (``label/mean``, ``prediction/mean``, ``accuracy_baseline``,
    a metric of your own): such a metric has no best value unless a mode is given."""
    name = metric.lower()
    if any(word in name for word in _LOWER_IS_BETTER):
        return "min"
    if any(word in name for word in _NO_BETTER):
        return None
    return "max" if any(word in name for word in _HIGHER_IS_BETTER) else None


@dataclass(frozen=True, slots=True)
class Point:
    """One recorded value."""

    evaluation: str
    metric: str
    step: int
    value: float
    wall_time: float


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One recorded evaluation: every metric at one step."""

    evaluation: str
    step: int
    metrics: Mapping[str, float]
    wall_time: float


class _Series:
    """Append-only (seq, step, value, wall_time) columns in doubling numpy buffers, with the
    index of the (first) lowest and highest value kept up to date (NaN ignored)."""

    __slots__ = ("_data", "extreme", "n")

    def __init__(self) -> None:
        self._data = np.empty((4, 16), dtype=np.float64)
        self.n = 0
        self.extreme: dict[str, int] = {}  # "min"/"max" -> index

    def append(self, seq: int, step: int, value: float, wall_time: float) -> None:
        if self.n == self._data.shape[1]:
            grown = np.empty((4, 2 * self.n), dtype=np.float64)
            grown[:, : self.n] = self._data[:, : self.n]
            self._data = grown
        self._data[:, self.n] = (seq, step, value, wall_time)
        for mode in ("min", "max"):
            index = self.extreme.get(mode)
            if not math.isnan(value) and (
                index is None or _better(value, self._data[2, index], mode)
            ):
                self.extreme[mode] = self.n
        self.n += 1

    def point(self, index: int) -> tuple[int, float, float]:
        """(step, value, wall_time) at ``index``."""
        step, value, wall_time = self._data[1:, index]
        return int(step), float(value), float(wall_time)

    def columns(self, start: int = 0) -> NDArray[Any]:
        """A copy of the filled part from index ``start``: rows seq, step, value, wall_time."""
        return self._data[:, min(start, self.n) : self.n].copy()


class MetricHistory:
    """Every metric of every named evaluation, with its global step and wall time.

    ``record`` is called from the training thread; every other method may be called from any
    thread. An ``(evaluation, step)`` pair is stored once: recording it again is a no-op.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        self._steps: dict[str, set[int]] = {}
        self._latest: dict[str, Evaluation] = {}
        self._metrics: dict[str, None] = {}  # insertion-ordered set
        self._declared: dict[str, None] = {}  # insertion-ordered set (see declare)
        self._rows = 0
        self.version = 0  #: bumped by every successful record (cheap change detection)
        #: (first row of a branch, step it starts from, the evaluations it forks: None, all)
        self._forks: list[tuple[int, int, frozenset[str] | None]] = []

    def record(
        self,
        name: str,
        step: int,
        metrics: Mapping[str, float],
        wall_time: float | None = None,
    ) -> bool:
        """Store one evaluation; False (and nothing stored) if ``(name, step)`` is known."""
        _check_name(name)
        values = {str(k): float(v) for k, v in metrics.items()}
        wall_time = time.time() if wall_time is None else float(wall_time)
        step = int(step)
        with self._lock:
            steps = self._steps.setdefault(name, set())
            if step in steps:
                return False
            steps.add(step)
            for metric, value in values.items():
                self._metrics.setdefault(metric, None)
                series = self._series.setdefault((name, metric), _Series())
                series.append(self._rows, step, value, wall_time)
                self._rows += 1
            self._latest[name] = Evaluation(name, step, values, wall_time)
            self.version += 1
        return True

    def fork(self, step: int, names: Iterable[str] | None = None) -> int:
        """Start a new branch from ``step`` (a rewind) of the evaluations ``names`` (all when
        None; a :class:`~nbhooks.Compare` forks one run's): their values recorded from now on
        belong to it, and their steps after ``step`` may be recorded again. Returns their new
        branch number."""
        forked = None if names is None else frozenset(names)
        with self._lock:
            self._forks.append((self._rows, int(step), forked))
            for name, steps in self._steps.items():
                if forked is None or name in forked:
                    steps.difference_update([s for s in steps if s > step])
            self.version += 1
            return len(self._forks_of(next(iter(forked)) if forked else None))

    def replay(self) -> list[Evaluation | tuple[int, frozenset[str] | None]]:
        """What was recorded, in order, with the forks between: each :class:`Evaluation`, and
        ``(step, names)`` for each :meth:`fork` (``names`` None: of all). Recording and
        forking them in this order gives another history (a Compare's) the same values and
        branches."""
        with self._lock:
            rows = sorted(
                (int(seq), name, metric, int(step), float(value), float(wall_time))
                for (name, metric), series in self._series.items()
                for seq, step, value, wall_time in series.columns().T
            )
            forks = list(self._forks)
        starts = [row for row, _, _ in forks]
        # a fork comes before the row it starts at; one evaluation is one (branch, name, step)
        found: list[tuple[float, Evaluation | tuple[int, frozenset[str] | None]]] = [
            (row - 0.5, (step, names)) for row, step, names in forks
        ]
        for (_, name, step), group in groupby(
            rows, lambda r: (bisect_right(starts, r[0]), r[1], r[3])
        ):
            values = list(group)
            metrics = {metric: value for _, _, metric, _, value, _ in values}
            found.append((values[0][0], Evaluation(name, step, metrics, values[0][5])))
        return [done for _, done in sorted(found, key=lambda item: item[0])]

    def forks(self, name: str) -> int:
        """How many forks evaluation ``name`` went through: the branch it records in now."""
        with self._lock:
            return len(self._forks_of(name))

    def _forks_of(self, name: str | None) -> list[tuple[int, int]]:
        """(first row, step) of the branches of evaluation ``name`` (None: of every one)."""
        return [(row, step) for row, step, names in self._forks
                if names is None or name is None or name in names]  # fmt: skip

    def last_step(self, names: Iterable[str] | None = None) -> int | None:
        """The latest step recorded in the current branch of ``names`` (all when None); None
        before any."""
        with self._lock:
            wanted = self._steps if names is None else {n: self._steps.get(n, ()) for n in names}
            return max((max(steps) for steps in wanted.values() if steps), default=None)

    @property
    def branch(self) -> int:
        """How many branches were started (0 until the first :meth:`fork`): the branch the
        values are recorded in now when every fork was of all evaluations."""
        return len(self._forks)

    def has(self, name: str, step: int) -> bool:
        """Whether evaluation ``name`` was recorded at ``step``."""
        with self._lock:
            return int(step) in self._steps.get(name, ())

    def declare(self, name: str) -> None:
        """Give evaluation ``name`` its place in :attr:`order` now, before it is recorded:
        evaluations that run side by side keep the order they were declared in (their
        colours, legends and tables), not the order in which they happened to finish."""
        _check_name(name)
        with self._lock:
            self._declared.setdefault(name, None)

    @property
    def order(self) -> list[str]:
        """Every declared evaluation name, then every other recorded one as first recorded:
        an evaluation's place here never changes."""
        with self._lock:
            return self._order()

    def _order(self) -> list[str]:
        return [*self._declared, *(n for n in self._steps if n not in self._declared)]

    @property
    def names(self) -> list[str]:
        """The recorded evaluation names, in :attr:`order`."""
        with self._lock:
            return [n for n in self._order() if n in self._steps]

    @property
    def metrics(self) -> list[str]:
        """Metric names, in the order they were first recorded."""
        with self._lock:
            return list(self._metrics)

    def __len__(self) -> int:
        """The number of recorded values (rows of :meth:`to_frame`)."""
        return self._rows

    def series(self, name: str, metric: str, start: int = 0) -> tuple[NDArray[Any], NDArray[Any]]:
        """``(steps, values)`` of one evaluation's metric as arrays (empty if none), from its
        ``start``-th value on: a reader that keeps count fetches only what is new."""
        with self._lock:
            series = self._series.get((name, metric))
            cols = series.columns(start) if series is not None else np.empty((4, 0))
        return cols[1].astype(np.int64), cols[2]

    def lineage(
        self, name: str, metric: str
    ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]]:
        """``(steps, values, branch, live)`` of one evaluation's metric: :meth:`series`, the
        branch of each value (0 until the first :meth:`fork`), and whether it is on the line of
        the current branch (its own values and, up to the step each branch was forked from,
        those of the branch it came from). The other values were abandoned by a rewind."""
        with self._lock:
            series = self._series.get((name, metric))
            cols = series.columns() if series is not None else np.empty((4, 0))
            forks = self._forks_of(name)
        steps = cols[1].astype(np.int64)
        branch = self._branch_of(cols[0], forks)
        # The last step of each branch on the current line: none for the current branch, the
        # step the next branch was forked from (or an earlier one, further up) for the others.
        last = np.full(len(forks) + 1, np.inf)
        for b in range(len(forks) - 1, -1, -1):
            last[b] = min(last[b + 1], forks[b][1])
        return steps, cols[2], branch, steps <= last[branch]

    @staticmethod
    def _branch_of(rows: NDArray[Any], forks: list[tuple[int, int]]) -> NDArray[Any]:
        """The branch of each value given its row number: the forks before it."""
        starts = np.array([row for row, _ in forks], dtype=np.float64)
        return np.searchsorted(starts, rows, side="right")

    def latest(self) -> dict[str, Evaluation]:
        """The last evaluation recorded under each name."""
        with self._lock:
            return dict(self._latest)

    def best(
        self, metric: str, mode: str | None = "min", evaluation: str | None = None
    ) -> Point | None:
        """The best value of ``metric`` (in ``evaluation``, or across all); None if unseen,
        or when ``mode`` is None (a metric with no better direction: see :func:`guess_mode`).

        Ties go to the earliest step. NaN values are ignored.
        """
        if mode is None:
            return None
        check_mode(mode)
        names = [evaluation] if evaluation is not None else self.names
        best: Point | None = None
        with self._lock:
            for name in names:
                series = self._series.get((name, metric))
                index = series.extreme.get(mode) if series is not None else None
                if series is None or index is None:
                    continue
                step, value, wall_time = series.point(index)
                if best is None or _better(value, best.value, mode):
                    best = Point(name, metric, step, value, wall_time)
        return best

    def to_frame(self) -> pd.DataFrame:
        """A tidy DataFrame, one row per value: step, evaluation, metric, value, wall_time."""
        with self._lock:
            parts = [(key, s.columns()) for key, s in self._series.items()]
            forks = {key[0]: self._forks_of(key[0]) for key, _ in parts}
            forked = bool(self._forks)
        if not parts:
            return pd.DataFrame(
                {
                    "step": pd.Series(dtype="int64"),
                    "evaluation": pd.Series(dtype="object"),
                    "metric": pd.Series(dtype="object"),
                    "value": pd.Series(dtype="float64"),
                    "wall_time": pd.Series(dtype="float64"),
                }
            )
        cols = np.concatenate([c for _, c in parts], axis=1)
        order = np.argsort(cols[0], kind="stable")
        frame = pd.DataFrame(
            {
                "step": cols[1].astype(np.int64),
                "evaluation": np.repeat([k[0] for k, _ in parts], [c.shape[1] for _, c in parts]),
                "metric": np.repeat([k[1] for k, _ in parts], [c.shape[1] for _, c in parts]),
                "value": cols[2],
                "wall_time": cols[3],
            }
        )
        if forked:  # the branch of each value, from the row where its branch began
            frame["branch"] = np.concatenate(
                [self._branch_of(c[0], forks[key[0]]) for key, c in parts]
            )
        return frame.iloc[order].reset_index(drop=True)

    def to_csv(self, path: str | PathLike[str]) -> None:
        """Write :meth:`to_frame` to ``path`` as CSV (no index column), whole or not at all."""
        write_text(path, self.to_frame().to_csv(index=False))


def _better(a: float, b: float, mode: str) -> bool:
    return a < b if mode == "min" else a > b


def is_improvement(value: float, best: float | None, mode: Mode, min_delta: float) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (NaN never improves)."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta
