#!/usr/bin/env bash
# The bench environment: the suite plus the peers it is compared with (HyperSpy, the published fusion package),
# which are never dependencies of the suite. Usage: bash scripts/setup_bench.sh  -> .venv-bench
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${INSITU_BENCH_VENV:-$PWD/.venv-bench}"
INSITU_VENV="$VENV" bash scripts/setup.sh
stamp="$VENV/.insitu-bench-stamp"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  echo "setup_bench: installing the bench peers (extra 'bench')"
  # --no-deps for the fusion package is not used: let pip resolve, but never downgrade the suite's pins silently
  "$VENV/bin/python" -m pip install -q -e ".[test,bench]" --config-settings editable_mode=compat
  touch "$stamp"
fi
echo "setup_bench: ready ($VENV)"
