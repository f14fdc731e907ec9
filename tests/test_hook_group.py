"""nbhooks' own hooks handed to TensorFlow as one (nbhooks.hooks.group), in real sessions."""

from __future__ import annotations

from typing import Any

import models
import pytest

import nbhooks as nh
from nbhooks._tf import tf
from nbhooks.hooks.group import HookGroup, grouped
from nbhooks.hooks.knobs import KnobHook
from nbhooks.hooks.pace import PaceHook


class Recorder(tf().estimator.SessionRunHook):
    """Logs every call it gets, with what it was handed, into a shared ``log``; asks for
    ``fetch`` and ``feed`` at each step, and a stop at step ``stop_at``."""

    def __init__(self, name: str, log: list, fetch=None, feed=None, stop_at=None) -> None:
        self.name, self.log, self.fetch, self.feed, self.stop_at = name, log, fetch, feed, stop_at

    def begin(self) -> None:
        self.log.append((self.name, "begin"))

    def after_create_session(self, session, coord) -> None:
        self.log.append((self.name, "after_create_session"))

    def before_run(self, run_context):
        self.log.append((self.name, "before_run"))
        if self.fetch is None and self.feed is None:
            return None
        return tf().estimator.SessionRunArgs(self.fetch, self.feed)

    def after_run(self, run_context, run_values) -> None:
        results = run_values.results
        self.log.append((self.name, "after_run", None if results is None else repr(results)))
        if self.stop_at is not None and results is not None and results["step"] >= self.stop_at:
            run_context.request_stop()

    def end(self, session) -> None:
        self.log.append((self.name, "end"))


class Silent(tf().estimator.SessionRunHook):
    """No method of its own."""


def run_session(make_hooks, group: bool) -> list:
    """Run a session to its stop with the hooks ``make_hooks(log, step, fed)`` gives, grouped
    or as TensorFlow takes them one by one; returns the log of every call."""
    v1 = tf().compat.v1
    log: list = []
    with tf().Graph().as_default():
        step = v1.train.get_or_create_global_step()
        fed = v1.placeholder_with_default(0.0, ())
        train = v1.assign_add(step, 1)
        hooks = make_hooks(log, step, fed)
        if group:
            hooks = [HookGroup(hooks)]
        with v1.train.MonitoredSession(hooks=hooks) as session:
            while not session.should_stop():
                log.append(("caller", session.run(train)))
    return log


def test_a_group_runs_its_hooks_exactly_as_tensorflow_runs_them_one_by_one():
    def hooks(log, step, fed):
        return [
            Recorder("fetches", log, fetch={"step": step}),
            Silent(),
            Recorder("feeds", log, fetch={"step": step, "fed": fed * 2}, feed={fed: 21.0}),
            Recorder("stops", log, fetch={"step": step}, stop_at=3),
            Recorder("plain", log),
        ]

    alone, together = run_session(hooks, group=False), run_session(hooks, group=True)
    assert together == alone
    assert ("feeds", "after_run", repr({"step": 1, "fed": 42.0})) in together
    ends = [(name, "end") for name in ("fetches", "feeds", "stops", "plain")]
    assert together[-4:] == ends and together[-5][0] == "caller"


def test_a_tensor_fed_by_two_hooks_of_a_group_is_refused_as_tensorflow_refuses_it():
    def hooks(log, step, fed):
        return [Recorder("a", log, feed={fed: 1.0}), Recorder("b", log, feed={fed: 2.0})]

    with pytest.raises(RuntimeError, match="Same tensor is fed by two hooks"):
        run_session(hooks, group=True)


def test_run_options_of_two_hooks_in_one_step_are_refused_naming_both():
    class Traced(Recorder):
        def before_run(self, run_context):
            options = tf().compat.v1.RunOptions(trace_level=1)
            return tf().estimator.SessionRunArgs(self.fetch, options=options)

    def hooks(log, step, fed):
        return [Traced("one", log, {"step": step}), Traced("two", log, {"step": step})]

    one = run_session(lambda log, step, fed: [Traced("one", log, {"step": step}, stop_at=2)], True)
    assert one[-1] == ("one", "end")  # one hook's options are passed on
    with pytest.raises(RuntimeError, match=r"Traced.*Traced.*pass one of them"):
        run_session(hooks, group=True)


def test_grouping_keeps_the_order_and_leaves_others_hooks_apart():
    class Mine(PaceHook):  # a user's subclass: TensorFlow sees it as it is
        pass

    pace, knobs, later, mine, foreign = (
        PaceHook(None),
        KnobHook(),
        PaceHook(None),
        Mine(None),
        Silent(),
    )
    hooks = grouped([pace, knobs, foreign, later, mine])
    assert [type(h) for h in hooks] == [HookGroup, Silent, PaceHook, Mine]
    assert hooks[0].hooks == (pace, knobs) and hooks[1:] == [foreign, later, mine]


def test_a_dashboard_hands_tensorflow_its_hooks_as_one_and_the_users_apart(tmp_path):
    """Before: each of the Dashboard's hooks was one of TensorFlow's, each paying TF's
    dispatch at every step (~0.8 µs a hook: 16 ms of a 2000-step demo run's CPU)."""
    estimator = models.make_estimator(tmp_path / "m")
    given: list[list[Any]] = []
    train = estimator.train

    def spy(*args: Any, **kwargs: Any) -> Any:
        given.append(list(kwargs["hooks"]))
        return train(*args, **kwargs)

    estimator.train = spy
    user = Silent()
    dash = nh.Dashboard(estimator, models.input_fn(), models.input_fn(repeat=False),
                        every_n_iter=5, steps=10, hooks=[user])  # fmt: skip
    try:
        dash.train()
        assert dash.wait(timeout=120) == "finished"
        [hooks] = given
        assert len(hooks) == 2 and hooks[1] is user
        names = [type(h).__name__ for h in hooks[0].hooks]
        assert names[0] == "ControlHook" and "LiveEvaluatorHook" in names, names
        assert dash.metrics.has("eval", 10)  # and everything still does its work
    finally:
        dash.close()
