#!/usr/bin/env bash
# CI step (issue 14): the live-engine and drift-SI tests pass alone, in random order, on a cold numba cache and
# with both cores busy (tests/load_check.py). Called by scripts/test.sh when CI is set; budget < 10 minutes.
# usage: bash scripts/check_load.sh [--seed N] [FILE ...]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${INSITU_VENV:-$PWD/.venv}"
exec timeout "${INSITU_LOAD_CHECK_TIMEOUT_S:-600}" "$VENV/bin/python" tests/load_check.py "$@"
