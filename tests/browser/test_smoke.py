"""The harness proves itself on a tiny widgets notebook: a kernel run, JupyterLab and Voila."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import harness
import pytest
from playwright.sync_api import expect

SMOKE = "smoke_widgets.ipynb"
N_POINTS = 40  # as in the notebook

pytestmark = pytest.mark.slow


@pytest.mark.kernel
def test_smoke_notebook_runs_in_a_kernel_and_saves_widget_state(notebooks_dir: Path) -> None:
    nb = harness.run_notebook(notebooks_dir / SMOKE, timeout=120)
    state = harness.widget_state(nb)
    button = harness.find_model(state, "ButtonModel", "nbh-smoke")
    label = harness.find_model(state, "LabelModel", "nbh-smoke-label")
    assert button["state"]["description"] == "Click me"
    assert label["state"]["value"] == "not clicked"
    assert not harness.find_models(state, "ButtonModel", "no-such-class")


def click_then_see_the_stream(page: Any, name: str) -> list[int]:
    """Click -> the label changes (kernel round trip); the click starts the background thread,
    whose updates must reach the plot. Returns the plot's point counts."""
    label = page.locator(".nbh-smoke-label")
    expect(label).to_have_text("not clicked")
    expect(page.locator(".nbh-smoke-status")).to_have_text("waiting")
    harness.click_widget_button(page, "nbh-smoke")
    expect(label).to_have_text("clicked 1", timeout=10_000)
    counts = harness.wait_plot_points(page, N_POINTS, timeout=90)
    expect(page.locator(".nbh-smoke-status")).to_have_text("done")
    bar = ".nbh-smoke-progress .progress-bar"
    harness.poll(lambda: harness.progress_width(page, bar) == 100, 10, "a full progress bar")
    harness.snap(page.locator(".nbh-smoke-plot").first, f"smoke-{name}-plot")
    return counts


@pytest.mark.browser
def test_smoke_in_jupyterlab(notebooks_dir: Path, page: Any) -> None:
    with harness.jupyter_lab(notebooks_dir) as lab:
        harness.open_lab_notebook(page, lab, SMOKE)
        harness.run_all(page)
        harness.wait_for_class(page, "nbh-smoke")
        harness.wait_cells_done(page)
        counts = click_then_see_the_stream(page, "lab")
    assert counts == [N_POINTS]
    assert not page.console_errors, page.console_errors


@pytest.mark.browser
def test_smoke_in_voila(notebooks_dir: Path, page: Any) -> None:
    with harness.voila_server(notebooks_dir / SMOKE) as voila:
        page.goto(voila.url("/"))
        harness.wait_for_class(page, "nbh-smoke", timeout=90)
        counts = click_then_see_the_stream(page, "voila")
    assert counts == [N_POINTS]
    assert not page.console_errors, page.console_errors
