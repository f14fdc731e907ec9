"""Page responsiveness while the curves grow: browser frame gaps, two settings side by side.

    python bench/bench_browser.py [--points 150] [--rounds 2] [--frames 120]

Voila renders a notebook that trains the demo model (digits) in the background with two named
in-memory evaluations every 100 steps, drawn live by a ``CurvesView`` (2 evaluations x 2
metrics); Debian's Chromium shows the page. Once every curve holds ``--points`` points, the
gaps between ``--frames`` animation frames of the page are measured (requestAnimationFrame):
the time the browser needs to draw a frame while updates keep arriving. Variants, interleaved
round by round:

    nbhooks  CurvesView's defaults: at most 2 redraws a second, markers up to 100 points
    earlier  a redraw with every 0.1 s publisher batch and a marker on every point (the
             settings before 2026-11-25, when this page rendered at ~3 frames a second)

Target: the median frame gap of nbhooks at most a third of the earlier one's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import harness  # the test harness: Voila server, Chromium flags, plot helpers

VARIANTS = {
    "nbhooks": {},
    "earlier": {"interval": 0.1, "markers_up_to": 10**9},
}

CELL = """\
import tempfile
import nbhooks as nh
from nbhooks.demo import digits_input_fns, make_demo_estimator
from nbhooks.stores.metrics import MetricHistory
from nbhooks.views.curves import CurvesView

train_fn, eval_fn, train_eval_fn = digits_input_fns()
estimator = make_demo_estimator(tempfile.mkdtemp(prefix="nbhooks-bench-browser-"))
history = MetricHistory()
evals = {{"train": train_eval_fn, "eval": eval_fn}}
hooks = nh.LiveEvaluatorHook.many(estimator, evals, every_n_iter=100, store=history)
run = nh.TrainingRun(estimator, train_fn, steps=10**7, hooks=hooks, report=None)
panel = run.panel()
panel.add(CurvesView(history, **{keywords!r}))
run.start()
panel
"""

FRAME_GAPS = """async (frames) => {
  const t = [];
  for (let i = 0; i <= frames; i++) {
    await new Promise(resolve => requestAnimationFrame(resolve));
    t.push(performance.now());
  }
  return t.slice(1).map((x, i) => x - t[i]);
}"""


def frame_gaps(browser, keywords: dict, points: int, frames: int) -> list[float]:
    """Serve the notebook with Voila, wait for ``points`` points per curve, measure."""
    with tempfile.TemporaryDirectory(prefix="nbhooks-bench-browser-") as tmp:
        path = harness.write_notebook(Path(tmp) / "bench.ipynb", CELL.format(keywords=keywords))
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            with harness.voila_server(path) as voila:
                page.goto(voila.url("/"))
                harness.poll(
                    lambda: (c := harness.plot_point_counts(page)) and min(c[::2]) >= points,
                    300,
                    f"{points} points per curve",
                    interval=0.5,
                )
                return page.evaluate(FRAME_GAPS, frames)
        finally:
            context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--frames", type=int, default=120)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    gaps: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=harness.CHROMIUM, headless=True, args=harness.CHROMIUM_ARGS
        )
        for _ in range(args.rounds):
            for name, keywords in VARIANTS.items():
                gaps[name] += frame_gaps(browser, keywords, args.points, args.frames)
        browser.close()

    print(
        f"Voila + Chromium, 2 evaluations x 2 metrics, every 100 steps; {args.frames} frames "
        f"measured at >= {args.points} points per curve, {args.rounds} rounds"
    )
    medians = {}
    for name, values in gaps.items():
        medians[name] = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        print(
            f"    {name:8s} {VARIANTS[name] or 'defaults'!s:45s} median {medians[name]:6.1f} ms"
            f"  p90 {p90:6.1f} ms  ({1000 / medians[name]:4.1f} frames/s)"
        )
    ratio = medians["earlier"] / medians["nbhooks"]
    print(f"frame gap, earlier / nbhooks: {ratio:.1f}x   (target >= 3x)")


if __name__ == "__main__":
    main()
