"""One evaluation session kept open across in-memory evaluations.

TF's ``InMemoryEvaluatorHook`` evaluates through ``evaluation._evaluate_once``: every call adds
ops to the evaluation graph and builds a new Scaffold and MonitoredSession (TF issue 30807:
memory grows), which costs far more than the evaluation batches themselves on a small model.
:class:`EvalSession` builds the same evaluation once and reruns it: copy the training
variables in, reset the metric variables and the input iterator, run the update op until the
input ends (or ``steps``), fetch the metric values, write the summaries. It is used only when
it is equivalent: a ``tf.data`` input and no evaluation hooks of the user's or the model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbhooks import _tf_internals as tfi
from nbhooks._tf import tf


class EvalSession:
    """The evaluation of a ``LiveEvaluatorHook``'s graph, in one long-lived session."""

    def __init__(self, hook: Any, session_config: Any) -> None:
        v1 = tf().compat.v1
        self._hook = hook
        self._graph = tfi.eval_graph(hook)
        iterators = tfi.dataset_iterators(tfi.eval_hooks(hook))
        with self._graph.as_default():
            local_init = tfi.eval_scaffold(hook).local_init_op
            self._reset = [
                local_init if local_init is not None else v1.train.Scaffold.default_local_init_op(),
                *(it.initializer for it in iterators),
            ]
            init = v1.global_variables_initializer()
        self._graph.finalize()  # nothing may be added per evaluation
        self.session = v1.Session(graph=self._graph, config=session_config)
        try:
            self.session.run(init)
        except BaseException:
            self.session.close()
            raise

    @classmethod
    def applies(cls, hook: Any) -> bool:
        """True when reusing one session gives exactly TF's evaluation for ``hook``."""
        v1 = tf().compat.v1
        hooks = tfi.eval_hooks(hook)
        scaffold = tfi.eval_scaffold(hook)
        return (
            any(tfi.is_dataset_hook(h) for h in hooks)
            and all(tfi.is_dataset_hook(h) or tfi.is_eval_steps_hook(h) for h in hooks)
            and not tfi.eval_graph(hook).get_collection(v1.GraphKeys.QUEUE_RUNNERS)
            and scaffold.init_op is None
            and scaffold.ready_op is None
        )

    def evaluate(self, train_session: Any) -> Mapping[str, Any]:
        """Evaluate the training variables of ``train_session``; returns the metrics dict."""
        hook, run = self._hook, self.session.run
        tfi.copy_training_variables(hook, train_session, self.session)
        run(self._reset)
        steps, limit, update_op = 0, tfi.eval_steps(hook), tfi.eval_update_op(hook)
        out_of_range = tf().errors.OutOfRangeError
        while limit is None or steps < limit:
            try:
                run(update_op)
            except out_of_range:
                break
            steps += 1
        results = run(tfi.eval_metric_tensors(hook))
        global_step = results[tf().compat.v1.GraphKeys.GLOBAL_STEP]
        tfi.write_eval_summary(tfi.eval_dir(hook), results, global_step)
        return results

    def close(self) -> None:
        self.session.close()
