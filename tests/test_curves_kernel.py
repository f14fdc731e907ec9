"""The live curves in a real kernel: execute a notebook with nbclient, read its saved widget state.

The figure is displayed before any evaluation exists, so every point can reach the saved state
only through the view's updates: this is what a late page (Voila, a reloaded tab) gets.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from harness import WIDGET_STATE_MIME, find_model, run_notebook

pytestmark = [pytest.mark.slow, pytest.mark.kernel]

NOTEBOOK = Path(__file__).parent / "notebooks" / "curves_live.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> tuple[Any, Path]:
    pytest.importorskip("nbclient")
    work = tmp_path_factory.mktemp("curves_kernel")
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NBHOOKS_TESTS_DIR", str(Path(__file__).parent))
        nb = run_notebook(work / NOTEBOOK.name, timeout=400)
    return nb, work


def result(nb: Any) -> dict[str, Any]:
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    line = next(x for x in text.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def saved_figure_data(model: dict[str, Any]) -> list[dict[str, Any]]:
    """``_widget_data`` of a saved FigureWidget with its binary buffers put back as arrays."""
    data = model["state"]["_widget_data"]
    for buffer in model.get("buffers", []):
        path = buffer["path"]
        if path[0] != "_widget_data":
            continue
        node = data
        for key in path[1:-2]:
            node = node[key]
        spec = node[path[-2]]
        raw = base64.b64decode(buffer["data"])
        node[path[-2]] = np.frombuffer(raw, dtype=spec["dtype"]).tolist()
    return data


def test_training_ran_with_early_stopping(executed) -> None:
    nb, _ = executed
    out = result(nb)
    assert out["state"] == "stopped" and out["reason"].startswith("early stopping: loss (eval)")
    assert "early stopping" in out["status"]  # the reason is shown under the curves
    steps = out["drawn"]["eval/loss"][0]
    assert 50 <= steps[-1] < 600 and steps[:3] == [0, 25, 50]


def test_saved_widget_state_holds_every_drawn_point(executed) -> None:
    nb, _ = executed
    drawn = result(nb)["drawn"]
    assert set(drawn) == {"train/loss", "train/accuracy", "eval/loss", "eval/accuracy"}
    state = nb.metadata["widgets"][WIDGET_STATE_MIME]["state"]
    figure = find_model(state, model_name="AnyModel", css_class="nbh-curves")
    saved = {
        f"{t['legendgroup']}/{t['hovertemplate'].split(':')[0].split()[-1]}": [t["x"], t["y"]]
        for t in saved_figure_data(figure)
        if not t["name"].startswith("best ")
    }
    assert set(saved) == set(drawn)
    for key, (x, y) in drawn.items():
        assert saved[key][0] == x, key
        assert saved[key][1] == pytest.approx(y, rel=1e-6), key
    annotations = [a["text"] for a in figure["state"]["_widget_layout"]["annotations"]]
    assert annotations == ["accuracy", "loss"] or annotations == ["loss", "accuracy"]


def test_saved_readout_and_exports(executed) -> None:
    nb, work = executed
    out = result(nb)
    state = nb.metadata["widgets"][WIDGET_STATE_MIME]["state"]
    readout = find_model(state, model_name="HTMLModel", css_class="nbh-curves-readout")
    last_loss = out["drawn"]["eval/loss"][1][-1]
    assert f"<b>{last_loss:.4g}</b>" in readout["state"]["value"]
    frame = pd.read_csv(work / "history.csv")
    assert len(frame) == out["rows"] and set(frame["evaluation"]) == {"train", "eval"}
    page = (work / "curves.html").read_text()
    assert "<script src=" not in page and "eval loss" in page
