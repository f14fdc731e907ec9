"""The ``nbhooks`` command: ``nbhooks demo``, the quickstart in JupyterLab or Voila, or headless.

nbhooks demo                      # JupyterLab on 127.0.0.1 opening quickstart.ipynb
nbhooks demo --voila              # the quickstart as a Voila app
nbhooks demo --headless --steps 500   # train in the console, write an HTML report
python -m nbhooks demo --no-browser --port 8899 --dir ~/nbh

Argument parsing and dispatch only: the work is done in :mod:`nbhooks.demo`.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from nbhooks.demo.notebooks import prepare_notebooks
from nbhooks.demo.report import DEFAULT_STEPS, run_headless
from nbhooks.demo.servers import (
    QUIET_VOILA,
    DemoError,
    demo_lab_spec,
    free_port,
    serve,
    voila_spec,
)

DEFAULT_DIR = "nbhooks-demo"


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
    if args.voila:
        spec = voila_spec(quickstart, port, token, *QUIET_VOILA)
        url = spec.url("/")
    else:
        spec = demo_lab_spec(workdir, port, token)
        url = spec.url(f"/lab/tree/{quickstart.name}")
    return serve(spec, cwd=workdir, url=url, open_browser=not args.no_browser)
