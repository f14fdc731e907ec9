"""Headless widget tests of FinalOpsView: real ipywidgets with a recording comm."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from waiting import wait_for

from nbhooks.events import EventBus, FinalOpsEvent, RunStateEvent
from nbhooks.publish import Publisher
from nbhooks.stores.final_values import FinalValuesTable
from nbhooks.views.final_ops import FinalOpsView, display_frame

MALICIOUS = "<img src=x onerror=alert(1)>"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"


def names_in(view: FinalOpsView) -> list[str]:
    """The ``name`` cells of the rendered table, in order (5th column)."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", view.html.value, flags=re.S)
    cells = [re.findall(r"<td>(.*?)</td>", row, flags=re.S) for row in rows]
    return [row[4] for row in cells if row]


@pytest.fixture
def table() -> FinalValuesTable:
    table = FinalValuesTable()
    run = table.new_run()
    values = {"w": np.array([3.0, 4.0]), "acc": 0.9, MALICIOUS: np.array([-1.0, 0.0, 1.0])}
    table.add_values(run, "train", 10, values)
    table.add_values(table.new_run(), "eval", 10, {"label": np.bytes_(MALICIOUS.encode())})
    return table


@pytest.fixture
def view(table, tmp_path, comm_log):
    view = FinalOpsView(table, export_dir=tmp_path / "exports")
    yield view
    view.close()


def test_names_and_values_are_escaped_in_the_widget_and_on_the_wire(view, comm_log):
    assert "nbh-final-ops" in view.widget._dom_classes
    assert names_in(view) == ["w", "acc", ESCAPED, "label"]
    assert "<img" not in view.html.value and view.html.value.count(ESCAPED) == 2
    sent = [
        d.get("state", {}).get("value") for t, d, _ in comm_log if t in ("comm_open", "comm_msg")
    ]
    table_html = [v for v in sent if isinstance(v, str) and "nbh-final-ops-table" in v]
    assert table_html and all("<img" not in v and ESCAPED in v for v in table_html)


def test_values_summaries_and_the_summary_line(view):
    row = re.search(r"<td>w</td>(.*?)</tr>", view.html.value, flags=re.S).group(1)
    assert re.findall(r"<td>(.*?)</td>", row) == [
        "float64", "2", "", "3.5", "0.5", "3", "4", "5", "",
    ]  # fmt: skip
    assert re.search(
        r"<td>acc</td>\s*<td>float64</td>\s*<td>scalar</td>\s*<td>0.9</td>", view.html.value
    )
    assert view.summary.value == "4 values · 2 sessions"


def test_sort_and_filter_are_plain_widgets(view):
    view.sort_by.value = "l2"
    view.descending.value = True
    assert names_in(view)[:2] == ["w", ESCAPED]  # L2 5 then sqrt(2); scalars last
    view.sort_by.value = "name"
    view.descending.value = False
    assert names_in(view) == [ESCAPED, "acc", "label", "w"]  # "<" sorts before letters
    view.contains.value = "ImG"
    assert names_in(view) == [ESCAPED]


def test_a_failed_session_is_a_red_row_and_a_banner_not_stale_values(view, table):
    table.add_failure(table.new_run(), "train", 12, f"InvalidArgumentError: {MALICIOUS}")
    view.on_events([FinalOpsEvent(3, "train", 12, (), failed=True, message="x")])
    failed = re.findall(r'<tr class="nbh-failed">(.*?)</tr>', view.html.value, flags=re.S)
    assert len(failed) == 1 and "<td>FAILED</td>" in failed[0]
    assert f"session failed, no final values: InvalidArgumentError: {ESCAPED}" in failed[0]
    assert "run 3 (train): session failed" in view.banner.value and "<img" not in view.banner.value
    assert view.summary.value == "4 values · 3 sessions · 1 failed"
    view.contains.value = "no such op"
    assert len(re.findall(r"<tr class=\"nbh-failed\">", view.html.value)) == 1  # always shown


def test_fifty_ops_are_all_rendered_in_a_scroll_box_with_a_fixed_header(table, comm_log):
    run = table.new_run()
    table.add_values(run, "train", 1, {f"layer_{i:02d}/kernel": np.full(3, i) for i in range(50)})
    view = FinalOpsView(table, max_height="20em")
    assert len(re.findall(r"<td>layer_\d\d/kernel</td>", view.html.value)) == 50
    assert "max-height: 20em; overflow: auto" in view.html.value
    assert "position: sticky" in view.html.value and view.html.value.count("<th>") == 14
    view.close()


def test_export_button_writes_csv_and_reports_the_path(view, tmp_path):
    view.export.click()
    written = sorted((tmp_path / "exports").glob("final_ops-*.csv"))
    assert len(written) == 1 and str(written[0]) in view.status.value
    frame = pd.read_csv(written[0])
    assert list(frame["name"]) == ["w", "acc", MALICIOUS, "label"]  # the file has the raw text
    view.export.click()
    assert len(list((tmp_path / "exports").glob("final_ops-*.csv"))) == 2  # never overwrites


def test_export_failure_is_shown_not_raised(table, tmp_path, comm_log):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    view = FinalOpsView(table, export_dir=blocker / "sub")
    view.export.click()
    assert "CSV export failed" in view.status.value
    view.close()


def test_unchanged_table_sends_no_messages(view, table, comm_log):
    before = len(comm_log.updates())
    view.on_events([FinalOpsEvent(1, "train", 10, ())])
    view.refresh()
    assert len(comm_log.updates()) == before
    table.add_values(table.new_run(), "train", 20, {"w": np.ones(2)})
    view.on_events([object(), FinalOpsEvent(3, "train", 20, ())])
    assert len(comm_log.updates()) > before and names_in(view)[-1] == "w"


def test_publisher_feeds_the_view_from_a_real_training(estimator, train_fn, comm_log):
    from nbhooks.hooks.final_ops import FinalOpsTableHook

    hook = FinalOpsTableHook({"kernel": "dense/kernel", MALICIOUS: "global_step"})
    view = FinalOpsView(hook.table)
    publisher = Publisher(hook.events, [view])
    assert "<td>" not in view.html.value  # nothing fetched yet: no rows
    estimator.train(train_fn, steps=3, hooks=[hook])
    assert wait_for(lambda: ESCAPED in view.html.value, timeout=10)
    assert names_in(view) == ["kernel", ESCAPED]
    assert re.search(
        rf"<td>{re.escape(ESCAPED)}</td>\s*<td>int64</td>\s*<td>scalar</td>\s*<td>3</td>",
        view.html.value,
    )
    publisher.close()
    assert view.widget.comm is None and view.html.comm is None


def test_view_needs_a_table():
    with pytest.raises(TypeError, match="needs a FinalValuesTable"):
        FinalOpsView(pd.DataFrame())


def test_display_frame_sorts_mixed_values_numerically():
    table = FinalValuesTable()
    table.add_values(table.new_run(), "train", 1, {"a": 10, "b": 9.5, "c": np.bytes_(b"x")})
    shown = display_frame(table.to_frame(), "value", descending=True)
    assert list(shown["name"]) == ["a", "b", "c"] and list(shown["value"]) == ["10", "9.5", "x"]


def test_an_empty_event_bus_view_starts_empty(comm_log):
    view = FinalOpsView(FinalValuesTable())
    publisher = Publisher(EventBus(), [view])
    assert "<td>" not in view.html.value and view.summary.value == "0 values · 0 sessions"
    publisher.close()


def test_any_event_batch_redraws_a_table_changed_by_another_hook(view, table):
    table.add_values(table.new_run(), "eval", 30, {"from another bus": 1.0})
    view.on_events([RunStateEvent("running", step=30)])
    assert names_in(view)[-1] == "from another bus"


def test_resync_sends_the_whole_state_again(view, comm_log):
    before = len(comm_log.updates())
    view.resync()
    resent = [d["state"] for d in comm_log.updates()[before:]]
    assert any(ESCAPED in str(state.get("value", "")) for state in resent)
