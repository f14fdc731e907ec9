"""Jupyter servers as child processes: JupyterLab, Notebook 7 or Voila on 127.0.0.1.

A :class:`ServerSpec` says how to start a server and how to know it is ready;
:func:`jupyter_app_spec`, :func:`demo_lab_spec` and :func:`voila_spec` make one, and
:func:`serve` runs it in the foreground until Ctrl-C. The test harness starts the same specs.

The token is secret: it is given to the server in its environment (``JUPYTER_TOKEN``, which
jupyter_server's ``IdentityProvider`` reads, in JupyterLab, Notebook 7 and Voila 0.5 alike),
never on its command line, which any local user can read with ``ps`` (a process's environment
is readable by its user only). The browser is opened on a file only the user can read, which
redirects to the URL with the token.

Voila's kernels end with their page: see :func:`give_page_its_xsrf_cookie` (set by the
``voila_config/voila.py`` configuration file) and :data:`VOILA_CULLING`.
"""

from __future__ import annotations

import html
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READY_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0

#: The demo runs offline in front of a class: no request to the internet for news or updates.
QUIET_LAB = (
    "--ServerApp.log_level=WARN",
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
)
#: Voila logs "Voilà is running at: http://...?token=..." (the token elided: a login page);
#: the demo prints the one URL that works, with its token, and Voila only warnings.
QUIET_VOILA = ("--Voila.log_level=WARN",)
#: ... and no "Would you like to get notified about official Jupyter news?" pop-up over the
#: dashboard: the plugin that asks is disabled in a config directory of the demo's own, so
#: the user's JupyterLab settings are left as they are.
LAB_PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}

ReadyCheck = Callable[[], bool]


class DemoError(RuntimeError):
    """A problem the user can fix (bad arguments, a server that does not start...)."""


# --- ports and HTTP ------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    """Whether ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


# --- what to start -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """How to start a Jupyter server and how to know it is ready.

    ``env`` holds the variables added to the server's environment, the token among them.
    """

    cmd: list[str]
    port: int
    token: str
    ready: ReadyCheck
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """``path`` on this server, with the token."""
        return f"{self.base_url}{path}?token={self.token}"

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The server's environment: ``base`` (default ``os.environ``) plus :attr:`env`."""
        return {**(os.environ if base is None else base), **self.env}


def _root_flag() -> list[str]:
    return ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


def _token_env(token: str) -> dict[str, str]:
    return {"JUPYTER_TOKEN": token}


def jupyter_app_spec(
    module: str,
    root_dir: Path,
    port: int,
    token: str,
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> ServerSpec:
    """``python -m <module>`` (``jupyterlab`` or ``notebook``) on 127.0.0.1 serving ``root_dir``;
    ready when ``/api/status`` answers. ``env``: more variables for the server."""
    cmd = [
        sys.executable,
        "-m",
        module,
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root_dir}",
        *_root_flag(),
        *extra,
    ]
    status = f"http://127.0.0.1:{port}/api/status?token={token}"
    return ServerSpec(
        cmd, port, token, lambda: http_ok(status), env={**(env or {}), **_token_env(token)}
    )


def _config_path_first(config_dir: Path) -> dict[str, str]:
    """``JUPYTER_CONFIG_PATH`` with ``config_dir`` first (before the user's entries)."""
    paths = [str(config_dir), *filter(None, [os.environ.get("JUPYTER_CONFIG_PATH")])]
    return {"JUPYTER_CONFIG_PATH": os.pathsep.join(paths)}


def demo_lab_spec(workdir: Path, port: int, token: str) -> ServerSpec:
    """The demo's JupyterLab serving ``workdir``: quiet (:data:`QUIET_LAB`), and with the
    demo's config directory ``workdir/.nbhooks-lab-config`` (holding :data:`LAB_PAGE_CONFIG`)
    first on ``JUPYTER_CONFIG_PATH``."""
    config_dir = workdir / ".nbhooks-lab-config"
    page_config = config_dir / "labconfig" / "page_config.json"
    page_config.parent.mkdir(parents=True, exist_ok=True)
    page_config.write_text(json.dumps(LAB_PAGE_CONFIG, indent=1))
    env = _config_path_first(config_dir)
    return jupyter_app_spec("jupyterlab", workdir, port, token, *QUIET_LAB, env=env)


#: Voila's configuration file (``voila.py``): it sets :func:`give_page_its_xsrf_cookie`.
VOILA_CONFIG_DIR = Path(__file__).resolve().parent / "voila_config"

#: A backstop for pages that vanish without saying goodbye (a browser killed, a laptop shut):
#: a kernel with no page connected and no activity for 10 minutes is shut down.
VOILA_CULLING = (
    "--MappingKernelManager.cull_idle_timeout=600",
    "--MappingKernelManager.cull_interval=60",
    "--MappingKernelManager.cull_connected=False",
)


def give_page_its_xsrf_cookie(req: Any, notebook: Any, cwd: str) -> None:
    """Voila ``prelaunch_hook``: set the ``_xsrf`` cookie on the page being served.

    When a Voila 0.5 page is closed or reloaded it posts its kernel's shutdown with ``_xsrf``
    read from that cookie, but Voila never sets the cookie: the request was refused (403
    ``_xsrf argument missing``) and each visit left a kernel alive. Reading tornado's
    ``xsrf_token`` sets the cookie; the XSRF check itself stays on.
    """
    req.xsrf_token  # noqa: B018 - a property read for its side effect (Set-Cookie)


def voila_spec(notebook: Path, port: int, token: str, *extra: str) -> ServerSpec:
    """``python -m voila <notebook>`` on 127.0.0.1; ready when the port accepts connections
    (any page request makes Voila execute the notebook). A page's kernel ends when the page is
    closed or reloaded (see :func:`give_page_its_xsrf_cookie`, :data:`VOILA_CULLING`)."""
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        # Without a token on its command line Voila turns authentication off, unless told to
        # take one: it then reads JUPYTER_TOKEN, like jupyter_server.
        "--Voila.auto_token=True",
        # Notebook 7's JupyterLab extension fails to load in Voila (a console error): skip it.
        "--VoilaConfiguration.extension_denylist=@jupyter-notebook/lab-extension",
        *VOILA_CULLING,
        *extra,
    ]
    env = {**_config_path_first(VOILA_CONFIG_DIR), **_token_env(token)}
    return ServerSpec(cmd, port, token, lambda: port_open(port), env=env)


# --- running it ----------------------------------------------------------------------------


def wait_until_ready(proc: subprocess.Popen, ready: ReadyCheck, timeout: float) -> None:
    """Poll ``ready`` until it is true; raise if the server exits or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise DemoError(f"the server exited with code {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise DemoError(f"the server was not ready after {timeout:.0f} s")
        time.sleep(0.2)  # a polling interval, not a wait for an event


def stop_process_tree(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """Stop ``proc`` with SIGTERM (Jupyter then shuts its kernels down), then kill whatever of
    it and its descendants is still alive after ``timeout``."""
    import psutil  # a dependency of ipykernel, hence of the demo extra

    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    _, alive = psutil.wait_procs(descendants, timeout=timeout)
    for child in alive:
        child.kill()
    psutil.wait_procs(alive, timeout=timeout)


def write_redirect_page(url: str, directory: Path | None = None) -> Path:
    """A page, readable by the user only (mode 0600), that sends the browser to ``url``.

    Opening it instead of ``url`` keeps the token off the browser's command line.
    """
    fd, name = tempfile.mkstemp(prefix="nbhooks-open-", suffix=".html", dir=directory)
    quoted = html.escape(url, quote=True)
    with os.fdopen(fd, "w") as page:  # mkstemp creates the file with mode 0600
        page.write(
            f'<!DOCTYPE html><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="0;url={quoted}">'
            f'<p><a href="{quoted}">Open the nbhooks demo</a></p>\n'
        )
    return Path(name)


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(spec: ServerSpec, cwd: Path, url: str, open_browser: bool) -> int:
    """Run a server until it exits or Ctrl-C (or SIGTERM); print its URL once it is ready."""
    # A session of its own: Ctrl-C reaches only this process, which then stops the server once.
    proc = subprocess.Popen(spec.cmd, cwd=cwd, env=spec.environ(), start_new_session=True)
    # Ctrl-C (SIGINT, even if the parent shell ignored it) and SIGTERM both stop the server.
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_keyboard_interrupt),
    }
    redirect: Path | None = None
    try:
        wait_until_ready(proc, spec.ready, READY_TIMEOUT)
        print(f"\nnbhooks demo is running in {cwd} (Ctrl-C to stop):\n\n    {url}\n", flush=True)
        if open_browser:
            redirect = write_redirect_page(url)
            webbrowser.open(redirect.as_uri())
        return proc.wait()
    except KeyboardInterrupt:
        print("\nnbhooks demo: stopping the server...", flush=True)
        return 0
    finally:
        stop_process_tree(proc)
        if redirect is not None:
            redirect.unlink(missing_ok=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
