#!/usr/bin/env bash
# The test suite: install if needed, lint and check the formatting (ruff), then pytest on two
# workers (pytest-xdist; a few minutes on 2 CPU cores). Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`
# or `-n 0` for one process.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest -n 2 --durations=12 "$@"
