"""The run's widgets in a real kernel (nbclient), read back from the saved widget state."""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import find_models, run_notebook, widget_state

pytestmark = [pytest.mark.slow, pytest.mark.kernel]

NOTEBOOK = Path(__file__).parent / "notebooks" / "run_panel.ipynb"


@pytest.fixture(scope="module")
def executed():
    return run_notebook(NOTEBOOK, timeout=300)


def outputs_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_start_click_trains_and_the_widgets_show_it(executed):
    assert outputs_text(executed.cells[1]).strip() == "finished 300"
    state = widget_state(executed)
    bars = find_models(state, "IntProgressModel", "nbh-progress")
    finished = [b for b in bars if b["state"]["bar_style"] == "success"]
    assert len(finished) == 1
    assert (finished[0]["state"]["value"], finished[0]["state"]["max"]) == (300, 300)
    start = find_models(state, "ButtonModel", "nbh-start")
    assert start and all(not b["state"]["disabled"] for b in start)


def test_failure_is_red_with_its_message_and_reraised(executed):
    assert "re-raised: broken <input_fn>" in outputs_text(executed.cells[2])
    state = widget_state(executed)
    bars = find_models(state, "IntProgressModel", "nbh-progress")
    assert [b["state"]["bar_style"] for b in bars].count("danger") == 1
    errors = [m["state"]["value"] for m in find_models(state, "HTMLModel", "nbh-error")]
    assert any("ValueError: broken &lt;input_fn&gt;" in v for v in errors)


def test_nothing_printed_from_the_training_thread(executed):
    for cell in executed.cells:
        assert "[nbhooks]" not in outputs_text(cell)
        assert not any(
            o.get("name") == "stderr" and "Traceback" in o.get("text", "") for o in cell.outputs
        )


@pytest.fixture
def execute():
    """A real kernel driven as JupyterLab drives it: ``execute(code, cell_id)`` sends an
    execute request with ``metadata={"cellId": cell_id}`` (none when ``cell_id`` is None, as
    nbclient sends) and returns its (stdout, stderr); an error in the cell fails the test,
    but a KeyboardInterrupt, which ends stderr. ``interrupt_when``: interrupt the kernel once
    it returns True (polled while the cell runs)."""
    from harness import jupyter_env
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env=jupyter_env())

    def run(
        code: str, cell_id: str | None, interrupt_when: Callable[[], bool] | None = None
    ) -> tuple[str, str]:
        msg = kc.session.msg(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            metadata={"cellId": cell_id} if cell_id is not None else {},
        )
        kc.shell_channel.send(msg)
        out = {"stdout": "", "stderr": ""}
        deadline = time.monotonic() + 240
        while True:
            if interrupt_when is not None and interrupt_when():
                km.interrupt_kernel()  # as the interrupt button does
                interrupt_when = None
            try:
                reply = kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                assert time.monotonic() < deadline, f"no end of {code!r} within 240 s"
                continue
            if reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            content = reply["content"]
            if reply["msg_type"] == "stream":
                out[content["name"]] += content["text"]
            elif reply["msg_type"] == "error" and content["ename"] == "KeyboardInterrupt":
                out["stderr"] += f"KeyboardInterrupt: {content['evalue']}"
            elif reply["msg_type"] == "error":
                raise AssertionError("\n".join(content["traceback"]))
            elif reply["msg_type"] == "status" and content["execution_state"] == "idle":
                return out["stdout"], out["stderr"]

    try:
        tests = str(Path(__file__).parent)
        run(f"import sys, threading; sys.path.insert(0, {tests!r})", "setup")
        yield run
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


CELL = (
    "import tempfile, threading, models, nbhooks as nh\n"
    "run = nh.TrainingRun(models.make_estimator(tempfile.mkdtemp()), models.input_fn(),\n"
    "                     steps={steps}, report=None)\n"
    "widget = run.panel().widget; run.start()\n"
)
TRAINING = "sum(t.name == 'nbhooks-training' for t in threading.enumerate())"


def test_the_interrupt_button_during_wait_stops_training_cleanly(execute, tmp_path):
    """Before: wait() ended with a bare KeyboardInterrupt and training went on unseen."""
    model_dir = tmp_path / "model"
    code = (
        "import models, nbhooks as nh\n"
        f"dash = nh.Dashboard(models.make_linear_classifier({str(model_dir)!r}),\n"
        "                    models.input_fn(), evals=models.input_fn(n=64, repeat=False),\n"
        "                    steps=1_000_000)\n"
        "dash.widget; dash.train(); dash.wait()"
    )
    # The first checkpoint is written once the session runs: wait() has long been waiting.
    _, err = execute(code, "cell", interrupt_when=(model_dir / "checkpoint").exists)
    assert re.search(r"KeyboardInterrupt: training stopped at step [\d,]+: wait\(\) was", err)
    out, _ = execute(
        "import tensorflow as tf\n"
        "step = dash.run.global_step\n"
        "latest = tf.train.latest_checkpoint(dash.run.model_dir)\n"
        f"print(dash.state, step > 0, latest.endswith(f'-{{step}}'), {TRAINING})\n"
        "print(dash.run.reason)",
        "check",
    )
    assert out.splitlines() == ["stopped True True 0", "interrupted (KeyboardInterrupt)"]


def test_rerunning_a_cell_replaces_its_run_even_in_a_new_model_dir(execute):
    """A cell that makes a fresh temp model_dir each time (as the bundled notebooks do), run
    again as JupyterLab runs it (with its cellId): the earlier run is stopped and its widgets
    closed, and a finished earlier run's widgets and publisher thread are closed too."""
    execute(CELL.format(steps=100_000) + "first, first_widget = run, widget", "dashboard-cell")
    execute("from waiting import wait_for; assert wait_for(lambda: first.global_step > 5)", "x")
    _, err = execute(
        CELL.format(steps=20) + "second, second_widget = run, widget; second.wait(120)",
        "dashboard-cell",
    )
    assert "stopping the earlier run that was still training" in err
    out, _ = execute(
        "print(first.state, first.model_dir != second.model_dir, first_widget.comm is None)",
        "check",
    )
    assert out.split() == ["stopped", "True", "True"]
    # The second run has finished: running the cell again closes its widgets quietly.
    _, err = execute(CELL.format(steps=20) + "third = run; third.wait(120)", "dashboard-cell")
    assert "stopping" not in err
    out, _ = execute(f"print(second_widget.comm is None, {TRAINING})", "check")
    assert out.split() == ["True", "0"]


THREE_IN_ONE_CELL = (
    "import tempfile, models, nbhooks as nh\n"
    "dashes = [nh.Dashboard(models.make_estimator(tempfile.mkdtemp()), models.input_fn(),\n"
    "                       evals=models.input_fn(n=64, repeat=False), steps=100_000,\n"
    "                       pipeline_checkpoints=False)\n"
    "          for _ in range(3)]\n"
    "for d in dashes: d.widget; d.train()\n"
)


@pytest.mark.parametrize("cell_id", ["classroom-cell", None], ids=["cellId", "no cellId"])
def test_dashboards_made_side_by_side_in_one_cell_all_live(execute, cell_id):
    """Three dashboards in one cell all train; running the cell again replaces all three (by
    its cellId, or by its code where the front-end sends none)."""
    execute(THREE_IN_ONE_CELL, cell_id)
    execute("first = dashes", "keep")
    out, _ = execute(
        "from waiting import wait_for\n"
        "assert wait_for(lambda: all(d.run.global_step > 5 for d in first))\n"
        f"print([d.state for d in first], {TRAINING})",
        "check",
    )
    assert out.strip() == "['running', 'running', 'running'] 3"
    _, err = execute(THREE_IN_ONE_CELL, cell_id)  # the same cell, run again
    execute("second = dashes", "keep")
    assert err.count("stopping the earlier run that was still training") == 3
    out, _ = execute(
        "assert wait_for(lambda: all(d.run.global_step > 5 for d in second))\n"
        f"print([d.state for d in first], [d.state for d in second], {TRAINING})\n"
        "for d in second: d.close()",
        "check",
    )
    assert out.strip() == ("['stopped', 'stopped', 'stopped'] ['running', 'running', 'running'] 3")


def test_eight_reruns_leave_at_most_three_more_threads(execute):
    cell = CELL.format(steps=20) + "run.wait(120)"
    execute(cell, "rerun-cell")
    out, _ = execute("print(threading.active_count())", "check")
    before = int(out)
    for _ in range(8):
        execute(cell, "rerun-cell")
    out, _ = execute(f"print(threading.active_count(), {TRAINING})", "check")
    after, training = map(int, out.split())
    assert (after - before, training) <= (3, 0), (before, after)


CLUSTER_CELL = (
    "import models, nbhooks as nh\n"
    "from nbhooks._tf import tf\n"
    "def make(config):\n"
    "    return tf().estimator.Estimator(models.model_fn, config=config,\n"
    "                                    params={'learning_rate': 0.1})\n"
    "cluster = nh.LocalCluster(make, models.input_fn(), None, steps=10**7, workers=0, ps=1,\n"
    "                          evaluator=False).start()\n"
)


def test_rerunning_a_cell_on_a_fixed_model_dir_is_not_refused_its_own_lock(execute, tmp_path):
    """The cell's earlier cluster (its chief holding the model_dir's training lock) is ended
    before the new one checks the lock: run again with its cellId, the cell starts anew."""
    cell = CLUSTER_CELL.replace(
        "evaluator=False)", f"evaluator=False, model_dir={str(tmp_path / 'job')!r})"
    )
    execute(
        cell + "from waiting import poll\n"
        "from nbhooks.jobfiles import JobFiles\n"
        "poll(lambda: JobFiles(cluster.model_dir).read_job_start(), 120, 'the chief to begin')",
        "fixed-dir-cell",
    )
    _, err = execute(cell + "cluster.stop()", "fixed-dir-cell")  # raised if refused
    assert "re-running a notebook cell ends the local cluster it started before" in err
    assert "cannot train" not in err


def test_rerunning_a_cell_ends_the_local_cluster_it_started(execute):
    """A cell that starts a local cluster, run again with its cellId: the earlier cluster's
    processes end (with a warning); a cell elsewhere leaves the new one running."""
    execute(CLUSTER_CELL + "first = list(cluster.pids.values())", "cluster-cell")
    _, err = execute(CLUSTER_CELL + "second = cluster", "cluster-cell")
    assert "re-running a notebook cell ends the local cluster it started before" in err
    out, _ = execute(
        "import psutil\n"
        "from waiting import wait_for\n"
        "def alive(pid):\n"
        "    try:\n"
        "        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE\n"
        "    except psutil.NoSuchProcess:\n"
        "        return False\n"
        "ended = wait_for(lambda: not any(alive(p) for p in first), 60)\n"
        "running = all(alive(p) for p in second.pids.values())\n"
        "second.stop()\n"
        "print(ended, running, wait_for(lambda: not any(alive(p) for p in second.pids.values())))",
        "check",
    )
    assert out.split() == ["True", "True", "True"]
