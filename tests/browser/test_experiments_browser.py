"""Experiments in JupyterLab (Chromium): a knob's slider changes the loss curve's slope, a
comparison's figure and table follow two runs training at once, and the Rewind tab's button
draws the new branch beside the faded old one."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.slow, pytest.mark.browser]
expect.set_options(timeout=30_000)

SETUP = """\
import tempfile

import tensorflow as tf

import nbhooks as nh
from nbhooks.demo import digits_input_fns, make_demo_estimator
from nbhooks.demo.digits import demo_model_fn

tf.get_logger().setLevel("ERROR")
train_fn, eval_fn, _ = digits_input_fns()
"""

KNOB_DASHBOARD = """\
def model_fn(features, labels, mode, params):
    lr = nh.knob("learning_rate", params["learning_rate"], min=1e-3, max=1.0, scale="log")
    return demo_model_fn(features, labels, mode, dict(params, learning_rate=lr))

config = tf.estimator.RunConfig(model_dir=tempfile.mkdtemp(), tf_random_seed=0,
                                save_summary_steps=None, log_step_count_steps=None)
estimator = tf.estimator.Estimator(model_fn, config=config,
                                   params={"hidden_units": (64,), "learning_rate": 0.001})
dash = nh.Dashboard(estimator, train_fn, evals={"eval": eval_fn}, every_n_iter=50,
                    pipeline_checkpoints=False)
dash
"""

COMPARE = """\
runs = {f"lr {lr}": nh.Dashboard(make_demo_estimator(tempfile.mkdtemp(), learning_rate=lr),
                                 train_fn, evals={"eval": eval_fn}, every_n_iter=50,
                                 pipeline_checkpoints=False)
        for lr in (0.01, 0.3)}
cmp = nh.Compare(runs, parallel=2)
cmp
"""

REWIND_DASHBOARD = """\
estimator = make_demo_estimator(tempfile.mkdtemp(), save_checkpoints_steps=50)
dash = nh.Dashboard(estimator, train_fn, evals={"eval": eval_fn}, every_n_iter=50, steps=200)
dash
"""

CURVES = ".nbh-dashboard .js-plotly-plot"
COMPARE_PLOT = ".nbh-compare .js-plotly-plot"


def loss_curve(page: Any) -> tuple[list[float], list[float], list[float]]:
    """``(steps, losses, marked steps)`` of the dashboard's eval loss curve, as drawn."""
    # page.evaluate: a graph div redrawn several times a second can keep a locator waiting
    return page.evaluate(
        """selector => {
            const gd = document.querySelector(selector);
            const t = ((gd && gd.data) || []).find(
                t => t.name === 'eval' && (t.hovertemplate || '').includes(' loss:'));
            const marks = ((gd && gd.layout && gd.layout.shapes) || []).map(s => s.x0);
            return t ? [Array.from(t.x), Array.from(t.y), marks] : [[], [], marks];
        }""",
        CURVES,
    )


def mark_label(page: Any) -> dict[str, Any]:
    """The first mark's label on the dashboard's curves: its text, and the top and bottom (in
    page pixels) of the label and of the first subplot's drawing area."""
    return page.evaluate(
        """selector => {
            const gd = document.querySelector(selector);
            const label = gd.querySelector('.shape-label-text');
            const area = gd.querySelector('.draglayer .xy .nsewdrag');
            const l = label.getBoundingClientRect(), a = area.getBoundingClientRect();
            return {text: label.textContent, label: [l.top, l.bottom], area: [a.top, a.bottom]};
        }""",
        CURVES,
    )


def scroll_to(page: Any, selector: str) -> None:
    """Scroll the first ``selector`` into view. Not Playwright's scroll_into_view_if_needed:
    that waits for the element to hold still over two frames, which a plot redrawn twice a
    second in a notebook whose outputs grow may not do within its timeout on a loaded machine
    (the timeout seen in a whole-suite run)."""
    page.locator(selector).first.evaluate("e => e.scrollIntoView({block: 'center'})")


def snap_live(page: Any, selector: str, name: str) -> None:
    """Screenshot the first ``selector`` into ``test-artifacts/<name>.png`` without waiting for
    it to hold still (see :func:`scroll_to`): the page, clipped to the element's box."""
    scroll_to(page, selector)
    box = page.locator(selector).first.evaluate(
        "e => { const r = e.getBoundingClientRect();"
        " return {x: r.x, y: r.y, width: r.width, height: r.height}; }"
    )
    harness.ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(harness.ARTIFACTS / f"{name}.png"), clip=box)


@contextlib.contextmanager
def snapped_on_failure(page: Any, name: str) -> Iterator[None]:
    """A screenshot of the page while its server still runs, and its console errors, when the
    block fails (the page fixture's screenshot comes after the server and kernel stopped)."""
    try:
        yield
    except BaseException:
        harness.snap(page, f"FAILED-{name}-live")
        print(f"console errors of the page: {page.console_errors}")
        raise


@contextlib.contextmanager
def ran_in_lab(tmp_path: Path, page: Any, name: str, *cells: str) -> Iterator[None]:
    """A notebook of ``cells``, opened in JupyterLab and Run All; a live snapshot on failure."""
    harness.write_notebook(tmp_path / f"{name}.ipynb", *cells)
    with harness.jupyter_lab(tmp_path) as lab, snapped_on_failure(page, name):
        harness.open_lab_notebook(page, lab, f"{name}.ipynb")
        harness.run_all(page)
        yield


def slope(steps: list[float], values: list[float]) -> float:
    """Least-squares change of value per step."""
    n = len(steps)
    mx, my = sum(steps) / n, sum(values) / n
    cov = sum((x - mx) * (y - my) for x, y in zip(steps, values, strict=True))
    return cov / sum((x - mx) ** 2 for x in steps)


def test_the_knob_slider_changes_the_slope_of_the_loss(tmp_path: Path, page: Any) -> None:
    with ran_in_lab(tmp_path, page, "knob", SETUP, KNOB_DASHBOARD, "dash.train(steps=100_000)"):
        slider = harness.wait_for_class(page, "nbh-knob", timeout=180)
        scroll_to(page, CURVES)
        harness.poll(lambda: len(loss_curve(page)[0]) >= 5, 300, "5 points of the slow loss")
        # as a person does: type the new value into the slider's readout
        readout = slider.locator(".widget-readout")
        scroll_to(page, ".nbh-knob .widget-readout")
        # focus and select the readout's text (a click can wait forever on a page whose plot
        # redraws several times a second)
        readout.evaluate("el => { el.focus(); document.execCommand('selectAll'); }")
        page.keyboard.type("0.5")
        page.keyboard.press("Enter")
        expect(page.locator(".nbh-knobs-status").first).to_contain_text(
            re.compile(r"learning_rate = 0\.5\d* from step \d+"), timeout=60_000
        )
        marked = harness.poll(lambda: loss_curve(page)[2], 60, "the change marked on the curves")
        change = marked[0]
        steps, losses, _ = harness.poll(
            lambda: (c := loss_curve(page)) and sum(s > change for s in c[0]) >= 5 and c,
            120,
            "5 evaluations after the change",
        )
        snap_live(page, ".nbh-dashboard", "lab-knob-changed")
        label = mark_label(page)
        assert label["text"] == f"learning_rate={0.5}", label
        (top, bottom), (area_top, area_bottom) = label["label"], label["area"]
        assert area_top - 1 <= top < bottom <= area_bottom + 1, label  # all of it in view
        before = [(s, v) for s, v in zip(steps, losses, strict=True) if s <= change][-5:]
        after = [(s, v) for s, v in zip(steps, losses, strict=True) if s > change][:5]
        # The loss falls at least 5x faster per step from the last evaluation before the
        # change to the second after it than over the five before (after a 500x larger
        # learning rate it drops at once, then flattens: a line fitted to the five after
        # would hide that).
        slow = slope(*zip(*before, strict=True))
        fast = slope(*zip(before[-1], after[1], strict=True))
        assert fast < 5 * slow < 0, (slow, fast, before, after)
        harness.click_widget_button(page, "nbh-stop")
        expect(page.locator(".nbh-dashboard .nbh-state").first).to_contain_text(
            "stopped", timeout=60_000
        )
    assert not page.console_errors, page.console_errors


def shown_steps(page: Any) -> list[int]:
    texts = page.locator(".nbh-compare-step").all_inner_texts()
    return [int(t.replace(",", "") or 0) for t in texts]


def test_the_comparison_updates_live(tmp_path: Path, page: Any) -> None:
    with ran_in_lab(tmp_path, page, "compare", SETUP, COMPARE, "cmp.train(steps=100_000)"):
        harness.wait_for_class(page, "nbh-compare", timeout=180)
        scroll_to(page, COMPARE_PLOT)
        first = harness.wait_plot_points(page, 2, selector=COMPARE_PLOT, timeout=180)
        grown = harness.poll(
            lambda: (
                (c := harness.plot_point_counts(page, COMPARE_PLOT))
                and min(c[::2]) > max(first)
                and c
            ),
            120,
            "every curve of both runs to grow",
        )
        assert len(grown) == 8  # 2 runs x 2 metrics, a line and a best-value star each
        names = page.locator(COMPARE_PLOT).first.evaluate("gd => gd.data.map(t => t.name)")
        assert {"lr 0.01 · eval", "lr 0.3 · eval"} <= set(names)
        steps = shown_steps(page)
        harness.poll(
            lambda: all(a > b for a, b in zip(shown_steps(page), steps, strict=True)),
            60,
            "both runs' steps to advance in the table",
        )
        snap_live(page, ".nbh-compare", "lab-compare-live")
        for stop in page.locator("button.nbh-compare-stop").all():
            stop.click()
        for state in page.locator(".nbh-compare-state").all():
            expect(state).to_contain_text("stopped", timeout=60_000)
    assert not page.console_errors, page.console_errors


def eval_loss_traces(page: Any) -> list[dict[str, Any]]:
    """The drawn eval loss traces: x, opacity and line dash of each."""
    return page.evaluate(
        """selector => {
            const gd = document.querySelector(selector);
            return ((gd && gd.data) || [])
                .filter(t => (t.hovertemplate || '').startsWith('eval loss'))
                .map(t => ({x: Array.from(t.x || []), opacity: t.opacity ?? 1,
                            dash: (t.line && t.line.dash) || 'solid'}));
        }""",
        CURVES,
    )


def test_the_rewind_button_draws_the_new_branch(tmp_path: Path, page: Any) -> None:
    with ran_in_lab(tmp_path, page, "rewind", SETUP, REWIND_DASHBOARD, "dash.train()"):
        harness.wait_for_class(page, "nbh-dashboard", timeout=180)
        state = page.locator(".nbh-dashboard .nbh-state").first
        expect(state).to_contain_text("finished", timeout=180_000)
        page.locator(".nbh-tabs .lm-TabBar-tab", has_text="Rewind").first.click()
        harness.click_widget_button(page, "nbh-rewind-refresh")
        page.locator(".nbh-rewind-step select").first.select_option("100")
        harness.click_widget_button(page, "nbh-rewind")
        expect(page.locator(".nbh-rewind-msg").first).to_contain_text(
            "the next training starts from step 100", timeout=30_000
        )
        scroll_to(page, CURVES)
        faded = harness.poll(
            lambda: [t for t in eval_loss_traces(page) if t["opacity"] < 1],
            60,
            "the abandoned branch drawn faded",
        )
        assert faded[0]["x"] == [100, 150, 200] and faded[0]["dash"] == "dot", faded
        harness.click_widget_button(page, "nbh-start")  # the default 200 steps, from step 100
        # (the state still reads "finished" from the first run: wait for the second's end)
        progress = page.locator(".nbh-dashboard .nbh-progress-line").first
        expect(progress).to_contain_text("step 300 / 300", timeout=180_000)
        expect(state).to_contain_text("finished", timeout=60_000)
        live = harness.poll(
            lambda: [t for t in eval_loss_traces(page) if t["opacity"] == 1 and 300 in t["x"]],
            60,
            "the new branch drawn live up to step 300",
        )
        assert live[0]["x"][:3] == [0, 50, 100] and 150 in live[0]["x"], live
        snap_live(page, ".nbh-dashboard", "lab-rewind")
    assert not page.console_errors, page.console_errors
