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
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import install_recording_comm, interleave, median

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--costs-only", action="store_true", help="only (d)")
    args = parser.parse_args()
    install_recording_comm()
    root = tempfile.mkdtemp(prefix="nbhooks-bench-eval-")
    if args.costs_only:
        print_costs(root)
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


if __name__ == "__main__":
    main()
