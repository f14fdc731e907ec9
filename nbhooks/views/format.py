"""Human-readable numbers, durations and messages for views (pure functions)."""

from __future__ import annotations

import html
import math

#: Colours that follow the JupyterLab theme (light or dark), with fallbacks for Voila.
ERROR_COLOUR = "var(--jp-error-color1, #c62828)"
MUTED_COLOUR = "var(--jp-ui-font-color2, #616161)"


def coloured(text: str, colour: str, bold: bool = False) -> str:
    """``text`` (escaped) in a span of ``colour``."""
    weight = ";font-weight:bold" if bold else ""
    return f'<span style="color:{colour}{weight}">{html.escape(text)}</span>'


def plural(n: int, noun: str) -> str:
    """``(1, "session")`` -> ``'1 session'``, ``(2, "session")`` -> ``'2 sessions'``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


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
