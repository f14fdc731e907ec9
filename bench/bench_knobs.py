"""Knobs benchmark: what a learning-rate knob costs training, and which way of applying it.

    python bench/bench_knobs.py [--steps 3000] [--rounds 9]

Side by side in one process, interleaved round by round (the order rotates each round), the
demo model trained ``--steps`` steps; steps/s measured from session creation to its end:

* ``constant``: ``GradientDescentOptimizer(0.05)``, no knob, no knob hook (the baseline);
* ``knob (assign)``: ``nh.knob(...)`` and the Dashboard's ``KnobHook`` (a variable assigned
  only when a value changes: what nbhooks does);
* ``knob (assign) + changes``: the same with a new value set every 100 steps;
* ``knob (feed)``: a ``placeholder_with_default`` fed through ``before_run`` every step (the
  alternative design). Target: the knob costs <= 2 % throughput.

Whole runs on a shared 2-core machine vary by +-20 % from one to the next, more than the 2 %
to be measured, so a second part pairs finer: the constant model, the knob model without a
hook and with ``KnobHook``, each in its own ``MonitoredSession`` in this process, train in
turn in blocks of ``--block`` steps (``--blocks`` turns, the order rotating); each ratio to
the constant's block of the same turn sees the same moment's load. ``--blocks-only`` runs
just that part.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from common import median, ratios, rotated, spread

import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.demo import digits_input_fns
from nbhooks.demo.digits import demo_model_fn
from nbhooks.hooks.knobs import KnobHook
from nbhooks.knobs import find_knobs

LR = 0.05


def knob_model_fn(features, labels, mode, params):
    lr = nh.knob("learning_rate", params["learning_rate"], min=1e-4, max=1.0, scale="log")
    return demo_model_fn(features, labels, mode, dict(params, learning_rate=lr))


FED: dict[str, Any] = {}  # the placeholder of the graph being built (one graph at a time)


def fed_model_fn(features, labels, mode, params):
    lr = tf().compat.v1.placeholder_with_default(params["learning_rate"], shape=(), name="lr")
    FED["placeholder"] = lr
    return demo_model_fn(features, labels, mode, dict(params, learning_rate=lr))


class FeedHook(tf().estimator.SessionRunHook):
    """Feeds the learning rate on every step (the alternative to an assigned variable)."""

    def __init__(self) -> None:
        self.value = LR
        self._lock = threading.Lock()

    def begin(self) -> None:
        self.placeholder = FED["placeholder"]

    def before_run(self, run_context):
        return tf().estimator.SessionRunArgs(fetches=[], feed_dict={self.placeholder: self.value})


class SessionClock(tf().estimator.SessionRunHook):
    """Steps/s from session creation to its end (training only); ``every`` calls ``on_step``."""

    def __init__(self, out: list[float], on_step: Callable[[int], None] | None = None) -> None:
        self.out, self.steps, self.on_step = out, 0, on_step

    def after_create_session(self, session, coord) -> None:
        self.t0 = time.perf_counter()

    def after_run(self, run_context, run_values) -> None:
        self.steps += 1
        if self.on_step is not None:
            self.on_step(self.steps)

    def end(self, session) -> None:
        self.out.append(self.steps / (time.perf_counter() - self.t0))


def estimator(model_fn, model_dir: str):
    t = tf()
    config = t.estimator.RunConfig(
        model_dir=model_dir,
        tf_random_seed=0,
        save_summary_steps=None,
        log_step_count_steps=None,
        save_checkpoints_steps=None,
        save_checkpoints_secs=None,
    )
    return t.estimator.Estimator(
        model_fn, config=config, params={"hidden_units": (64,), "learning_rate": LR}
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--blocks-only", action="store_true", help="only the paired blocks")
    args = parser.parse_args()
    if args.blocks_only:
        print_blocks(args.blocks, args.block)
        return
    train_fn, _, _ = digits_input_fns()
    root = tempfile.mkdtemp(prefix="nbhooks-bench-knobs-")
    specs = find_knobs(estimator(knob_model_fn, f"{root}/find"), train_fn)
    assert specs, "the knob model has no knob"
    rates: dict[str, list[float]] = {}

    def constant(i: int, name: str) -> None:
        estimator(demo_model_fn, f"{root}/c{i}").train(
            train_fn, steps=args.steps, hooks=[SessionClock(rates[name])]
        )

    def knob(i: int, name: str, change_every: int | None = None) -> None:
        hook = KnobHook()
        hook.declare(specs)
        values = (0.05, 0.04)

        def on_step(step: int) -> None:
            if change_every and step % change_every == 0:
                hook.set("learning_rate", values[(step // change_every) % 2])

        estimator(knob_model_fn, f"{root}/{name[:6]}{i}").train(
            train_fn, steps=args.steps, hooks=[hook, SessionClock(rates[name], on_step)]
        )

    def fed(i: int, name: str) -> None:
        estimator(fed_model_fn, f"{root}/f{i}").train(
            train_fn, steps=args.steps, hooks=[FeedHook(), SessionClock(rates[name])]
        )

    variants: dict[str, Callable[[int, str], None]] = {
        "constant": constant,
        "knob (assign)": knob,
        "knob (assign) + changes": lambda i, n: knob(i, n, change_every=100),
        "knob (feed)": fed,
    }
    rates.update({name: [] for name in variants})
    constant(-1, "constant")  # warm up graph building and TF's kernels
    rates["constant"].clear()
    names = list(variants)
    for i in range(args.rounds):
        for name in rotated(names, i):
            variants[name](i, name)
    base = rates["constant"]
    print(
        f"{args.steps} steps x {args.rounds} interleaved rounds: steps/s best / median; "
        "ratio to constant: best / median / median (min-max) of each round's ratio"
    )
    for name, got in rates.items():
        print(
            f"    {name:26s} {max(got):6.0f} / {median(got):6.0f}   "
            f"{max(got) / max(base):6.3f}x / {median(got) / median(base):6.3f}x / "
            f"{spread(ratios(got, base))}"
        )
    print("    target: knob (assign) >= 0.98x of constant")
    per_step = hook_cost()
    step_time = 1 / median(base)
    print(
        f"    the KnobHook's own Python cost per step (no change pending): {per_step * 1e6:.2f} us"
        f" = {per_step / step_time:.2%} of a median constant step ({step_time * 1e3:.2f} ms)"
    )
    print_blocks(args.blocks, args.block)


def paired_blocks(blocks: int, block: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per block of ``block`` training steps of each variant in turn (the order
    rotating), ``blocks`` blocks each, after one warm-up block each: the constant model, the
    knob model without a hook (the graph's cost) and with ``KnobHook`` (what nbhooks runs).
    Both wall time and the process's CPU time (all its threads: TF's pools too), which other
    processes' load does not inflate the way it inflates wall time."""
    t = tf()
    v1 = t.compat.v1
    train_fn, _, _ = digits_input_fns()
    params = {"hidden_units": (64,), "learning_rate": LR}
    runs: dict[str, Callable[[], tuple[float, float]]] = {}
    for name, model_fn, hooks in (
        ("constant", demo_model_fn, []),
        ("knob graph, no hook", knob_model_fn, []),
        ("knob + KnobHook", knob_model_fn, [KnobHook()]),
    ):
        graph = t.Graph()
        with graph.as_default():
            v1.set_random_seed(0)
            v1.train.get_or_create_global_step()
            features, labels = v1.data.make_one_shot_iterator(train_fn()).get_next()
            spec = model_fn(features, labels, t.estimator.ModeKeys.TRAIN, params)
            session = v1.train.MonitoredSession(hooks=hooks)

        def run(session: Any = session, train_op: Any = spec.train_op) -> tuple[float, float]:
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(block):
                session.run(train_op)
            return time.perf_counter() - t0, time.process_time() - c0

        run()  # warm up
        runs[name] = run
    seconds: dict[str, dict[str, list[float]]] = {"wall": {}, "CPU": {}}
    names = list(runs)
    for i in range(blocks):
        for name in rotated(names, i):
            wall, cpu = runs[name]()
            seconds["wall"].setdefault(name, []).append(wall)
            seconds["CPU"].setdefault(name, []).append(cpu)
    return seconds


def print_blocks(blocks: int, block: int) -> None:
    measured = paired_blocks(blocks, block)
    print(
        f"blocks: {blocks} x {block} steps of each variant in turn; steps per wall / CPU second "
        "over the constant's in the same turn: median (min-max), all blocks; median ms/step"
    )
    for clock, seconds in measured.items():
        base = seconds["constant"]
        for name, got in seconds.items():
            print(
                f"    {clock:4s} {name:22s} {spread(ratios(base, got))}, "
                f"{sum(base) / sum(got):.3f}x; {median(got) / block * 1e3:.3f} ms/step"
            )
    print("    target: knob + KnobHook >= 0.98x")


def hook_cost(calls: int = 200_000) -> float:
    """Seconds per step of KnobHook.before_run + after_run with nothing to assign."""
    hook = KnobHook()
    t0 = time.perf_counter()
    for _ in range(calls):
        hook.before_run(None)
        hook.after_run(None, None)
    return (time.perf_counter() - t0) / calls


if __name__ == "__main__":
    main()
