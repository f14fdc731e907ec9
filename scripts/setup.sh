#!/usr/bin/env bash
# Create or reuse .venv (Python 3.11) with nbhooks installed editable, with its test extras.
#   bash scripts/setup.sh            # the Python side only
#   bash scripts/setup.sh --browser  # also Debian's chromium, for the browser tests
# Non-interactive (CI=true is fine); runs as root, or uses `sudo -n` for apt-get otherwise.
# pip is re-run only when pyproject.toml changed (its hash is stamped into .venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.nbhooks-install-stamp"
EXTRAS="test"
export DEBIAN_FRONTEND=noninteractive PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf 'setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo -n "$@"
  else die "need root (or sudo) to run: $*"; fi
}

apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found; please install: $*"
  log "apt-get install $*"
  as_root apt-get update -q
  as_root apt-get install -y -q "$@"
}

is_py311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }

find_python() {
  local candidate
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && is_py311 "$candidate"; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

ensure_venv() {
  if [ -x "$VENV/bin/python" ] && is_py311 "$VENV/bin/python"; then
    return 0
  fi
  local python
  python="$(find_python)" || die "Python 3.11 not found (TensorFlow 2.15 needs 3.11)"
  # Debian's python3.11 ships venv's ensurepip in a separate package.
  "$python" -c 'import ensurepip, venv' 2>/dev/null || apt_install python3.11-venv
  log "creating $VENV with $python"
  rm -rf "$VENV"
  "$python" -m venv "$VENV"
}

pyproject_hash() { { cat "$ROOT/pyproject.toml"; echo "extras=$EXTRAS"; } | sha256sum | cut -d' ' -f1; }

ensure_install() {
  local want
  want="$(pyproject_hash)"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    log "dependencies up to date (pyproject.toml unchanged)"
    return 0
  fi
  log "pip install -e .[$EXTRAS] (a few minutes the first time: TensorFlow is ~200 MB)"
  rm -f "$STAMP"
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]"
  echo "$want" >"$STAMP"
}

ensure_chromium() {
  [ -x /usr/bin/chromium ] || apt_install chromium
}

main() {
  local browser=0 arg
  for arg in "$@"; do
    case "$arg" in
      --browser) browser=1 ;;
      *) die "unknown option: $arg (usage: setup.sh [--browser])" ;;
    esac
  done
  ensure_venv
  ensure_install
  if [ "$browser" -eq 1 ]; then ensure_chromium; fi
}

main "$@"
