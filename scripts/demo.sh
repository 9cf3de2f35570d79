#!/usr/bin/env bash
# README command 1: set up and run the demo (a local hub, an agent syncing into SQLite, the result).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/edx-agent demo "$@"
