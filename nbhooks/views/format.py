"""Human-readable numbers and durations for views (pure functions)."""

from __future__ import annotations

import math


def duration(seconds: float | None) -> str:
    """``83.2`` -> ``'1:23'``; hours when needed; ``'–'`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def rate(steps_per_sec: float | None) -> str:
    if steps_per_sec is None:
        return "– steps/s"
    digits = 1 if steps_per_sec < 100 else 0
    return f"{steps_per_sec:,.{digits}f} steps/s"


def progress_line(
    step: int, target: int | None, steps_per_sec: float | None, elapsed: float, eta: float | None
) -> str:
    """``'step 1,200 / 2,000 · 85.3 steps/s · elapsed 0:14 · ETA 0:09'``"""
    of = f" / {target:,}" if target is not None else ""
    return (
        f"step {step:,}{of} · {rate(steps_per_sec)} · elapsed {duration(elapsed)}"
        f" · ETA {duration(eta)}"
    )
