"""What each task process of a LocalCluster runs to test per-task pipeline checkpoints.

Imported by the task processes (cloudpickle sends these by reference): a model fed an
unshuffled stream of ids, and :class:`EachTask`, a hook factory as LocalCluster's ``hooks``
take them (``EachTask(estimator)``, made in each task with that task's Estimator, as
``nh.PipelineCheckpointHook`` is): a :class:`~nbhooks.PipelineCheckpointHook` that prints what
it saves, restores and reads as ``NBH-PIPELINE <json>`` lines in the task's log.
"""

from __future__ import annotations

import json
from typing import Any

import models

from nbhooks._tf import tf
from nbhooks.hooks.pipeline import PipelineCheckpointHook

IDS = "nbh_test_ids"
BATCH = 4
MARK = "NBH-PIPELINE "


def ids_input_fn() -> Any:
    """0, 1, 2, ... in batches of BATCH (no shuffle: the next batch follows the last id)."""
    t = tf()

    def to_features(i: Any) -> Any:
        return {"id": i, "x": t.fill([models.N_FEATURES], t.cast(i % 7, t.float32))}, t.cast(
            i % 2, t.int32
        )

    return t.data.Dataset.range(10**9).map(to_features).batch(BATCH)


def model_fn(features: Any, labels: Any, mode: Any, params: Any) -> Any:
    tf().compat.v1.add_to_collection(IDS, features.pop("id"))
    return models.model_fn(features, labels, mode, params)


def make_estimator(config: Any) -> Any:
    return tf().estimator.Estimator(model_fn, config=config, params={"learning_rate": 0.1})


def reports(log: str) -> list[dict[str, Any]]:
    """The ``NBH-PIPELINE`` lines of a task's log."""
    return [json.loads(line[len(MARK) :]) for line in log.splitlines() if line.startswith(MARK)]


class EachTask(tf().estimator.SessionRunHook):
    """The PipelineCheckpointHook of ``estimator``'s task; reports its events and the ids read.

    Each report: ``{"task", "what", ...}``; "event": a PipelineEvent (with ``last``, the ids of
    the batch read just before it); "first": the ids of the session's first batch.
    """

    def __init__(self, estimator: Any) -> None:
        self.task = f"{estimator.config.task_type}:{estimator.config.task_id}"
        self.hook = PipelineCheckpointHook(estimator)
        self.hook.events.subscribe(self._on_event)

    def begin(self) -> None:
        self.last: list[int] | None = None
        self.first: list[int] | None = None
        self.hook.begin()
        self.ids = tf().compat.v1.get_collection(IDS)[0]

    def _on_event(self, event: Any) -> None:
        self._report(
            what="event",
            action=event.action,
            path=event.path,
            message=event.message,
            last=self.last,
        )

    def _report(self, **data: Any) -> None:
        print(MARK + json.dumps({"task": self.task, **data}), flush=True)

    def after_create_session(self, session: Any, coord: Any) -> None:
        self.hook.after_create_session(session, coord)

    def before_run(self, run_context: Any) -> Any:
        inner = self.hook.before_run(run_context)
        fetches = {"ids": self.ids, "inner": inner.fetches if inner is not None else []}
        return tf().estimator.SessionRunArgs(fetches)

    def after_run(self, run_context: Any, run_values: Any) -> None:
        self.last = [int(i) for i in run_values.results["ids"]]
        if self.first is None:
            self.first = self.last
            self._report(what="first", ids=self.first)
        inner = run_values._replace(results=run_values.results["inner"])
        self.hook.after_run(run_context, inner)

    def end(self, session: Any) -> None:
        self.hook.end(session)
