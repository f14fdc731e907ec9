"""Voila ends the kernel of a page that is reloaded or closed (Voila 0.5 kept them all alive)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import harness
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

RELOADS = 3
DEADLINE = 60.0  # seconds for the kernels of the pages left behind to end
PROBE = "nbh-kernel-probe"


def kernel_count(server: harness.Server) -> int:
    """How many kernel processes the server has alive."""
    return sum(
        any("ipykernel" in part for part in cmdline)
        for cmdline in harness.live_descendants(server.proc.pid).values()
    )


def test_reloading_a_voila_page_three_times_leaves_one_kernel(tmp_path: Path, page: Any) -> None:
    notebook = harness.write_notebook(
        tmp_path / "probe.ipynb",
        f'import ipywidgets as widgets\nwidgets.Label("probe").add_class("{PROBE}")',
    )
    with harness.voila_server(notebook) as server:
        page.goto(server.url("/"))
        harness.wait_for_class(page, PROBE, timeout=90)
        for _ in range(RELOADS):
            page.reload()
            harness.wait_for_class(page, PROBE, timeout=90)
        harness.poll(
            lambda: kernel_count(server) == 1,  # the open page's own
            timeout=DEADLINE,
            what=f"a single kernel after {RELOADS} reloads",
            interval=0.5,
        )
        log = server.log()
    assert "_xsrf argument missing" not in log, log
    assert not page.console_errors, page.console_errors
