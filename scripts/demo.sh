#!/usr/bin/env bash
# Set up the venv, then start the demo: JupyterLab on 127.0.0.1 with the quickstart notebook.
# Arguments go to `nbhooks demo` (--voila, --headless, --port N, --dir DIR, --no-browser...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
exec "$ROOT/.venv/bin/nbhooks" demo "$@"
