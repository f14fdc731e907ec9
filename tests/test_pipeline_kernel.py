"""The checkpoint panel in a real kernel: a notebook clicks Save and Restore (nbclient)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.slow
@pytest.mark.kernel
def test_the_panel_notebook_runs_and_clicks_in_a_real_kernel(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(HERE / "notebooks" / "pipeline_panel.ipynb", as_version=4)
    os.environ["NBH_TESTS"] = str(HERE)  # the kernel inherits it
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    widget_views = [
        o
        for o in nb.cells[0].outputs
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widget_views, "the panel was not displayed"
    text = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert "manual" in text and "8" in text
