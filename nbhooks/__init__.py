"""nbhooks: watch and steer TensorFlow Estimator training from a notebook.

Importing nbhooks is fast and does not import TensorFlow; each public name is loaded on first use.

    import nbhooks as nh
    dash = nh.Dashboard(estimator, train_input_fn, evals={"eval": eval_fn})
    dash                # controls, progress, live curves, final ops, pipeline checkpoints
    dash.train(steps=2000)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"


class NbhooksWarning(UserWarning):
    """Warnings nbhooks itself raises (a replaced run stopped, a fallback to the console...)."""


_LAZY: dict[str, str] = {
    "TrainingRun": "nbhooks.notebook",  # the run, with its notebook face wired in
    "Dashboard": "nbhooks.dashboard",
    "LiveEvaluatorHook": "nbhooks.hooks.evaluator",
    "EarlyStopping": "nbhooks.hooks.evaluator",
    "FinalOpsTableHook": "nbhooks.hooks.final_ops",
    "PipelineCheckpointHook": "nbhooks.hooks.pipeline",
    "MetricHistory": "nbhooks.stores.metrics",
    "Compare": "nbhooks.compare",
    "knob": "nbhooks.knobs",
    "Monitor": "nbhooks.monitor",
    "ClusterControlHook": "nbhooks.hooks.cluster_control",
    "LocalCluster": "nbhooks.cluster",
    "variable_names": "nbhooks.variables",
}

__all__ = ["NbhooksWarning", "__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from nbhooks.cluster import LocalCluster
    from nbhooks.compare import Compare
    from nbhooks.dashboard import Dashboard
    from nbhooks.hooks.cluster_control import ClusterControlHook
    from nbhooks.hooks.evaluator import EarlyStopping, LiveEvaluatorHook
    from nbhooks.hooks.final_ops import FinalOpsTableHook
    from nbhooks.hooks.pipeline import PipelineCheckpointHook
    from nbhooks.knobs import knob
    from nbhooks.monitor import Monitor
    from nbhooks.run import TrainingRun
    from nbhooks.stores.metrics import MetricHistory
    from nbhooks.variables import variable_names


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbhooks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
