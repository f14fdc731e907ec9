"""What each notebook cell made: re-running a cell replaces what its earlier execution made.

JupyterLab and Notebook 7 send the cell's id with each execute request; for front-ends that
send none (nbclient, papermill, older ones) the cell is known by its code, so running the same
code again replaces what it made. Several objects made by one execution of a cell all live.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from typing import Generic, TypeVar

__all__ = ["CellRegistry", "current_cell"]

T = TypeVar("T")


def current_cell() -> tuple[str, str] | None:
    """``(cell key, execute request id)`` of the cell running now, or None (not a kernel).

    The key is the cell's id where the front-end sends one, else a hash of its code."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    try:
        parent = kernel.get_parent("shell") if kernel is not None else None
    except Exception:  # an older ipykernel
        return None
    parent = parent or {}
    request = (parent.get("header") or {}).get("msg_id")
    cell = (parent.get("metadata") or {}).get("cellId")
    code = (parent.get("content") or {}).get("code")
    if not isinstance(request, str):
        return None
    if isinstance(cell, str) and cell:
        return f"id:{cell}", request
    if isinstance(code, str) and code.strip():
        return "code:" + hashlib.sha256(code.encode()).hexdigest(), request
    return None


class CellRegistry(Generic[T]):
    """The objects (held weakly) that the last execution of each notebook cell made."""

    def __init__(self) -> None:
        #: cell key -> (the execute request that ran it last, what that execution made)
        self._cells: dict[str, tuple[str, list[weakref.ref[T]]]] = {}
        self._lock = threading.Lock()

    def claim(self, obj: T) -> list[T]:
        """Record ``obj`` as made by the cell running now; return what an earlier execution
        of the same cell made and is still alive (the caller replaces it). Outside a kernel,
        records nothing and returns ``[]``."""
        here = current_cell()
        if here is None:
            return []
        cell, request = here
        with self._lock:
            last_request, refs = self._cells.get(cell, ("", []))
            same = last_request == request
            earlier = [] if same else [ref() for ref in refs]
            self._cells[cell] = (request, [*(refs if same else []), weakref.ref(obj)])
        return [each for each in earlier if each is not None and each is not obj]

    def adopt(self, obj: T, like: T) -> None:
        """Record ``obj`` as made by the cell that made ``like`` (an object made by a button
        click belongs to no cell otherwise): running that cell again replaces it too."""
        with self._lock:
            for cell, (request, refs) in list(self._cells.items()):
                if any(ref() is like for ref in refs):
                    self._cells[cell] = (request, [*refs, weakref.ref(obj)])
