"""``nbhooks demo --headless``: train the demo dashboard in the console, write an HTML report."""

from __future__ import annotations

import shutil
from pathlib import Path

REPORT = "nbhooks-report.html"
DEFAULT_STEPS = 1000


def run_headless(workdir: Path, steps: int = DEFAULT_STEPS, evaluations: int = 10) -> Path:
    """Train the demo dashboard for ``steps`` in the console and write its HTML report.

    Evaluates the training and evaluation sets in memory ``evaluations`` times (and before
    training); returns the report's path, ``workdir/nbhooks-report.html``.
    """
    import nbhooks as nh
    from nbhooks.demo.digits import digits_input_fns, make_demo_estimator

    model_dir = workdir / "headless-model"
    shutil.rmtree(model_dir, ignore_errors=True)
    estimator = make_demo_estimator(model_dir, save_checkpoints_steps=max(steps // 5, 1))
    train_fn, eval_fn, train_eval_fn = digits_input_fns()
    dash = nh.Dashboard(
        estimator,
        train_fn,
        evals={"train": train_eval_fn, "eval": eval_fn},
        every_n_iter=max(steps // evaluations, 1),
        final_ops={"hidden kernel": "dense/kernel", "output bias": "logits/bias"},
        steps=steps,
    )
    dash.run.report_to_console(interval=1.0)
    try:
        dash.train()
        dash.wait()
        return dash.export_html(workdir / REPORT)
    finally:
        dash.close()
