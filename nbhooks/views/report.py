"""A dashboard as a standalone HTML page (``Dashboard.export_html``, ``nbhooks demo --headless``).

What a reader of the report wants, in order: how the run ended, the settings it ran with, the
best value of each curve and its step, the curves, the final-op values and the pipeline
checkpoints. Times are local and readable, paths relative to the report; every value is
escaped text. plotly.js is inlined, so the page works offline.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from nbhooks.stores.metrics import guess_mode
from nbhooks.units import size
from nbhooks.views.format import duration, plural, rate

_CSS = """
body {font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em;
  font-size: 15px; color: #222;}
h1 {margin-bottom: .2em;} h2 {margin-top: 1.6em; border-bottom: 1px solid #ddd;}
.outcome {font-size: 17px;} .muted {color: #666;}
table {border-collapse: collapse; margin: .5em 0;}
td, th {border: 1px solid #ccc; padding: 3px 10px; text-align: left;}
td.num {text-align: right; font-variant-numeric: tabular-nums;}
.scroll {overflow-x: auto; max-width: 100%;}
"""


def local_time(seconds: float) -> str:
    """Epoch seconds as local ``YYYY-MM-DD HH:MM:SS``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def relative(path: str | os.PathLike[str], start: Path) -> str:
    """``path`` relative to ``start`` (the report's folder)."""
    try:
        return os.path.relpath(os.path.realpath(path), os.path.realpath(start))
    except ValueError:  # another drive (Windows)
        return os.fspath(path)


def _table(rows: list[dict[str, Any]], numeric: tuple[str, ...] = ()) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if k in numeric else ''}>{html.escape(str(v))}</td>"
            for k, v in row.items()
        )
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def outcome(dash: Any) -> str:
    """``'finished at step 1,000 (reached step 1,000) · 1,000 steps in 0:12 · 83.1 steps/s'``"""
    run = dash.run
    snap = run.meter.snapshot()
    text = f"{run.state} at step {run.global_step:,}"
    if run.reason:
        text += f" ({run.reason})"
    return f"{text} · elapsed {duration(snap.elapsed)} · {rate(snap.steps_per_sec)}"


def settings(dash: Any, start: Path, made: dict[str, Any], pipeline: Any) -> list[dict[str, Any]]:
    """The settings a run was made with (``made``: the dashboard's arguments), as rows."""
    est = dash.estimator
    params = ", ".join(f"{k}={v!r}" for k, v in sorted((est.params or {}).items()))
    model = type(est).__name__.removesuffix("V2") + (f" ({params})" if params else "")
    evals = [h.evaluation for h in dash.evaluators]
    every = made["every_n_iter"]
    batches = made["eval_steps"]
    evaluation = (
        f"{', '.join(evals)}: every {every:,} steps, "
        f"{'until the input ends' if batches is None else plural(batches, 'batch')}"
        if evals
        else "none"
    )
    pace = dash.pace
    ops = made["final_ops"]
    rows = [
        ("model", model),
        ("model_dir", relative(dash.run.model_dir, start)),
        ("steps per Start", f"{made['steps']:,}"),
        ("in-memory evaluations", evaluation),
        ("pace", "no limit" if pace is None else f"at most {pace:g} steps/s"),
        (
            "final ops",
            ", ".join(ops) if isinstance(ops, dict) else ("none" if ops is None else repr(ops)),
        ),
        ("pipeline checkpoints", "on" if pipeline is not None else "off"),
    ]
    return [{"setting": k, "value": v} for k, v in rows]


def best_values(dash: Any) -> list[dict[str, Any]]:
    """Per evaluation and metric: the best value and its step, and the last value."""
    metrics = dash.metrics
    rows = []
    latest = metrics.latest()
    for name in metrics.names:
        for metric in metrics.metrics:
            mode = guess_mode(metric)
            best = metrics.best(metric, mode, evaluation=name)
            last = latest.get(name)
            if best is None or last is None:
                continue
            rows.append(
                {
                    "evaluation": name,
                    "metric": metric,
                    "best": _number(best.value),
                    "at step": f"{best.step:,}",
                    "last": _number(last.metrics.get(metric, float("nan"))),
                    "at the last step": f"{last.step:,}",
                    "better is": "lower" if mode == "min" else "higher",
                }
            )
    return rows


def curves_html(dash: Any) -> str:
    """Every recorded point (not the downsampled curves), plotly.js inlined."""
    import plotly.graph_objects as go

    from nbhooks.views.curves import CurvesView

    view = CurvesView(dash.metrics, max_points=max(dash.max_points, len(dash.metrics.to_frame())))
    try:
        figure = go.Figure(view.figure)
        figure.update_layout(height=max(figure.layout.height or 0, 420))
        return figure.to_html(include_plotlyjs=True, full_html=False)
    finally:
        view.close()


def final_ops_rows(dash: Any) -> list[dict[str, Any]]:
    from nbhooks.views.final_ops import display_frame

    frame = dash.final_ops
    if frame.empty:
        return []
    shown = display_frame(frame)
    shown = shown.loc[:, (shown != "").any(axis=0)]  # columns with something to say
    return [dict(r) for r in shown.to_dict("records")]


def checkpoint_rows(pipeline: Any, start: Path) -> list[dict[str, Any]]:
    frame: pd.DataFrame = pipeline.checkpoints
    return [
        {
            "step": f"{row.step:,}",
            "file": relative(row.path, start),
            "size": size(row.size_bytes),
            "saved at": local_time(row.saved_at.timestamp()),
            "kind": row.kind,
        }
        for row in frame.itertuples()
    ]


def report_html(dash: Any, start: Path, made: dict[str, Any], pipeline: Any) -> str:
    """The whole page; paths are written relative to ``start`` (the report's folder).
    ``made``: the dashboard's arguments; ``pipeline``: its pipeline hook (or None)."""
    parts = [
        "<h1>nbhooks report</h1>",
        f'<p class="outcome">{html.escape(outcome(dash))}</p>',
        f'<p class="muted">written {html.escape(local_time(time.time()))}</p>',
        "<h2>Settings</h2>" + _table(settings(dash, start, made, pipeline)),
    ]
    if dash.evaluators:
        parts.append("<h2>Best values</h2>" + _table(best_values(dash), ("best", "last")))
        parts.append("<h2>Evaluation curves</h2>" + curves_html(dash))
    if dash.final_ops_hook is not None:
        parts.append("<h2>Final-op values</h2>" + _table(final_ops_rows(dash)))
    if pipeline is not None:
        parts.append("<h2>Pipeline checkpoints</h2>" + _table(checkpoint_rows(pipeline, start)))
    body = "\n".join(parts)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>nbhooks report</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )
