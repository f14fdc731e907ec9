"""The run's widgets in a real kernel (nbclient), read back from the saved widget state."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import find_models, run_notebook, widget_state

pytestmark = [pytest.mark.slow, pytest.mark.kernel]

NOTEBOOK = Path(__file__).parent / "notebooks" / "run_panel.ipynb"


@pytest.fixture(scope="module")
def executed():
    return run_notebook(NOTEBOOK, timeout=300)


def outputs_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_start_click_trains_and_the_widgets_show_it(executed):
    assert outputs_text(executed.cells[1]).strip() == "finished 300"
    state = widget_state(executed)
    bars = find_models(state, "IntProgressModel", "nbh-progress")
    finished = [b for b in bars if b["state"]["bar_style"] == "success"]
    assert len(finished) == 1
    assert (finished[0]["state"]["value"], finished[0]["state"]["max"]) == (300, 300)
    start = find_models(state, "ButtonModel", "nbh-start")
    assert start and all(not b["state"]["disabled"] for b in start)


def test_failure_is_red_with_its_message_and_reraised(executed):
    assert "re-raised: broken <input_fn>" in outputs_text(executed.cells[2])
    state = widget_state(executed)
    bars = find_models(state, "IntProgressModel", "nbh-progress")
    assert [b["state"]["bar_style"] for b in bars].count("danger") == 1
    errors = [m["state"]["value"] for m in find_models(state, "HTMLModel", "nbh-error")]
    assert any("ValueError: broken &lt;input_fn&gt;" in v for v in errors)


def test_nothing_printed_from_the_training_thread(executed):
    for cell in executed.cells:
        assert "[nbhooks]" not in outputs_text(cell)
        assert not any(
            o.get("name") == "stderr" and "Traceback" in o.get("text", "") for o in cell.outputs
        )
