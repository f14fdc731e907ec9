"""Browser-tier fixtures: isolated Jupyter directories, Debian's Chromium, a fresh page per test.

Servers are context managers from :mod:`harness` (``jupyter_lab``, ``voila_server``,
``notebook7``) so that each test starts and stops its own. The browser is launched once for
this package and closed when its last test ends (a session-wide browser would still be running
during the later tiers, whose tests check that they leave no process behind); each test gets a
new browser context (its own cookies, storage and cache) and page.
A failing test leaves a screenshot of its page in ``test-artifacts/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
import pytest


@pytest.fixture(scope="package", autouse=True)
def jupyter_isolation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Point the Jupyter/IPython user directories of this session at a temp dir."""
    variables = harness.isolation_vars(tmp_path_factory.mktemp("jupyter"))
    with pytest.MonkeyPatch.context() as mp:
        for name, value in variables.items():
            mp.setenv(name, value)
        yield variables


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright's sync API."""
    if not Path(harness.CHROMIUM).exists():
        pytest.fail(f"{harness.CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=harness.CHROMIUM, headless=True, args=harness.CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


#: anywidget 0.11 (plotly 7's FigureWidget runs on it) gives a widget's front-end module 2 s to
#: load, then drops every message to that model for good: the figure stays plotly's empty
#: default. Loading means compiling plotly's 5 MB bundle, once per figure (a new blob URL each);
#: on a loaded 2-core CI machine that can take longer. Pages here get 60 s, so that a test sees
#: nbhooks' behaviour rather than that race (README, "Known limits"). Only a 2000 ms timeout
#: is changed; anywidget is the only code on these pages that asks for one.
ANYWIDGET_PATIENCE = """{
  const timeout = AbortSignal.timeout.bind(AbortSignal);
  AbortSignal.timeout = ms => timeout(ms === 2000 ? 60000 : ms);
}"""


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page in a fresh browser context; ``page.console_errors`` lists its console errors."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(ANYWIDGET_PATIENCE)
    context.set_default_timeout(30_000)
    new_page = context.new_page()
    new_page.console_errors = harness.collect_console_errors(new_page)
    yield new_page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        harness.snap(new_page, f"FAILED-{request.node.name}")
    context.close()


@pytest.fixture
def notebooks_dir(tmp_path: Path) -> Path:
    """A scratch copy of ``tests/notebooks`` to serve (tests never write into the repo)."""
    dest = tmp_path / "notebooks"
    shutil.copytree(harness.NOTEBOOKS, dest)
    return dest
