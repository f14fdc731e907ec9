"""``nbhooks demo``: the quickstart notebook in JupyterLab or Voila, or a headless HTML report.

nbhooks demo                      # JupyterLab on 127.0.0.1 opening quickstart.ipynb
nbhooks demo --voila              # the quickstart as a Voila app
nbhooks demo --headless --steps 500   # train in the console, write an HTML report
python -m nbhooks demo --no-browser --port 8899 --dir ~/nbh
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUICKSTART = "quickstart.ipynb"
MANIFEST = ".nbhooks-demo.json"
REPORT = "nbhooks-report.html"
DEFAULT_DIR = "nbhooks-demo"
DEFAULT_STEPS = 1000
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0


class DemoError(RuntimeError):
    """A problem the user can fix (bad arguments, a server that does not start...)."""


# --- arguments -----------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``nbhooks`` command line: one sub-command, ``demo``."""
    parser = argparse.ArgumentParser(
        prog="nbhooks", description="Watch and steer TensorFlow Estimator training."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = sub.add_parser(
        "demo",
        help="run the quickstart demo",
        description="Copy the demo notebooks into DIR and open the quickstart in JupyterLab "
        "(default), in Voila (--voila), or train in the console and write an HTML report "
        "(--headless).",
    )
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument("--voila", action="store_true", help="serve the quickstart with Voila")
    mode.add_argument(
        "--headless", action="store_true", help="train in the console and write an HTML report"
    )
    demo.add_argument("--port", type=_port, help="server port (default: a free port)")
    demo.add_argument(
        "--dir",
        type=Path,
        default=Path(DEFAULT_DIR),
        help=f"working directory (default: ./{DEFAULT_DIR})",
    )
    demo.add_argument(
        "--steps",
        type=_positive_int,
        help=f"training steps with --headless (default: {DEFAULT_STEPS})",
    )
    demo.add_argument(
        "--no-browser", action="store_true", help="print the URL but do not open a browser"
    )
    demo.set_defaults(parser=demo)
    return parser


def _check_combination(args: argparse.Namespace) -> None:
    parser: argparse.ArgumentParser = args.parser
    if args.headless and args.port is not None:
        parser.error("--port has no effect with --headless (no server is started)")
    if not args.headless and args.steps is not None:
        parser.error("--steps only applies with --headless (in a notebook, pick the steps there)")
    if args.dir.exists() and not args.dir.is_dir():
        parser.error(f"--dir {args.dir} exists and is not a directory")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nbhooks`` script and of ``python -m nbhooks``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_combination(args)
    try:
        return run_demo(args)
    except DemoError as exc:
        print(f"nbhooks demo: error: {exc}", file=sys.stderr)
        return 1


#: The demo runs offline in front of a class: no request to the internet for news or updates.
QUIET_LAB = (
    "--ServerApp.log_level=WARN",
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
)
#: ... and no "Would you like to get notified about official Jupyter news?" pop-up over the
#: dashboard: the plugin that asks is disabled in a config directory of the demo's own, so
#: the user's JupyterLab settings are left as they are.
LAB_PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}


def run_demo(args: argparse.Namespace) -> int:
    """Dispatch ``nbhooks demo`` to the headless report, Voila or JupyterLab."""
    workdir = args.dir.expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.headless:
        report = run_headless(workdir, args.steps or DEFAULT_STEPS)
        print(f"nbhooks demo: report written to {report}")
        return 0
    quickstart = prepare_notebooks(workdir)
    port = args.port or free_port()
    token = secrets.token_hex(24)
    env = None
    if args.voila:
        spec = voila_spec(quickstart, port, token)
        url = spec.url("/")
    else:
        spec = jupyter_app_spec("jupyterlab", workdir, port, token, *QUIET_LAB)
        url = spec.url(f"/lab/tree/{quickstart.name}")
        env = demo_lab_env(workdir)
    return serve(spec, cwd=workdir, url=url, open_browser=not args.no_browser, env=env)


def demo_lab_env(workdir: Path) -> dict[str, str]:
    """The environment for the demo's JupyterLab: the user's, plus the demo's config directory
    (``workdir/.nbhooks-lab-config``, holding :data:`LAB_PAGE_CONFIG`) on JUPYTER_CONFIG_PATH."""
    config_dir = workdir / ".nbhooks-lab-config"
    page_config = config_dir / "labconfig" / "page_config.json"
    page_config.parent.mkdir(parents=True, exist_ok=True)
    page_config.write_text(json.dumps(LAB_PAGE_CONFIG, indent=1))
    paths = [str(config_dir), *filter(None, [os.environ.get("JUPYTER_CONFIG_PATH")])]
    return {**os.environ, "JUPYTER_CONFIG_PATH": os.pathsep.join(paths)}


# --- notebooks -----------------------------------------------------------------------------


def bundled_notebooks_dir() -> Path:
    """The repository's ``notebooks/`` in a source checkout, else the wheel's ``_notebooks``."""
    package = Path(__file__).resolve().parent
    repo = package.parent
    if (repo / "pyproject.toml").is_file() and (repo / "notebooks").is_dir():
        return repo / "notebooks"
    return package / "_notebooks"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def copy_notebooks(src: Path, dest: Path) -> list[Path]:
    """Copy the files of ``src`` into ``dest`` without overwriting copies the user edited.

    ``dest/.nbhooks-demo.json`` remembers the hash of each file as copied: a file still equal
    to it is refreshed from ``src``; a file that differs was edited and is kept.
    """
    manifest_path = dest / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    sources = sorted(p for p in src.glob("*") if p.is_file() and not p.name.startswith("."))
    for source in sources:
        target = dest / source.name
        new_hash = _sha256(source)
        if target.exists() and _sha256(target) not in (new_hash, manifest.get(source.name)):
            print(f"nbhooks demo: keeping your edited {target}")
            continue
        shutil.copyfile(source, target)
        manifest[source.name] = new_hash
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return [dest / p.name for p in sources]


def _fallback_quickstart(path: Path) -> None:
    """A minimal quickstart, written only when no ``quickstart.ipynb`` is bundled."""
    import nbformat

    cells = [
        nbformat.v4.new_markdown_cell(
            "# nbhooks demo\nA small dense network on scikit-learn's bundled digits."
        ),
        nbformat.v4.new_code_cell(
            "from nbhooks.demo import digits_input_fns, make_demo_estimator\n\n"
            "train_fn, eval_fn, train_eval_fn = digits_input_fns()\n"
            "estimator = make_demo_estimator()"
        ),
        nbformat.v4.new_code_cell(
            "estimator.train(train_fn, steps=500)\nestimator.evaluate(eval_fn)"
        ),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def prepare_notebooks(workdir: Path) -> Path:
    """Copy the bundled notebooks into ``workdir``; return the path of the quickstart."""
    src = bundled_notebooks_dir()
    if src.is_dir():
        copy_notebooks(src, workdir)
    quickstart = workdir / QUICKSTART
    if not quickstart.exists():
        _fallback_quickstart(quickstart)
    return quickstart


# --- servers -------------------------------------------------------------------------------

ReadyCheck = Callable[[], bool]


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


def _root_flag() -> list[str]:
    return ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []


@dataclass(frozen=True)
class ServerSpec:
    """How to start a Jupyter server and how to know it is ready."""

    cmd: list[str]
    port: int
    token: str
    ready: ReadyCheck

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        """``path`` on this server, with the token."""
        return f"{self.base_url}{path}?token={self.token}"


def jupyter_app_spec(module: str, root_dir: Path, port: int, token: str, *extra: str) -> ServerSpec:
    """``python -m <module>`` (``jupyterlab`` or ``notebook``) on 127.0.0.1 serving ``root_dir``;
    ready when ``/api/status`` answers."""
    cmd = [
        sys.executable,
        "-m",
        module,
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        *_root_flag(),
        *extra,
    ]
    status = f"http://127.0.0.1:{port}/api/status?token={token}"
    return ServerSpec(cmd, port, token, lambda: http_ok(status))


def voila_spec(notebook: Path, port: int, token: str, *extra: str) -> ServerSpec:
    """``python -m voila <notebook>`` on 127.0.0.1; ready when the port accepts connections
    (any page request makes Voila execute the notebook)."""
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        f"--token={token}",
        # Notebook 7's JupyterLab extension fails to load in Voila (a console error): skip it.
        "--VoilaConfiguration.extension_denylist=@jupyter-notebook/lab-extension",
        *extra,
    ]
    return ServerSpec(cmd, port, token, lambda: port_open(port))


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


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def serve(
    spec: ServerSpec, cwd: Path, url: str, open_browser: bool, env: dict[str, str] | None = None
) -> int:
    """Run a server until it exits or Ctrl-C (or SIGTERM); print its URL once it is ready."""
    # A session of its own: Ctrl-C reaches only this process, which then stops the server once.
    proc = subprocess.Popen(spec.cmd, cwd=cwd, env=env, start_new_session=True)
    # Ctrl-C (SIGINT, even if the parent shell ignored it) and SIGTERM both stop the server.
    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
        signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_keyboard_interrupt),
    }
    try:
        wait_until_ready(proc, spec.ready, READY_TIMEOUT)
        print(f"\nnbhooks demo is running in {cwd} (Ctrl-C to stop):\n\n    {url}\n", flush=True)
        if open_browser:
            webbrowser.open(url)
        return proc.wait()
    except KeyboardInterrupt:
        print("\nnbhooks demo: stopping the server...", flush=True)
        return 0
    finally:
        stop_process_tree(proc)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# --- headless ------------------------------------------------------------------------------


def run_headless(workdir: Path, steps: int, evaluations: int = 10) -> Path:
    """Train the demo dashboard for ``steps`` in the console and write its HTML report.

    Evaluates the training and evaluation sets in memory ``evaluations`` times (and before
    training); returns the report's path, ``workdir/nbhooks-report.html``.
    """
    import nbhooks as nh
    from nbhooks.demo import digits_input_fns, make_demo_estimator

    model_dir = workdir / "headless-model"
    shutil.rmtree(model_dir, ignore_errors=True)
    estimator = make_demo_estimator(model_dir, save_checkpoints_steps=max(steps // 5, 1))
    train_fn, eval_fn, train_eval_fn = digits_input_fns()
    dash = nh.Dashboard(
        estimator,
        train_fn,
        evals={"train": train_eval_fn, "eval": eval_fn},
        every_n_iter=max(steps // evaluations, 1),
        final_ops={"hidden kernel": "dense/kernel", "output bias": "logits/bias"},
        steps=steps,
    )
    dash.run.report_to_console(interval=1.0)
    try:
        dash.train()
        dash.wait()
        return dash.export_html(workdir / REPORT)
    finally:
        dash.close()


if __name__ == "__main__":
    sys.exit(main())
