#!/usr/bin/env bash
# Set up (venv, dependencies, chromium), then lint (ruff), check formatting and types (mypy,
# strict on the core), and run every test tier: pure model, real TensorFlow and headless
# widgets, real kernels, real browsers, faults. Extra arguments go to pytest.
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh tests/browser -x
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh --browser
echo "test.sh: ruff check, ruff format --check, mypy" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: nothing ran, failing" >&2
fi
exit "$status"
