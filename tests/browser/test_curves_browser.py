"""The live curves in JupyterLab (Chromium, 1280x800): theme, size, late pages, status line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import harness
import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.slow, pytest.mark.browser]
expect.set_options(timeout=30_000)

PLOT = ".nbh-curves .js-plotly-plot"

SETUP = """\
import json
from nbhooks.events import RunStateEvent
from nbhooks.stores.metrics import MetricHistory
from nbhooks.views.curves import CurvesView

history = MetricHistory()
def record(start, stop):
    for step in range(start, stop, 10):
        loss = 1 / (1 + step / 300)
        for k, name in enumerate(("train", "eval")):
            history.record(name, step, {"loss": loss + 0.02 * k, "accuracy": 1 - loss / 2})
record(0, 3000)
view = CurvesView(history)
view.on_events([RunStateEvent("finished", step=3000, reason="reached step 3,000")])
view.widget"""

# Sent after the figure is shown: these points reach the page only as updates.
GROW = """\
record(3000, 4500)
view.refresh()
print("POINTS " + json.dumps([len(t.x) for t in view.figure.data]))"""

RESTART = 'view.on_events([RunStateEvent("running", step=4500)])'


def luminance(rgb: tuple[float, float, float]) -> float:
    """WCAG relative luminance of an sRGB colour (0-255 channels)."""
    lin = [
        c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (v / 255 for v in rgb)
    ]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def parse(css: str) -> tuple[float, float, float, float]:
    values = [float(v) for v in re.findall(r"[\d.]+", css)]
    return (*values[:3], values[3] if len(values) > 3 else 1.0)  # type: ignore[return-value]


def contrast(fg: str, bg: str) -> float:
    """WCAG contrast of text colour ``fg`` (alpha blended) over an opaque ``bg``."""
    r, g, b, a = parse(fg)
    br, bgg, bb, _ = parse(bg)
    blended = (a * r + (1 - a) * br, a * g + (1 - a) * bgg, a * b + (1 - a) * bb)
    hi, lo = sorted((luminance(blended), luminance((br, bgg, bb))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


#: What the page shows behind the plot: the first opaque background up from the graph div
#: (the figure's own backgrounds must be transparent or that colour), and the text colours.
LOOK = """gd => {
  const opaque = c => c && c !== 'transparent' && !/rgba\\(.*,\\s*0\\)$/.test(c);
  let el = gd, behind = null;
  while (el && !behind) {
    const c = getComputedStyle(el).backgroundColor;
    if (opaque(c)) behind = c;
    el = el.parentElement;
  }
  const style = sel => { const e = gd.querySelector(sel); return e && getComputedStyle(e); };
  const fill = sel => style(sel) && style(sel).fill;
  // every axis's tick labels and title (plotly's classes differ per axis: xtick, x2tick, ...)
  const axes = [...gd.querySelectorAll(
    '.xaxislayer-above text, .yaxislayer-above text, .infolayer [class*="title"] text')]
    .map(e => getComputedStyle(e).fill);
  const size = sel => style(sel) && parseFloat(style(sel).fontSize);
  const own = [...gd.querySelectorAll('.main-svg')].map(e => getComputedStyle(e).backgroundColor)
    .concat([...gd.querySelectorAll('rect.bg')].filter(e => getComputedStyle(e).fillOpacity > 0)
      .map(e => getComputedStyle(e).fill));
  return {behind: behind || 'rgb(255, 255, 255)', own: own.filter(opaque),
          axes, legend: fill('.legendtext'), title: fill('.annotation-text'),
          tickSize: size('.xtick text'), legendSize: size('.legendtext'),
          width: gd.getBoundingClientRect().width,
          svgWidth: gd.querySelector('.main-svg').getBoundingClientRect().width};
}"""


#: The subplot titles that plotly's mode bar (shown on hover, top right) lies over.
UNDER_MODEBAR = """gd => {
  const bar = gd.querySelector('.modebar').getBoundingClientRect();
  const over = r => r.left < bar.right && bar.left < r.right && r.top < bar.bottom
    && bar.top < r.bottom;
  return [...gd.querySelectorAll('.annotation')].filter(e => over(e.getBoundingClientRect()))
    .map(e => e.textContent);
}"""


def look(page: Any) -> dict[str, Any]:
    return page.locator(PLOT).first.evaluate(LOOK)


def readable(seen: dict[str, Any]) -> bool:
    colours = [seen["legend"], seen["title"], *seen["axes"]]
    return (
        not seen["own"]
        and len(seen["axes"]) >= 8  # 2 subplots: ticks of 4 axes, 2 titles
        and all(contrast(c, seen["behind"]) >= 4.5 for c in colours)
    )


def wait_points(page: Any, expected: list[int], what: str, timeout: float = 60) -> None:
    """Wait until the figure's traces hold ``expected`` points; say what they held if not."""
    drawn: list[Any] = []

    def same() -> bool:
        drawn[:] = [harness.plot_point_counts(page, PLOT)]
        return drawn[0] == expected

    try:
        harness.poll(same, timeout, what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: the page drew {drawn}, the kernel has {expected}") from exc


def test_curves_fill_the_width_follow_the_theme_and_survive_a_reload(
    tmp_path: Path, page: Any
) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    harness.write_notebook(tmp_path / "curves.ipynb", SETUP, GROW, RESTART)
    with harness.jupyter_lab(tmp_path) as lab:
        harness.open_lab_notebook(page, lab, "curves.ipynb")
        harness.run_all(page)
        harness.wait_cells_done(page, timeout=120)
        # polled: one run read an output holding "POINTS" without the printed line after it
        printed = harness.poll(
            lambda: re.search(
                r"^POINTS (\[.*\])$",
                "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts()),
                re.M,
            ),
            30,
            "the points the kernel printed",
        )
        expected = json.loads(printed[1])
        wait_points(page, expected, "every point")

        # Projector: the figure uses the width it has (~850 px; plotly.js draws a figure whose
        # box has no width yet 700 px wide), text readable from the back.
        box = page.locator(".nbh-curves.widget-vbox").first
        free = box.evaluate("e => e.getBoundingClientRect().width")
        seen = harness.poll(
            lambda: (s := look(page)) and s["svgWidth"] >= 0.95 * free and s,
            30,
            "a figure as wide as its box",
        )
        assert free > 845, free
        assert seen["tickSize"] >= 14 and seen["legendSize"] >= 14, seen
        readout = page.locator(".nbh-curves-readout small").first
        assert float(readout.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 13
        assert readable(seen), seen
        page.locator(PLOT).first.hover()  # the mode bar shows: no subplot title under it
        assert page.locator(PLOT).first.evaluate(UNDER_MODEBAR) == []
        harness.snap(box, "curves-light")

        # The last run's end is not shown while the next one runs.
        expect(page.locator(".nbh-curves-status").first).to_have_text("")

        # JupyterLab Dark, switched while the figure shows: dark behind it, light text.
        page.evaluate(
            "() => window.jupyterapp.commands.execute('apputils:change-theme',"
            " {theme: 'JupyterLab Dark'})"
        )
        expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
        dark = harness.poll(
            lambda: (s := look(page)) and luminance(parse(s["behind"])[:3]) < 0.1 and s,
            30,
            "a dark background behind the plot",
        )
        assert readable(dark), dark
        harness.snap(box, "curves-dark")

        # A page that attaches now (a reload) draws every point from the synced state.
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        harness.poll(
            lambda: page.locator(".jp-mod-current.jp-mod-dirty").count() == 0, 30, "the save"
        )
        page.reload()
        harness.wait_kernel_idle(page, timeout=90)
        wait_points(page, expected, "every point again")
        harness.poll(lambda: look(page)["svgWidth"] >= 0.95 * free, 30, "the full width again")
    assert not page.console_errors, page.console_errors


#: Text boxes of the figure that overlap: subplot titles, axis titles, tick labels, legend.
OVERLAPS = """gd => {
  const kinds = {title: '.infolayer .annotation',
                 axis: '.infolayer [class^="g-x"] text, .infolayer [class^="g-y"] text',
                 tick: '.xaxislayer-above text, .yaxislayer-above text', legend: '.legendtext'};
  const boxes = Object.entries(kinds).flatMap(([kind, sel]) => [...gd.querySelectorAll(sel)]
    .map(e => ({kind, text: e.textContent, r: e.getBoundingClientRect()}))
    .filter(b => b.text && b.r.width > 0));
  const hit = (a, b) => a.r.left < b.r.right && b.r.left < a.r.right
    && a.r.top < b.r.bottom && b.r.top < a.r.bottom;
  const overlaps = [];
  boxes.forEach((a, i) => boxes.slice(i + 1).forEach(b => {
    if (hit(a, b)) overlaps.push(`${a.kind} ${a.text} / ${b.kind} ${b.text}`);
  }));
  const steps = boxes.filter(b => b.kind === 'axis' && b.text === 'step');
  return {overlaps, steps: steps.length, lowest: Math.max(...steps.map(b => b.r.top)),
          legend: Math.min(...boxes.filter(b => b.kind === 'legend').map(b => b.r.top))};
}"""

#: One row, the metrics of a regression head, three, and a binary classification head's.
GRIDS = {
    "two": ["accuracy", "loss"],
    "regression": ["average_loss", "label/mean", "loss", "prediction/mean"],
    "three": ["accuracy", "auc", "loss"],
    "binary": [
        *("accuracy", "accuracy_baseline", "auc", "auc_precision_recall", "average_loss"),
        *("label/mean", "loss", "precision", "prediction/mean", "recall"),
    ],
}


@pytest.mark.parametrize("width", [850, 600])
@pytest.mark.parametrize("grid", list(GRIDS))
def test_subplot_grids_keep_their_text_apart(tmp_path: Path, page: Any, grid: str, width: int):
    """Several rows of subplots (a canned head's metrics): no title, tick label or legend
    lies over another (the first row's "step" once covered the second row's titles); "step"
    once under each column, above the legend."""
    import plotly.graph_objects as go

    from nbhooks.stores.metrics import MetricHistory
    from nbhooks.views.curves import CurvesView

    metrics = GRIDS[grid]
    history = MetricHistory()
    for step in range(0, 1000, 50):
        for k, name in enumerate(("train", "eval")):
            history.record(
                name, step, {m: i + 1 / (1 + step / 100) + k for i, m in enumerate(metrics)}
            )
    view = CurvesView(history)
    view.refresh()
    path = tmp_path / f"{grid}.html"
    go.Figure(view.figure).write_html(path, include_plotlyjs=True)
    page.set_viewport_size({"width": width, "height": 1600})
    page.goto(path.as_uri())
    plot = page.locator(".js-plotly-plot")
    expect(plot.locator(".legendtext")).to_have_count(2)
    seen = plot.evaluate(OVERLAPS)
    harness.snap(plot, f"curves-grid-{grid}-{width}")
    assert seen["overlaps"] == [], seen["overlaps"]
    assert seen["steps"] == min(2, len(metrics)), seen
    assert seen["lowest"] < seen["legend"], seen  # (their tops: the boxes may touch)
    assert not page.console_errors, page.console_errors
