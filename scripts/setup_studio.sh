#!/usr/bin/env bash
# The local Label Studio server lives in its own venv (.venv-studio): label-studio 1.23.2 pins its SDK and
# many web dependencies that must not mix with the project's. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-studio
if [ ! -x "$VENV/bin/label-studio" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "label-studio==1.23.2"
fi
