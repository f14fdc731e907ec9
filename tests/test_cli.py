"""`nbhooks demo`: argument errors, notebook copies, the headless report, real JupyterLab and
Voila servers (their token stays off every command line)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import harness
import psutil
import pytest

from nbhooks.cli import main
from nbhooks.demo.notebooks import copy_notebooks
from nbhooks.demo.servers import free_port, http_ok, port_open


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["demo", "--steps", "0"], "--steps: must be >= 1"),
        (["demo", "--steps", "ten"], "expected a whole number"),
        (["demo", "--port", "70000"], "must be a TCP port"),
        (["demo", "--voila", "--headless"], "not allowed with argument"),
        (["demo", "--steps", "5"], "--steps only applies with --headless"),
        (["demo", "--headless", "--port", "8888"], "--port has no effect with --headless"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_dir_that_is_a_file_is_rejected(tmp_path: Path, capsys) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(SystemExit):
        main(["demo", "--headless", "--dir", str(not_a_dir)])
    assert "is not a directory" in capsys.readouterr().err


def test_copies_refresh_unedited_notebooks_and_keep_edited_ones(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    (src / "a.ipynb").write_text("a1")
    (src / "b.ipynb").write_text("b1")
    assert {p.name for p in copy_notebooks(src, dest)} == {"a.ipynb", "b.ipynb"}
    (dest / "a.ipynb").write_text("edited by the user")
    (src / "a.ipynb").write_text("a2")
    (src / "b.ipynb").write_text("b2")
    copy_notebooks(src, dest)
    assert (dest / "a.ipynb").read_text() == "edited by the user"
    assert (dest / "b.ipynb").read_text() == "b2"


def test_importing_the_cli_and_servers_does_not_import_tensorflow() -> None:
    code = (
        "import sys, nbhooks.__main__, nbhooks.cli, nbhooks.demo.servers, nbhooks.demo\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def nbhooks_demo(*args: str, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nbhooks", "demo", *args]
    return subprocess.Popen(cmd, env=harness.jupyter_env(), **popen)


def serve_demo(workdir: Path, log: Path, *mode: str) -> tuple[subprocess.Popen, int]:
    """``nbhooks demo [*mode] --no-browser`` on a free port, its output in ``log``."""
    port = free_port()
    with log.open("w") as out:
        proc = nbhooks_demo(
            *mode,
            "--no-browser",
            "--port",
            str(port),
            "--dir",
            str(workdir),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, port


@pytest.mark.slow
def test_headless_writes_a_report(tmp_path: Path) -> None:
    proc = nbhooks_demo(
        "--headless",
        "--steps",
        "200",
        "--dir",
        str(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    report = tmp_path / "nbhooks-report.html"
    assert f"report written to {report}" in out + err
    assert re.search(r"eval 'train' at step 200: accuracy=0\.\d+", err), err
    assert "finished at step 200" in err
    html = report.read_text()
    assert "nbhooks report" in html and "Plotly.newPlot" in html
    assert "Final-op values" in html and "Pipeline checkpoints" in html
    assert "<script src=" not in html  # plotly.js is embedded: the report opens offline


@pytest.mark.slow
@pytest.mark.kernel
def test_lab_answers_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    log = tmp_path / "out.txt"
    proc, port = serve_demo(tmp_path / "demo", log)
    try:
        url = harness.poll(
            lambda: re.search(
                rf"http://127\.0\.0\.1:{port}/lab/tree/quickstart\.ipynb"
                r"\?token=(\w+)",
                log.read_text(),
            ),
            timeout=120,
            what="the demo URL",
        )
        token = url.group(1)
        assert http_ok(f"http://127.0.0.1:{port}/api/status?token={token}")
        assert not http_ok(f"http://127.0.0.1:{port}/api/status?token=wrong")
        assert (tmp_path / "demo" / "quickstart.ipynb").is_file()
        # No news pop-up over the dashboard, no request for news: the page config says so.
        page = urllib.request.urlopen(url.group(0), timeout=30).read().decode()
        data = re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page, re.S)
        config = json.loads(data[1])
        assert "@jupyterlab/apputils-extension:announcements" in config["disabledExtensions"]
        assert config["news"] == {"disabled": True}
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert tree, "the server runs as a child process"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert not alive, alive
    assert not port_open(port)
    assert "stopping the server" in log.read_text()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs) -> None:
        return None  # a redirect (to the login page) is an answer of its own


def http_status(url: str, method: str = "GET", token: str | None = None) -> int:
    """The status ``url`` answers (redirects not followed), after reading the whole body."""
    headers = {"Authorization": f"token {token}"} if token else {}
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=120) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def is_kernel(cmdline: list[str]) -> bool:
    return any("ipykernel" in part for part in cmdline)


@pytest.mark.slow
@pytest.mark.kernel
@pytest.mark.parametrize("server", ["lab", "voila"])
def test_the_token_is_on_no_command_line_yet_the_url_works(tmp_path: Path, server: str) -> None:
    workdir = tmp_path / "demo"
    workdir.mkdir()
    # A quickstart of the test's own: the demo keeps a quickstart that differs from the bundled
    # one (as if the user had edited it), and Voila then runs a notebook that ends at once.
    harness.write_notebook(workdir / "quickstart.ipynb", "answer = 42\nanswer")
    log = tmp_path / "out.txt"
    proc, port = serve_demo(workdir, log, *(["--voila"] if server == "voila" else []))
    base = f"http://127.0.0.1:{port}"
    page = "/lab/tree/quickstart.ipynb" if server == "lab" else "/"
    try:
        found = harness.poll(
            lambda: re.search(rf"{re.escape(base + page)}\?token=(\w+)", log.read_text()),
            timeout=120,
            what="the demo URL",
        )
        url, token = found.group(0), found.group(1)
        assert "keeping your edited" in log.read_text()
        # The printed URL opens the page; a wrong token or none is refused.
        assert http_status(url) == 200
        assert http_status(f"{base}{page}?token=wrong") in (302, 403)
        assert http_status(f"{base}{page}") in (302, 403)
        if server == "lab":
            assert http_status(f"{base}/api/kernels", "POST", token=token) == 201
            assert http_status(f"{base}/api/status", token="wrong") == 403
        # Voila started a kernel for the page it served; JupyterLab for the POST.
        tree = psutil.Process(proc.pid).children(recursive=True)
        cmdlines = [
            psutil.Process(proc.pid).cmdline(),
            *harness.live_descendants(proc.pid).values(),
        ]
        assert any(is_kernel(cmdline) for cmdline in cmdlines), cmdlines
        assert not [cmdline for cmdline in cmdlines if any(token in part for part in cmdline)]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    _, alive = psutil.wait_procs(tree, timeout=15)
    assert not alive, alive
