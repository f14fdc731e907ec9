"""Every bundled notebook runs top to bottom in a real kernel, offline, on a copy."""

from __future__ import annotations

import json
import re
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


#: A cell added after live_curves: the run's end and the evaluation loss at each step, as JSON.
LIVE_CURVES_FACTS = """import json
loss = dash.history.query("evaluation == 'eval' and metric == 'loss'")
print(json.dumps({"state": dash.run.state, "step": int(dash.run.global_step),
                  "losses": {int(s): float(v) for s, v in zip(loss.step, loss.value)}}))"""


def test_live_curves_stop_early(tmp_path):
    nb = execute(tmp_path, "live_curves", (LIVE_CURVES_FACTS,))
    no_errors(nb)
    # Seeded (tf_random_seed=0, shuffle seed 0): the evaluation loss is best at step 400, the
    # next three evaluations (450, 500, 550) do not beat it by more than min_delta=1e-3, and
    # training stops at step 550 itself (the watched evaluation runs synchronously), long
    # before 4000. The steps are asserted exactly: every decision has a margin over 1e-3 in
    # the loss (at 500: 0.10494, where below 0.10371 was needed), which the float rounding of
    # another machine's thread count is not expected to cross (not measured elsewhere). The
    # losses are compared with the history, not with literals: the same to 6 digits in two
    # runs here, not promised elsewhere.
    reason = text(nb.cells[3]).strip()
    match = re.fullmatch(
        r"early stopping: loss \(eval\) did not improve by more than 0\.001 for 3 "
        r"evaluations; best (\S+) at step 400, now (\S+) at step 550",
        reason,
    )
    assert match, reason
    facts = json.loads(text(nb.cells[-1]))
    assert (facts["state"], facts["step"]) == ("stopped", 550)
    loss = {int(step): value for step, value in facts["losses"].items()}
    assert list(loss) == list(range(0, 551, 50))  # every 50 steps, none after the stop
    assert float(match[1]) == pytest.approx(loss[400], rel=1e-5)  # printed with 6 digits
    assert float(match[2]) == pytest.approx(loss[550], rel=1e-5)
    assert loss[400] == min(loss.values()) and loss[400] < loss[350] - 1e-3
    assert all(loss[step] > loss[400] - 1e-3 for step in (450, 500, 550))
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
    inputs = text(nb.cells[12])  # the pipeline checkpoints of each training task
    assert "chief:0" in inputs and "worker:0" in inputs
    assert text(nb.cells[-1]).startswith("stopped [('chief:0', 0)")
    assert find_models(widget_state(nb), css_class="nbh-monitor")
    assert not [
        p
        for p in psutil.process_iter(["cmdline"])
        if "nbhooks.cluster" in (p.info["cmdline"] or [])
    ]
