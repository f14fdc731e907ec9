"""TensorFlow's private internals, behind named functions: the only module that touches them.

nbhooks builds on three TF hooks whose useful state is private: ``InMemoryEvaluatorHook``
(its evaluation graph, hooks and timer; the metrics ``Estimator._evaluate_run``
returns), ``CheckpointInputPipelineHook`` (its inner ``CheckpointSaverHook``: saver, timer,
listeners) and ``FinalOpsHook`` (the fetches it runs in ``end()``). Each function here says
what it does for nbhooks; :data:`CONTRACT` lists every private attribute and module they use,
and ``tests/test_tf_internals.py`` checks each one against the installed TensorFlow, so an
upgrade that moves one fails with its name instead of somewhere deep in a training thread.

TensorFlow is imported lazily, through :func:`nbhooks._tf.tf`, as everywhere in nbhooks.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from nbhooks._tf import tf
from nbhooks.contract import Private

ESTIMATOR_MODULE = "tensorflow_estimator.python.estimator.estimator"
ESTIMATOR_UTIL_MODULE = "tensorflow_estimator.python.estimator.util"
EVALUATION_MODULE = "tensorflow.python.training.evaluation"
TRAINING_UTIL_MODULE = "tensorflow.python.training.training_util"
EARLY_STOPPING_MODULE = "tensorflow_estimator.python.estimator.early_stopping"


#: Every private attribute of TensorFlow used here, one row each (the contract test's table).
CONTRACT: tuple[Private, ...] = (
    # -- tf.estimator.experimental.InMemoryEvaluatorHook (set by begin/after_create_session)
    Private("InMemoryEvaluatorHook", "_graph", "graph", "eval_graph"),
    Private("InMemoryEvaluatorHook", "_all_hooks", "list", "eval_hooks"),
    Private("InMemoryEvaluatorHook", "_steps", "int or None", "eval_steps"),
    Private("InMemoryEvaluatorHook", "_eval_dir", "str", "eval_dir"),
    Private("InMemoryEvaluatorHook", "_timer", "timer", "mark_evaluated, reset_schedule"),
    Private(
        "InMemoryEvaluatorHook",
        "_iter_count",
        "int",
        "mark_evaluated, reset_schedule, iteration_count",
    ),
    Private("InMemoryEvaluatorHook", "_hooks", "list", "eval_input_hooks"),
    Private("InMemoryEvaluatorHook", "_name", "str or None", "eval_name"),
    Private("InMemoryEvaluatorHook", "_estimator", "estimator", "capture_eval_results"),
    Private("InMemoryEvaluatorHook", "_evaluate", "method(train_session)", "evaluate_as_tf"),
    # -- tf.estimator.Estimator
    Private(
        "Estimator",
        "_evaluate_run",
        "method(checkpoint_path, scaffold, update_op, eval_dict, all_hooks, output_dir)",
        "EvalResultCapture, evaluate_run",
    ),
    Private(
        "Estimator",
        "_evaluate_build_graph",
        "method(input_fn, hooks, checkpoint_path)",
        "evaluate_build_graph",
    ),
    Private(
        "Estimator", "_call_input_fn", "method(input_fn, mode, input_context)", "call_input_fn"
    ),
    Private("Estimator", "_session_config", "session config", "session_config"),
    # -- private modules and what nbhooks takes from them
    Private(
        ESTIMATOR_MODULE,
        "_write_dict_to_summary",
        "function(output_dir, dictionary, current_global_step)",
        "write_eval_summary",
    ),
    Private(ESTIMATOR_UTIL_MODULE, "_DatasetInitializerHook", "hook class", "is_dataset_hook"),
    Private("_DatasetInitializerHook", "_iterator", "iterator", "dataset_iterators"),
    Private(
        "Operation",
        "_control_outputs",
        "list of operations",
        "read_inputs_synchronously, input_reads",
    ),
    Private("Operation", "_update_input", "method(index, tensor)", "read_inputs_synchronously"),
    Private(EVALUATION_MODULE, "_StopAfterNEvalsHook", "hook class", "is_eval_steps_hook"),
    Private(
        TRAINING_UTIL_MODULE,
        "_get_or_create_global_step_read",
        "function(graph)",
        "global_step_read",
    ),
    # -- tf.estimator.experimental.stop_if_* (their hook reads evaluations from a directory)
    Private(EARLY_STOPPING_MODULE, "_StopOnPredicateHook", "hook class", "early_stopping_dir"),
    Private("_StopOnPredicateHook", "_should_stop_fn", "reads eval_dir", "early_stopping_dir"),
    # -- tf.data.experimental.CheckpointInputPipelineHook
    Private("CheckpointInputPipelineHook", "_checkpoint_saver_hook", "saver hook", "saver_hook_of"),
    Private("CheckpointInputPipelineHook", "_first_run", "bool", "first_run_pending"),
    # -- tf.estimator.CheckpointSaverHook (the pipeline hook's inner one)
    Private("CheckpointSaverHook", "_save_graph_def", "bool", "skip_meta_graph"),
    Private("CheckpointSaverHook", "_listeners", "list", "add_save_listener"),
    Private("CheckpointSaverHook", "_saver", "saver or None", "forget_saver, checkpoint_keys"),
    Private("CheckpointSaverHook", "_get_saver", "method()", "saver_of"),
    Private("CheckpointSaverHook", "_global_step_tensor", "tensor", "global_step_tensor"),
    Private("CheckpointSaverHook", "_timer", "timer", "rearm_saver_timer, save_every_steps"),
    Private("CheckpointSaverHook", "_save", "method(session, step)", "gate_saves"),
    Private("SecondOrStepTimer", "_every_steps", "int or None", "save_every_steps"),
    Private("SecondOrStepTimer", "_every_secs", "number or None", "next_save_time"),
    Private("SecondOrStepTimer", "_last_triggered_time", "number or None", "next_save_time"),
    Private("Saver", "_var_list", "saveables", "checkpoint_keys, saver_name_map"),
    Private("Saver", "_save_relative_paths", "bool", "write_relative_paths"),
    Private("Session", "_closed", "bool", "session_closed"),
    # -- tf.estimator.FinalOpsHook
    Private("FinalOpsHook", "_final_ops", "fetches or None", "set_final_fetches"),
    Private("FinalOpsHook", "_final_ops_values", "values or None", "set_final_fetches"),
    Private("FinalOpsHook", "_final_ops_feed_dict", "dict or None", "final_ops_feed_dict"),
    # -- tf.compat.v1.summary.FileWriterCache (one writer and one thread per directory)
    Private("FileWriterCache", "_cache", "dict", "release_summary_writers"),
    Private("FileWriterCache", "_lock", "lock", "release_summary_writers"),
)


# -- private modules -----------------------------------------------------------------------
@functools.cache
def _module(name: str) -> ModuleType:
    """A private TensorFlow module, imported after :func:`tf` quieted TensorFlow."""
    import importlib

    tf()
    return importlib.import_module(name)


# -- the global step, as TF's own hooks read it -----------------------------------------------
def global_step_read() -> Any:
    """The default graph's global step read tensor (made if missing; None without a global
    step): the tensor TF's own training hooks fetch. Fetching it, not the variable, shares the
    executor they build in the session instead of building another (~4 ms per session)."""
    return _module(TRAINING_UTIL_MODULE)._get_or_create_global_step_read()


# -- InMemoryEvaluatorHook: its evaluation graph ---------------------------------------------
def eval_graph(hook: Any) -> Any:
    """The evaluation graph ``hook.begin()`` built (None before)."""
    return hook._graph


def eval_hooks(hook: Any) -> Sequence[Any]:
    """Every hook of the evaluation: the user's, the model's, the input's and the steps'."""
    return hook._all_hooks


def eval_steps(hook: Any) -> int | None:
    """Batches per evaluation (None: until the input ends)."""
    return hook._steps


def eval_dir(hook: Any) -> str:
    """Where the evaluation summaries go (``model_dir/eval_<name>``)."""
    return hook._eval_dir


def mark_evaluated(hook: Any) -> None:
    """Restart the hook's every-N-iterations countdown from its current iteration."""
    hook._timer.update_last_triggered_step(hook._iter_count)


def iteration_count(hook: Any) -> int:
    """Training iterations the hook has seen in this ``train()`` call."""
    return int(hook._iter_count)


def evaluate_as_tf(hook: Any, train_session: Any) -> None:
    """Run TF's own evaluation of ``hook`` (a new session per call), bypassing overrides."""
    tf().estimator.experimental.InMemoryEvaluatorHook._evaluate(hook, train_session)


class EvalResultCapture:
    """Stands in for the estimator inside TF's hook and keeps what ``_evaluate_run`` returns.

    TF's ``InMemoryEvaluatorHook`` throws the metrics dict away; :func:`capture_eval_results`
    puts this proxy in the estimator's place, so every evaluation's result lands here.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.results: Mapping[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.estimator, name)

    def _evaluate_run(self, *args: Any, **kwargs: Any) -> Mapping[str, Any]:
        self.results = self.estimator._evaluate_run(*args, **kwargs)
        return self.results

    def pop(self) -> Mapping[str, Any]:
        """The last evaluation's metrics dict (once); raises if TF did not evaluate."""
        results, self.results = self.results, None
        if results is None:
            raise RuntimeError("TensorFlow's InMemoryEvaluatorHook did not call _evaluate_run")
        return results


def capture_eval_results(hook: Any) -> EvalResultCapture:
    """Make ``hook`` keep the metrics of its evaluations; returns where they land."""
    capture = EvalResultCapture(hook._estimator)
    hook._estimator = capture
    return capture


def session_config(estimator: Any) -> Any:
    """The ``ConfigProto`` the estimator opens its sessions with (RunConfig's, adjusted)."""
    return estimator._session_config


def write_eval_summary(eval_dir: str, results: Mapping[str, Any], step: int) -> None:
    """Write an evaluation's results as summaries, exactly as ``Estimator.evaluate`` does."""
    _module(ESTIMATOR_MODULE)._write_dict_to_summary(eval_dir, results, step)


def is_dataset_hook(hook: Any) -> bool:
    """True for the hook an Estimator adds to initialize its ``tf.data`` input iterator."""
    return isinstance(hook, _module(ESTIMATOR_UTIL_MODULE)._DatasetInitializerHook)


def is_eval_steps_hook(hook: Any) -> bool:
    """True for the hook that counts evaluation batches (``steps=`` of an evaluation)."""
    return isinstance(hook, _module(EVALUATION_MODULE)._StopAfterNEvalsHook)


def dataset_iterators(hooks: Sequence[Any]) -> list[Any]:
    """The ``tf.data`` input iterators that the dataset hooks among ``hooks`` initialize."""
    return [h._iterator for h in hooks if is_dataset_hook(h)]


def read_inputs_synchronously(graph: Any) -> int:
    """Read every ``tf.data`` input of ``graph`` with ``IteratorGetNextSync``, the synchronous
    twin of the ``IteratorGetNext`` an Estimator builds (the same iterator, elements and
    outputs). ``IteratorGetNext`` hands each batch to a tf.data thread of its own and the step
    waits for it to come back; the twin reads it on the thread that runs the step (tf.data's
    own functions keep their threads: it does not wait on the session's pools). For a graph
    no session has run yet: the consumers of each read are rewired to its twin; a read that
    something depends on by a control edge is left as it is. Returns how many were swapped."""
    t = tf()
    swapped = 0
    for read in graph.get_operations():
        if read.type != "IteratorGetNext" or read._control_outputs:
            continue
        with graph.as_default(), t.compat.v1.colocate_with(read):
            twin = t.raw_ops.IteratorGetNextSync(
                iterator=read.inputs[0],
                output_types=read.get_attr("output_types"),
                output_shapes=read.get_attr("output_shapes"),
            )
        for old, new in zip(read.outputs, twin, strict=True):
            for consumer in old.consumers():
                for index, value in enumerate(consumer.inputs):
                    if value.op is read and value.value_index == old.value_index:
                        consumer._update_input(index, new)
        swapped += 1
    return swapped


def input_reads(graph: Any) -> list[Any]:
    """The ops that read ``graph``'s ``tf.data`` inputs for the rest of it: each
    ``IteratorGetNext``, or the ``IteratorGetNextSync`` that replaced it (a read replaced by
    :func:`read_inputs_synchronously` is left without consumers, and is not one)."""
    return [
        op
        for op in graph.get_operations()
        if op.type.startswith("IteratorGetNext")
        and (op._control_outputs or any(out.consumers() for out in op.outputs))
    ]


# -- CheckpointInputPipelineHook and its CheckpointSaverHook --------------------------------
def saver_hook_of(pipeline_hook: Any) -> Any:
    """The ``CheckpointSaverHook`` that saves the pipeline hook's input checkpoints."""
    return pipeline_hook._checkpoint_saver_hook


def first_run_pending(pipeline_hook: Any) -> bool:
    """True until the first step of a session restored (or saved) the input position."""
    return pipeline_hook._first_run


def finish_first_run(pipeline_hook: Any) -> None:
    """Record that this session's restore-or-save-initial step is done."""
    pipeline_hook._first_run = False


def skip_meta_graph(saver_hook: Any) -> None:
    """Save checkpoints without a ``.meta`` graph file."""
    saver_hook._save_graph_def = False


def add_save_listener(saver_hook: Any, listener: Any) -> None:
    """Add a ``CheckpointSaverListener`` after the hook was made."""
    saver_hook._listeners.append(listener)


def forget_saver(saver_hook: Any) -> None:
    """Drop the saver so that the next ``begin()`` builds one for the new graph."""
    saver_hook._saver = None


def saver_of(saver_hook: Any) -> Any:
    """The ``Saver`` the hook saves with (found in the graph when it was given none)."""
    return saver_hook._get_saver()


def checkpoint_keys(saver_hook: Any) -> set[str]:
    """The tensor names its saver writes (empty before ``begin()`` built a saver)."""
    saver = saver_hook._saver
    if saver is None:
        return set()
    return {spec.name for saveable in saver._var_list for spec in saveable.specs}


def global_step_tensor(saver_hook: Any) -> Any:
    """The global step read tensor the hook fetches (set by ``begin()``)."""
    return saver_hook._global_step_tensor


def rearm_saver_timer(saver_hook: Any, step: int) -> None:
    """Count the next automatic save from ``step`` (as if the hook had just saved there)."""
    saver_hook._timer.update_last_triggered_step(step)


def gate_saves(saver_hook: Any, allowed: Callable[[], bool]) -> None:
    """Let the hook save (in ``after_run`` and ``end``) only while ``allowed()``; otherwise its
    timer runs on as if it had saved, so saves turned back on land on the same steps."""
    save = saver_hook._save

    def gated(session: Any, step: int) -> bool:
        return bool(save(session, step)) if allowed() else False

    saver_hook._save = gated


def next_save_time(saver_hook: Any) -> float:
    """The ``time.time()`` before which the hook's ``after_run`` cannot save, whatever the
    step: N seconds after its last save when it saves every N seconds; otherwise 0 (any step
    may be due). It only moves later while the hook runs (each save, or a re-arm, sets it)."""
    timer = saver_hook._timer
    every, last = timer._every_secs, timer._last_triggered_time
    return 0.0 if every is None or last is None else last + every


def save_every_steps(saver_hook: Any) -> int | None:
    """The save interval in steps (None when it saves every N seconds)."""
    return saver_hook._timer._every_steps


# -- FinalOpsHook ----------------------------------------------------------------------------
def final_ops_feed_dict(hook: Any) -> Mapping[Any, Any] | None:
    """The ``final_ops_feed_dict`` the hook was made with."""
    return hook._final_ops_feed_dict


def set_final_fetches(hook: Any, fetches: Any) -> None:
    """Make ``end()`` fetch ``fetches`` (resolved in this graph); forget the last values."""
    hook._final_ops = fetches
    hook._final_ops_values = None


# -- nbhooks' own evaluation graph (LiveEvaluatorHook) ---------------------------------------
def evaluate_build_graph(estimator: Any, input_fn: Any, hooks: Sequence[Any]) -> tuple[Any, ...]:
    """Build what ``estimator.evaluate()`` builds, in the default graph: the model_fn in EVAL
    mode on ``input_fn``'s data, the metrics; returns (scaffold, update_op, metric tensors by
    name with the global step, every evaluation hook)."""
    return estimator._evaluate_build_graph(input_fn, list(hooks), checkpoint_path=None)


def evaluate_run(
    estimator: Any,
    scaffold: Any,
    update_op: Any,
    metrics: Mapping[str, Any],
    hooks: Sequence[Any],
    eval_dir: str,
) -> Mapping[str, Any]:
    """One evaluation as ``estimator.evaluate()`` runs it (a MonitoredSession, summaries
    written), with no checkpoint: ``scaffold`` initializes the variables. Returns the metrics."""
    return estimator._evaluate_run(
        checkpoint_path=None, scaffold=scaffold, update_op=update_op, eval_dict=metrics,
        all_hooks=list(hooks), output_dir=eval_dir,
    )  # fmt: skip


def call_input_fn(estimator: Any, input_fn: Any, mode: str) -> Any:
    """Call ``input_fn`` as the estimator does (``mode``/``params``/``config`` if it takes them)."""
    return estimator._call_input_fn(input_fn, mode)


def saver_name_map(saver: Any) -> Mapping[str, Any] | None:
    """The ``{checkpoint key: variable}`` map a ``Saver`` was made with (e.g. a moving
    average's ``variables_to_restore()``); None when its keys are the variables' own names or
    follow objects: no saver, a list of variables, Keras' or a ``tf.train.Checkpoint``."""
    if not isinstance(saver, tf().compat.v1.train.Saver):
        return None
    var_list = saver._var_list
    return dict(var_list) if isinstance(var_list, Mapping) else None


def reset_schedule(hook: Any) -> None:
    """Start the hook's every-N-iterations countdown afresh (as its ``begin()`` does)."""
    hook._timer.reset()
    hook._iter_count = 0


def eval_input_hooks(hook: Any) -> list[Any]:
    """The hooks the evaluator was given, with the one that counts ``steps`` batches."""
    return list(hook._hooks)


def eval_name(hook: Any) -> str | None:
    """The ``name=`` it was given (``estimator.evaluate(name=...)``)."""
    return hook._name


def early_stopping_dir(hook: Any) -> str | None:
    """The directory a ``tf.estimator.experimental.stop_if_*`` hook reads evaluations from
    (its ``eval_dir``, by default ``estimator.eval_dir()``); None for any other hook."""
    if not isinstance(hook, _module(EARLY_STOPPING_MODULE)._StopOnPredicateHook):
        return None
    found = inspect.getclosurevars(hook._should_stop_fn).nonlocals.get("eval_dir")
    return found if isinstance(found, str) else None


# -- PipelineCheckpointHook: relative state paths, its input, its session ------------------
ITERATOR_OPS_MODULE = "tensorflow.python.data.ops.iterator_ops"


def write_relative_paths(saver: Any) -> None:
    """Make ``saver`` name checkpoints relative to their folder in its state file (as the
    Estimator's own saver does), so that a moved or copied model_dir still resumes."""
    saver._save_relative_paths = True


def pipeline_iterators(graph: Any) -> list[Any]:
    """The ``tf.data`` iterators of ``graph`` that TF's pipeline hook saves (its collection)."""
    return graph.get_collection(_module(ITERATOR_OPS_MODULE).GLOBAL_ITERATORS)


def session_closed(session: Any) -> bool:
    """True once ``session`` was closed (a training that raised closes it without end())."""
    return bool(session._closed)


def release_summary_writers(directory: str) -> int:
    """Close and forget TensorFlow's cached summary writers of ``directory`` and below.

    The Estimator writes summaries through ``FileWriterCache``, which keeps a writer, and its
    ``EventLoggerThread``, per directory until the process ends. A closed writer left in the
    cache would drop later events silently, so it is removed too (a later ``train()`` gets a
    new one). Returns how many were released.
    """
    cache = tf().compat.v1.summary.FileWriterCache
    root = os.path.realpath(directory)
    with cache._lock:
        keys = [
            key
            for key in cache._cache
            if (path := os.path.realpath(str(key))) == root or path.startswith(root + os.sep)
        ]
        writers = [cache._cache.pop(key) for key in keys]
    for writer in writers:
        writer.close()
    return len(writers)
