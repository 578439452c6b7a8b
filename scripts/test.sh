#!/usr/bin/env bash
# The test suite: install if needed, lint, then pytest (a few minutes on 2 CPU cores).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
