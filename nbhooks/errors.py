"""Readable one-line summaries of training errors (no TensorFlow import)."""

from __future__ import annotations

_NOISE = ("Graph execution error", "Detected at node", "File ", "[[")


def describe_error(error: BaseException | None, limit: int = 300) -> str:
    """A one-line summary of a training error (TF messages carry graph tracebacks)."""
    if error is None:
        return "the session raised"
    lines = (line.strip() for line in str(error).splitlines())
    first = next((line for line in lines if line and not line.startswith(_NOISE)), "")
    summary = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return summary if len(summary) <= limit else summary[: limit - 1] + "…"
