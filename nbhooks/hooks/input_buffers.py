"""What the training graph says of its ``tf.data`` input before it runs: what a checkpoint of
its position weighs, and whether it ever ends.

A ``tf.data`` position is small, except for the elements a ``shuffle()`` holds: they are saved
with it (the usual reason an input checkpoint weighs megabytes and pauses training for tenths
of a second). :func:`shuffle_buffers` finds the shuffles upstream of the graph's iterators and
sizes each from the graph alone (its ``buffer_size`` constant, its element types and shapes,
and the input's row count where the graph fixes it), so a default can be chosen before any
save is paid. Elements of unknown size (strings, unknown shapes) make the estimate unknown.
:func:`endless` tells an input that repeats forever, whose end nobody needs to look for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nbhooks._tf import tf
from nbhooks.hooks._graph import upstream_ops

_SHUFFLES = frozenset(
    {
        "ShuffleDataset",
        "ShuffleDatasetV2",
        "ShuffleDatasetV3",
        "ShuffleAndRepeatDataset",
        "ShuffleAndRepeatDatasetV2",
    }
)
#: Datasets that yield what their first input yields, changed element by element or in
#: batches: at most as many elements as it, and endless when it is.
_FOLLOW_INPUT = frozenset(
    {
        "MapDataset",
        "ParallelMapDataset",
        "ParallelMapDatasetV2",
        "FilterDataset",
        "PrefetchDataset",
        "CacheDataset",
        "CacheDatasetV2",
        "OptionsDataset",
        "ModelDataset",
        "MaxIntraOpParallelismDataset",
        "PrivateThreadPoolDataset",
        "BatchDataset",
        "BatchDatasetV2",
        "PaddedBatchDataset",
        "PaddedBatchDatasetV2",
        "SkipDataset",
        "ShuffleDataset",
        "ShuffleDatasetV2",
        "ShuffleDatasetV3",
    }
)
#: Datasets that yield at most as many elements as their first input.
_AT_MOST_INPUT = _FOLLOW_INPUT | {"TakeDataset", "IgnoreErrorsDataset", "AssertCardinalityDataset"}


#: What TF 2.15 writes per buffered element beside its values (its keys and tensor headers),
#: measured in an Estimator's input checkpoints: 248-250 bytes for a (features, label)
#: element; ~15 bytes per component (keys name the iterator's path: shorter outside one).
_PER_ELEMENT, _PER_COMPONENT = 218, 15


@dataclass(frozen=True)
class ShuffleBuffer:
    """One ``shuffle()``: the elements it holds when full and the size of one element."""

    elements: int
    element_bytes: int  #: the values of one element
    components: int  #: tensors per element

    @property
    def bytes(self) -> int:
        """About what a checkpoint writes for this buffer when full."""
        per_element = self.element_bytes + _PER_ELEMENT + _PER_COMPONENT * self.components
        return self.elements * per_element


def shuffle_buffers(graph: Any) -> list[ShuffleBuffer] | None:
    """The shuffle buffers of the datasets ``graph``'s iterators read (``MakeIterator``).

    None when one cannot be sized from the graph (its buffer_size is computed, or its
    elements hold strings or shapes the graph leaves open).
    """
    variant = tf().variant
    buffers = []
    datasets = upstream_ops(
        iterator_datasets(graph), follow=lambda t: t.dtype == variant, control=False
    )
    for op in datasets:
        if op.type in _SHUFFLES:
            buffer = _buffer(op)
            if buffer is None:
                return None
            buffers.append(buffer)
    return buffers


def _buffer(shuffle: Any) -> ShuffleBuffer | None:
    size = tf().get_static_value(shuffle.inputs[1])
    element = _element_bytes(shuffle)
    if size is None or int(size) <= 0 or element is None:
        return None
    rows = _rows(shuffle.inputs[0].op)
    elements = int(size) if rows is None else min(int(size), rows)
    return ShuffleBuffer(elements, element, len(shuffle.get_attr("output_types")))


def _element_bytes(dataset: Any) -> int | None:
    t = tf()
    total = 0
    for dtype, shape in zip(
        dataset.get_attr("output_types"), dataset.get_attr("output_shapes"), strict=True
    ):
        dims = t.TensorShape(shape)
        if dtype in (t.string, t.variant, t.resource) or not dims.is_fully_defined():
            return None
        total += t.as_dtype(dtype).size * math.prod(dims.as_list())
    return total


def _rows(dataset: Any) -> int | None:
    """At most how many elements ``dataset`` yields, where its graph fixes that; else None."""
    t = tf()
    if dataset.type == "TensorSliceDataset":
        first = dataset.inputs[0].shape
        return first[0] if first.rank and first[0] is not None else None
    if dataset.type == "TensorDataset":
        return 1
    if dataset.type == "RangeDataset":
        bounds = [t.get_static_value(x) for x in dataset.inputs[:3]]
        return None if any(b is None for b in bounds) else len(range(*map(int, bounds)))
    if dataset.type in _AT_MOST_INPUT:
        rows = _rows(dataset.inputs[0].op)
        if dataset.type == "TakeDataset":
            count = t.get_static_value(dataset.inputs[1])
            if count is not None and int(count) >= 0:
                return int(count) if rows is None else min(int(count), rows)
        return rows
    return None


#: Repeating datasets and the input that holds their count.
_REPEAT_COUNT = {"RepeatDataset": 1, "ShuffleAndRepeatDataset": 4, "ShuffleAndRepeatDatasetV2": 4}


def endless(graph: Any) -> bool:
    """True when every iterator of ``graph`` reads an input that repeats forever (``repeat()``
    with no count, followed only by datasets that go on as long as their input)."""
    datasets = iterator_datasets(graph)
    return bool(datasets) and all(_repeats_forever(d) for d in datasets)


def iterator_datasets(graph: Any) -> list[Any]:
    """The dataset ops ``graph``'s iterators are made from (the inputs of ``MakeIterator``)."""
    return [op.inputs[0].op for op in graph.get_operations() if op.type == "MakeIterator"]


def _repeats_forever(dataset: Any) -> bool:
    while dataset.type in _FOLLOW_INPUT:
        dataset = dataset.inputs[0].op
    count_input = _REPEAT_COUNT.get(dataset.type)
    if count_input is None:
        return False
    count = tf().get_static_value(dataset.inputs[count_input])
    return count is not None and int(count) < 0
