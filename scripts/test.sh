#!/usr/bin/env bash
# Run the whole test suite (sets up first if needed). This is the README's test command and what .ci/run runs.
# With CI set (CI=1 / CI=true, as CI services do), two more checks follow the suite:
#   scripts/check_load.sh    the live-engine and drift-SI tests alone, shuffled, cold numba cache, both cores busy
#   scripts/check_newest.sh  the newest releases the registry offers within setup.cfg's ranges (skipped if none newer)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${INSITU_VENV:-$PWD/.venv}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$VENV/numba-cache}"
if [ -z "${CI:-}" ] || [ "${CI:-}" = "0" ] || [ "${CI:-}" = "false" ]; then
    exec "$VENV/bin/python" -m pytest tests "$@"
fi
"$VENV/bin/python" -m pytest tests "$@"
bash scripts/check_load.sh
bash scripts/check_newest.sh
