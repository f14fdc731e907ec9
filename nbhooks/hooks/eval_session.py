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

from nbhooks._tf import estimator_lib, estimator_util, tf, training_evaluation


class EvalSession:
    """The evaluation of a ``LiveEvaluatorHook``'s graph, in one long-lived session."""

    def __init__(self, hook: Any, session_config: Any) -> None:
        v1 = tf().compat.v1
        self._hook = hook
        self._graph = hook._graph
        iterators = [h._iterator for h in hook._all_hooks if _is_dataset_hook(h)]
        with self._graph.as_default():
            local_init = hook._scaffold.local_init_op
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
        stop_hook = training_evaluation()._StopAfterNEvalsHook
        hooks = hook._all_hooks
        return (
            any(_is_dataset_hook(h) for h in hooks)
            and all(_is_dataset_hook(h) or isinstance(h, stop_hook) for h in hooks)
            and not hook._graph.get_collection(v1.GraphKeys.QUEUE_RUNNERS)
            and hook._scaffold.init_op is None
            and hook._scaffold.ready_op is None
        )

    def evaluate(self, train_session: Any) -> Mapping[str, Any]:
        """Evaluate the training variables of ``train_session``; returns the metrics dict."""
        hook, run = self._hook, self.session.run
        values = train_session.run(hook._var_name_to_train_var)
        run(
            hook._var_feed_op,
            feed_dict={hook._var_name_to_placeholder[name]: v for name, v in values.items()},
        )
        run(self._reset)
        steps = 0
        out_of_range = tf().errors.OutOfRangeError
        while hook._steps is None or steps < hook._steps:
            try:
                run(hook._update_op)
            except out_of_range:
                break
            steps += 1
        results = run(hook._eval_dict)
        global_step = results[tf().compat.v1.GraphKeys.GLOBAL_STEP]
        estimator_lib()._write_dict_to_summary(hook._eval_dir, results, global_step)
        return results

    def close(self) -> None:
        self.session.close()


def _is_dataset_hook(hook: Any) -> bool:
    return isinstance(hook, estimator_util()._DatasetInitializerHook)
