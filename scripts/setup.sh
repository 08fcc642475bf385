#!/usr/bin/env bash
# Set up everything nionswift-insitu needs, idempotently: Debian packages for the real GUI under Xvfb (when run as
# root and missing), a virtual environment in .venv, the suite installed editable with its test and launcher extras.
# Usage: bash scripts/setup.sh        (INSITU_VENV=/path overrides the venv location)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${INSITU_VENV:-$PWD/.venv}"
PYTHON="${PYTHON:-python3}"

# Debian packages for Xvfb + the Qt launcher's X libraries (see docs/gui-testing.md). Only when we can install them.
APT_PACKAGES="xvfb xauth xdotool x11-utils libxcb-icccm4 libxcb-keysyms1 libgl1 libegl1 libopengl0 libglx0 \
libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 fonts-dejavu-core libdbus-1-3 libglib2.0-0 libx11-xcb1 \
libxcb-cursor0 libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 \
libxcb-util1 libxcb-xfixes0 libxcb-xkb1"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  missing=""
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
else
  command -v Xvfb >/dev/null 2>&1 || echo "setup: Xvfb not installed and not root: the real-GUI test will be skipped."
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.insitu-setup-stamp"
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing nionswift-insitu (editable) with test and launcher extras"
  log="$VENV/insitu-pip.log"
  # editable_mode=compat puts the repository on sys.path, so Swift's plug-in discovery (pkgutil) finds
  # nionswift_plugin/insitu; the default editable finder hook is invisible to pkgutil.iter_modules.
  if ! { "$VENV/bin/python" -m pip install -q --upgrade pip &&
         "$VENV/bin/python" -m pip install -q -e ".[test,launcher]" --config-settings editable_mode=compat; } >"$log" 2>&1; then
    tail -30 "$log"; echo "setup: pip install failed (full log: $log)"; exit 1
  fi
  "$VENV/bin/python" -c "import nionswift_plugin.insitu, processing, instrument_sim" 
  touch "$stamp"
fi
echo "setup: ready ($VENV)"
