"""The final-ops table in a real kernel: execute a notebook with nbclient, read its widget state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.kernel]

NOTEBOOK = Path(__file__).parent / "notebooks" / "final_ops_table.ipynb"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    work = tmp_path_factory.mktemp("final_ops_kernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        store_widget_state=True,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NBH_WORK_DIR", str(work))
        patch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
        client.execute()
    return nb


def widget_states(nb) -> dict[str, dict]:
    return {k: v["state"] for k, v in nb.metadata["widgets"][WIDGET_STATE]["state"].items()}


def test_the_displayed_widget_is_the_final_ops_table(executed):
    states = widget_states(executed)
    shown = [
        o["data"][WIDGET_VIEW]["model_id"]
        for cell in executed.cells
        for o in cell.get("outputs", [])
        if WIDGET_VIEW in o.get("data", {})
    ]
    assert len(shown) == 1 and "nbh-final-ops" in states[shown[0]]["_dom_classes"]


def test_saved_state_has_the_escaped_name_values_and_the_failed_run(executed):
    tables = [
        s["value"]
        for s in widget_states(executed).values()
        if "nbh-final-ops-table" in str(s.get("value", ""))
    ]
    assert len(tables) == 1
    html = tables[0]
    assert "<img" not in html and ESCAPED in html
    assert re.search(rf"<td>{re.escape(ESCAPED)}</td>\s*<td>int64</td>\s*<td>scalar</td>", html)
    assert re.search(r"<td>accuracy</td>\s*<td>float32</td>\s*<td>scalar</td>\s*<td>0\.\d+", html)
    failed = re.findall(r'<tr class="nbh-failed">(.*?)</tr>', html, flags=re.S)
    assert len(failed) == 1 and "planned failure" in failed[0]


def test_the_printed_frame_has_every_session(executed):
    text = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    rows = [line.split() for line in text.strip().splitlines()[1:]]
    assert [(r[1], r[2], r[-1]) for r in rows] == [
        ("1", "train", "ok"),
        ("1", "train", "ok"),
        ("2", "eval", "ok"),
        ("3", "train", "failed"),
    ]
    assert "training failed as planned" in "".join(
        o.get("text", "") for o in executed.cells[-2].outputs
    )
