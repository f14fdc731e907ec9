"""Training and evaluation read their tf.data input synchronously: the same batches, the same
model, and no thread waiting on a pool its own input needs."""

from __future__ import annotations

from typing import Any

import models
import numpy as np
import pytest

import nbhooks as nh
from nbhooks._tf import tf


class InputReads(tf().estimator.SessionRunHook):
    """Records which read ops feed the graph (once every hook's ``begin()`` has run)."""

    fed: list[str] | None = None

    def after_create_session(self, session: Any, coord: Any) -> None:
        self.fed = sorted(
            op.type
            for op in session.graph.get_operations()
            if op.type.startswith("IteratorGetNext") and any(o.consumers() for o in op.outputs)
        )


def train_in_a_run(estimator: Any, input_fn: Any, steps: int | None, hooks: list[Any]) -> None:
    run = nh.TrainingRun(estimator, input_fn, steps=steps, hooks=hooks, report=None)
    run.start()
    try:
        assert run.wait(timeout=120) == "finished"
    finally:
        run.close()


@pytest.mark.parametrize("synchronous", [True, False])
def test_training_reads_its_input_synchronously_and_learns_the_same(
    tmp_path, monkeypatch, synchronous
) -> None:
    """Before: each step's batch went to a tf.data thread and back (~8 % of a demo step)."""
    monkeypatch.setattr(nh.TrainingRun, "read_input_synchronously", synchronous)
    data = models.input_fn(n=256, batch=16, shuffle=True)
    bare, bare_reads = models.make_estimator(tmp_path / "bare", tf_random_seed=3), InputReads()
    bare.train(data, steps=40, hooks=[bare_reads])
    est, reads = models.make_estimator(tmp_path / "run", tf_random_seed=3), InputReads()
    train_in_a_run(est, data, 40, [reads])
    assert bare_reads.fed == ["IteratorGetNext"]
    assert reads.fed == (["IteratorGetNextSync"] if synchronous else ["IteratorGetNext"])
    assert est.get_variable_names() == bare.get_variable_names()
    for name in bare.get_variable_names():
        assert np.array_equal(est.get_variable_value(name), bare.get_variable_value(name)), name


def busy_input_fn(repeat: bool) -> Any:
    """An input whose elements need tf.data's function threads: graph ops, a py_function and a
    parallel map, prefetched."""

    def fn() -> Any:
        t = tf()
        x, y = models.make_data(256)

        def double(v: Any) -> Any:
            doubled = t.py_function(lambda a: a.numpy() * 2.0, [v], t.float32)
            return t.ensure_shape(doubled, v.shape)

        ds = t.data.Dataset.from_tensor_slices((x, y))
        ds = ds.map(lambda v, label: (t.linalg.matvec(t.eye(models.N_FEATURES), v), label))
        ds = ds.map(lambda v, label: (double(v), label))
        ds = ds.map(lambda v, label: ({"x": v / 2.0}, label), num_parallel_calls=2)
        ds = ds.repeat() if repeat else ds
        return ds.batch(16).prefetch(2)

    return fn


def test_a_single_inter_op_thread_and_a_busy_input_still_train_and_evaluate(tmp_path) -> None:
    """``IteratorGetNextSync``'s caveat: a read that blocks the only thread of a pool its
    input's functions would need. tf.data runs them on threads of its own: training and a
    synchronous evaluation on a one-thread session pool finish, with the same numbers as
    ``estimator.evaluate()``."""
    config = tf().compat.v1.ConfigProto(
        use_per_session_threads=True, inter_op_parallelism_threads=1
    )
    est = models.make_estimator(tmp_path, session_config=config)
    evaluator = nh.LiveEvaluatorHook(est, busy_input_fn(False), every_n_iter=10, asynchronous=False)
    reads = InputReads()
    train_in_a_run(est, busy_input_fn(True), 30, [evaluator, reads])
    assert reads.fed == ["IteratorGetNextSync"]
    latest = evaluator.store.latest()["eval"]
    expected = est.evaluate(busy_input_fn(False))
    assert latest.step == expected["global_step"] == 30
    for metric, value in latest.metrics.items():
        assert value == pytest.approx(float(expected[metric]), rel=1e-6, abs=1e-7), metric
    evaluator.close()


def test_a_run_still_finds_its_one_input_read(tmp_path) -> None:
    """The read a run replaced stays in the graph, without consumers: the pipeline hook still
    finds one read (to mark the position at the end of a finite input, to catch up with the
    model after a crash). Before: two reads, none taken, the end not marked."""
    est = models.make_estimator(tmp_path, save_checkpoints_steps=4)
    hook = nh.PipelineCheckpointHook(est)
    train_in_a_run(est, models.input_fn(n=40, batch=4, repeat=False), None, [hook])
    latest = hook.store.latest()
    assert latest is not None and latest.step == 10 and hook.store.ended(latest)
