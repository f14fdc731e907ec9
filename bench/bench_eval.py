"""Issue 3 benchmark: live in-memory evaluation vs the alternatives, and bytes per curve update.

    python bench/bench_eval.py [--steps 2000] [--every 200] [--rounds 3]

All in one process, the variants interleaved round by round so machine noise hits them alike:
(a) nbhooks (LiveEvaluatorHook + history + live CurvesView fed by the Publisher) vs the classic
    loop ``train(steps=every); evaluate()``; target: nbhooks >= 2.2x faster.
(b) nbhooks vs TF's bare ``InMemoryEvaluatorHook`` (which keeps nothing); target >= 0.95x.
(c) bytes sent to the frontend per curve update at 100, 10 000 and 100 000 recorded values
    (2 evaluations x 2 metrics, max_points=500): the JSON of every widget message plus the
    ``nbytes`` of its binary buffers, as counted by the view (widgets send through a comm that
    JSON-encodes, as in a kernel); target: flat, under 50 KB.
(d) seconds per evaluation by how the hook evaluates (tf.data in one persistent session,
    numpy_input_fn in a fresh graph per evaluation, tf.data from checkpoints), and the last
    live loss next to estimator.evaluate() on the checkpoint of that step (must be equal).
    ``--costs-only`` runs just this part.
(e) live evaluation on two models (the demo; 3x128 dense on 20 000 generated rows, 4 000
    evaluated), each figure a ratio of variants run side by side in the same rounds: run time
    over training alone, ``train()`` -> end of the first step over training alone, ms per
    evaluation (the first, which builds the session, left out) over the raw lower bound (a
    bare session on a prebuilt evaluation graph running the update op, nothing recorded).
    Variants: training alone, raw lower bound, TF's ``InMemoryEvaluatorHook``, nbhooks
    synchronous, nbhooks asynchronous (the default: its own threads, at nice 19 on Linux),
    the same in TF's shared pools, and at training's priority (``niceness=0``). Asynchronous
    ms per evaluation is wall time on its own thread, beside training: at nice 19 it runs on
    the CPU training leaves idle and waits for it, at nice 0 it shares the CPU alike.
    ``--live-only`` runs just this part.
(f) ``train()`` -> end of the first training step, bare ``estimator.train`` vs with nbhooks'
    evaluator (synchronous and asynchronous), on both models: each round trains a new model a
    few steps with each variant in turn; median (min-max) of the per-round ratios. Target:
    <= 1.15x. ``evaluate_from="auto"`` builds the evaluation graph in ``begin()`` as every
    evaluator did before: the old timing, measured in the same rounds. ``--first-only`` runs
    just this part (``--rounds`` rounds, 15 by default here).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

from common import install_recording_comm, interleave, median, ratios, spread

import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.demo import digits_input_fns, digits_split, make_demo_estimator
from nbhooks.publish import Publisher
from nbhooks.stores.metrics import MetricHistory
from nbhooks.views.curves import CurvesView


def training_variants(root: str, steps: int, every: int) -> dict:
    train_fn, eval_fn, _ = digits_input_fns()
    counts: dict[str, int] = {}

    def classic(i: int) -> None:
        est = make_demo_estimator(f"{root}/classic{i}")
        for _ in range(steps // every):
            est.train(train_fn, steps=every)
            est.evaluate(eval_fn)
        counts["classic"] = steps // every

    def bare(i: int) -> None:
        est = make_demo_estimator(f"{root}/bare{i}")
        hook = tf().estimator.experimental.InMemoryEvaluatorHook(est, eval_fn, every_n_iter=every)
        est.train(train_fn, steps=steps, hooks=[hook])
        counts["bare"] = steps // every + 2  # at start, every N, and again in end()

    def nbhooks(i: int) -> None:
        est = make_demo_estimator(f"{root}/nbhooks{i}")
        hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=every)
        view = CurvesView(hook.store)
        publisher = Publisher(hook.events, [view])
        est.train(train_fn, steps=steps, hooks=[hook])
        publisher.close()
        counts["nbhooks"] = hook.evaluations
        assert len(hook.store.series("eval", "loss")[0]) == steps // every + 1

    return {
        "classic train()+evaluate()": classic,
        "bare InMemoryEvaluatorHook": bare,
        "nbhooks (hook+history+view)": nbhooks,
    }, counts


def fill(history: MetricHistory, rows: int) -> None:
    step = len(history) // 4
    while len(history) < rows:
        for name in ("train", "eval"):
            loss = 1.0 / (1 + step / 100)
            history.record(name, step, {"loss": loss, "accuracy": 1 - loss / 2})
        step += 1


def bytes_per_update() -> list[tuple[int, int, float]]:
    """(recorded values, bytes sent, ms) for one ordinary update at each history size."""
    history = MetricHistory()
    view = CurvesView(history, max_points=500)
    rows = []
    for target in (100, 10_000, 100_000):
        fill(history, target - 4)
        view.refresh()  # draw the backlog; then time one ordinary update (one new evaluation)
        fill(history, target)
        t0 = time.perf_counter()
        view.refresh()
        ms = (time.perf_counter() - t0) * 1e3
        rows.append((len(history), view.last_update_bytes, ms))
    view.close()
    return rows


def evaluation_costs(root: str, steps: int = 400, every: int = 100) -> list[tuple]:
    """(d) (variant, how, seconds per evaluation, last live loss, checkpoint loss)."""
    train_fn, eval_fn, _ = digits_input_fns()
    _, _, x_eval, y_eval = digits_split()
    numpy_fn = tf().compat.v1.estimator.inputs.numpy_input_fn(
        {"x": x_eval}, y_eval, batch_size=64, num_epochs=1, shuffle=False
    )
    variants = {
        "tf.data": (eval_fn, "memory"),
        "numpy_input_fn": (numpy_fn, "memory"),
        "tf.data, evaluate_from='checkpoints'": (eval_fn, "checkpoints"),
    }
    rows = []
    for i, (name, (fn, mode)) in enumerate(variants.items()):
        est = make_demo_estimator(f"{root}/cost{i}", save_checkpoints_steps=every)
        hook = nh.LiveEvaluatorHook(est, fn, every_n_iter=every, evaluate_from=mode)
        est.train(train_fn, steps=steps, hooks=[hook])
        live = hook.store.latest()["eval"].metrics["loss"]
        checkpoint = est.evaluate(fn, checkpoint_path=f"{root}/cost{i}/model.ckpt-{steps}")
        rows.append((name, hook.how, hook.eval_seconds / hook.evaluations, live,
                     float(checkpoint["loss"])))  # fmt: skip
    return rows


def print_costs(root: str) -> None:
    print("(d) per evaluation, by how the hook evaluates (400 steps, every 100)")
    for name, how, seconds, live, checkpoint in evaluation_costs(root):
        print(
            f"    {name:38s} {how:27s} {seconds * 1e3:7.0f} ms  "
            f"loss live {live:.6f} / checkpoint {checkpoint:.6f}"
        )


# -- (e) live evaluation, side by side, on two models -----------------------------------------
def dense_input_fns(rows: int = 20_000, eval_rows: int = 4_000, width: int = 64) -> tuple:
    """Generated data for the 3x128 model: ``rows`` shuffled training rows, ``eval_rows``."""
    import numpy as np

    rng = np.random.default_rng(0)
    w = rng.normal(size=(width, 10)).astype("float32")

    def data(n: int, seed: int):
        x = np.random.default_rng(seed).normal(size=(n, width)).astype("float32")
        return x, np.argmax(x @ w, axis=1).astype("int32")

    (xt, yt), (xe, ye) = data(rows, 1), data(eval_rows, 2)

    def train_fn():
        ds = tf().data.Dataset.from_tensor_slices(({"x": xt}, yt))
        return ds.shuffle(rows, seed=0).repeat().batch(64)

    def eval_fn():
        return tf().data.Dataset.from_tensor_slices(({"x": xe}, ye)).batch(64)

    return train_fn, eval_fn


MODELS = {
    "demo": lambda: (digits_input_fns()[:2], {}),
    "3x128": lambda: (dense_input_fns(), {"hidden_units": (128, 128, 128)}),
}


class FirstStep(tf().estimator.SessionRunHook):
    """Seconds from ``train()`` called (``t0``) to the end of the first training step."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.seconds: float | None = None

    def after_run(self, run_context, run_values) -> None:
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.t0


def after_first(total: float, first: float, count: int) -> float:
    """The mean of ``count`` timings summing to ``total`` once the ``first`` is left out."""
    return (total - first) / max(count - 1, 1)


class EveryN(tf().estimator.SessionRunHook):
    """Calls ``fire(session)`` when the session starts and every ``every`` steps after, as an
    evaluator with ``every_n_iter=every`` evaluates."""

    def __init__(self, every: int) -> None:
        self.every, self.count = every, 0

    def fire(self, session) -> None:
        raise NotImplementedError

    def after_create_session(self, session, coord) -> None:
        self.fire(session)

    def after_run(self, run_context, run_values) -> None:
        self.count += 1
        if self.count % self.every == 0:
            self.fire(run_context.session)


class RawEvalHook(EveryN):
    """The lower bound: every ``every`` steps (and at the start), a bare session on a prebuilt
    evaluation graph copies the variables in, resets and runs the update op to the input's
    end and fetches the metrics; nothing recorded, no summaries, no events."""

    def __init__(self, estimator, eval_fn, every: int) -> None:
        super().__init__(every)
        self.estimator, self.eval_fn = estimator, eval_fn
        self.seconds, self.cpu, self.evaluations = 0.0, 0.0, 0
        self.first, self.first_cpu = 0.0, 0.0

    def begin(self) -> None:
        from nbhooks._tf_internals import session_config
        from nbhooks.hooks.eval_session import EvalGraph, EvalSession, without_autotune

        v1 = tf().compat.v1
        train_vars = {v.name: v for v in v1.get_collection(v1.GraphKeys.GLOBAL_VARIABLES)}
        fn = without_autotune(self.estimator, self.eval_fn)  # as fast as it gets
        parts = EvalGraph.build(self.estimator, fn, [], train_vars)
        self.session = EvalSession(parts, session_config(self.estimator))

    def fire(self, session) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        s, parts = self.session, self.session.parts
        s.session.run(parts.feed_op, feed_dict=parts.values(session))
        s.session.run(s._reset)
        while True:
            try:
                s.session.run(parts.update_op)
            except tf().errors.OutOfRangeError:
                break
        s.session.run(parts.metrics)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        if self.evaluations == 0:
            self.first, self.first_cpu = seconds, cpu
        self.seconds += seconds
        self.cpu += cpu  # the process's: the evaluation's, while training waits for it
        self.evaluations += 1

    def end(self, session) -> None:
        self.session.close()


def asynchronous(est, eval_fn, every: int, **attrs: object) -> nh.LiveEvaluatorHook:
    """An asynchronous evaluator, ``attrs`` set on it (``niceness``, ``own_threads``)."""
    hook = nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=every, asynchronous=True)
    for key, value in attrs.items():
        setattr(hook, key, value)
    return hook


def live_variants(root: str, model: str, steps: int, every: int) -> tuple[dict, dict]:
    """Training alone, with the raw lower bound, TF's hook, nbhooks sync and async: the
    seconds per run, ms per evaluation and train() -> first step of each."""
    (train_fn, eval_fn), params = MODELS[model]()
    stats: dict[str, dict[str, list[float]]] = {}

    def note(name: str, key: str, value: float) -> None:
        stats.setdefault(name, {}).setdefault(key, []).append(value)

    def variant(name: str, make_hook):
        def run(i: int) -> None:
            est = make_demo_estimator(
                f"{root}/{model}-{name}-{i}", save_checkpoints_steps=None,
                save_checkpoints_secs=None, **params,
            )  # fmt: skip
            hook = make_hook(est)  # made before train() is called, as a Dashboard does
            first = FirstStep()
            est.train(train_fn, steps=steps, hooks=[first, *([hook] if hook else [])])
            note(name, "first", first.seconds)
            if isinstance(hook, nh.LiveEvaluatorHook):
                first_eval = hook.first_eval_seconds or 0.0
                per = after_first(hook.eval_seconds, first_eval, hook.evaluations)
                note(name, "ms/eval", per * 1e3)
                note(name, "skipped", hook.skipped)
                hook.close()
            elif isinstance(hook, RawEvalHook):
                per = after_first(hook.seconds, hook.first, hook.evaluations)
                note(name, "ms/eval", per * 1e3)

        return run

    tf_hook = tf().estimator.experimental.InMemoryEvaluatorHook
    variants = {
        "training alone": variant("training alone", lambda est: None),
        "raw lower bound": variant("raw lower bound", lambda est: RawEvalHook(est, eval_fn, every)),
        "TF's hook": variant("TF's hook", lambda est: tf_hook(est, eval_fn, every_n_iter=every)),
        "nbhooks sync": variant(
            "nbhooks sync", lambda est: nh.LiveEvaluatorHook(est, eval_fn, every_n_iter=every)
        ),
        "nbhooks async": variant("nbhooks async", lambda est: asynchronous(est, eval_fn, every)),
        "async shared pool": variant(
            "async shared pool", lambda est: asynchronous(est, eval_fn, every, own_threads=False)
        ),
        "async at nice 0": variant(
            "async at nice 0", lambda est: asynchronous(est, eval_fn, every, niceness=0)
        ),
    }
    return variants, stats


def print_live(root: str, steps: int, every: int, rounds: int) -> None:
    """(e): each figure a ratio of variants measured side by side in the same rounds."""
    for model in MODELS:
        variants, stats = live_variants(root, model, steps, every)
        for fn in variants.values():  # warm up graph building and TF's kernels
            fn(-1)
        stats.clear()
        times = interleave(variants, rounds)
        base = times["training alone"]
        print(
            f"(e) {model}: {steps} steps, an evaluation every {every}, {rounds} rounds; "
            "median (min-max) of the per-round ratios"
        )
        raw = stats["raw lower bound"]["ms/eval"]
        for name, ts in times.items():
            ratio = [t / b for t, b in zip(ts, base, strict=True)]
            first = [f / b for f, b in zip(stats[name]["first"], stats["training alone"]["first"],
                                           strict=True)]  # fmt: skip
            line = (
                f"    {name:16s} time/training {median(ratio):5.2f}x ({min(ratio):.2f}-"
                f"{max(ratio):.2f})  first step {median(first):4.2f}x ({min(first):.2f}-"
                f"{max(first):.2f})"
            )
            if "ms/eval" in stats[name]:
                ms = stats[name]["ms/eval"]
                vs_raw = [m / r for m, r in zip(ms, raw, strict=True)]
                line += (
                    f"  ms/eval {median(ms):5.1f} = {median(vs_raw):4.2f}x raw "
                    f"({min(vs_raw):.2f}-{max(vs_raw):.2f})"
                )
            if stats[name].get("skipped"):
                line += f"  skipped {median(stats[name]['skipped']):.0f}"
            print(line)


def first_step_variants(root: str, model: str, steps: int = 5) -> tuple[dict, dict]:
    """Bare ``train()``, and with the evaluator: sync, async, and ``evaluate_from="auto"``
    (which builds the evaluation graph in ``begin()`` and evaluates step 0 before the first
    step: the timing of every evaluator before the lazy build)."""
    (train_fn, eval_fn), params = MODELS[model]()
    firsts: dict[str, list[float]] = {}

    def variant(name: str, **options) -> Callable[[int], None]:
        def run(i: int) -> None:
            est = make_demo_estimator(f"{root}/first-{model}-{name}-{i}", **params)
            hooks = [nh.LiveEvaluatorHook(est, eval_fn, **options)] if options else []
            first = FirstStep()  # the hooks are made before train() is called (a Dashboard's)
            est.train(train_fn, steps=steps, hooks=[first, *hooks])
            firsts.setdefault(name, []).append(first.seconds)

        return run

    variants = {
        "bare train()": variant("bare train()"),
        "nbhooks sync": variant("nbhooks sync", asynchronous=False),
        "nbhooks async": variant("nbhooks async", asynchronous=True),
        "built in begin()": variant("built in begin()", evaluate_from="auto"),
    }
    return variants, firsts


def print_first_step(root: str, rounds: int) -> None:
    """(f): ``train()`` -> end of the first step, with and without the evaluator."""
    for model in MODELS:
        variants, firsts = first_step_variants(root, model)
        for fn in variants.values():  # warm up graph building and TF's kernels
            fn(-1)
        firsts.clear()
        interleave(variants, rounds)
        base = firsts["bare train()"]
        print(f"(f) {model}: train() -> end of the first step, {rounds} rounds; median (min-max)")
        for name, got in firsts.items():
            ms = [g * 1e3 for g in got]
            print(
                f"    {name:16s} {spread(ms, '.0f', ' ms')}  ratio "
                f"{spread(ratios(got, base), '.2f')}   (target <= 1.15x)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--costs-only", action="store_true", help="only (d)")
    parser.add_argument("--live-only", action="store_true", help="only (e)")
    parser.add_argument("--first-only", action="store_true", help="only (f)")
    args = parser.parse_args()
    install_recording_comm()
    root = tempfile.mkdtemp(prefix="nbhooks-bench-eval-")
    if args.costs_only:
        print_costs(root)
        return
    if args.first_only:
        print_first_step(root, args.rounds if args.rounds != 3 else 15)
        return
    if args.live_only:
        print_live(root, args.steps, args.every, args.rounds)
        return
    variants, counts = training_variants(root, args.steps, args.every)
    variants["nbhooks (hook+history+view)"](-1)  # warm up graph building and TF's kernels
    times = interleave(variants, args.rounds)
    classic, bare, ours = (median(times[name]) for name in variants)
    print(f"{args.steps} steps, an evaluation every {args.every}; median of {args.rounds} rounds")
    for (name, ts), key in zip(times.items(), ("classic", "bare", "nbhooks"), strict=True):
        runs = " ".join(f"{t:.2f}" for t in ts)
        print(f"    {name:30s} {median(ts):6.2f} s  ({counts[key]} evaluations; runs: {runs})")
    print(f"(a) nbhooks vs classic loop: {classic / ours:.2f}x faster   (target >= 2.2x)")
    print(f"(b) nbhooks vs bare hook:    {bare / ours:.2f}x its speed  (target >= 0.95x)")
    print("(c) bytes per curve update (2 evaluations x 2 metrics, max_points=500)")
    for rows, sent, ms in bytes_per_update():
        print(f"    {rows:>7,} recorded values: {sent / 1e3:5.1f} KB, {ms:5.1f} ms")
    print_costs(root)
    print_live(root, args.steps, args.every, args.rounds)
    print_first_step(root, args.rounds)


if __name__ == "__main__":
    main()
