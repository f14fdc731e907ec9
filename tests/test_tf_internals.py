"""Contract tests: every private attribute nbhooks uses still exists, with the expected kind.

The rows come from the adapters' own ``CONTRACT`` tables (``nbhooks._tf_internals`` for
TensorFlow, ``nbhooks.views._widget_internals`` for ipywidgets and plotly), and a static check
makes sure each private name in an adapter's source has a row. The objects are real: a tiny
Estimator trained two steps on 16 rows with TF's own InMemoryEvaluatorHook,
CheckpointInputPipelineHook and FinalOpsHook; a real ipywidgets widget and plotly FigureWidget.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import ipywidgets
import models
import numpy as np
import plotly
import plotly.graph_objects as go
import pytest

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf
from nbhooks.stores.pipeline_files import whole_index
from nbhooks.views import _widget_internals as wi


@dataclass
class TFObjects:
    """Real TensorFlow objects after two training steps (each hook's begin..end ran)."""

    estimator: Any
    eval_hook: Any
    pipeline_hook: Any
    final_ops_hook: Any
    captured: Mapping[str, Any] | None
    evaluate_calls: int  #: calls of ``_evaluate`` by an every_n_iter=1 hook over two steps


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory) -> TFObjects:
    t = tf()
    model_dir = tmp_path_factory.mktemp("contract") / "model"
    estimator = models.make_estimator(model_dir, save_checkpoints_steps=1)
    data = models.input_fn(n=16, batch=4, repeat=False)
    eval_hook = t.estimator.experimental.InMemoryEvaluatorHook(
        estimator, data, steps=2, every_n_iter=1
    )

    class CountingEvaluator(t.estimator.experimental.InMemoryEvaluatorHook):
        """Overrides ``_evaluate`` as LiveEvaluatorHook does, and counts TF's calls of it."""

        calls = 0

        def _evaluate(self, train_session: Any) -> None:
            self.calls += 1
            tfi.evaluate_as_tf(self, train_session)

    capturing = CountingEvaluator(estimator, data, name="captured", every_n_iter=1)
    capture = tfi.capture_eval_results(capturing)
    pipeline_hook = t.data.experimental.CheckpointInputPipelineHook(estimator)
    final_ops_hook = t.estimator.FinalOpsHook({"bias": "dense/bias:0"}, {})
    hooks = [eval_hook, capturing, pipeline_hook, final_ops_hook]
    estimator.train(models.input_fn(n=16, batch=4), steps=2, hooks=hooks)
    return TFObjects(
        estimator, eval_hook, pipeline_hook, final_ops_hook, capture.results, capturing.calls
    )


def _triggered(**every: Any) -> Any:
    """A ``SecondOrStepTimer`` after its first trigger (its time of last trigger set)."""
    timer = tf().compat.v1.train.SecondOrStepTimer(**every)
    timer.update_last_triggered_step(0)
    return timer


def _dataset_hook(o: TFObjects) -> Any:
    return next(h for h in tfi.eval_hooks(o.eval_hook) if tfi.is_dataset_hook(h))


def _operation(o: TFObjects) -> Any:
    with tf().Graph().as_default():
        return tf().constant(0).op


#: How to build (or find) the real object that owns each attribute.
OWNERS: dict[str, Callable[[TFObjects], Any]] = {
    "InMemoryEvaluatorHook": lambda o: o.eval_hook,
    "Estimator": lambda o: o.estimator,
    tfi.ESTIMATOR_MODULE: lambda o: importlib.import_module(tfi.ESTIMATOR_MODULE),
    tfi.ESTIMATOR_UTIL_MODULE: lambda o: importlib.import_module(tfi.ESTIMATOR_UTIL_MODULE),
    tfi.EVALUATION_MODULE: lambda o: importlib.import_module(tfi.EVALUATION_MODULE),
    tfi.TRAINING_UTIL_MODULE: lambda o: importlib.import_module(tfi.TRAINING_UTIL_MODULE),
    "_DatasetInitializerHook": _dataset_hook,
    "Operation": _operation,
    tfi.EARLY_STOPPING_MODULE: lambda o: importlib.import_module(tfi.EARLY_STOPPING_MODULE),
    "_StopOnPredicateHook": lambda o: tf().estimator.experimental.stop_if_no_decrease_hook(
        o.estimator, "loss", 100
    ),
    "CheckpointInputPipelineHook": lambda o: o.pipeline_hook,
    "CheckpointSaverHook": lambda o: tfi.saver_hook_of(o.pipeline_hook),
    "SecondOrStepTimer": lambda o: _triggered(every_secs=60),
    "Saver": lambda o: tfi.saver_of(tfi.saver_hook_of(o.pipeline_hook)),
    "Session": lambda o: tf().compat.v1.Session(graph=tf().Graph()),
    "FinalOpsHook": lambda o: o.final_ops_hook,
    "FileWriterCache": lambda o: tf().compat.v1.summary.FileWriterCache,
    "ipywidgets.Widget": lambda o: ipywidgets.HTML("contract"),
    "plotly FigureWidget": lambda o: go.FigureWidget(),
    "plotly Layout": lambda o: go.FigureWidget().layout,
}


def _signature_is(value: Any, kind: str) -> bool:
    """``method(a, b)`` or ``function(a, b)``: a callable taking exactly ``a, b``."""
    match = re.fullmatch(r"(?:method|function)\((.*)\)", kind)
    assert match, kind
    expected = [p.strip() for p in match[1].split(",") if p.strip()]
    return callable(value) and list(inspect.signature(value).parameters) == expected


def _synced(owner: Any, name: str, of: type) -> bool:
    return bool(owner.trait_metadata(name, "sync")) and isinstance(getattr(owner, name), of)


def _is_saveables(value: Any) -> bool:
    return bool(value) and all(all(spec.name for spec in s.specs) for s in value)


def kinds() -> dict[str, Callable[[Any], bool]]:
    """What each ``kind`` of a contract row means, as a check on the attribute's value."""
    t = tf()
    v1 = t.compat.v1
    return {
        "graph": lambda v: isinstance(v, t.Graph),
        "scaffold": lambda v: isinstance(v, v1.train.Scaffold),
        "list": lambda v: isinstance(v, list),
        "dict": lambda v: isinstance(v, dict),
        "str": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "str or None": lambda v: v is None or isinstance(v, str),
        "int or None": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
        "number or None": lambda v: v is None or isinstance(v, int | float),
        "dict or None": lambda v: v is None or isinstance(v, Mapping),
        "fetchable": lambda v: isinstance(v, t.Operation | t.Tensor | list | tuple | dict),
        "fetches or None": lambda v: v is None or isinstance(v, Mapping | list | str),
        "values or None": lambda v: v is None or isinstance(v, Mapping | list),
        "operation": lambda v: isinstance(v, t.Operation),
        "list of operations": lambda v: (
            isinstance(v, list) and all(isinstance(op, t.Operation) for op in v)
        ),
        "tensor": lambda v: isinstance(v, t.Tensor),
        "timer": lambda v: isinstance(v, v1.train.SecondOrStepTimer),
        "estimator": lambda v: isinstance(v, t.estimator.Estimator),
        "session config": lambda v: v is None or isinstance(v, v1.ConfigProto),
        "hook class": lambda v: isinstance(v, type) and issubclass(v, t.estimator.SessionRunHook),
        "iterator": lambda v: hasattr(v, "initializer"),
        "saver hook": lambda v: isinstance(v, t.estimator.CheckpointSaverHook),
        "saver or None": lambda v: v is None or isinstance(v, v1.train.Saver),
        "saveables": _is_saveables,
        "layout": lambda v: isinstance(v, go.Layout),
        "lock": lambda v: hasattr(v, "acquire") and hasattr(v, "release"),
        "reads eval_dir": lambda v: isinstance(
            inspect.getclosurevars(v).nonlocals.get("eval_dir"), str
        ),
    }


def _versions(row: Any) -> str:
    if row in wi.CONTRACT:
        return f"ipywidgets {ipywidgets.__version__} / plotly {plotly.__version__}"
    return f"TensorFlow {tf().__version__}"


ROWS = [*tfi.CONTRACT, *wi.CONTRACT]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r.owner}.{r.name}" for r in ROWS])
def test_private_attribute_is_there(objects: TFObjects, row: Any) -> None:
    where = f"{row.owner}.{row.name} (used by {row.used_by})"
    assert row.owner in OWNERS, f"no factory for {row.owner!r} in OWNERS: add one for {where}"
    try:
        owner = OWNERS[row.owner](objects)
    except Exception as exc:  # a private attribute that the factory needs is gone
        pytest.fail(f"cannot build the {row.owner} that holds {where}: {exc!r}")
    versions = _versions(row)
    assert hasattr(owner, row.name), f"{where} is gone in {versions}"
    value = getattr(owner, row.name)
    if row.kind.startswith(("method(", "function(")):
        ok = _signature_is(value, row.kind)
    elif row.kind.startswith("synced "):
        ok = _synced(owner, row.name, list if row.kind == "synced list" else dict)
    else:
        assert row.kind in kinds(), f"unknown kind {row.kind!r} of {where}: add it to kinds()"
        ok = kinds()[row.kind](value)
    assert ok, f"{where} is no longer {row.kind} in {versions}: got {type(value).__name__}"


def test_the_front_end_reports_its_layout_under_a_key_that_is_watched() -> None:
    """plotly's front end tells the kernel the layout it drew (``on_layout_reported``): 7.1
    under a misspelt key, which the adapter adds as a synced trait; it watches both."""
    bundle = Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"
    keys = set(re.findall(r'set\("(_js2py_\w*[lL]ayoutDelta)"', bundle.read_text()))
    watched = {"_js2py_layoutDelta", wi.FRONT_END_LAYOUT_KEY}
    assert keys and keys <= watched, f"plotly {plotly.__version__} reports its layout as {keys}"
    figure = go.FigureWidget()
    reports: list[Mapping[str, Any]] = []
    wi.on_layout_reported(figure, reports.append)
    figure.set_state({wi.FRONT_END_LAYOUT_KEY: {"layout_delta": {"width": 700}}})
    assert reports == [{"width": 700}]


def _private_names(module: ModuleType) -> set[str]:
    """The private names an adapter's source reaches: ``x._name``, ``getattr(x, "_name")``,
    and methods of its classes that stand in for TensorFlow's (``def _name``)."""
    tree = ast.parse(Path(inspect.getfile(module)).read_text())

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            names.add(node.attr)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in {
            "getattr",
            "setattr",
            "hasattr",
        }:
            names |= {
                a.value for a in node.args if isinstance(a, ast.Constant) and private(str(a.value))
            }
        elif isinstance(node, ast.ClassDef):
            names |= {
                f.name for f in node.body if isinstance(f, ast.FunctionDef) and private(f.name)
            }
    return names


@pytest.mark.parametrize("adapter", [tfi, wi], ids=lambda m: m.__name__)
def test_every_private_name_an_adapter_uses_has_a_contract_row(adapter: ModuleType) -> None:
    used = _private_names(adapter)
    listed = {row.name for row in adapter.CONTRACT}
    assert not used - listed, f"{adapter.__name__} uses {sorted(used - listed)} without a row"
    assert not listed - used, f"{adapter.__name__}.CONTRACT lists unused {sorted(listed - used)}"


def test_in_memory_evaluation_returns_its_metrics_through_evaluate_run(
    objects: TFObjects,
) -> None:
    """TF's hook evaluates through ``_estimator._evaluate_run`` and gets the metrics back."""
    results = objects.captured
    assert results is not None, (
        f"InMemoryEvaluatorHook no longer calls self._estimator._evaluate_run in "
        f"TensorFlow {tf().__version__}: LiveEvaluatorHook cannot capture its metrics"
    )
    assert {"accuracy", "loss", tf().compat.v1.GraphKeys.GLOBAL_STEP} <= set(results)


def test_each_stop_if_hook_tells_the_directory_it_reads(objects: TFObjects) -> None:
    """Every ``stop_if_*`` hook: ``estimator.eval_dir()`` by default, else its ``eval_dir``."""
    estimator, experimental = objects.estimator, tf().estimator.experimental
    makers = [
        lambda **kw: experimental.stop_if_no_decrease_hook(estimator, "loss", 100, **kw),
        lambda **kw: experimental.stop_if_no_increase_hook(estimator, "accuracy", 100, **kw),
        lambda **kw: experimental.stop_if_higher_hook(estimator, "accuracy", 0.9, **kw),
        lambda **kw: experimental.stop_if_lower_hook(estimator, "loss", 0.1, **kw),
    ]
    for make in makers:
        assert tfi.early_stopping_dir(make()) == estimator.eval_dir()
        assert tfi.early_stopping_dir(make(eval_dir="/x/eval_a")) == "/x/eval_a"
    assert tfi.early_stopping_dir(objects.eval_hook) is None


def test_evaluation_hooks_are_the_input_and_steps_hooks(objects: TFObjects) -> None:
    """With a tf.data input and ``steps``, TF adds exactly the two hooks EvalSession expects."""
    hooks = tfi.eval_hooks(objects.eval_hook)
    assert len(tfi.dataset_iterators(hooks)) == 1, f"no _DatasetInitializerHook in {hooks}"
    assert any(tfi.is_eval_steps_hook(h) for h in hooks), f"no _StopAfterNEvalsHook in {hooks}"
    assert all(tfi.is_dataset_hook(h) or tfi.is_eval_steps_hook(h) for h in hooks)


def test_an_evaluation_reads_its_input_on_the_thread_that_runs_the_step(
    objects: TFObjects,
) -> None:
    """An Estimator's evaluation graph reads a tf.data input with one ``IteratorGetNext``; its
    consumers then read from the synchronous twin instead, which yields the same batches."""
    t = tf()
    graph = t.Graph()
    with graph.as_default():
        data = models.input_fn(n=16, batch=4, repeat=False)
        _, _, _, hooks = tfi.evaluate_build_graph(objects.estimator, data, [])
        reads = {op.type: op for op in graph.get_operations() if op.type.startswith("Iterator")}
        assert "IteratorGetNext" in reads, f"the evaluation reads its input by {sorted(reads)}"
        used = [c for out in reads["IteratorGetNext"].outputs for c in out.consumers()]
        assert tfi.read_inputs_synchronously(graph) == 1
        twin = next(op for op in graph.get_operations() if op.type == "IteratorGetNextSync")
    assert not any(out.consumers() for out in reads["IteratorGetNext"].outputs)
    assert sorted(c.name for out in twin.outputs for c in out.consumers()) == sorted(
        c.name for c in used
    )
    with t.compat.v1.Session(graph=graph) as session:
        session.run(tfi.dataset_iterators(hooks)[0].initializer)
        batches = [session.run(twin.outputs) for _ in range(4)]
        with pytest.raises(t.errors.OutOfRangeError):
            session.run(twin.outputs)
    x, y = models.make_data(16)
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x)
    assert np.array_equal(np.concatenate([b[1] for b in batches]), y)


def test_tf_calls_the_evaluate_override_at_start_every_n_steps_and_end(
    objects: TFObjects,
) -> None:
    """LiveEvaluatorHook overrides ``_evaluate``: TF must call it on its schedule."""
    assert objects.evaluate_calls == 4, (
        f"InMemoryEvaluatorHook(every_n_iter=1) called self._evaluate "
        f"{objects.evaluate_calls} times over 2 steps in TensorFlow {tf().__version__}, not 4 "
        f"(session created, each step, end()): LiveEvaluatorHook's override misses evaluations"
    )


def _tf_subclasses() -> list[type]:
    """nbhooks' hook classes that subclass a TensorFlow class."""
    import nbhooks.hooks

    found = []
    for info in pkgutil.iter_modules(nbhooks.hooks.__path__):
        module = importlib.import_module(f"nbhooks.hooks.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == module.__name__
                and any(_is_tf(base) for base in value.__mro__[1:])
            ):
                found.append(value)
    return found


def _is_tf(cls: type) -> bool:
    return cls.__module__.startswith(("tensorflow.", "tensorflow_estimator."))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


#: Real TF instances (after training), whose private instance attributes a subclass inherits.
INSTANCES: dict[str, Callable[[TFObjects], Any]] = {
    "InMemoryEvaluatorHook": lambda o: o.eval_hook,
    "FinalOpsHook": lambda o: o.final_ops_hook,
    "CheckpointInputPipelineHook": lambda o: o.pipeline_hook,
    "CheckpointSaverHook": lambda o: tfi.saver_hook_of(o.pipeline_hook),
}


@pytest.mark.parametrize("cls", _tf_subclasses(), ids=lambda c: c.__qualname__)
def test_subclasses_reach_tf_private_state_only_through_the_adapter(
    objects: TFObjects, cls: type
) -> None:
    """``self._x`` in an nbhooks subclass must not be TF's ``_x`` (ruff cannot see it)."""
    theirs: set[str] = set()
    for base in filter(_is_tf, cls.__mro__):
        theirs |= {n for n in vars(base) if _private(n)}
        if base.__name__ in INSTANCES:
            theirs |= {n for n in vars(INSTANCES[base.__name__](objects)) if _private(n)}
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and _private(node.attr)
    }
    overrides = {
        f.name for f in tree.body[0].body if isinstance(f, ast.FunctionDef) and _private(f.name)
    }
    listed = {row.name for row in tfi.CONTRACT}
    used -= overrides  # self._evaluate() calls the subclass's own override
    assert not used & theirs, (
        f"{cls.__qualname__} uses TensorFlow's private {sorted(used & theirs)} on self: "
        f"add a named function (and a CONTRACT row) to nbhooks._tf_internals and call it"
    )
    assert not (overrides & theirs) - listed, (
        f"{cls.__qualname__} overrides TensorFlow's private {sorted((overrides & theirs) - listed)}"
        f" without a CONTRACT row in nbhooks._tf_internals"
    )


def test_pipeline_iterators_are_the_ones_tfs_pipeline_hook_saves() -> None:
    """``pipeline_iterators`` reads the collection TF's CheckpointInputPipelineHook saves."""
    t = tf()
    with t.Graph().as_default() as graph:
        dataset = t.data.Dataset.range(3)
        iterator = t.compat.v1.data.make_initializable_iterator(dataset)
        found = tfi.pipeline_iterators(graph)
        assert len(found) == 1 and found[0] is iterator._iterator_resource
        session = t.compat.v1.Session(graph=graph)
        assert tfi.session_closed(session) is False
        session.close()
        assert tfi.session_closed(session) is True
    with t.Graph().as_default() as graph:
        t.constant(1.0)
        assert tfi.pipeline_iterators(graph) == []


def test_the_global_step_read_is_the_tensor_tfs_own_hooks_fetch(tmp_path) -> None:
    """``global_step_read`` (what nbhooks' hooks fetch) is the very tensor TF's step and saver
    hooks fetch, so the session runs it with their executor; None without a global step."""
    t = tf()
    with t.Graph().as_default():
        assert tfi.global_step_read() is None
        t.compat.v1.train.get_or_create_global_step()
        read = tfi.global_step_read()
        stop = t.compat.v1.train.StopAtStepHook(last_step=3)
        saver = t.compat.v1.train.CheckpointSaverHook(str(tmp_path), save_steps=1)
        t.Variable(1.0)
        for hook in (stop, saver):
            hook.begin()
        assert tfi.global_step_tensor(stop) is read
        assert tfi.global_step_tensor(saver) is read
        assert tfi.global_step_read() is read  # made once
        with t.compat.v1.Session() as session:
            session.run(t.compat.v1.global_variables_initializer())
            assert session.run(read) == 0
    tfi.release_summary_writers(str(tmp_path))  # the saver hook's writer and its thread


def test_a_whole_index_is_told_from_one_a_killed_save_cut_short(tmp_path) -> None:
    """``whole_index`` reads the end of the LevelDB-format table TensorFlow writes as a
    checkpoint's ``.index`` (in place, last): a saved one is whole, every cut of it is not."""
    t = tf()
    with t.Graph().as_default():
        t.compat.v1.Variable([1.0, 2.0], name="v")
        with t.compat.v1.Session() as session:
            session.run(t.compat.v1.global_variables_initializer())
            prefix = t.compat.v1.train.Saver().save(session, str(tmp_path / "input.ckpt-1"))
    index = Path(prefix + ".index")
    content = index.read_bytes()
    assert whole_index(index) and whole_index(str(index), t.io.gfile.GFile)
    cut = tmp_path / "cut.index"
    for size in range(len(content)):
        cut.write_bytes(content[:size])
        assert not whole_index(cut), size
    assert not whole_index(tmp_path / "missing.index") and not whole_index(tmp_path)


def test_gated_saves_keep_tfs_timer_so_saves_turned_on_land_on_its_steps(tmp_path) -> None:
    """``gate_saves``: TF's CheckpointSaverHook saves through ``_save`` in after_create_session,
    after_run and end; gated off, no file is written but the timer moves as if it saved."""
    t = tf()
    v1 = t.compat.v1
    allowed = [False]
    with t.Graph().as_default():
        step = v1.train.get_or_create_global_step()
        train_op = v1.assign_add(step, 1)
        hook = t.estimator.CheckpointSaverHook(str(tmp_path), save_steps=2)
        tfi.gate_saves(hook, lambda: allowed[0])
        with v1.train.SingularMonitoredSession(hooks=[hook]) as session:
            for _ in range(5):
                session.run(train_op)
            assert not list(tmp_path.glob("model.ckpt-*.index"))
            assert hook._timer.last_triggered_step() == 4
            allowed[0] = True
            for _ in range(3):  # steps 6, 7, 8: saves at 6 and 8, on TF's schedule
                session.run(train_op)
    saved = sorted(int(p.name.split("-")[1].split(".")[0]) for p in tmp_path.glob("*.index"))
    assert saved == [6, 8]


def test_next_save_time_is_when_tfs_timer_lets_a_seconds_schedule_save(tmp_path) -> None:
    """``next_save_time``: on a schedule of seconds, TF's CheckpointSaverHook cannot save
    before N seconds after its last save (its timer says so, step after step, until then);
    on a schedule of steps, or before its first save, any step may be due (0)."""
    t = tf()
    v1 = t.compat.v1
    with t.Graph().as_default():
        step = v1.train.get_or_create_global_step()
        train_op = v1.assign_add(step, 1)
        by_secs = t.estimator.CheckpointSaverHook(str(tmp_path / "s"), save_secs=600)
        by_steps = t.estimator.CheckpointSaverHook(str(tmp_path / "n"), save_steps=2)
        assert tfi.next_save_time(by_secs) == 0.0 == tfi.next_save_time(by_steps)
        with v1.train.SingularMonitoredSession(hooks=[by_secs, by_steps]) as session:
            saved = time.time()  # each hook saved step 0 in after_create_session
            for _ in range(3):
                session.run(train_op)
            due = tfi.next_save_time(by_secs)
            assert saved - 5 < due - 600 <= time.time()
            timer = by_secs._timer
            for ago, due_now in ((599.0, False), (600.001, True)):  # the timer agrees
                timer._last_triggered_time = time.time() - ago
                assert (tfi.next_save_time(by_secs) <= time.time()) is due_now
                assert timer.should_trigger_for_step(3) is due_now
            assert tfi.next_save_time(by_steps) == 0.0
