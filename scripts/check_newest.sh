#!/usr/bin/env bash
# CI check (issue 14): does the suite work with the newest releases the package registry offers within the
# version ranges of setup.cfg (nionswift >=16.16.2,<17, nionswift-instrumentation >=23.6.2,<24, ...)?
#
# Cheap when nothing is newer: pip's resolver report (a dry run of an eager upgrade of the project into the test
# venv) lists what would change; if no dependency would be upgraded, say so and stop. Otherwise build a fresh venv
# with exactly the releases the resolver selected (pinned through a constraints file; non-editable, like a user's
# install) and run the whole suite there.
#
# usage: bash scripts/check_newest.sh [pytest args]     env: INSITU_VENV (tested venv, default .venv),
#        INSITU_NEWEST_VENV (default /tmp/insitu-newest-venv), INSITU_NEWEST_FORCE=1 (build and test anyway)
#        for tests of this script (tests/test_check_newest.py): INSITU_NEWEST_REPORT=<a pip --report JSON> is used
#        instead of asking the registry (a fake index), INSITU_NEWEST_RUN=<command> runs every build/test step
#        through that command (e.g. a recorder) instead of executing it
# exit:  0 nothing newer or the suite passes with the newest; pytest's code if it fails; 0 with a message if the
#        registry cannot be reached (the check could not run; set INSITU_NEWEST_STRICT=1 to make that an error)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${INSITU_VENV:-$PWD/.venv}"
NEWEST="${INSITU_NEWEST_VENV:-/tmp/insitu-newest-venv}"
WORK="$(mktemp -d /tmp/insitu-newest.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
REPORT="$WORK/report.json"
CONSTRAINTS="$WORK/constraints.txt"

step() {  # a build or test step: executed, or handed to INSITU_NEWEST_RUN
    if [ -n "${INSITU_NEWEST_RUN:-}" ]; then "$INSITU_NEWEST_RUN" "$@"; else "$@"; fi
}

if [ -n "${INSITU_NEWEST_REPORT:-}" ]; then
    echo "check_newest: using the resolver report $INSITU_NEWEST_REPORT (INSITU_NEWEST_REPORT)"
    cp "$INSITU_NEWEST_REPORT" "$REPORT"
else
    echo "check_newest: resolving the newest releases allowed by setup.cfg (pip dry run, eager upgrade) ..."
    if ! "$VENV/bin/python" -m pip install --dry-run --upgrade --upgrade-strategy eager --quiet --report "$REPORT" \
            -e . >/tmp/insitu-newest-pip.log 2>&1; then
        echo "check_newest: pip could not resolve against the registry (see /tmp/insitu-newest-pip.log); not checked."
        [ "${INSITU_NEWEST_STRICT:-0}" = "1" ] && exit 1
        exit 0
    fi
fi
# the selection: every release in the report that differs from what the tested venv has -> "name current -> new"
# on stdout, "name==new" into the constraints file (what the fresh venv is built with)
UPGRADES="$("$VENV/bin/python" - "$REPORT" "$CONSTRAINTS" <<'PY'
import importlib.metadata as md, json, sys
report = json.load(open(sys.argv[1]))
pins = []
for item in report.get("install", []):
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if name.lower().replace("_", "-") == "nionswift-insitu":
        continue  # the project itself (always re-installed by the dry run)
    try:
        current = md.version(name)
    except md.PackageNotFoundError:
        current = "not installed"
    if current != version:
        print(f"{name} {current} -> {version}")
        pins.append(f"{name}=={version}")
open(sys.argv[2], "w").write("".join(p + "\n" for p in pins))
PY
)"
if [ -z "$UPGRADES" ] && [ "${INSITU_NEWEST_FORCE:-0}" != "1" ]; then
    echo "check_newest: the tested releases are the newest the registry offers within setup.cfg's ranges"
    "$VENV/bin/python" - <<'PY'
import importlib.metadata as md
print("  " + ", ".join(f"{p} {md.version(p)}" for p in
                      ("nionswift", "nionswift-instrumentation", "nionui", "niondata", "nionutils")))
PY
    echo "check_newest: nothing newer; skipped."
    exit 0
fi
echo "check_newest: newer releases available:"
echo "${UPGRADES:-  (none; INSITU_NEWEST_FORCE=1)}" | sed 's/^/  /'
echo "check_newest: building $NEWEST with the newest releases (constraints: $(tr '\n' ' ' < "$CONSTRAINTS")) ..."
step rm -rf "$NEWEST"
step "$VENV/bin/python" -m venv "$NEWEST"
step "$NEWEST/bin/python" -m pip install --quiet --upgrade pip
step "$NEWEST/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager -c "$CONSTRAINTS" ".[test]" \
    || step "$NEWEST/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager -c "$CONSTRAINTS" . pytest
step "$NEWEST/bin/python" -m pip list --format=freeze | { grep -Ei '^(nion|numpy|scipy|numba)' || true; } | sed 's/^/  /'
# the tests import the checkout (tests/, scripts/); the packages come from the new venv (non-editable install)
export NUMBA_CACHE_DIR="$NEWEST/numba-cache"
set +e
step "$NEWEST/bin/python" -m pytest tests -q -p no:cacheprovider "$@"
rc=$?
set -e
echo "check_newest: the suite with the newest releases exited with $rc"
exit $rc
