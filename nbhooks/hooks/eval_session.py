"""The evaluation graph of a :class:`~nbhooks.LiveEvaluatorHook`, and the one evaluation session
kept open across its evaluations.

:class:`EvalGraph` is what ``estimator.evaluate()`` builds (model_fn in EVAL mode, the input,
the metrics) plus the copy of the training values into its variables: each evaluation
variable gets the value the model_fn's EVAL saver would restore into it from a checkpoint of
this step. With the default saver (and with Keras' or ``tf.train.Checkpoint`` savers, whose
keys follow the objects that both graphs build alike) that is the training variable of the
same name; a ``Saver`` given a ``{checkpoint key: variable}`` map, such as
``ExponentialMovingAverage.variables_to_restore()``, takes the training variable named by the
key (the moving average, not the raw weight).

TF's ``InMemoryEvaluatorHook`` evaluates through ``evaluation._evaluate_once``: every call adds
ops to the evaluation graph and builds a new Scaffold and MonitoredSession (TF issue 30807:
memory grows), which costs far more than the evaluation batches themselves on a small model.
:class:`EvalSession` builds the same evaluation once and reruns it: copy the training values
in, reset the metric variables and the input iterator, run the update op until the input ends
(or ``steps``), fetch the metric values, write the summaries. It is used only when that is
equivalent: a ``tf.data`` input and no evaluation hooks of the user's or the model's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf
from nbhooks.hooks._graph import upstream_ops


class InMemoryUnsupported(ValueError):
    """In-memory evaluation cannot give what ``estimator.evaluate()`` gives for this model."""


class EvalInterrupted(Exception):
    """An evaluation stopped half-way because the run is stopping (nothing is recorded)."""


@dataclass(eq=False)
class EvalGraph:
    """One build of the evaluation graph, with the copy of the training values into it."""

    graph: Any
    scaffold: Any
    update_op: Any
    metrics: Mapping[str, Any]  #: metric value tensors by name, global step included
    hooks: list[Any]  #: the input's, the user's, the steps' and the model's evaluation hooks
    sources: dict[str, Any]  #: evaluation variable name -> training variable restored into it
    placeholders: dict[str, Any]
    feed_op: Any
    #: (initialize the variables, reset the metrics and the input, the same after copying the
    #: values in with ``feed_op``): added by the first session
    session_ops: tuple[Any, list[Any], Any | None] | None = None

    @classmethod
    def build(
        cls,
        estimator: Any,
        input_fn: Callable[..., Any],
        hooks: Sequence[Any],
        train_vars: Mapping[str, Any],
    ) -> EvalGraph:
        """Build the evaluation of ``input_fn`` in a new graph; ``train_vars``: the training
        graph's global variables by name. Raises :class:`InMemoryUnsupported` naming what in
        the model cannot be copied in memory."""
        t = tf()
        v1 = t.compat.v1
        graph = t.Graph()
        with graph.as_default():
            scaffold, update_op, metrics, all_hooks = tfi.evaluate_build_graph(
                estimator, input_fn, hooks
            )
            saveables = v1.get_collection(v1.GraphKeys.SAVEABLE_OBJECTS)
            if saveables:
                names = ", ".join(
                    f"{type(s).__name__} {getattr(s, 'name', s)!r}" for s in saveables
                )
                raise InMemoryUnsupported(
                    f"the model has state other than variables (SAVEABLE_OBJECTS: {names}) that "
                    f"only a checkpoint carries from training to evaluation"
                )
            eval_vars = {v.name: v for v in v1.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)}
            sources = restore_sources(scaffold.saver, eval_vars, train_vars)
            placeholders = {
                name: v1.placeholder(eval_vars[name].dtype.base_dtype, name="nbhooks_copy")
                for name in sources
            }
            feed_op = t.group([v1.assign(eval_vars[name], placeholders[name]) for name in sources])
        return cls(graph, scaffold, update_op, metrics, list(all_hooks), sources, placeholders,
                   feed_op)  # fmt: skip

    @property
    def has_queue_runners(self) -> bool:
        """True when the input feeds through queue runners (``numpy_input_fn``, ...)."""
        return bool(self.graph.get_collection(tf().compat.v1.GraphKeys.QUEUE_RUNNERS))

    def values(self, train_session: Any) -> dict[Any, Any]:
        """The feed that copies the training values of ``train_session`` into this graph."""
        return self.feed(train_session.run(self.sources))

    def feed(self, values: Mapping[str, Any]) -> dict[Any, Any]:
        """The feed for ``values`` (evaluation variable name -> value, fetched from
        :attr:`sources`)."""
        return {self.placeholders[name]: value for name, value in values.items()}

    def rebind(self, train_vars: Mapping[str, Any]) -> None:
        """Copy from the variables of the same names in another training graph (a new
        ``train()`` call of the same model: see :func:`variables_signature`)."""
        self.sources = {name: train_vars[var.name] for name, var in self.sources.items()}

    def evaluate_in_new_session(
        self, estimator: Any, feed: Mapping[Any, Any], extra_hooks: Sequence[Any], eval_dir: str
    ) -> Mapping[str, Any]:
        """TF's own path: a new MonitoredSession whose init_fn copies the values of ``feed``
        (:meth:`feed`) in, where a checkpoint evaluation restores them (the model's own init_fn
        is skipped alike)."""

        def copy_in(scaffold: Any, session: Any) -> None:
            session.run(self.feed_op, feed_dict=dict(feed))

        scaffold = tf().compat.v1.train.Scaffold(init_fn=copy_in, copy_from_scaffold=self.scaffold)
        with self.graph.as_default():
            return tfi.evaluate_run(
                estimator, scaffold, self.update_op, self.metrics, [*self.hooks, *extra_hooks],
                eval_dir,
            )  # fmt: skip


def variables_signature(variables: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """What must match for an evaluation graph to serve another training graph: every
    variable's name, shape and dtype."""
    return tuple(
        sorted((name, str(v.shape), v.dtype.base_dtype.name) for name, v in variables.items())
    )


def without_autotune(estimator: Any, input_fn: Callable[..., Any]) -> Callable[..., Any]:
    """``input_fn`` with ``tf.data`` autotuning off for its dataset (other results unchanged).

    Autotuning re-tunes the input's parallelism at every iterator initialization, i.e. at every
    evaluation, for a few ms each time (spikes of tens); it never changes the elements or their
    order."""
    t = tf()

    def eval_input_fn(mode: Any) -> Any:
        result = tfi.call_input_fn(estimator, input_fn, mode)
        if isinstance(result, t.data.Dataset):
            options = t.data.Options()
            options.autotune.enabled = False
            result = result.with_options(options)
        return result

    return eval_input_fn


def restore_sources(
    saver: Any, eval_vars: Mapping[str, Any], train_vars: Mapping[str, Any]
) -> dict[str, Any]:
    """Evaluation variable name -> the training variable whose value the EVAL ``saver`` would
    restore into it from a checkpoint written by training."""
    named = tfi.saver_name_map(saver)
    if named is None:  # keys follow the variables (or the objects): the same names
        return {name: train_vars[name] for name in eval_vars if name in train_vars}
    variable = tf().Variable
    sources: dict[str, Any] = {}
    for key, value in named.items():
        if not isinstance(value, variable):
            raise InMemoryUnsupported(
                f"the EVAL Saver restores checkpoint key {key!r} into {value!r}, which is not "
                f"one variable (a partitioned variable or another saveable)"
            )
        source = train_vars.get(f"{key}:0")
        if source is None:
            raise InMemoryUnsupported(
                f"the EVAL Saver restores {value.name} from checkpoint key {key!r}, but the "
                f"training graph has no variable {key!r}"
            )
        if not source.shape.is_compatible_with(value.shape):
            raise InMemoryUnsupported(
                f"the EVAL Saver restores {value.name} {value.shape} from {key!r}, whose "
                f"training variable has shape {source.shape}"
            )
        sources[value.name] = source
    missing = sorted(set(eval_vars) - set(sources))
    if missing:  # a checkpoint evaluation would stop on them, uninitialized
        raise InMemoryUnsupported(
            f"the EVAL Saver does not restore {', '.join(missing)}: estimator.evaluate() "
            f"would refuse the model as not ready"
        )
    return sources


class EvalSession:
    """An :class:`EvalGraph`'s evaluation in one long-lived session."""

    def __init__(self, parts: EvalGraph, session_config: Any) -> None:
        v1 = tf().compat.v1
        self.parts = parts
        self._config = _serialized(session_config)
        init, self._reset, copy_and_reset = _session_ops(parts)
        self._copied = list(parts.placeholders.values())  # the values' order for the callable
        self.session = v1.Session(graph=parts.graph, config=session_config)
        try:
            self.session.run(init)
            # Callables: a fraction of session.run()'s Python cost per batch.
            make = self.session.make_callable
            self._run_reset = make(self._reset)
            self._run_copy_and_reset = (
                None if copy_and_reset is None else make(copy_and_reset, feed_list=self._copied)
            )
            self._run_update = make(parts.update_op)
            self._run_metrics = make(parts.metrics)
        except BaseException:
            self.session.close()
            raise

    @staticmethod
    def applies(parts: EvalGraph) -> bool:
        """True when reusing one session gives exactly TF's evaluation of ``parts``."""
        hooks = parts.hooks
        return (
            any(tfi.is_dataset_hook(h) for h in hooks)
            and all(tfi.is_dataset_hook(h) or tfi.is_eval_steps_hook(h) for h in hooks)
            and not parts.has_queue_runners
            and parts.scaffold.init_op is None
            and parts.scaffold.ready_op is None
        )

    def made_with(self, session_config: Any) -> bool:
        """True when this session was opened with ``session_config`` (threads and all)."""
        return _serialized(session_config) == self._config

    def warm_up(self) -> None:
        """Run the evaluation's steps once (one batch, on the initial values; no summary,
        nothing kept), so that TensorFlow's one-off work for each of them (graph
        optimization, kernels) is done before the first evaluation."""
        self._run_reset()
        try:
            self._run_update()
        except tf().errors.OutOfRangeError:  # an empty input: the first evaluation says so
            pass
        self._run_metrics()

    def evaluate_feed(
        self,
        feed: Mapping[Any, Any],
        steps: int | None,
        eval_dir: str,
        interrupted: Callable[[], bool] = lambda: False,
    ) -> Mapping[str, Any]:
        """Evaluate the values of ``feed`` (:meth:`EvalGraph.feed`: a snapshot taken at one
        training step, on any thread); returns the metrics dict. ``interrupted`` is asked
        between batches: True raises :class:`EvalInterrupted`."""
        if self._run_copy_and_reset is not None:
            self._run_copy_and_reset(*(feed[p] for p in self._copied))
        else:
            self.session.run(self.parts.feed_op, feed_dict=dict(feed))
            self._run_reset()
        done, update = 0, self._run_update
        out_of_range = tf().errors.OutOfRangeError
        while steps is None or done < steps:
            if interrupted():
                raise EvalInterrupted
            try:
                update()
            except out_of_range:
                break
            done += 1
        results = self._run_metrics()
        global_step = results[tf().compat.v1.GraphKeys.GLOBAL_STEP]
        # The evaluation graph is the default one here, as in estimator.evaluate(): a first
        # summary writer of eval_dir writes it (not the larger training graph) to TensorBoard.
        with self.parts.graph.as_default():
            tfi.write_eval_summary(eval_dir, results, global_step)
        return results

    def close(self) -> None:
        self.session.close()


def _session_ops(parts: EvalGraph) -> tuple[Any, list[Any], Any | None]:
    """The ops a session of ``parts`` runs: (initialize the variables, reset the metrics and
    the input, copy the values in then reset: one run per evaluation), added once; the graph
    is then finalized (nothing is added per evaluation, nor for a session opened again).
    The input is read on the thread that runs each batch (:func:`tfi.read_inputs_synchronously`:
    ~30 % less CPU an evaluation of a small model)."""
    if parts.session_ops is None:
        v1 = tf().compat.v1
        with parts.graph.as_default():
            tfi.read_inputs_synchronously(parts.graph)
            local_init = parts.scaffold.local_init_op
            reset = [
                local_init if local_init is not None else v1.train.Scaffold.default_local_init_op(),
                *(it.initializer for it in tfi.dataset_iterators(parts.hooks)),
            ]
            # One run copies the values in and resets, unless resetting reads a copied
            # variable (a local variable initialized from one): its order would be unknown.
            copied = {name.split(":")[0] for name in parts.sources}
            independent = not depends_on(reset, copied)
            copy_and_reset = tf().group(parts.feed_op, *reset) if independent else None
            parts.session_ops = (v1.global_variables_initializer(), reset, copy_and_reset)
        parts.graph.finalize()
    return parts.session_ops


def depends_on(ops: Sequence[Any], names: set[str]) -> bool:
    """True when running ``ops`` runs (through data or control inputs) an op named in
    ``names``."""
    return any(op.name in names for op in upstream_ops(ops))


def _serialized(config: Any) -> bytes | None:
    return None if config is None else config.SerializeToString(deterministic=True)
