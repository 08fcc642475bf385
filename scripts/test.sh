#!/usr/bin/env bash
# Run the whole test suite (sets up first if needed). This is the README's test command and what .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${INSITU_VENV:-$PWD/.venv}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$VENV/numba-cache}"
exec "$VENV/bin/python" -m pytest tests "$@"
