"""The run's widgets in a real kernel (nbclient), read back from the saved widget state."""

from __future__ import annotations

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


def test_rerunning_a_cell_replaces_its_run_even_in_a_new_model_dir():
    """A cell that makes a fresh temp model_dir each time (as the bundled notebooks do), run
    again as JupyterLab runs it (with its cellId): the earlier run is stopped and its widgets
    closed, and a finished earlier run's widgets and publisher thread are closed too."""
    from harness import jupyter_env
    from jupyter_client.manager import start_new_kernel

    tests = str(Path(__file__).parent)
    cell = (
        "import tempfile, threading, models, nbhooks as nh\n"
        "run = nh.TrainingRun(models.make_estimator(tempfile.mkdtemp()), models.input_fn(),\n"
        "                     steps={steps}, report=None)\n"
        "widget = run.panel().widget; run.start()\n"
    )
    km, kc = start_new_kernel(kernel_name="python3", env=jupyter_env())
    try:

        def execute(code: str, cell_id: str) -> tuple[str, str]:
            """Run ``code`` as cell ``cell_id``; return its (stdout, stderr)."""
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
                metadata={"cellId": cell_id},
            )
            kc.shell_channel.send(msg)
            out = {"stdout": "", "stderr": ""}
            while True:
                reply = kc.get_iopub_msg(timeout=240)
                if reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                    continue
                content = reply["content"]
                if reply["msg_type"] == "stream":
                    out[content["name"]] += content["text"]
                elif reply["msg_type"] == "error":
                    raise AssertionError("\n".join(content["traceback"]))
                elif reply["msg_type"] == "status" and content["execution_state"] == "idle":
                    return out["stdout"], out["stderr"]

        execute(f"import sys; sys.path.insert(0, {tests!r})", "setup")
        execute(cell.format(steps=100_000) + "first, first_widget = run, widget", "dashboard-cell")
        execute("from waiting import wait_for; assert wait_for(lambda: first.global_step > 5)", "x")
        _, err = execute(
            cell.format(steps=20) + "second, second_widget = run, widget; second.wait(120)",
            "dashboard-cell",
        )
        assert "stopping the earlier run that was still training" in err
        out, _ = execute(
            "print(first.state, first.model_dir != second.model_dir, first_widget.comm is None)",
            "check",
        )
        assert out.split() == ["stopped", "True", "True"]
        # The second run has finished: running the cell again closes its widgets quietly.
        _, err = execute(cell.format(steps=20) + "third = run; third.wait(120)", "dashboard-cell")
        assert "stopping" not in err
        out, _ = execute(
            "print(second_widget.comm is None,"
            " sum(t.name == 'nbhooks-training' for t in threading.enumerate()))",
            "check",
        )
        assert out.split() == ["True", "0"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
