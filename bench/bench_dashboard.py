"""Issue 16 benchmark: what the Dashboard costs on top of bare training, side by side.

    ../.venv/bin/python bench_dashboard.py [--steps 2000] [--every 200] [--rounds 15]

Two models (the demo; the 3x128 dense model on 20 000 rows with ``shuffle(20 000)`` of
bench_eval), ``steps`` steps, an evaluation every ``every``, RunConfig's default checkpoint
schedule. Variants, interleaved round by round after a warm-up round each, each round in a
shuffled order (the machine is noisy: each figure is a ratio to bare ``estimator.train`` in the
same round):

- bare ``estimator.train`` (no hook);
- bare ``estimator.train`` reading its input as a ``TrainingRun`` does (with
  ``SynchronousInputHook`` only): the training the Dashboard's runs do, without the
  Dashboard; the Dashboard's variants are also given as ratios to it (what evaluating and
  showing cost on top of the same training);
- the Dashboard with its defaults, shown (its widget built, as in a notebook, and its
  evaluations prepared and their subplots drawn before the clock starts: a person looks at
  it before Start);
- the same, not shown (headless: the evaluation graph is built during the first steps);
- shown, with ``asynchronous_eval=False`` (every evaluation on the training thread);
- shown, with ``pipeline_checkpoints=False`` (the target of #16's third point: defaults
  within 5 % of this);
- shown, its evaluation threads at training's priority (``LiveEvaluatorHook.niceness = 0``;
  by default they run at nice 19, on Linux);
- the floor of evaluating beside training: bare ``estimator.train`` while, when its session
  starts and every ``every`` steps, a thread spends the raw evaluation's CPU seconds
  (``bench_eval.RawEvalHook``'s, measured alone in the warm-up round) in numpy, without the
  GIL: a lower bound for evaluating beside training in one process (the evaluation's CPU
  and nothing else); what the Dashboard costs above it is its own;
- the same floor, the thread spending the CPU at nice 19 (Linux), the priority the Dashboard's
  asynchronous evaluations run at: the floor to compare the defaults with.

The clock runs from ``dash.train()`` to ``dash.wait()`` returning "finished"; the CPU seconds
of the whole process over the same span are printed beside it (steadier than wall time here:
the same 2000 bare steps take 0.7-1.0 s from one round to the next on this 2-core machine;
what evaluation on its own thread saves shows in wall time, not in CPU). Each run is also split
where its first and last training steps end (a last hook's ``after_run``): setup (``train()`` to
the end of the first step), steps, and tail (the last step to ``wait()`` returning); each
variant's phases are printed as milliseconds above bare's in the same round. Each ratio to
bare is followed by ``[low-high]``, a 90 % bootstrap interval of its median over the rounds
(the uncertainty of the rounds' scatter, not of the machine's drift between runs). Targets (#16):
defaults <= 1.10x bare on both models; defaults <= 1.05x pipeline off. Also printed: the
seconds spent inside the pipeline hook's methods (the steadier figure for its cost) and the
time to show the dashboard and to prepare its evaluations.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from bench_eval import MODELS, EveryN, RawEvalHook, after_first
from common import (
    clocks,
    install_recording_comm,
    interleave,
    interval,
    median,
    ratios,
    spread,
)

import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.demo import make_demo_estimator
from nbhooks.hooks.input_read import SynchronousInputHook
from nbhooks.niceness import BACKGROUND, lower_this_thread

PHASES = ("setup", "steps", "tail")


def clock_hook(hook: object, spent: list[float]) -> None:
    """Add the seconds spent in ``hook``'s SessionRunHook methods to ``spent[0]``."""
    for name in ("begin", "after_create_session", "before_run", "after_run", "end"):
        method = getattr(hook, name)

        def timed(*args: object, method=method) -> object:
            start = time.perf_counter()
            try:
                return method(*args)
            finally:
                spent[0] += time.perf_counter() - start

        setattr(hook, name, timed)


class Phases(tf().estimator.SessionRunHook):
    """When the first and the last training steps end, as seen by a hook after all others."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0

    def after_run(self, run_context, run_values) -> None:
        self.last = time.perf_counter()
        if self.first is None:
            self.first = self.last

    @contextmanager
    def clocked(self, note, name: str) -> Iterator[None]:
        """``clocks(note, name)`` around the block (a run this hook sees), and note its setup,
        steps and tail as ``"<name>: <phase>"``."""
        with clocks(note, name):
            start = time.perf_counter()
            yield
            assert self.first is not None, "no training step ran"
            ends = (self.first, self.last, time.perf_counter())
            for phase, begin, end in zip(PHASES, (start, *ends[:2]), ends, strict=True):
                note(f"{name}: {phase}", end - begin)


class CpuBeside(EveryN):
    """When the session starts and every ``every`` steps, a thread of its own spends
    ``seconds`` of CPU in numpy ufuncs (which release the GIL): an evaluation beside training
    at its cheapest. One at a time, as an evaluator (a burst still running skips the next);
    the last one is waited for at the end, as the Dashboard waits for its last evaluation."""

    def __init__(self, every: int, seconds: float, niceness: int = 0) -> None:
        super().__init__(every)
        self.seconds, self.niceness, self.bursts = seconds, niceness, 0
        self.thread: threading.Thread | None = None
        self.buffer = np.ones(100_000)

    def _burn(self) -> None:
        lower_this_thread(self.niceness)
        start = time.thread_time()
        while time.thread_time() - start < self.seconds:
            np.sqrt(self.buffer, out=self.buffer)

    def fire(self, session) -> None:
        if self.thread is not None and self.thread.is_alive():
            return
        self.bursts += 1
        self.thread = threading.Thread(target=self._burn, daemon=True)
        self.thread.start()

    def end(self, session) -> None:
        if self.thread is not None:
            self.thread.join()


#: The variant that trains as a TrainingRun does, without the Dashboard.
SYNCHRONOUS_BARE = "bare, synchronous read"


def variants(root: Path, model: str, steps: int, every: int) -> tuple[dict, dict]:
    (train_fn, eval_fn), params = MODELS[model]()
    stats: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        stats.setdefault(key, []).append(value)

    def bare(name: str, synchronous_read: bool = False):
        def run(i: int) -> None:
            model_dir = root / f"{model}-{name}-{i}"
            est = make_demo_estimator(model_dir, **params)
            phases = Phases()
            hooks = [SynchronousInputHook(), phases] if synchronous_read else [phases]
            with phases.clocked(note, name):
                est.train(train_fn, steps=steps, hooks=hooks)
            shutil.rmtree(model_dir, ignore_errors=True)

        return run

    def dashboard(name: str, shown: bool = True, niceness: int | None = None, **options: object):
        def run(i: int) -> None:
            kept = nh.LiveEvaluatorHook.niceness
            if niceness is not None:
                nh.LiveEvaluatorHook.niceness = niceness
            try:
                timed(i)
            finally:
                nh.LiveEvaluatorHook.niceness = kept

        def timed(i: int) -> None:
            model_dir = root / f"{model}-{name}-{i}"
            est = make_demo_estimator(model_dir, **params)
            phases = Phases()
            dash = nh.Dashboard(
                est, train_fn, eval_fn, every_n_iter=every, steps=steps, hooks=[phases], **options
            )
            spent = [0.0]
            pipeline = options.get("pipeline_checkpoints", True)
            if pipeline:
                clock_hook(dash.pipeline, spent)
            try:
                if shown:
                    t0 = time.perf_counter()
                    dash.widget  # noqa: B018 - shown: built as the notebook displays it
                    note(f"{name}: show", time.perf_counter() - t0)
                    dash.eval_preparation.wait()
                    dash.run.panel().publisher.wait_idle()  # its subplots drawn
                    note(f"{name}: prepared", time.perf_counter() - t0)
                with phases.clocked(note, name):
                    dash.train()
                    assert dash.wait() == "finished"
                if pipeline:
                    note(f"{name}: pipeline hook", spent[0])
                assert dash.metrics.has("eval", steps), "the last evaluation is missing"
            finally:
                dash.close()
                shutil.rmtree(model_dir, ignore_errors=True)

        return run

    raw: dict[str, float] = {}

    def floor(name: str, niceness: int = 0):
        def run(i: int) -> None:
            model_dir = root / f"{model}-{name}-{i}"
            est = make_demo_estimator(model_dir, **params)
            if not raw:  # the first warm-up: the raw evaluation's CPU, training waiting for it
                hook = RawEvalHook(est, eval_fn, every)
                est.train(train_fn, steps=steps, hooks=[hook])
                raw["cpu"] = after_first(hook.cpu, hook.first_cpu, hook.evaluations)
            else:
                beside, phases = CpuBeside(every, raw["cpu"], niceness), Phases()
                with phases.clocked(note, name):
                    est.train(train_fn, steps=steps, hooks=[beside, phases])
                note(f"{name}: bursts", beside.bursts)
                note(f"{name}: raw evaluation CPU", raw["cpu"])
            shutil.rmtree(model_dir, ignore_errors=True)

        return run

    return {
        "bare train()": bare("bare train()"),
        SYNCHRONOUS_BARE: bare(SYNCHRONOUS_BARE, synchronous_read=True),
        "floor": floor("floor"),
        "floor at nice 19": floor("floor at nice 19", BACKGROUND),
        "defaults": dashboard("defaults"),
        "defaults, not shown": dashboard("defaults, not shown", shown=False),
        "synchronous eval": dashboard("synchronous eval", asynchronous_eval=False),
        "pipeline off": dashboard("pipeline off", pipeline_checkpoints=False),
        "eval not nicer": dashboard("eval not nicer", niceness=0),
    }, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--model", choices=list(MODELS), action="append")
    parser.add_argument(
        "--variant", action="append", help="only these (bare train() always runs), repeatable"
    )
    args = parser.parse_args()
    install_recording_comm()
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.model or list(MODELS):
            fns, stats = variants(Path(tmp), model, args.steps, args.every)
            unknown = set(args.variant or ()) - set(fns)
            if unknown:
                parser.error(f"unknown --variant {sorted(unknown)}: choose from {list(fns)}")
            if args.variant:
                fns = {k: f for k, f in fns.items() if k == "bare train()" or k in args.variant}
            for fn in fns.values():
                fn(-1)  # warm up graph building, TF's kernels and the widgets
            stats.clear()
            interleave(fns, args.rounds)  # each variant notes its own clock
            print_model(model, args, fns, stats)


def print_model(model: str, args: argparse.Namespace, fns: dict, stats: dict) -> None:
    """One model's table: each variant's run time over bare train()'s of the same round."""
    bare, bare_cpu = stats["bare train(): run"], stats["bare train(): cpu"]
    floors = [name for name in fns if name.startswith("floor")]
    print(
        f"{model}: {args.steps} steps, an evaluation every {args.every}, {args.rounds} rounds; "
        "median (min-max) of the per-round ratios"
    )
    cpu = spread(bare_cpu, ".2f", " s")
    print(f"    {'bare train()':22s} {spread(bare, '.2f', ' s')}  CPU {cpu}")
    for name in fns:
        if name == "bare train()":
            continue
        run = stats[f"{name}: run"]
        to_bare = ratios(run, bare)
        line = f"    {name:22s} {spread(run, '.2f', ' s')}  / bare {spread(to_bare)}"
        line += f" {interval(to_bare)}"
        if name in floors:
            cpu_ms = spread([c * 1e3 for c in stats[f"{name}: raw evaluation CPU"]], ".1f", " ms")
            line += f"  ({median(stats[f'{name}: bursts']):.0f} bursts of {cpu_ms})"
        elif name != SYNCHRONOUS_BARE:
            for base in [*floors, *(n for n in fns if n == SYNCHRONOUS_BARE)]:
                line += f"  / {base} {spread(ratios(run, stats[f'{base}: run']))}"
        if name == "defaults" and "pipeline off: run" in stats:
            off, off_cpu = stats["pipeline off: run"], stats["pipeline off: cpu"]
            line += f"  / pipeline off {spread(ratios(run, off))}"
            line += f" (CPU {spread(ratios(stats['defaults: cpu'], off_cpu))})"
        line += f"  CPU / bare {spread(ratios(stats[f'{name}: cpu'], bare_cpu))}"
        if f"{name}: pipeline hook" in stats:
            own = stats[f"{name}: pipeline hook"]
            line += f"  pipeline hook {spread(own, '.2f', ' s')}"
        print(line)
        above = [
            f"{phase} {spread(ms_above(stats, name, phase), '+.0f', ' ms')}" for phase in PHASES
        ]
        print(f"    {'':22s} above bare: {', '.join(above)}")
    if "defaults: show" in stats:
        show, prepared = stats["defaults: show"], stats["defaults: prepared"]
        print(
            f"    showing the dashboard {spread(show, '.2f', ' s')}, its evaluations prepared "
            f"{spread(prepared, '.2f', ' s')} after it was asked for"
        )
    print(
        "    targets: defaults <= 1.10x bare; defaults <= 1.05x pipeline off "
        "(floor: bare with the raw evaluation's CPU spent beside it, without the GIL)"
    )


def ms_above(stats: dict, name: str, phase: str) -> list[float]:
    """``name``'s ``phase`` in each round, in milliseconds above bare train()'s."""
    base = stats[f"bare train(): {phase}"]
    return [(v - b) * 1e3 for v, b in zip(stats[f"{name}: {phase}"], base, strict=True)]


if __name__ == "__main__":
    main()
