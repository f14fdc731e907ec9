"""Shared bench helpers: a recording comm (widgets serialize as in a kernel), timing, tables."""

from __future__ import annotations

import gc
import json
import random
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager


def install_recording_comm() -> list[int]:
    """Make widgets send through a comm that JSON-encodes every message, as a kernel would.

    Returns a list that receives each message's size in bytes.
    """
    import comm
    from comm.base_comm import BaseComm

    sizes: list[int] = []

    class SerializingComm(BaseComm):
        kernel = True

        def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
            payload = json.dumps(data or {}, default=str).encode()
            sizes.append(len(payload) + sum(memoryview(b).nbytes for b in buffers or ()))

    comm.create_comm = lambda *a, **k: SerializingComm(*a, **k)
    return sizes


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@contextmanager
def clocks(note: Callable[[str, float], None], name: str) -> Iterator[None]:
    """Note ``"<name>: run"`` (wall seconds) and ``"<name>: cpu"`` (the whole process's CPU
    seconds) of the block; an earlier round's garbage is collected before, not inside, it."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    yield
    note(f"{name}: run", time.perf_counter() - t0)
    note(f"{name}: cpu", time.process_time() - c0)


def interleave(variants: dict[str, Callable[[int], object]], rounds: int) -> dict[str, list[float]]:
    """Time each variant once per round, each round in its own shuffled order
    (:func:`shuffled`), so that machine noise, and what a run leaves behind for the next, hit
    them alike."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(rounds):
        for name in shuffled(variants, i):
            times[name].append(timed(lambda fn=variants[name], i=i: fn(i)))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratios(values: list[float], base: list[float]) -> list[float]:
    """Each value over the base of the same round."""
    return [v / b for v, b in zip(values, base, strict=True)]


def spread(values: list[float], fmt: str = ".3f", unit: str = "x") -> str:
    """``median (min-max)`` of ``values``."""
    return f"{median(values):{fmt}}{unit} ({min(values):{fmt}}-{max(values):{fmt}})"


def interval(values: list[float], fmt: str = ".3f", level: float = 0.9) -> str:
    """``[low-high]``: a ``level`` percentile bootstrap interval of the median of ``values``
    (scipy's, the rounds resampled 2000 times, seeded: repeatable): the median's uncertainty
    from these rounds' scatter alone, not from the machine's drift between runs."""
    import numpy as np
    from scipy.stats import bootstrap

    low, high = bootstrap(
        (np.asarray(values),),
        np.median,
        n_resamples=2000,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    return f"[{low:{fmt}}-{high:{fmt}}]"


def shuffled(names: Iterable[str], i: int) -> list[str]:
    """``names`` in round ``i``'s order: a shuffle seeded by ``i`` (repeatable). A rotation
    keeps each variant behind the same one in every round, which then gets all of what that
    one leaves behind."""
    order = list(names)
    random.Random(i).shuffle(order)
    return order


def rotated(names: list[str], i: int) -> list[str]:
    """``names`` starting at the ``i``-th (round ``i``'s order: each goes first in turn)."""
    k = i % len(names)
    return names[k:] + names[:k]
