"""Issue 2 benchmark: what the background run and its widgets cost, and how fast stop is.

    python bench/bench_run.py [--steps 2000] [--rounds 5]

(a) throughput: bare ``estimator.train(steps)`` vs the same training through ``TrainingRun``
    with its controls + progress widgets live (messages JSON-encoded as in a kernel),
    interleaved in one process; target >= 0.97x.
(b) stop latency: ``stop()`` -> ``train()`` returned, minus the final checkpoint's save time
    (measured with a CheckpointSaverListener); target < 100 ms.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

from common import install_recording_comm, interleave, median

import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.demo import digits_input_fns, make_demo_estimator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    sizes = install_recording_comm()
    train_fn, _, _ = digits_input_fns()
    root = tempfile.mkdtemp(prefix="nbhooks-bench-")
    kw = {"save_checkpoints_steps": None, "save_checkpoints_secs": None}

    rates: dict[str, list[float]] = {"bare": [], "run": []}

    def bare(i: int) -> None:
        clock = SessionClock(rates["bare"])
        estimator = make_demo_estimator(f"{root}/bare{i}", **kw)
        estimator.train(train_fn, steps=args.steps, hooks=[clock])

    panels = []

    def with_widgets(i: int) -> None:
        clock = SessionClock(rates["run"])
        estimator = make_demo_estimator(f"{root}/run{i}", **kw)
        run = nh.TrainingRun(estimator, train_fn, steps=args.steps, hooks=[clock], report=None)
        panels.append(run.panel())
        run.start()
        run.wait()
        run.close()

    bare(-1)  # warm up graph building and TF's kernels
    rates["bare"].clear()
    times = interleave(
        {"bare estimator.train": bare, "TrainingRun + widgets": with_widgets}, args.rounds
    )
    bare_t, run_t = times["bare estimator.train"], times["TrainingRun + widgets"]
    batches = sum(p.publisher.batches for p in panels) / len(panels)
    print(f"(a) {args.steps} steps, {args.rounds} interleaved rounds: best / median")
    print(f"    bare estimator.train     {min(bare_t):6.2f} s / {median(bare_t):6.2f} s")
    print(
        f"    TrainingRun + widgets    {min(run_t):6.2f} s / {median(run_t):6.2f} s   "
        f"({batches:.0f} widget batches/run, {len(sizes) / len(panels):.0f} messages/run)"
    )
    print(
        f"    end to end ratio         {min(bare_t) / min(run_t):6.3f}x / "
        f"{median(bare_t) / median(run_t):6.3f}x   (includes building graph and widgets)"
    )
    rb, rr = rates["bare"], rates["run"]
    print(
        f"    training steps/s         bare {max(rb):5.0f} / {median(rb):5.0f}   "
        f"run+widgets {max(rr):5.0f} / {median(rr):5.0f}"
    )
    print(
        f"    throughput ratio         {max(rr) / max(rb):6.3f}x / {median(rr) / median(rb):6.3f}x"
        "   (target >= 0.97x)"
    )

    latencies = [stop_latency(f"{root}/stop{i}", train_fn) for i in range(args.rounds)]
    total = median([t for t, _ in latencies])
    save = median([s for _, s in latencies])
    print(
        f"(b) stop() -> train() returned: median {total * 1e3:.0f} ms, of which the final "
        f"checkpoint {save * 1e3:.0f} ms"
    )
    print(f"    beyond the final checkpoint: {(total - save) * 1e3:.0f} ms   (target < 100 ms)")


class SessionClock(tf().estimator.SessionRunHook):
    """The same in both variants: steps/s from session creation to its end (training only)."""

    def __init__(self, out: list[float]) -> None:
        self.out, self.steps = out, 0

    def after_create_session(self, session, coord) -> None:
        self.t0 = time.perf_counter()

    def after_run(self, run_context, run_values) -> None:
        self.steps += 1

    def end(self, session) -> None:
        self.out.append(self.steps / (time.perf_counter() - self.t0))


def stop_latency(model_dir: str, train_fn) -> tuple[float, float]:
    class SaveTimer(tf().estimator.CheckpointSaverListener):
        def __init__(self) -> None:
            self.last = 0.0

        def before_save(self, session, global_step_value) -> None:
            self._t = time.perf_counter()

        def after_save(self, session, global_step_value) -> None:
            self.last = time.perf_counter() - self._t

    listener = SaveTimer()
    estimator = make_demo_estimator(model_dir)
    run = nh.TrainingRun(estimator, train_fn, steps=100_000, report=None)
    original = estimator.train
    estimator.train = lambda *a, **k: original(*a, saving_listeners=[listener], **k)
    run.start()
    started = threading.Event()
    while run.global_step < 200:
        started.wait(0.01)
    t0 = time.perf_counter()
    run.stop()
    run.wait()
    return time.perf_counter() - t0, listener.last


if __name__ == "__main__":
    main()
