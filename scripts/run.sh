#!/usr/bin/env bash
# Set up a fresh machine (idempotent) and run the demo or the tests.
#   bash scripts/run.sh demo    # install everything, run the whole loop on the bundled demo data
#   bash scripts/run.sh test    # install everything, run the test suite
#   bash scripts/run.sh lint    # install the project, check format, lint and the import contracts (CI runs it first)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
  fi
  # reinstall only when the dependency list changed
  stamp="$VENV/.iterate-installed"
  want=$(sha1sum pyproject.toml | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/pip" install -q -e '.[test]'
    echo "$want" > "$stamp"
  fi
  # Label Studio server in its own venv (it pins its own SDK); only when the project uses it
  if [ -f scripts/setup_studio.sh ]; then bash scripts/setup_studio.sh; fi
}

case "${1:-}" in
  demo)
    setup
    shift
    exec "$VENV/bin/iterate" demo "$@"
    ;;
  test)
    setup
    # the browser test drives Debian's Chromium; install it once (needs root or sudo)
    # and the ledger tests start their own PostgreSQL server (Debian's postgresql: initdb, pg_ctl)
    want_pkgs=""
    if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then want_pkgs="chromium chromium-driver"; fi
    if ! command -v pg_ctl >/dev/null && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
      want_pkgs="$want_pkgs postgresql"
    fi
    if [ -n "$want_pkgs" ]; then
      SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
      # shellcheck disable=SC2086
      $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $want_pkgs
    fi
    shift
    exec "$VENV/bin/python" -m pytest -q "$@"
    ;;
  lint)
    setup
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/ruff" check .
    "$VENV/bin/lint-imports"
    "$VENV/bin/python" scripts/long_functions.py >/dev/null || { "$VENV/bin/python" scripts/long_functions.py; exit 1; }
    ;;
  *)
    echo "usage: bash scripts/run.sh demo|test|lint" >&2
    exit 2
    ;;
esac
