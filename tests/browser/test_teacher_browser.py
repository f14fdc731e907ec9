"""The teacher's hour in Chromium at 1280x800 (a projector): the quickstart as it ships, in
JupyterLab and in Voila; a failure and a misnamed final op.

Each test measures what a class would see (element sizes, overflow, font sizes, what is in
the viewport) with ``page.evaluate`` and keeps screenshots in ``test-artifacts/teacher-*``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import harness
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.slow, pytest.mark.browser]
expect.set_options(timeout=30_000)

REPO_NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
PROJECTOR = {"width": 1280, "height": 800}
DASH = ".nbh-dashboard"
PLOT = f"{DASH} .js-plotly-plot"
PACE = 20  # as in the quickstart

#: For each element of ``selector``: how wide its content is and how wide its box, its
#: computed font size, overflow-x and text.
MEASURE = """els => els.map(e => {
  const s = getComputedStyle(e);
  return {text: e.innerText, scrollWidth: e.scrollWidth, clientWidth: e.clientWidth,
          fontSize: parseFloat(s.fontSize), overflowX: s.overflowX,
          visible: e.getClientRects().length > 0};
})"""


#: An element's box and the box it is seen in: the notebook's scrolling area within the window
#: (JupyterLab's menu and toolbar cover the window's top), or the window itself (Voila).
BOX_IN_VIEW = """e => {
  const r = e.getBoundingClientRect();
  const area = e.closest('.jp-WindowedPanel-outer');
  const a = area ? area.getBoundingClientRect()
                 : {top: 0, left: 0, bottom: innerHeight, right: innerWidth};
  return {box: [r.top, r.left, r.bottom, r.right],
          view: [Math.max(a.top, 0), Math.max(a.left, 0),
                 Math.min(a.bottom, innerHeight), Math.min(a.right, innerWidth)]};
}"""


def wait_entirely_in_view(locator: Any, what: str, timeout: float = 30) -> dict[str, Any]:
    """Poll until the element's whole box lies in the visible part of the page, without
    scrolling to it; return its box (the last box seen is in the error otherwise)."""
    seen: list[dict[str, Any]] = []

    def inside() -> dict[str, Any] | None:
        seen.append(found := locator.evaluate(BOX_IN_VIEW))
        (top, left, bottom, right), (v_top, v_left, v_bottom, v_right) = found["box"], found["view"]
        ok = bottom > top and v_top - 0.5 <= top and bottom <= v_bottom + 0.5
        return found if ok and v_left - 0.5 <= left and right <= v_right + 0.5 else None

    try:
        return harness.poll(inside, timeout, f"{what} entirely in view")
    except TimeoutError as error:
        raise AssertionError(f"{what} not entirely in view: {seen[-1]}") from error


def measure(page: Any, selector: str) -> list[dict[str, Any]]:
    return page.locator(selector).evaluate_all(MEASURE)


def fits(box: dict[str, Any]) -> bool:
    """Nothing cut off: the content fits, or the box scrolls."""
    return box["scrollWidth"] <= box["clientWidth"] + 1 or box["overflowX"] in ("auto", "scroll")


def shown_step(page: Any) -> int:
    text = page.locator(f"{DASH} .nbh-progress-line").first.inner_text()
    match = re.search(r"step ([\d,]+)", text)
    return int(match.group(1).replace(",", "")) if match else -1


def shown_rate(page: Any) -> float:
    text = page.locator(f"{DASH} .nbh-progress-line").first.inner_text()
    match = re.search(r"([\d.]+) steps/s", text)
    return float(match.group(1)) if match else -1.0


def wait_step_beyond(page: Any, step: int, timeout: float = 90) -> int:
    return harness.poll(lambda: (s := shown_step(page)) > step and s, timeout, f"step > {step}")


def evaluated_step(root: Any) -> int:
    """The latest evaluated step in the curves' readout under ``root`` (-1 before any)."""
    readout = root.locator(".nbh-curves-readout").first
    steps = re.findall(r"@\s*([\d,]+)", readout.inner_text()) if readout.count() else []
    return max((int(s.replace(",", "")) for s in steps), default=-1)


def wait_evaluated(root: Any, step: int, timeout: float = 120) -> int:
    return harness.poll(
        lambda: (s := evaluated_step(root)) >= step and s, timeout, f"an evaluation at {step}+"
    )


def open_tab(page: Any, title: str) -> None:
    page.locator(f"{DASH} .lm-TabBar-tab", has_text=title).first.click()


def check_projector_sizes(page: Any, name: str) -> None:
    """Readouts of 13 px or more; the curves' readout, the final-ops table and the pipeline
    buttons are never cut off at 1280x800."""
    for selector in (
        ".nbh-progress-line",
        ".nbh-state",
        ".nbh-curves-readout td",
        ".nbh-curves-readout small",
        ".nbh-title",
    ):
        sizes = [m["fontSize"] for m in measure(page, f"{DASH} {selector}") if m["visible"]]
        assert sizes and min(sizes) >= 13, (selector, sizes)
    readout = measure(page, f"{DASH} .nbh-curves-readout")[0]
    assert fits(readout), readout
    assert "best" in readout["text"] and "@" in readout["text"]

    open_tab(page, "Final ops")
    expect(page.locator(f"{DASH} .nbh-final-ops-table").first).to_be_visible()
    box = measure(page, f"{DASH} .nbh-final-ops-scroll")[0]
    assert fits(box), box
    outer = measure(page, f"{DASH} .nbh-final-ops")[0]
    assert outer["scrollWidth"] <= outer["clientWidth"] + 1, outer  # scrolls inside its box
    summary = (
        page.locator(f"{DASH} .nbh-final-ops")
        .get_by_text(re.compile(r"^\d+ values? · "))
        .first.inner_text()
    )
    assert re.fullmatch(r"\d+ values? · \d+ sessions?( · \d+ failed)?", summary), summary
    assert not re.search(r"\b1 sessions\b|\b1 values\b", summary), summary
    harness.snap(page.locator(DASH).first, f"teacher-{name}-final-ops")

    open_tab(page, "Pipeline checkpoints")
    for button in measure(page, f"{DASH} .nbh-pipeline button"):
        assert button["scrollWidth"] <= button["clientWidth"] + 1, button  # no "Rest…"
    expect(page.locator(f"{DASH} button.nbh-restore").first).to_have_text(
        re.compile("Restore selected")
    )
    expect(page.locator(f"{DASH} .nbh-pipeline").first).to_contain_text("not the model's weights")


def save_then_restore_the_save(page: Any, name: str) -> None:
    """A new save is selected at once; "Restore selected" restores it, not a later automatic
    one."""
    open_tab(page, "Pipeline checkpoints")
    harness.click_widget_button(page, "nbh-save")
    status = page.locator(f"{DASH} .nbh-pipeline-status").first
    expect(status).to_contain_text(re.compile(r"(saved|pinned) position of step \d+"))
    saved = int(re.search(r"of step (\d+)", status.inner_text()).group(1))
    # Restore is enabled only with a selection: the new save is selected at once.
    expect(page.locator(f"{DASH} button.nbh-restore").first).to_be_enabled()
    wait_step_beyond(page, saved + 50)  # an automatic save may come in between
    harness.click_widget_button(page, "nbh-restore")
    expect(status).to_contain_text(re.compile(rf"restored position of step {saved}\b"))
    harness.snap(page.locator(DASH).first, f"teacher-{name}-restore")


def quickstart(tmp_path: Path) -> Path:
    shutil.copy(REPO_NOTEBOOKS / "quickstart.ipynb", tmp_path / "quickstart.ipynb")
    return tmp_path / "quickstart.ipynb"


def test_a_class_watches_and_steers_the_quickstart_in_jupyterlab(tmp_path: Path, page: Any):
    quickstart(tmp_path)
    page.set_viewport_size(PROJECTOR)
    with harness.jupyter_lab(tmp_path) as lab:
        harness.open_lab_notebook(page, lab, "quickstart.ipynb")
        harness.run_all(page)
        harness.wait_cells_done(page, timeout=180)
        dash = page.locator(DASH).first
        harness.wait_for_class(page, "nbh-dashboard", timeout=120)

        # 1. Run All scrolls to the last cell, one folded line of help under the dashboard: Start
        # and the whole plot are in view without scrolling, and stay there while the curves
        # grow (the click does not scroll: Start is in view).
        expect(dash.locator(".nbh-state").first).to_contain_text("idle")
        plot = page.locator(PLOT).first
        wait_entirely_in_view(dash.locator("button.nbh-start").first, "Start after Run All")
        wait_entirely_in_view(plot, "the curves after Run All")
        harness.snap(page, "teacher-lab-0-run-all")
        harness.click_widget_button(page, "nbh-start")
        wait_evaluated(dash, 0)  # the readout table appears under the plot
        wait_entirely_in_view(plot, "the curves at the first evaluation")
        wait_evaluated(dash, 150)
        wait_entirely_in_view(plot, "the curves while training", timeout=5)
        expect(dash.locator(".nbh-progress-line").first).to_be_in_viewport()
        harness.poll(lambda: 0 < shown_rate(page) <= PACE * 1.15, 30, "the pace in steps/s")
        assert shown_step(page) < 1000 and dash.locator(".nbh-state").first.inner_text().startswith(
            "running"
        )  # a minute or two of learning left to watch
        harness.snap(page, "teacher-lab-1-training")
        assert "('running'" not in page.locator(".jp-NotebookPanel").first.inner_text()

        # 4. Projector sizes; 5. a save is selected and restored.
        check_projector_sizes(page, "lab")
        save_then_restore_the_save(page, "lab")

        # 6. The curves' status line follows the run: paused, then running again.
        harness.click_widget_button(page, "nbh-pause")
        curves_status = dash.locator(".nbh-curves-status").first
        expect(curves_status).to_contain_text("paused at step")
        harness.click_widget_button(page, "nbh-stop")
        expect(curves_status).to_contain_text("stopped: stopped by request", timeout=60_000)
        harness.click_widget_button(page, "nbh-start")
        expect(dash.locator(".nbh-state").first).to_contain_text("running")
        expect(curves_status).to_have_text("")
        harness.snap(dash, "teacher-lab-2-started-again")
        harness.click_widget_button(page, "nbh-stop")
        expect(dash.locator(".nbh-state").first).to_contain_text("stopped", timeout=60_000)

        # 2. New run: fresh weights in runs/002, empty curves; runs/001 kept.
        expect(dash.locator(".nbh-title").first).to_contain_text("runs/001")
        harness.click_widget_button(page, "nbh-new-run")
        expect(dash.locator(".nbh-title").first).to_contain_text("runs/002")
        expect(dash.locator(".nbh-state").first).to_contain_text("idle")
        harness.click_widget_button(page, "nbh-start")
        expect(page.locator("button.nbh-new-run").first).to_be_disabled()
        first = wait_step_beyond(page, 0)
        assert first < 500, first  # from scratch, not from where runs/001 stopped
        assert 0 <= wait_evaluated(dash, 0) < 500
        harness.snap(dash, "teacher-lab-3-new-run")
        assert (tmp_path / "runs" / "001" / "checkpoint").exists()

        # 10. A reload without saved widget state: `dash` in a new cell brings it back.
        before = evaluated_step(dash)
        page.reload()
        harness.wait_kernel_idle(page, timeout=90)
        for command in ("notebook:insert-cell-below", "notebook:enter-edit-mode"):
            page.evaluate(f"() => window.jupyterapp.commands.execute('{command}')")
        page.keyboard.type("dash")
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-cell')")
        again = page.locator(DASH).first
        again.wait_for(timeout=90_000)
        expect(again.locator(".nbh-title")).to_contain_text("runs/002")
        wait_evaluated(again, before)  # every evaluation so far is back
        harness.snap(again, "teacher-lab-4-dash-again")
        again.locator("button.nbh-stop").click()
        expect(again.locator(".nbh-state")).to_contain_text("stopped", timeout=60_000)
    assert not page.console_errors, page.console_errors


def test_voila_shows_the_dashboard_and_a_fresh_run_on_every_visit(tmp_path: Path, page: Any):
    path = quickstart(tmp_path)
    page.set_viewport_size(PROJECTOR)
    with harness.voila_server(path) as voila:
        for visit, folder in ((1, "runs/001"), (2, "runs/002")):
            page.goto(voila.url("/"), wait_until="commit")  # Voila runs the notebook first
            harness.wait_for_class(page, "nbh-dashboard", timeout=240)
            expect(page.locator(f"{DASH} .nbh-title").first).to_contain_text(folder)
            expect(page.locator(f"{DASH} .nbh-state").first).to_contain_text("idle")
            harness.click_widget_button(page, "nbh-start")
            wait_step_beyond(page, 0, timeout=120)
            wait_evaluated(page, 50)
            wait_entirely_in_view(page.locator(PLOT).first, "the curves in Voila", timeout=10)
            assert shown_step(page) < 1000  # 7/2. a fresh run, not the continuation
            # 7. Nothing left over: no tuple, no empty table, no prose about code.
            body = page.locator("body").inner_text()
            assert "('running'" not in body and "wall_time" not in body
            notes = page.locator(".celltag_notebook-only")  # about the notebook's code
            expect(notes).to_have_count(1)
            expect(notes).to_be_hidden()
            expect(page.locator("table.dataframe:not(.nbh-final-ops-table)")).to_have_count(0)
            # What each part does: folded under the dashboard, one click away.
            help_text = page.get_by_text("Pause / Resume / Stop").first
            expect(help_text).to_be_hidden()
            page.get_by_text("What you see, and what to try").first.click()
            expect(help_text).to_be_visible()
            harness.snap(page, f"teacher-voila-visit-{visit}")
        check_projector_sizes(page, "voila")
    assert not page.console_errors, page.console_errors


def test_a_failure_and_a_misnamed_final_op_show_at_once(tmp_path: Path, page: Any) -> None:
    harness.write_notebook(
        tmp_path / "misnamed.ipynb",
        "import nbhooks as nh\n"
        "from nbhooks.demo import digits_input_fns, make_demo_estimator\n"
        "train_fn, eval_fn, _ = digits_input_fns()\n"
        "dash = nh.Dashboard(make_demo_estimator, train_fn, evals=eval_fn,\n"
        "                    final_ops={'w': 'dnn/hiddenlayer_0/kernel'}, steps=100)\n"
        "dash.train()\n"
        "dash",
    )
    page.set_viewport_size(PROJECTOR)
    with harness.jupyter_lab(tmp_path) as lab:
        harness.open_lab_notebook(page, lab, "misnamed.ipynb")
        harness.run_all(page)
        error = harness.wait_for_class(page, "nbh-error", timeout=120)
        expect(error).to_contain_text("no variable, tensor or op named 'dnn/hiddenlayer_0/kernel'")
        expect(error).to_contain_text("'dense/kernel'")  # the names the model has
        expect(error).to_contain_text("nh.variable_names")
        assert shown_step(page) <= 0  # refused when training started
        toggle = measure(page, f"{DASH} button.nbh-traceback-toggle")[0]
        assert toggle["text"].strip() == "Traceback", toggle
        assert toggle["scrollWidth"] <= toggle["clientWidth"] + 1, toggle  # not "Tr…"
        line = measure(page, f"{DASH} .nbh-error")[0]
        assert line["fontSize"] >= 13 and fits(line), line
        harness.snap(page.locator(DASH).first, "teacher-lab-misnamed-final-op")
