"""Every bundled notebook runs top to bottom in a real kernel, offline, on a copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from harness import find_models, run_notebook, widget_state

pytestmark = [pytest.mark.slow, pytest.mark.kernel]

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"


def execute(tmp_path: Path, name: str, extra_cells: tuple[str, ...] = ()):
    shutil.copy(NOTEBOOKS / f"{name}.ipynb", tmp_path)
    path = tmp_path / f"{name}.ipynb"
    if extra_cells:
        nb = nbformat.read(path, as_version=4)
        nb.cells += [nbformat.v4.new_code_cell(src) for src in extra_cells]
        nbformat.write(nb, path)
    return run_notebook(path, timeout=600)


def text(cell) -> str:
    parts = [o.get("text", "") for o in cell.outputs if o.output_type == "stream"]
    parts += [o.get("data", {}).get("text/plain", "") for o in cell.outputs]
    return "".join(parts)


def no_errors(nb) -> None:
    """No error output and nothing on stderr in any cell."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", output
            # nothing on stderr: no TensorFlow import noise, no deprecation warnings
            assert output.get("name") != "stderr", output.get("text")


def test_quickstart(tmp_path):
    nb = execute(
        tmp_path,
        "quickstart",
        (
            "dash.pace = None  # no class is watching\ndash.train()",  # the Start button
            "print(dash.wait(timeout=600), dash.run.global_step)",
            "print(sorted(dash.history.evaluation.unique()), len(dash.final_ops))",
        ),
    )
    no_errors(nb)
    assert text(nb.cells[-2]).strip() == "finished 2000"
    assert text(nb.cells[-1]).strip() == "['eval', 'train'] 3"
    state = widget_state(nb)
    assert find_models(state, css_class="nbh-dashboard")
    assert (tmp_path / "runs" / "001" / "checkpoint").exists()  # a fresh run of its own


def test_live_curves_stop_early(tmp_path):
    nb = execute(tmp_path, "live_curves")
    no_errors(nb)
    reason = text(nb.cells[3])
    assert "early stopping: loss (eval) did not improve" in reason or "reached step 4000" in reason
    assert (tmp_path / "live_curves_history.csv").stat().st_size > 0
    assert (tmp_path / "live_curves.html").stat().st_size > 1_000_000  # plotly.js inlined


def test_final_ops(tmp_path):
    nb = execute(tmp_path, "final_ops")
    no_errors(nb)
    table = text(nb.cells[4])
    assert "hidden kernel" in table and "600" in table
    assert "(64, 64)" in text(nb.cells[-1])


def test_pipeline_checkpoints(tmp_path):
    nb = execute(tmp_path, "pipeline_checkpoints")
    no_errors(nb)
    assert "step 200" in text(nb.cells[5]), text(nb.cells[5])
    # the restored position is kept, not caught up with the model's step 300
    assert "resumed pipeline at step 200\n" in text(nb.cells[-1]), text(nb.cells[-1])


def test_classroom(tmp_path):
    nb = execute(tmp_path, "classroom")
    no_errors(nb)
    assert "lr 0.3" in text(nb.cells[-1])
    state = widget_state(nb)
    assert find_models(state, css_class="nbh-compare")
    table = find_models(state, css_class="nbh-compare-step")
    assert [m["state"]["value"] for m in table] == ["1,500"] * 3


def test_experiments(tmp_path):
    nb = execute(tmp_path, "experiments")
    no_errors(nb)
    runs, knob_values = text(nb.cells[-1]).strip().split("] [")
    assert runs == "['lr 0.01', 'lr 0.05', 'lr 0.3'"
    assert knob_values == "0.3, 0.01]"
    branches = text(nb.cells[-2]).split()  # the loss at step 1000 on each branch
    assert branches[:3] == ["branch", "step", "value"] and branches[4:6] == ["0", "1000"]
    assert branches[8:10] == ["1", "1000"] and branches[6] != branches[10]
    state = widget_state(nb)
    slider = find_models(state, css_class="nbh-knob")
    assert [m["model_name"] for m in slider] == ["FloatLogSliderModel"]
    assert slider[0]["state"]["value"] == 0.01
    assert find_models(state, css_class="nbh-compare")


def test_rerunning_the_dashboard_cell_leaves_one_training_thread(tmp_path):
    shutil.copy(Path(__file__).parent / "notebooks" / "rerun_cell.ipynb", tmp_path)
    nb = run_notebook(tmp_path / "rerun_cell.ipynb", timeout=300)
    warning = "".join(o.get("text", "") for o in nb.cells[2].outputs if o.get("name") == "stderr")
    assert "stopping the earlier run that was still training" in warning
    assert text(nb.cells[3]).split() == ["1", "running", "stopped"]


def test_distributed(tmp_path):
    import psutil

    nb = execute(tmp_path, "distributed")
    no_errors(nb)
    assert text(nb.cells[7]).strip() == "stopped"
    tasks = text(nb.cells[8])
    assert "chief:0" in tasks and "evaluator:0" in tasks and "ended" in tasks
    assert "accuracy" in text(nb.cells[9])
    assert text(nb.cells[-1]).startswith("stopped [('chief:0', 0)")
    assert find_models(widget_state(nb), css_class="nbh-monitor")
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if "nbhooks.cluster" in (p.info["cmdline"] or [])
    ]
