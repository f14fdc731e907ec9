"""Curve updates: milliseconds and bytes per update as the history grows, old vs new view.

    python bench/bench_curves.py [--curves 20] [--updates 7] [--old-rev 0a5fe9e]

An "ordinary update" is what the publisher triggers while training runs: every evaluation
recorded once more (``--curves`` values: 2 evaluations x curves/2 metrics), then one
``refresh()``. It is timed at 1 000, 10 000 and 100 000 recorded values (the median of
``--updates`` updates) for the current ``CurvesView`` and for the one of ``--old-rev``, loaded
from git into its own module (both run in this process, interleaved size by size). Bytes are
the JSON of every widget message plus its binary buffers, as the view counts them. Targets
(performance issue, point 4): <= 5 ms and <= 50 KB per update at 100 000 values x 20 curves.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from common import install_recording_comm

from nbhooks.stores.metrics import MetricHistory
from nbhooks.views import curves as new_curves

ROOT = Path(__file__).resolve().parents[1]
SIZES = (1_000, 10_000, 100_000)


def old_module(rev: str) -> ModuleType:
    """``nbhooks/views/curves.py`` as it was at ``rev``, imported as its own module."""
    source = subprocess.run(
        ["git", "show", f"{rev}:nbhooks/views/curves.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="nbhooks-old-curves-")) / "old_curves.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_curves", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_curves"] = module
    spec.loader.exec_module(module)
    return module


class Feed:
    """A history growing by one evaluation of each name at a time, like a training run's."""

    def __init__(self, curves: int) -> None:
        self.history = MetricHistory()
        self.metrics = [f"metric_{i}" if i else "loss" for i in range(max(1, curves // 2))]
        self.step = 0

    def grow(self, rows: int) -> None:
        """Record evaluations until the history holds at least ``rows`` values."""
        while len(self.history) < rows:
            for k, name in enumerate(("train", "eval")):
                base = 1.0 / (1 + self.step / 500) + 0.05 * k
                wiggle = 0.02 * ((self.step * 7919 + k) % 13) / 13
                values = {m: base * (1 + j / 10) + wiggle for j, m in enumerate(self.metrics)}
                self.history.record(name, self.step, values)
            self.step += 10

    def next_rows(self) -> int:
        return len(self.history) + 2 * len(self.metrics)


def measure(module: ModuleType, curves: int, updates: int) -> dict[int, tuple[float, float, float]]:
    """{recorded values: (median wall ms, median CPU ms, median KB)} of ordinary updates at
    each size (CPU: this thread's time, which other processes on the machine do not add to)."""
    feed = Feed(curves)
    view: Any = module.CurvesView(feed.history, max_points=500)
    out = {}
    for size in SIZES:
        feed.grow(size - 2 * len(feed.metrics) * updates)
        view.refresh()  # the backlog up to here, drawn at once
        ms, cpu, kb = [], [], []
        for _ in range(updates):
            feed.grow(feed.next_rows())
            t0, c0 = time.perf_counter(), time.thread_time()
            view.refresh()
            cpu.append((time.thread_time() - c0) * 1e3)
            ms.append((time.perf_counter() - t0) * 1e3)
            kb.append(view.last_update_bytes / 1e3)
        out[len(feed.history)] = tuple(statistics.median(v) for v in (ms, cpu, kb))
    view.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--curves", type=int, default=20)
    parser.add_argument("--updates", type=int, default=7)
    parser.add_argument("--old-rev", default="0a5fe9e", help="the commit of the old view")
    args = parser.parse_args()
    install_recording_comm()
    variants = {"old": old_module(args.old_rev), "new": new_curves}
    for module in variants.values():  # warm up imports and plotly's validators
        measure(module, 4, 1)
    results = {
        name: measure(module, args.curves, args.updates) for name, module in variants.items()
    }
    print(
        f"curve updates, {args.curves} curves (2 evaluations x {args.curves // 2} metrics), "
        f"max_points=500; median of {args.updates} updates; old = {args.old_rev}"
    )
    head = "wall ms  CPU ms      KB"
    print(f"    {'values':>8}   old: {head}   new: {head}")
    for (rows, old), (_, new) in zip(results["old"].items(), results["new"].items(), strict=True):
        cells = [" ".join(f"{v:7.1f}" for v in r) for r in (old, new)]
        print(f"    {rows:>8,}        {cells[0]}        {cells[1]}")
    print("target at 100 000 values: <= 5 ms and <= 50 KB per update")


if __name__ == "__main__":
    main()
