"""Readable one-line summaries of training errors (no TensorFlow import).

TensorFlow's error text carries graph stack traces ("Detected at node", "Node: 'save/SaveV2'",
"Original stack trace for ..."), or, from code it converted with AutoGraph (Keras layers,
feature columns), "in user code:" and the user's frames before the error itself; the root cause
is one line of it, which is what a person needs to read first. The full text stays in the
traceback.
"""

from __future__ import annotations

import re

_NOISE = (
    "Graph execution error",
    "Detected at node",
    "Node:",
    "File ",
    "[[",
    "Hint:",
    "Original stack trace",
    "Traceback (most recent call last)",
    "Caused by op",
    "^",
)
#: TensorFlow's file errors: "<path>; No space left on device"
_PATH_CAUSE = re.compile(r"^(?P<path>\S*[/\\]\S*); (?P<cause>[^;]+)$")


#: AutoGraph's frame list, whose last line is the error: "ValueError: Feature x is not in ..."
_USER_CODE = "in user code:"
#: How TensorFlow's explanations of an error end, before the error itself.
_ORIGINAL = "Original error:"


def root_cause(error: BaseException) -> str:
    """The line of ``error``'s text that says what went wrong (not where in the graph)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines and lines[0] == _USER_CODE:
        last = lines[-1]
        return last.removeprefix(f"{type(error).__name__}: ") if len(lines) > 1 else ""
    causes = [line for line in lines if not line.startswith(_NOISE)]
    if not causes:
        return ""
    first = causes[0]
    if first.endswith(_ORIGINAL) and len(causes) > 1:
        # "Restoring from checkpoint failed. This is most likely ... Original error:", then
        # the error itself ("Key dnn/hiddenlayer_1/bias not found in checkpoint")
        return f"{_cause(causes[1])} ({first.split('.')[0].lower()})"
    return _cause(first)


def _cause(line: str) -> str:
    match = _PATH_CAUSE.match(line)
    return f"{match['cause']} (writing or reading {match['path']})" if match else line


def describe_error(error: BaseException | None, limit: int = 300) -> str:
    """A one-line summary of a training error: its type and root cause."""
    if error is None:
        return "the session raised"
    cause = root_cause(error)
    summary = f"{type(error).__name__}: {cause}" if cause else type(error).__name__
    return summary if len(summary) <= limit else summary[: limit - 1] + "…"
