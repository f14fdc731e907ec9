"""The quickstart dashboard as users meet it: JupyterLab, Voila and Notebook 7 in Chromium."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import harness
import nbformat
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.slow, pytest.mark.browser]
# Every state change crosses kernel -> training step boundary -> throttled publisher -> page;
# on a loaded 2-core CI machine (Chromium, the server and training together) 5 s is too tight.
expect.set_options(timeout=30_000)

REPO_NOTEBOOKS = Path(__file__).parents[2] / "notebooks"
DASH = ".nbh-dashboard"
PLOT = f"{DASH} .js-plotly-plot"
EVERY_N_ITER = 50  # as in the quickstart


def quickstart_copy(tmp_path: Path, autostart: bool) -> Path:
    """The quickstart, with a long enough run to be steered (started by its dashboard cell,
    unless the test presses Start itself)."""
    path = tmp_path / "quickstart.ipynb"
    shutil.copy(REPO_NOTEBOOKS / "quickstart.ipynb", path)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.source = cell.source.replace("steps=2000,", "steps=100_000,")
        if cell.source.startswith("dash ") and autostart:
            cell.source = "dash.train(steps=100_000)\n" + cell.source
    nbformat.write(nb, path)
    return path


def shown_step(page: Any) -> int:
    text = page.locator(f"{DASH} .nbh-progress-line").first.inner_text()
    match = re.search(r"step ([\d,]+)", text)
    return int(match.group(1).replace(",", "")) if match else -1


def wait_step_beyond(page: Any, step: int, timeout: float = 60) -> int:
    return harness.poll(lambda: (s := shown_step(page)) > step and s, timeout, f"step > {step}")


def step_holds(page: Any, seconds: float = 1.5) -> bool:
    """True when the shown step does not change for ``seconds`` (checked by polling)."""
    held = shown_step(page)
    try:
        harness.poll(lambda: shown_step(page) != held, seconds, "a step change")
    except TimeoutError:
        return True
    return False


def save_notebook(page: Any) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    harness.poll(lambda: page.locator(".jp-mod-current.jp-mod-dirty").count() == 0, 30, "the save")


def open_tab(page: Any, title: str) -> None:
    page.locator(f"{DASH} .lm-TabBar-tab", has_text=title).first.click()


def pipeline_status(page: Any) -> Any:
    return page.locator(f"{DASH} .nbh-pipeline-status").first


def steer(page: Any, name: str) -> None:
    """Progress advances, curves grow, Pause holds, Resume continues, Save and Restore a
    pipeline checkpoint, Stop; the final-ops table appears. Screenshots at each stage."""
    dash = page.locator(DASH).first
    step = wait_step_beyond(page, 0, timeout=120)
    expect(page.locator(DASH)).to_have_count(1)  # dash.train() in a cell shows no second one
    first = harness.wait_plot_points(page, 2, selector=PLOT, timeout=120)
    wait_step_beyond(page, step)
    grown = harness.poll(
        lambda: (c := harness.plot_point_counts(page, PLOT)) and max(c) > max(first) and c,
        60,
        "the curves to grow",
    )
    harness.snap(dash, f"{name}-1-training")

    harness.click_widget_button(page, "nbh-pause")
    expect(page.locator("button.nbh-pause").first).to_have_text(re.compile("Resume"))
    expect(dash.locator(".nbh-state").first).to_contain_text("paused")
    assert step_holds(page), "the step advanced while paused"
    harness.snap(dash, f"{name}-2-paused")
    paused_at = shown_step(page)
    harness.click_widget_button(page, "nbh-pause")
    wait_step_beyond(page, paused_at)

    open_tab(page, "Pipeline checkpoints")
    harness.click_widget_button(page, "nbh-save")
    expect(pipeline_status(page)).to_contain_text(re.compile(r"saved", re.I), timeout=60_000)
    harness.click_widget_button(page, "nbh-restore")
    expect(pipeline_status(page)).to_contain_text(
        re.compile(r"restored position of step \d+"), timeout=60_000
    )
    harness.snap(dash, f"{name}-3-pipeline")

    harness.click_widget_button(page, "nbh-stop")
    expect(dash.locator(".nbh-state").first).to_contain_text("stopped", timeout=60_000)
    expect(page.locator("button.nbh-start").first).to_be_enabled()
    expect(dash.locator(".nbh-curves-status").first).to_have_text("stopped: stopped by request")
    # Evaluations ran at steps 0, 100, 200, ... and once more at the final step: every one of
    # them is a point of each curve (2 evaluations x 2 metrics).
    final = shown_step(page)
    expected = len({*range(0, final + 1, EVERY_N_ITER), final})
    harness.poll(
        lambda: harness.plot_point_counts(page, PLOT)[::2] == [expected] * 4,
        30,
        f"{expected} points per curve",
    )
    open_tab(page, "Final ops")
    expect(dash.locator(".nbh-final-ops").first).to_contain_text("hidden kernel", timeout=30_000)
    harness.snap(dash, f"{name}-4-stopped")
    assert max(grown) >= 3


@contextmanager
def run_in_lab(page: Any, notebook: Path) -> Iterator[None]:
    """JupyterLab serving ``notebook``'s folder, the notebook open in ``page``, Run All."""
    with harness.jupyter_lab(notebook.parent) as lab:
        harness.open_lab_notebook(page, lab, notebook.name)
        harness.run_all(page)
        yield


#: The first lines of the notebooks written here: a demo estimator in a fresh folder.
DEMO_IMPORTS = (
    "import tempfile\nimport nbhooks as nh\nfrom nbhooks.demo import make_demo_estimator\n"
)


def test_quickstart_in_jupyterlab(tmp_path: Path, page: Any) -> None:
    with run_in_lab(page, quickstart_copy(tmp_path, autostart=False)):
        harness.wait_cells_done(page, timeout=180)
        harness.wait_for_class(page, "nbh-dashboard", timeout=60)
        # Before Start, the prepared evaluation's subplots are drawn alike: plotly draws a
        # subplot's frame only with a trace on it (the second was blank, the first had
        # default axes), so each holds its (empty) curves from the start.
        for subplot in ("xy", "x2y2"):
            expect(page.locator(f"{PLOT} .cartesianlayer .subplot.{subplot}").first).to_be_attached(
                timeout=60_000
            )
        harness.snap(page.locator(DASH).first, "lab-0-idle")
        expect(page.locator("button.nbh-pause").first).to_be_disabled()
        harness.click_widget_button(page, "nbh-start")

        # A page that attaches mid-run (a reload) still sees every point drawn so far.
        before = harness.wait_plot_points(page, 3, selector=PLOT, timeout=180)
        save_notebook(page)  # a reload shows the saved outputs, re-attached to live widgets
        page.reload()
        harness.wait_kernel_idle(page, timeout=90)
        after = harness.wait_plot_points(page, max(before), selector=PLOT, timeout=90)
        assert len(after) == len(before) and all(a >= b for a, b in zip(after, before, strict=True))
        harness.snap(page.locator(DASH).first, "lab-reloaded")

        steer(page, "lab")
        check_dark_theme(page)
    assert not page.console_errors, page.console_errors


def luminance(css_colour: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"[\d.]+", css_colour)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def check_dark_theme(page: Any) -> None:
    """JupyterLab Dark: the dashboard's text turns light on the dark background."""
    page.evaluate(
        "() => window.jupyterapp.commands.execute('apputils:change-theme',"
        " {theme: 'JupyterLab Dark'})"
    )
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=30_000)
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=30_000)
    for text in (".nbh-progress-line", ".nbh-curves-status span"):
        line = page.locator(f"{DASH} {text}").first
        harness.poll(
            lambda line=line: luminance(line.evaluate("e => getComputedStyle(e).color")) > 0.5,
            30,
            f"light text in the dark theme ({text})",
        )
    harness.snap(page.locator(DASH).first, "lab-5-dark-theme")


def test_quickstart_in_voila(tmp_path: Path, page: Any) -> None:
    path = quickstart_copy(tmp_path, autostart=True)
    with harness.voila_server(path) as voila:
        page.goto(voila.url("/"))
        harness.wait_for_class(page, "nbh-dashboard", timeout=180)
        steer(page, "voila")
    assert not page.console_errors, page.console_errors


def test_quickstart_in_notebook7(tmp_path: Path, page: Any) -> None:
    quickstart_copy(tmp_path, autostart=True)
    with harness.notebook7(tmp_path) as nb7:
        page.goto(nb7.url("/notebooks/quickstart.ipynb"))
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
        harness.poll(
            lambda: page.evaluate(
                "() => { const w = window.jupyterapp.shell.currentWidget;"
                " const k = w && w.sessionContext && w.sessionContext.session"
                " && w.sessionContext.session.kernel; return !!k && k.status === 'idle'; }"
            ),
            90,
            "the Notebook 7 kernel",
        )
        harness.run_all(page)
        harness.wait_for_class(page, "nbh-dashboard", timeout=180)
        wait_step_beyond(page, 0, timeout=120)
        harness.wait_plot_points(page, 2, selector=PLOT, timeout=120)
        harness.snap(page.locator(DASH).first, "notebook7-training")
        harness.click_widget_button(page, "nbh-stop")
        expect(page.locator(f"{DASH} .nbh-state").first).to_contain_text("stopped", timeout=60_000)


def test_training_failure_shows_red_in_the_browser(tmp_path: Path, page: Any) -> None:
    notebook = harness.write_notebook(
        tmp_path / "failing.ipynb",
        DEMO_IMPORTS + "def broken_input():\n"
        "    raise ValueError('the <b>input</b> is broken')\n"
        "dash = nh.Dashboard(make_demo_estimator(tempfile.mkdtemp()), broken_input,\n"
        "                    pipeline_checkpoints=False)\n"
        "dash.train(steps=10)\n"
        "dash",
    )
    with run_in_lab(page, notebook):
        error = harness.wait_for_class(page, "nbh-error", timeout=120)
        expect(error).to_contain_text("Training failed: ValueError: the <b>input</b> is broken")
        expect(page.locator(f"{DASH} .progress-bar").first).to_have_class(re.compile("danger"))
        expect(page.locator(f"{DASH} .nbh-state").first).to_contain_text("failed")
        harness.click_widget_button(page, "nbh-traceback-toggle")
        expect(page.locator(f"{DASH} .nbh-traceback").first).to_contain_text("broken_input")
        harness.snap(page.locator(DASH).first, "lab-failure")


def test_a_costly_input_checkpoint_waits_for_save_in_the_browser(tmp_path: Path, page: Any) -> None:
    """A 6000-row shuffle (~3 MB a save): the panel says automatic input checkpoints wait, none
    is written at the model checkpoints; Save saves one and turns them on."""
    notebook = harness.write_notebook(
        tmp_path / "big_shuffle.ipynb",
        DEMO_IMPORTS + "import numpy as np\n"
        "from nbhooks._tf import tf\n"
        "rows = np.random.default_rng(0).normal(size=(6000, 64)).astype('float32')\n"
        "labels = np.arange(6000, dtype='int32') % 10\n"
        "def train_fn():\n"
        "    ds = tf().data.Dataset.from_tensor_slices(({'x': rows}, labels))\n"
        "    return ds.shuffle(6000, seed=0).repeat().batch(32)\n"
        "est = make_demo_estimator(tempfile.mkdtemp(), save_checkpoints_steps=100)\n"
        "dash = nh.Dashboard(est, train_fn, steps=100_000, pace=200)\n"
        "dash.train()\n"
        "dash",
    )
    with run_in_lab(page, notebook):
        harness.wait_for_class(page, "nbh-dashboard", timeout=180)
        open_tab(page, "Pipeline checkpoints")
        expect(pipeline_status(page)).to_contain_text(
            "⚠ automatic input checkpoints paused: each would write about 3.0 MB", timeout=120_000
        )
        wait_step_beyond(page, 250, timeout=120)  # model checkpoints at 100 and 200
        entries = page.locator(f"{DASH} .nbh-pipeline-list option")
        assert entries.count() == 0, entries.all_inner_texts()
        harness.snap(page.locator(DASH).first, "lab-pipeline-paused")
        harness.click_widget_button(page, "nbh-save")
        expect(pipeline_status(page)).to_contain_text(
            re.compile(r"saved position of step \d+ .*; automatic saves on from now"),
            timeout=60_000,
        )
        harness.poll(
            lambda: any(
                t.replace("\xa0", " ").endswith("· auto") for t in entries.all_inner_texts()
            ),
            60,
            "an automatic input checkpoint in the list",
        )
        harness.snap(page.locator(DASH).first, "lab-pipeline-saving")
        harness.click_widget_button(page, "nbh-stop")
        expect(page.locator(f"{DASH} .nbh-state").first).to_contain_text("stopped", timeout=60_000)
