"""Final-op values kept across runs: a thread-safe table of rows -> pandas DataFrame.

One row per final op per session (``run_id``), plus one note row for a session that failed
before its final ops ran. Scalars keep their ``value``; arrays get summary columns (mean, std,
min, max, L2 norm) and the full array stays available through :meth:`FinalValuesTable.array`.
No TensorFlow, no widgets here.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from nbhooks.atomic import write_text

#: The columns of :meth:`FinalValuesTable.to_frame`, in order.
COLUMNS: tuple[str, ...] = (
    "run_id",
    "mode",
    "step",
    "name",
    "status",
    "dtype",
    "shape",
    "value",
    "mean",
    "std",
    "min",
    "max",
    "l2",
    "message",
    "wall_time",
)
SUMMARY_COLUMNS: tuple[str, ...] = ("mean", "std", "min", "max", "l2")
FAILED_NOTE = "session failed, no final values"


def _python_scalar(value: NDArray[Any]) -> Any:
    item = value.item()
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else item


def summarize(value: Any) -> dict[str, Any]:
    """dtype, shape and either the scalar ``value`` or the array summary of one fetched value."""
    array = np.asarray(value)
    row: dict[str, Any] = {"dtype": str(array.dtype), "shape": tuple(array.shape)}
    row.update(dict.fromkeys(SUMMARY_COLUMNS, math.nan))
    row["value"] = None
    if array.dtype.kind in "SUO":
        row["dtype"] = "string" if array.dtype.kind in "SU" else str(array.dtype)
    if array.ndim == 0:
        row["value"] = _python_scalar(array)
    elif array.size and array.dtype.kind in "biuf":
        flat = array.astype(np.float64).ravel()
        row.update(
            mean=float(flat.mean()),
            std=float(flat.std()),
            min=float(flat.min()),
            max=float(flat.max()),
            l2=float(np.linalg.norm(flat)),
        )
    return row


class FinalValuesTable:
    """Rows of final-op values across sessions; safe to write from the training thread.

    Typical use is through :class:`~nbhooks.hooks.final_ops.FinalOpsTableHook`; several hooks
    may share one table so that runs can be compared side by side.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._arrays: dict[tuple[int, str], NDArray[Any]] = {}
        self._run_ids = itertools.count(1)
        self.version = 0  # bumped on every change (views skip redraws when unchanged)

    def new_run(self) -> int:
        """Reserve a fresh ``run_id`` for a session that is starting."""
        with self._lock:
            return next(self._run_ids)

    def add_values(
        self, run_id: int, mode: str, step: int | None, values: Mapping[str, Any]
    ) -> tuple[dict[str, Any], ...]:
        """Record the values one session fetched; returns the new rows (without arrays)."""
        now = time.time()
        rows = []
        arrays = {}
        for name, value in values.items():
            row = {"run_id": run_id, "mode": mode, "step": step, "name": str(name)}
            row.update(status="ok", message=None, wall_time=now, **summarize(value))
            rows.append(row)
            arrays[(run_id, str(name))] = np.asarray(value)
        self._append(rows, arrays)
        return tuple(rows)

    def add_failure(self, run_id: int, mode: str, step: int | None, message: str) -> dict[str, Any]:
        """Record that session ``run_id`` failed before its final ops ran."""
        row = dict.fromkeys(COLUMNS)
        row.update(dict.fromkeys(SUMMARY_COLUMNS, math.nan))
        row.update(
            run_id=run_id,
            mode=mode,
            step=step,
            status="failed",
            message=f"{FAILED_NOTE}: {message}",
            wall_time=time.time(),
        )
        self._append([row], {})
        return row

    def _append(
        self, rows: list[dict[str, Any]], arrays: dict[tuple[int, str], NDArray[Any]]
    ) -> None:
        with self._lock:
            self._rows.extend(rows)
            self._arrays.update(arrays)
            self.version += 1

    def array(self, run_id: int, name: str) -> NDArray[Any]:
        """The full value ``name`` had at the end of session ``run_id``."""
        with self._lock:
            try:
                return self._arrays[(run_id, name)]
            except KeyError:
                known = sorted({n for r, n in self._arrays if r == run_id})
                raise KeyError(
                    f"no final value {name!r} in run {run_id}; that run has: {known}"
                ) from None

    def to_frame(self, arrays: bool = False) -> pd.DataFrame:
        """One row per final op per session (``arrays=True`` adds the full values)."""
        with self._lock:
            rows = [dict(r) for r in self._rows]
            if arrays:
                for row in rows:
                    row["array"] = self._arrays.get((row["run_id"], row["name"]))
        columns = [*COLUMNS, "array"] if arrays else list(COLUMNS)
        frame = pd.DataFrame(rows, columns=columns)
        # Keep scalars as they were fetched (an int step stays an int, a string stays text).
        frame["value"] = pd.Series([r["value"] for r in rows], dtype=object)
        frame["step"] = frame["step"].astype("Int64")
        frame["run_id"] = frame["run_id"].astype("int64")
        return frame

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_frame` (without arrays) as CSV; returns the path written."""
        path = Path(path)
        write_text(path, self.to_frame().to_csv(index=False))
        return path

    @property
    def failures(self) -> pd.DataFrame:
        """The note rows of sessions that failed before their final ops ran."""
        frame = self.to_frame()
        return frame[frame["status"] == "failed"].reset_index(drop=True)

    def clear(self) -> None:
        """Forget every row (run ids keep counting up)."""
        with self._lock:
            self._rows.clear()
            self._arrays.clear()
            self.version += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def __repr__(self) -> str:
        with self._lock:
            runs = len({r["run_id"] for r in self._rows})
            return f"FinalValuesTable({len(self._rows)} rows, {runs} runs)"
