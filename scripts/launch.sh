#!/usr/bin/env bash
# Set up (if needed) and launch Nion Swift with the in-situ suite and the simulated instrument (simulator mode).
#   bash scripts/launch.sh            on a machine with a screen (DISPLAY set)
#   bash scripts/launch.sh --xvfb     no screen: run the real Swift on a virtual X screen for N seconds
#                                     (default 30) and save screenshots to out/launch/
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV="${INSITU_VENV:-$PWD/.venv}"
export INSITU_SIMULATOR=1
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$VENV/numba-cache}"
LAUNCHER="$VENV/bin/NionSwiftLauncher/NionSwiftLauncher"
if [ "${1:-}" = "--xvfb" ]; then
  exec "$VENV/bin/python" scripts/swift_xvfb.py --out out/launch --seconds "${2:-30}"
fi
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  cat <<MSG
No display found (DISPLAY is not set), so the Nion Swift window cannot be shown here.
Alternatives on a machine without a screen:
  bash scripts/launch.sh --xvfb                 # real Swift on a virtual screen, screenshots in out/launch/
  $VENV/bin/python scripts/headless_demo.py     # simulated camera through every processor, PNGs + summary in out/demo/
MSG
  exit 2
fi
echo "Launching Nion Swift (simulator mode: simulated in-situ camera, scan, EELS, laser)."
exec "$LAUNCHER" "$VENV" nionui_app.nionswift
