"""The size of an input checkpoint, estimated from the graph before any save is paid."""

from __future__ import annotations

from typing import Any

import models
import numpy as np
import pytest

from nbhooks._tf import tf
from nbhooks.hooks.input_buffers import ShuffleBuffer, endless, shuffle_buffers
from nbhooks.hooks.pipeline import PipelineCheckpointHook


def buffers_of(make_dataset: Any) -> list[ShuffleBuffer] | None:
    t = tf()
    with t.Graph().as_default() as graph:
        t.compat.v1.data.make_initializable_iterator(make_dataset())
    return shuffle_buffers(graph)


def rows(n: int, width: int) -> Any:
    x = np.random.default_rng(0).normal(size=(n, width)).astype("float32")
    return {"x": x}, np.arange(n, dtype="int32")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        # a buffer larger than the data holds all of it
        (lambda: tf().data.Dataset.from_tensor_slices(rows(300, 8)).shuffle(10_000), (300, 36, 2)),
        (lambda: tf().data.Dataset.range(100).take(10).shuffle(50).repeat(), (10, 8, 1)),
        # map and batch after the shuffle do not change what it holds
        (
            lambda: tf().data.Dataset.range(1000).shuffle(64).map(lambda i: i * 2).batch(4),
            (64, 8, 1),
        ),
        # an infinite input before the shuffle: the buffer is full
        (lambda: tf().data.Dataset.range(5).repeat().shuffle(40), (40, 8, 1)),
    ],
)
def test_each_shuffle_is_sized_from_the_graph(make, expected):
    (found,) = buffers_of(make)
    assert (found.elements, found.element_bytes, found.components) == expected


def test_sizes_the_graph_leaves_open_make_the_estimate_unknown():
    t = tf()
    assert buffers_of(lambda: t.data.Dataset.from_tensor_slices(["a", "b"]).shuffle(9)) is None
    assert buffers_of(lambda: t.data.Dataset.range(9).batch(2).shuffle(9)) is None  # [None]
    assert buffers_of(lambda: t.data.Dataset.range(9).batch(2)) == []  # nothing buffered


@pytest.mark.parametrize(("n", "width"), [(3000, 4), (1500, 64)])
def test_the_estimate_is_within_10_percent_of_what_a_save_writes(model_dir, n, width):
    t = tf()

    def input_fn():
        ds = t.data.Dataset.from_tensor_slices(rows(n, width))
        return ds.shuffle(n, seed=0).map(lambda f, y: ({"x": f["x"][:4]}, y % 2)).repeat()

    est = models.make_estimator(model_dir, save_checkpoints_steps=3)
    hook = PipelineCheckpointHook(est)
    estimates: list[int] = []

    class Estimate(t.estimator.SessionRunHook):
        def begin(self) -> None:
            found = shuffle_buffers(t.compat.v1.get_default_graph())
            estimates.append(sum(b.bytes for b in found or ()))

    est.train(lambda: input_fn().batch(8), hooks=[Estimate(), hook], steps=3)
    written = int(hook.checkpoints.size_bytes.iloc[-1])
    assert estimates[0] == pytest.approx(written, rel=0.10)


def test_an_input_that_repeats_forever_is_told_from_one_that_ends():
    t = tf()

    def endless_of(make):
        with t.Graph().as_default() as graph:
            t.compat.v1.data.make_initializable_iterator(make())
        return endless(graph)

    assert endless_of(lambda: t.data.Dataset.range(9).shuffle(4).repeat().batch(2).prefetch(1))
    assert endless_of(lambda: t.data.Dataset.range(9).repeat(-1).map(lambda i: i + 1))
    assert not endless_of(lambda: t.data.Dataset.range(9).repeat(3).batch(2))
    assert not endless_of(lambda: t.data.Dataset.range(9).repeat().take(5))
    assert not endless_of(lambda: t.data.Dataset.range(9).batch(2))
