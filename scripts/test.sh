#!/usr/bin/env bash
# README command 2: set up (if needed) and run the test suite. Extra arguments go to pytest.
# pytest exits 5 when it collected no test: that fails the run, on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
