#!/usr/bin/env bash
# Create .venv and install edx-agent with every driver and the test tools, from this checkout.
# Idempotent: a second run only re-checks the installation.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "edx-agent needs Python 3.11 or newer")'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.edx-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[all,hub,test]'
  touch "$stamp"
fi
