"""nbhooks' own hooks of a run, handed to TensorFlow as one.

TensorFlow's ``MonitoredSession`` pays for every hook at every step, whatever it does: a
``before_run`` call, an ``after_run`` call and a new ``SessionRunValues`` (through TF's
deprecation wrapper), ~0.8 µs a hook a step here, which on a model stepping in half a
millisecond is a few per cent for the half-dozen hooks a Dashboard runs. :class:`HookGroup`
calls only the methods each of its hooks defines, in their order, and hands the step's own
``SessionRunValues`` to every hook that fetched nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from nbhooks._tf import tf
from nbhooks.hooks._bases import SessionRunHook

__all__ = ["HookGroup", "grouped"]


def _defines(hook: Any, name: str) -> bool:
    """True when ``hook``'s ``name`` is not SessionRunHook's no-op (set on the hook or on its
    class)."""
    method = getattr(hook, name)
    return getattr(method, "__func__", method) is not getattr(SessionRunHook, name)


class HookGroup(SessionRunHook):
    """``hooks`` run as one SessionRunHook, each method in their order, as TensorFlow would
    run them one by one: their fetches and feeds go into the step's run together (a tensor
    fed by two of them is refused, as TF refuses it), each gets its own results, and a stop
    any of them requests stops training."""

    def __init__(self, hooks: Sequence[Any]) -> None:
        self.hooks = tuple(hooks)

        def defined(name: str) -> list[tuple[int, Any]]:
            """(index, bound method) of each hook whose ``name`` is its own."""
            return [(i, getattr(h, name)) for i, h in enumerate(self.hooks) if _defines(h, name)]

        self._begin = [m for _, m in defined("begin")]
        self._after_create_session = [m for _, m in defined("after_create_session")]
        self._before_run = defined("before_run")  # indexed: each request's results go back
        self._after_run = defined("after_run")
        self._end = [m for _, m in defined("end")]

    def begin(self) -> None:
        for method in self._begin:
            method()

    def after_create_session(self, session: Any, coord: Any) -> None:
        for method in self._after_create_session:
            method(session, coord)

    def before_run(self, run_context: Any) -> Any:
        fetches: dict[int, Any] | None = None
        feeds: dict[Any, Any] | None = None
        options, asked = None, None
        for i, method in self._before_run:
            request = method(run_context)
            if request is None:
                continue
            if request.fetches is not None:
                fetches = fetches or {}
                fetches[i] = request.fetches
            if request.feed_dict:
                feeds = feeds or {}
                twice = set(feeds) & set(request.feed_dict)
                if twice:
                    raise RuntimeError(f"Same tensor is fed by two hooks. Conflict(s): {twice}")
                feeds.update(request.feed_dict)
            if request.options:
                if options is not None:
                    raise RuntimeError(
                        f"nbhooks: {asked!r} and {self.hooks[i]!r} both set RunOptions for one "
                        f"step, which a HookGroup does not merge: pass one of them to "
                        f"estimator.train() apart"
                    )
                options, asked = request.options, self.hooks[i]
        if fetches is None and feeds is None and options is None:
            return None
        return tf().estimator.SessionRunArgs(fetches, feeds, options)

    def after_run(self, run_context: Any, run_values: Any) -> None:
        results = run_values.results
        if results is None:  # nobody fetched: the step's values say so to every hook
            for _, method in self._after_run:
                method(run_context, run_values)
            return
        values = tf().estimator.SessionRunValues
        empty = values(None, run_values.options, run_values.run_metadata)
        for i, method in self._after_run:
            if i in results:
                method(run_context, values(results[i], run_values.options, run_values.run_metadata))
            else:
                method(run_context, empty)

    def end(self, session: Any) -> None:
        for method in self._end:
            method(session)

    def __repr__(self) -> str:
        return f"HookGroup({', '.join(type(h).__name__ for h in self.hooks)})"


def _own(hook: Any) -> bool:
    return type(hook).__module__.startswith("nbhooks.")


def grouped(hooks: Iterable[Any]) -> list[Any]:
    """``hooks`` with each run of consecutive nbhooks hooks made one :class:`HookGroup` (in
    place: the order TF runs every hook in is unchanged); others' hooks, subclasses of
    nbhooks' included, are left as they are, for TensorFlow to see (a ``CheckpointSaverHook``
    it looks for, say)."""
    out: list[Any] = []
    run: list[Any] = []
    for hook in [*hooks, None]:
        if hook is not None and _own(hook):
            run.append(hook)
            continue
        if run:
            out.append(run[0] if len(run) == 1 else HookGroup(run))
            run = []
        if hook is not None:
            out.append(hook)
    return out
