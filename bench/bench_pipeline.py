"""Pipeline checkpoints: save/restore time and size vs TF's own hook, and training throughput.

All numbers are measured side by side in ONE run (same process, same machine load):

    .venv/bin/python bench/bench_pipeline.py [--repeats 10] [--steps 600]

1. shuffle(10 000) over 64-float rows, batch 32: one graph, one session, TF's
   CheckpointInputPipelineHook and PipelineCheckpointHook both built on it; each saves and
   restores the same iterator state ``repeats`` times, interleaved. Median seconds and bytes.
2. Estimator training ``steps`` steps with checkpoints every 100 steps: no pipeline hook,
   TF's hook, PipelineCheckpointHook (interleaved, order rotated, median of --trials).
3. ``--step-cost-only`` (also run by default): the price per training step between saves, on
   the demo model with RunConfig's default schedule (a save every 600 s, so none in between):
   the training thread's CPU (``time.thread_time``) and wall time per step of the step loop
   (after 100 warm-up steps), with no pipeline hook, TF's hook and PipelineCheckpointHook,
   order rotated; the median over rounds of each hook's microseconds per step above no hook.
The Dashboard with its defaults against pipeline checkpoints off: ``bench_dashboard.py``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


from nbhooks._tf import tf
from nbhooks.hooks.pipeline import PipelineCheckpointHook
from nbhooks.requests import PipelineRequest

ROWS, WIDTH, BUFFER, BATCH = 20_000, 64, 10_000, 32


def input_fn():
    t = tf()
    ds = t.data.Dataset.range(ROWS).map(
        lambda i: ({"x": t.fill([WIDTH], t.cast(i, t.float32))}, t.cast(i % 2, t.int32))
    )
    return ds.shuffle(BUFFER, seed=1).repeat().batch(BATCH)


def model_fn(features, labels, mode, params):
    t = tf()
    v1 = t.compat.v1
    kernel = v1.get_variable("w", (WIDTH, 2), initializer=v1.zeros_initializer())
    logits = features["x"] @ kernel
    loss = v1.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
    opt = v1.train.GradientDescentOptimizer(0.01)
    train_op = opt.minimize(loss, global_step=v1.train.get_global_step())
    return t.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def estimator(model_dir: Path):
    t = tf()
    config = t.estimator.RunConfig(
        model_dir=str(model_dir),
        save_checkpoints_steps=100,
        save_summary_steps=None,
        log_step_count_steps=None,
    )
    return t.estimator.Estimator(model_fn, config=config)


def size(prefix: str) -> int:
    return sum(p.stat().st_size for p in Path(prefix).parent.glob(Path(prefix).name + ".*"))


def bench_save_restore(root: Path, repeats: int) -> dict[str, float]:
    t = tf()
    v1 = t.compat.v1
    est_tf, est_nh = estimator(root / "tf"), estimator(root / "nh")
    with t.Graph().as_default():
        v1.train.create_global_step()
        features, _ = v1.data.make_one_shot_iterator(input_fn()).get_next()
        tf_hook = t.data.experimental.CheckpointInputPipelineHook(est_tf)
        nh_hook = PipelineCheckpointHook(est_nh, keep=repeats + 1)
        tf_hook.begin()
        nh_hook.begin()
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            session.run(features)  # fill the shuffle buffer
            tf_saver = tf_hook._checkpoint_saver_hook
            times: dict[str, list[float]] = {
                k: [] for k in ("tf_save", "nh_save", "tf_restore", "nh_restore", "nh_manual")
            }

            def timed(key, fn):
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)

            for step in range(1, repeats + 1):
                tf_path, nh_request = f"{root}/tf/input.ckpt-{step}", None
                pair = [
                    lambda: timed("tf_save", lambda: tf_saver._save(session, step)),  # noqa: B023 (called in this iteration)
                    lambda: timed("nh_save", lambda: nh_hook._saver_hook._save(session, step)),  # noqa: B023 (called in this iteration)
                ]
                for run in pair if step % 2 else pair[::-1]:  # alternate who goes first
                    run()
                timed("nh_manual", lambda: nh_hook._save_manual(session, step))  # noqa: B023 (called in this iteration)
                nh_request = PipelineRequest("restore", nh_hook.store.find(f"input.ckpt-{step}"))
                pair = [
                    lambda: timed(
                        "tf_restore",
                        lambda: tf_saver._get_saver().restore(session, tf_path),  # noqa: B023 (called in this iteration)
                    ),
                    lambda: timed(
                        "nh_restore",
                        lambda: nh_hook._act_in_session(session, nh_request),  # noqa: B023 (called in this iteration)
                    ),
                ]
                for run in pair if step % 2 else pair[::-1]:
                    run()
    result = {k: statistics.median(v) for k, v in times.items()}
    result["tf_bytes"] = size(f"{root}/tf/input.ckpt-{repeats}")
    result["nh_bytes"] = size(f"{root}/nh/input.ckpt-{repeats}")
    return result


def bench_throughput(root: Path, steps: int, trials: int) -> dict[str, float]:
    t = tf()
    hooks = {
        "none": lambda est: [],
        "tf": lambda est: [t.data.experimental.CheckpointInputPipelineHook(est)],
        "nh": lambda est: [PipelineCheckpointHook(est)],
    }
    times: dict[str, list[float]] = {k: [] for k in hooks}
    names = list(hooks)
    for trial in range(trials):
        # rotate who goes first: a variant that follows another pays for its disk writes
        for name in names[trial % 3 :] + names[: trial % 3]:
            make = hooks[name]
            model_dir = root / f"train-{name}-{trial}"
            est = estimator(model_dir)
            start = time.perf_counter()
            est.train(input_fn, hooks=make(est), steps=steps)
            times[name].append(steps / (time.perf_counter() - start))
            shutil.rmtree(model_dir, ignore_errors=True)
    return {k: statistics.median(v) for k, v in times.items()}


class LoopClock(tf().estimator.SessionRunHook):
    """Thread CPU and wall seconds of the step loop, from step ``warm`` to ``end()``."""

    def __init__(self, warm: int = 100) -> None:
        self.warm, self.runs, self.cpu, self.wall = warm, 0, 0.0, 0.0

    def after_run(self, run_context, run_values) -> None:
        self.runs += 1
        if self.runs == self.warm:
            self.cpu, self.wall = time.thread_time(), time.perf_counter()

    def end(self, session) -> None:
        self.cpu, self.wall = time.thread_time() - self.cpu, time.perf_counter() - self.wall


def bench_step_cost(root: Path, steps: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Each hook's (CPU, wall) microseconds per step above no hook: medians of rounds."""
    from bench_eval import MODELS
    from common import rotated

    from nbhooks.demo import make_demo_estimator

    t = tf()
    (train_fn, _), params = MODELS["demo"]()
    hooks = {
        "none": lambda est: [],
        "tf": lambda est: [t.data.experimental.CheckpointInputPipelineHook(est)],
        "nh": lambda est: [PipelineCheckpointHook(est)],
    }
    clocks: dict[str, list[tuple[float, float]]] = {k: [] for k in hooks}
    for i in range(-1, rounds):  # round -1 warms up
        for name in rotated(list(hooks), max(i, 0)):
            model_dir = root / f"step-{name}-{i}"
            est = make_demo_estimator(model_dir, **params)
            clock = LoopClock()
            est.train(train_fn, hooks=[*hooks[name](est), clock], steps=steps)
            if i >= 0:
                clocks[name].append((clock.cpu, clock.wall))
            shutil.rmtree(model_dir, ignore_errors=True)
    per_step = 1e6 / (steps - clock.warm)
    base = clocks.pop("none")

    def above(runs: list[tuple[float, float]], k: int) -> float:
        return statistics.median((a[k] - b[k]) * per_step for a, b in zip(runs, base, strict=True))

    return {name: (above(runs, 0), above(runs, 1)) for name, runs in clocks.items()}


def print_step_cost(root: Path, steps: int, rounds: int) -> None:
    cost = bench_step_cost(root, steps, rounds)
    print(
        f"price per training step between saves (demo model, a save every 600 s), {steps} steps,"
        f" median of {rounds} rounds, microseconds above no pipeline hook (CPU / wall):"
    )
    print(
        f"  TF hook {cost['tf'][0]:+6.1f} / {cost['tf'][1]:+6.1f}   "
        f"nbhooks {cost['nh'][0]:+6.1f} / {cost['nh'][1]:+6.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--trials", type=int, default=9)
    parser.add_argument("--step-steps", type=int, default=4000)
    parser.add_argument("--step-rounds", type=int, default=14)
    parser.add_argument("--step-cost-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.step_cost_only:
            print_step_cost(Path(tmp), args.step_steps, args.step_rounds)
            return
        s = bench_save_restore(Path(tmp), args.repeats)
        print(f"shuffle({BUFFER}) of {WIDTH}-float rows, median of {args.repeats}:")
        ms = {k: v * 1e3 for k, v in s.items()}
        print(
            f"  save    TF {ms['tf_save']:7.1f} ms   nbhooks auto {ms['nh_save']:7.1f} ms"
            f"   manual {ms['nh_manual']:7.1f} ms   ratio auto/TF {s['nh_save'] / s['tf_save']:.2f}"
        )
        print(
            f"  restore TF {ms['tf_restore']:7.1f} ms   nbhooks {ms['nh_restore']:7.1f} ms"
            f"   ratio {s['nh_restore'] / s['tf_restore']:.2f}"
        )
        print(
            f"  size    TF {s['tf_bytes'] / 1e6:7.2f} MB   nbhooks {s['nh_bytes'] / 1e6:7.2f} MB"
            f"   ratio {s['nh_bytes'] / s['tf_bytes']:.3f}"
        )
        r = bench_throughput(Path(tmp), args.steps, args.trials)
        print(
            f"training {args.steps} steps, checkpoints every 100 steps, median of {args.trials}"
            " (steps/s):"
        )
        print(
            f"  no pipeline hook {r['none']:7.0f}   TF hook {r['tf']:7.0f}   nbhooks {r['nh']:7.0f}"
        )
        print(f"  nbhooks / none {r['nh'] / r['none']:.2f}   nbhooks / TF {r['nh'] / r['tf']:.2f}")
        print_step_cost(Path(tmp), args.step_steps, args.step_rounds)


if __name__ == "__main__":
    main()
