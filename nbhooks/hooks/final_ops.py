"""``FinalOpsTableHook``: ``tf.estimator.FinalOpsHook`` whose values land in a table.

The hook resolves names in ``begin()`` (the estimator's graph is the default graph then),
refuses ops that would pull another batch from the input pipeline, fetches the values in
``end()`` like ``FinalOpsHook`` and records them in a
:class:`~nbhooks.stores.final_values.FinalValuesTable`. ``end()`` never runs when the session
raises, so a session left open is recorded as failed (by :meth:`FinalOpsTableHook.mark_failed`, the
run it is attached to, :meth:`FinalOpsTableHook.watch`, or the next ``begin()``).
"""

from __future__ import annotations

import contextlib
import difflib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import pandas as pd

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf
from nbhooks.errors import describe_error
from nbhooks.events import EventBus, FinalOpsEvent, RunAttached, RunStateEvent
from nbhooks.hooks._bases import FinalOpsHook
from nbhooks.hooks._graph import upstream_ops
from nbhooks.stores.final_values import FinalValuesTable

_tf = tf()
_v1 = _tf.compat.v1

#: A name, a ``tf.Tensor`` or a ``tf.Variable`` (TensorFlow's types are Any to mypy).
FinalOp: TypeAlias = Any
#: One of them, several (a dict of display names, or a list), or a callable graph -> dict.
FinalOps: TypeAlias = (
    Mapping[str, FinalOp] | Sequence[FinalOp] | FinalOp | Callable[[Any], Mapping[str, FinalOp]]
)

_HOW_TO_NAME = (
    "use a variable name such as 'dense/kernel', a tensor name such as 'accuracy/value:0' or "
    "an op name"
)
_WHAT_TO_FETCH = (
    "fetch state that does not read input instead: a variable (e.g. 'dense/kernel'), "
    "'global_step', or a metric's value tensor (e.g. 'accuracy/value:0', not its update_op)"
)


@dataclass(frozen=True, slots=True)
class _Session:
    run_id: int
    mode: str


def _check_value(key: str, value: Any) -> FinalOp:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, _tf.Tensor | _tf.Variable) and not hasattr(value, "op"):  # eager
        raise TypeError(
            f"final_ops[{key!r}] is a {type(value).__name__} made eagerly, outside the "
            f"estimator's graph, so its training session cannot fetch it: {_HOW_TO_NAME}, or a "
            "callable graph -> dict that builds it in the estimator's graph"
        )
    if isinstance(value, _tf.Tensor | _tf.Variable):
        return value
    if isinstance(value, _tf.Operation):
        hint = f"fetch one of its outputs (e.g. {value.name!r}.outputs[0]) or a tensor name"
    else:
        hint = f"{_HOW_TO_NAME}, a tf.Tensor or a tf.Variable"
    raise TypeError(
        f"final_ops[{key!r}] is {type(value).__name__} {value!r}, which cannot be fetched: {hint}"
    )


def _key_of(value: Any) -> str:
    if isinstance(value, _tf.Variable):
        return value.name.removesuffix(":0")
    return value if isinstance(value, str) else getattr(value, "name", repr(value))


def check_final_ops(final_ops: Any) -> dict[str, FinalOp]:
    """Validate ``final_ops`` (not a callable) into a ``{display name: name/tensor/variable}``."""
    if isinstance(final_ops, str | _tf.Tensor | _tf.Variable):
        final_ops = [final_ops]
    if isinstance(final_ops, Mapping):
        items = list(final_ops.items())
    elif isinstance(final_ops, Sequence):
        items = [(_key_of(v), v) for v in final_ops]
    else:
        raise TypeError(
            f"final_ops must be a dict of names to ops, a list, a tensor/variable or a callable "
            f"graph -> dict; got {type(final_ops).__name__} {final_ops!r}"
        )
    if not items:
        raise ValueError("final_ops is empty: give at least one name, tensor or variable")
    checked = {}
    for key, value in items:
        if not isinstance(key, str) or not key:
            raise TypeError(f"final_ops keys must be non-empty strings, got {key!r}")
        checked[key] = _check_value(key, value)
    return checked


def _variables(graph: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for collection in (_v1.GraphKeys.GLOBAL_VARIABLES, _v1.GraphKeys.LOCAL_VARIABLES):
        for variable in graph.get_collection(collection):
            found.setdefault(variable.op.name, variable)
    return found


def _unknown_name(key: str, name: str, graph: Any, variables: Mapping[str, Any]) -> ValueError:
    base = name.split(":")[0]
    closest = difflib.get_close_matches(
        base, [*variables, *(o.name for o in graph.get_operations())]
    )
    closest = list(dict.fromkeys(closest))
    hint = "closest names in the graph: " + ", ".join(map(repr, closest)) + "; " if closest else ""
    # The model's own variables (not the optimizer's slots): short enough to read in one line.
    step = _v1.train.get_global_step(graph)
    own = {v.op.name for v in graph.get_collection(_v1.GraphKeys.TRAINABLE_VARIABLES)}
    names = sorted(own | ({step.op.name} if step is not None else set()))
    more = f" and {len(names) - 12} more" if names[12:] else ""
    return ValueError(
        f"final_ops[{key!r}]: no variable, tensor or op named {name!r} in the model; {hint}"
        f"its variables: {', '.join(map(repr, names[:12]))}{more} (nh.variable_names("
        f"estimator, input_fn) lists every name)"
    )


def _lookup(graph: Any, name: str) -> Any | None:
    try:
        if ":" in name:
            return graph.get_tensor_by_name(name)
        return graph.get_operation_by_name(name)
    except (KeyError, ValueError):
        return None


def _resolve_name(key: str, name: str, graph: Any) -> Any:
    variables = _variables(graph)
    variable = variables.get(name.removesuffix(":0"))
    if variable is not None:  # a variable's value, not its resource handle
        return graph.as_graph_element(variable)
    tensor = _lookup(graph, name)
    if tensor is None:
        raise _unknown_name(key, name, graph, variables)
    if isinstance(tensor, _tf.Operation):
        if not tensor.outputs:
            raise ValueError(
                f"final_ops[{key!r}]: op {name!r} ({tensor.type}) has no outputs (an action such "
                f"as a train op or a metric's update_op); {_WHAT_TO_FETCH}"
            )
        tensor = tensor.outputs[0]
    if tensor.dtype == _tf.resource:
        raise ValueError(
            f"final_ops[{key!r}]: {name!r} is a resource handle, not a value; name the variable "
            f"itself (e.g. {tensor.op.name!r}) if it is in GLOBAL_VARIABLES or LOCAL_VARIABLES"
        )
    return tensor


def _resolve(key: str, value: FinalOp, graph: Any) -> Any:
    if isinstance(value, str):
        return _resolve_name(key, value, graph)
    try:
        return graph.as_graph_element(value)
    except ValueError:
        raise ValueError(
            f"final_ops[{key!r}]: {value!r} belongs to another graph. Estimators build a new "
            f"graph for every train()/evaluate() call: pass its name (e.g. "
            f"{_key_of(value)!r}) or a callable graph -> dict, or create the hook inside "
            f"model_fn (EstimatorSpec training_hooks/evaluation_hooks)"
        ) from None


def _is_input_op(op: Any) -> bool:
    return "GetNext" in op.type or op.type.startswith(("QueueDequeue", "ReaderRead"))


def input_source(tensor: Any, fed: frozenset[str] = frozenset()) -> Any | None:
    """The input-pipeline op (IteratorGetNext, a queue dequeue...) ``tensor`` depends on."""
    ops = upstream_ops([tensor.op], follow=lambda t: t.name not in fed)
    return next((op for op in ops if _is_input_op(op)), None)


def _refuse_input_dependency(key: str, tensor: Any, fed: frozenset[str]) -> None:
    source = input_source(tensor, fed)
    if source is not None:
        raise ValueError(
            f"final_ops[{key!r}] ({tensor.name}) depends on the input pipeline through "
            f"{source.name!r} ({source.type}). FinalOpsHook runs it once after the last step, "
            f"which reads one more batch (and raises OutOfRangeError when the data is finite); "
            f"{_WHAT_TO_FETCH}"
        )


def _fed_names(feed_dict: Mapping[Any, Any] | None) -> frozenset[str]:
    if not feed_dict:
        return frozenset()
    return frozenset(k if isinstance(k, str) else getattr(k, "name", "") for k in feed_dict)


class FinalOpsTableHook(RunAttached, FinalOpsHook):
    """Fetch ``final_ops`` when a session ends and keep the values in a table across runs.

    Args:
        final_ops: ``{display name: op}`` where an op is a variable name (``"dense/kernel"``,
            looked up in GLOBAL_VARIABLES/LOCAL_VARIABLES), a tensor name
            (``"accuracy/value:0"``), an op name, a ``tf.Tensor`` or a ``tf.Variable`` of the
            estimator's graph; or a list of those (named by themselves); or a callable
            ``graph -> dict`` called in ``begin()``. Names are resolved in ``begin()``.
        final_ops_feed_dict: fed when the final ops run, as in ``FinalOpsHook``.
        table: a :class:`~nbhooks.stores.final_values.FinalValuesTable` to share between hooks.

    Works in ``estimator.train(hooks=...)`` and ``estimator.evaluate(hooks=...)``; the row's
    ``mode`` says which. ``.events`` receives a :class:`~nbhooks.events.FinalOpsEvent` per
    session.
    """

    def __init__(
        self,
        final_ops: FinalOps,
        final_ops_feed_dict: Mapping[Any, Any] | None = None,
        table: FinalValuesTable | None = None,
    ) -> None:
        if final_ops_feed_dict is not None and not isinstance(final_ops_feed_dict, Mapping):
            raise TypeError(
                f"final_ops_feed_dict must be a dict of tensors (or tensor names) to values, got "
                f"{type(final_ops_feed_dict).__name__}"
            )
        if table is not None and not isinstance(table, FinalValuesTable):
            raise TypeError(f"table must be a FinalValuesTable, got {type(table).__name__}")
        is_factory = callable(final_ops) and not isinstance(final_ops, _tf.Variable)
        self._spec: Callable[[Any], Any] | dict[str, FinalOp] = (
            cast(Callable[[Any], Any], final_ops) if is_factory else check_final_ops(final_ops)
        )
        super().__init__(None, final_ops_feed_dict)
        self.table = table if table is not None else FinalValuesTable()
        self.events = EventBus()
        self._lock = threading.Lock()
        self._open: _Session | None = None
        self._global_step: Any = None

    # -- wiring ---------------------------------------------------------------------------

    def on_run_state(self, event: RunStateEvent) -> None:
        if event.state == "failed":  # end() does not run then: record the session as failed
            self.mark_failed(describe_error(event.error), step=event.step)

    # -- SessionRunHook -------------------------------------------------------------------

    def begin(self) -> None:
        self.mark_failed("the session raised before end(); seen when the next session began")
        graph = _v1.get_default_graph()
        spec = check_final_ops(self._spec(graph)) if callable(self._spec) else self._spec
        fed = _fed_names(tfi.final_ops_feed_dict(self))
        fetches = {key: _resolve(key, value, graph) for key, value in spec.items()}
        for key, tensor in fetches.items():
            _refuse_input_dependency(key, tensor, fed)
        tfi.set_final_fetches(self, fetches)
        self._global_step = _v1.train.get_global_step(graph)
        mode = "eval" if graph.get_collection(_v1.GraphKeys.EVAL_STEP) else "train"
        with self._lock:
            self._open = _Session(self.table.new_run(), mode)

    def end(self, session: Any) -> None:
        with self._lock:
            current, self._open = self._open, None
        if current is None:  # begin() did not complete: nothing to fetch
            return
        step = self._read_step(session)
        try:
            super().end(session)
        except Exception as exc:
            self._record_failure(
                current, step, f"fetching the final ops raised {describe_error(exc)}"
            )
            raise
        rows = self.table.add_values(current.run_id, current.mode, step, self.final_ops_values)
        self.events.emit(FinalOpsEvent(current.run_id, current.mode, step, rows))

    def _read_step(self, session: Any) -> int | None:
        return None if self._global_step is None else int(session.run(self._global_step))

    # -- failures -------------------------------------------------------------------------

    def mark_failed(self, message: str, step: int | None = None) -> bool:
        """Record the open session (if any) as failed: ``end()`` never ran, no final values.

        Returns whether a session was open. Called by the run this hook is attached to, by
        :meth:`watch`, and by ``begin()`` for a previous session that never ended.
        """
        with self._lock:
            current, self._open = self._open, None
        if current is None:
            return False
        self._record_failure(current, step, message)
        return True

    def _record_failure(self, current: _Session, step: int | None, message: str) -> None:
        row = self.table.add_failure(current.run_id, current.mode, step, message)
        self.events.emit(
            FinalOpsEvent(current.run_id, current.mode, step, (row,), True, row["message"])
        )

    @contextlib.contextmanager
    def watch(self) -> Iterator[FinalOpsTableHook]:
        """``with hook.watch(): estimator.train(...)`` records a failed session at once."""
        try:
            yield self
        except BaseException as exc:
            self.mark_failed(describe_error(exc))
            raise

    # -- results --------------------------------------------------------------------------

    @property
    def session_open(self) -> bool:
        """Whether a session began and has neither ended nor been marked failed."""
        return self._open is not None

    def to_frame(self, arrays: bool = False) -> pd.DataFrame:
        """The table's rows: one per final op per session (see ``FinalValuesTable``)."""
        return self.table.to_frame(arrays=arrays)

    def array(self, run_id: int, name: str) -> Any:
        """The full value ``name`` had at the end of session ``run_id``."""
        return self.table.array(run_id, name)
