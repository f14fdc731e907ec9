"""Real kernels, real servers and a real browser for tests.

* Notebooks: :func:`run_notebook` executes one in a real kernel (nbclient) and keeps the widget
  state; :func:`widget_state`, :func:`find_models` and :func:`find_model` read it back.
* Jupyter isolation: :func:`jupyter_env` points every Jupyter/IPython user directory at a temp
  dir (the venv's lab extensions stay visible: they live under ``sys.prefix``); news off.
* Servers: :func:`jupyter_lab`, :func:`notebook7` and :func:`voila_server` are context managers
  yielding a :class:`Server` (127.0.0.1, free port, random token, own session); on exit the
  server and its kernels are stopped by PID, and on error its log is printed.
* Browser helpers for JupyterLab pages: :func:`open_lab_notebook`, :func:`wait_kernel_idle`,
  :func:`run_all`, :func:`wait_for_class`, :func:`plot_point_counts`, :func:`progress_width`,
  :func:`click_widget_button`, :func:`snap` (screenshots in ``test-artifacts/``).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waiting import poll

from nbhooks.demo.servers import (
    ServerSpec,
    free_port,
    jupyter_app_spec,
    stop_process_tree,
    voila_spec,
    wait_until_ready,
)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
ARTIFACTS = ROOT / "test-artifacts"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
SERVER_READY_TIMEOUT = 90.0
NEWS_SETTINGS = "@jupyterlab/apputils-extension/notification.jupyterlab-settings"

# --- Jupyter isolation ---------------------------------------------------------------------


def isolation_vars(base: Path) -> dict[str, str]:
    """The Jupyter/IPython user directories under ``base`` (created), news pop-up turned off."""
    dirs = {
        "JUPYTER_CONFIG_DIR": base / "config",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_RUNTIME_DIR": base / "runtime",
        "IPYTHONDIR": base / "ipython",
        "JUPYTERLAB_SETTINGS_DIR": base / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": base / "lab-workspaces",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    news = dirs["JUPYTERLAB_SETTINGS_DIR"] / NEWS_SETTINGS
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    return {name: str(path) for name, path in dirs.items()}


@functools.cache
def jupyter_home() -> Path:
    """One temp dir per test process for the isolated Jupyter user directories."""
    base = Path(tempfile.mkdtemp(prefix="nbhooks-jupyter-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    return base


def jupyter_env(base: Path | None = None) -> dict[str, str]:
    """``os.environ`` plus the isolated Jupyter directories (under ``base`` or a shared temp)."""
    env = dict(os.environ)
    env.update(isolation_vars(base or jupyter_home()))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- notebooks in a real kernel ------------------------------------------------------------


def run_notebook(
    path: str | Path, timeout: int = 600, cwd: str | Path | None = None
) -> Any:  # nbformat.NotebookNode
    """Execute the notebook at ``path`` in a real, isolated kernel; return it with its outputs
    and saved widget state. ``cwd`` defaults to the notebook's directory."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(cwd or path.parent)}},
    )
    client.execute(env=jupyter_env())
    return nb


def write_notebook(path: str | Path, *sources: str) -> Path:
    """Write a Python 3 notebook with one code cell per source to ``path``; return it."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return Path(path)


def widget_state(nb: Any) -> dict[str, dict[str, Any]]:
    """The saved widget models of an executed notebook: ``{model_id: {"model_name",
    "model_module", "state", ...}}`` (empty when no widget was saved)."""
    saved = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {})
    return dict(saved.get("state", {}))


def find_models(
    state: dict[str, dict[str, Any]],
    model_name: str | None = None,
    css_class: str | None = None,
) -> list[dict[str, Any]]:
    """Models whose ``model_name`` (e.g. ``"ButtonModel"``) and/or ``_dom_classes`` match."""
    return [
        model
        for model in state.values()
        if (model_name is None or model.get("model_name") == model_name)
        and (css_class is None or css_class in model.get("state", {}).get("_dom_classes", ()))
    ]


def find_model(
    state: dict[str, dict[str, Any]], model_name: str | None = None, css_class: str | None = None
) -> dict[str, Any]:
    """The one model matching :func:`find_models`; raises ``LookupError`` otherwise."""
    found = find_models(state, model_name, css_class)
    if len(found) != 1:
        raise LookupError(f"{len(found)} models match {model_name=} {css_class=}")
    return found[0]


# --- servers -------------------------------------------------------------------------------


@dataclass
class Server:
    """A running server: its process, port, token and log."""

    spec: ServerSpec
    proc: subprocess.Popen
    log_path: Path

    @property
    def port(self) -> int:
        return self.spec.port

    @property
    def token(self) -> str:
        return self.spec.token

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    def url(self, path: str = "/") -> str:
        """``path`` on this server, with the token."""
        return self.spec.url(path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def serve(spec: ServerSpec, cwd: Path, name: str) -> Iterator[Server]:
    """Start ``spec`` in its own session with Jupyter directories of its own (settings such
    as the theme a test chose, workspaces and runtime files do not leak into the next server);
    yield once it is ready; stop it and its child kernels by PID at the end; print its log on
    error."""
    log_dir = Path(tempfile.mkdtemp(prefix=f"nbhooks-{name}-"))
    log_path = log_dir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            spec.cmd,
            cwd=cwd,
            env=spec.environ(jupyter_env(log_dir / "jupyter")),  # the token goes here
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(spec, proc, log_path)
    try:
        wait_until_ready(proc, spec.ready, SERVER_READY_TIMEOUT)
        yield server
    except BaseException:
        print(f"----- {name} log ({log_path}) -----\n{server.log()}\n----- end of {name} log -----")
        raise
    finally:
        stop_process_tree(proc)
        shutil.rmtree(log_dir, ignore_errors=True)


def _token() -> str:
    return secrets.token_hex(16)


@contextlib.contextmanager
def jupyter_lab(root_dir: str | Path, *extra_args: str) -> Iterator[Server]:
    """JupyterLab serving ``root_dir``, with ``window.jupyterapp`` exposed to the page."""
    root = Path(root_dir)
    spec = jupyter_app_spec(
        "jupyterlab",
        root,
        free_port(),
        _token(),
        "--LabApp.expose_app_in_browser=True",
        *extra_args,
    )
    with serve(spec, root, "jupyterlab") as server:
        yield server


@contextlib.contextmanager
def notebook7(root_dir: str | Path, *extra_args: str) -> Iterator[Server]:
    """Jupyter Notebook 7 serving ``root_dir`` (``/tree``, ``/notebooks/<path>``)."""
    root = Path(root_dir)
    spec = jupyter_app_spec(
        "notebook",
        root,
        free_port(),
        _token(),
        "--JupyterNotebookApp.expose_app_in_browser=True",
        *extra_args,
    )
    with serve(spec, root, "notebook7") as server:
        yield server


@contextlib.contextmanager
def voila_server(notebook: str | Path, *extra_args: str) -> Iterator[Server]:
    """Voila rendering ``notebook`` at ``server.url("/")``; the notebook runs when a page opens."""
    nb = Path(notebook).resolve()
    spec = voila_spec(nb, free_port(), _token(), *extra_args)
    with serve(spec, nb.parent, "voila") as server:
        yield server


# --- browser helpers (Playwright sync API; ``page`` is a playwright.sync_api.Page) ---------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def live_descendants(pid: int | None = None) -> dict[int, list[str]]:
    """The command lines of the running (not zombie) descendants of ``pid`` (default: this one).

    A process that ends or turns zombie while it is looked at is left out: a server reaps its
    short-lived children in its own time, and under a container's init orphans may be ours.
    """
    import psutil

    found: dict[int, list[str]] = {}
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found[child.pid] = child.cmdline()
        except psutil.Error:
            pass  # it ended (or became a zombie) while we looked
    return found


# Voila fetches Font Awesome from a CDN, which fails offline.
IGNORED_CONSOLE_ERRORS = re.compile(
    r"font-?awesome|cdn\.jsdelivr|unpkg\.com|ERR_NAME_NOT_RESOLVED", re.I
)


def collect_console_errors(page: Any) -> list[str]:
    """A list that fills with the page's console errors (CDN failures filtered out)."""
    errors: list[str] = []

    def on_console(msg: Any) -> None:
        if msg.type == "error" and not IGNORED_CONSOLE_ERRORS.search(msg.text):
            errors.append(msg.text)

    def on_response(response: Any) -> None:
        if response.status >= 400 and not IGNORED_CONSOLE_ERRORS.search(response.url):
            errors.append(f"HTTP {response.status} {response.request.method} {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    return errors


def snap(target: Any, name: str) -> Path:
    """Screenshot a page or locator into ``test-artifacts/<name>.png``; return the path."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    if hasattr(target, "scroll_into_view_if_needed"):  # a Locator
        target.scroll_into_view_if_needed()
    target.screenshot(path=str(path))
    return path


def wait_kernel_idle(page: Any, timeout: float = 60) -> None:
    """Wait until the status bar shows a started kernel that is idle ("... | Idle")."""
    from playwright.sync_api import expect

    expect(page.locator("#jp-main-statusbar")).to_contain_text(
        re.compile(r"\S \| Idle"), timeout=timeout * 1000
    )


def open_lab_notebook(page: Any, server: Server, path: str, timeout: float = 90) -> None:
    """Open ``path`` (relative to the server root) in JupyterLab and wait for an idle kernel."""
    page.goto(server.url(f"/lab/tree/{path}"))
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=timeout * 1000)
    wait_kernel_idle(page, timeout)


def _prompts(page: Any) -> list[str]:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPrompt").all_inner_texts()


def run_all(page: Any, timeout: float = 30) -> None:
    """Run every cell of the current notebook; wait until a prompt leaves ``[ ]:``."""
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    poll(
        lambda: any(p.strip() not in ("", "[ ]:") for p in _prompts(page)),
        timeout,
        "Run All to start (a prompt leaving [ ]:)",
    )


def wait_cells_done(page: Any, timeout: float = 120) -> None:
    """Wait until every code cell shows an execution count (``[n]:``)."""
    poll(
        lambda: (
            (p := [t.strip() for t in _prompts(page) if t.strip()])
            and all(re.fullmatch(r"\[\d+\]:", t) for t in p)
        ),
        timeout,
        "every cell to finish",
    )


def wait_for_class(page: Any, css_class: str, timeout: float = 60) -> Any:
    """Wait until an element with ``css_class`` is visible; return its locator."""
    locator = page.locator(f".{css_class}").first
    locator.wait_for(state="visible", timeout=timeout * 1000)
    return locator


def plot_point_counts(page: Any, selector: str = ".js-plotly-plot") -> list[int]:
    """``len(gd.data[i].x)`` for every trace of the first plotly graph div matching
    ``selector`` (``[]`` before it is drawn)."""
    return page.locator(selector).first.evaluate(
        "gd => (gd.data || []).map(t => (t.x ? t.x.length : 0))"
    )


def wait_plot_points(
    page: Any, at_least: int, selector: str = ".js-plotly-plot", timeout: float = 60
) -> list[int]:
    """Wait until some trace of the graph has ``at_least`` points; return the counts."""
    page.locator(selector).first.wait_for(timeout=timeout * 1000)
    return poll(
        lambda: (c := plot_point_counts(page, selector)) and max(c) >= at_least and c,
        timeout,
        f"a plot trace with {at_least} points",
    )


def progress_width(page: Any, selector: str = ".progress-bar") -> float:
    """The width of an ipywidgets 8 progress bar, in percent (its ``style.width``)."""
    width = page.locator(selector).first.evaluate("el => el.style.width")
    return float(width.rstrip("%") or 0)


def click_widget_button(page: Any, css_class: str, timeout: float = 30) -> None:
    """Click the ipywidgets ``Button`` carrying ``css_class`` (set with ``add_class``)."""
    page.locator(f"button.{css_class}").first.click(timeout=timeout * 1000)
