"""The embedded demo behind ``nbhooks demo``, and its data and model for notebooks and benches.

    from nbhooks.demo import digits_input_fns, make_demo_estimator

Modules, in the order ``nbhooks demo`` uses them (:mod:`nbhooks.cli` parses the arguments):

* :mod:`~nbhooks.demo.digits` -- scikit-learn's digits and a small dense Estimator (the names
  re-exported here; TensorFlow is imported only when a model or input_fn is made).
* :mod:`~nbhooks.demo.notebooks` -- copies the bundled notebooks into the working directory.
* :mod:`~nbhooks.demo.servers` -- JupyterLab, Notebook 7 or Voila as a child process on
  127.0.0.1 with a token (passed by environment, never on a command line), and its stop.
* :mod:`~nbhooks.demo.report` -- ``--headless``: train in the console, write an HTML report.
"""

from __future__ import annotations

from nbhooks.demo.digits import (
    EVAL_FRACTION,
    N_CLASSES,
    N_FEATURES,
    SPLIT_SEED,
    InputFn,
    demo_model_fn,
    digits_input_fns,
    digits_split,
    make_demo_estimator,
)

__all__ = [
    "EVAL_FRACTION",
    "N_CLASSES",
    "N_FEATURES",
    "SPLIT_SEED",
    "InputFn",
    "demo_model_fn",
    "digits_input_fns",
    "digits_split",
    "make_demo_estimator",
]
