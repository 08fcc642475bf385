"""scripts/check_newest.sh's newest-release branch (issue 14): with a fake resolver report offering newer Swift
releases, the script selects them, pins exactly them, builds a throwaway venv with them and runs the suite there,
and returns the suite's exit code. The build and test steps go to a recorder (INSITU_NEWEST_RUN), so the test
installs nothing and does not run the suite; the registry is not asked (INSITU_NEWEST_REPORT)."""
from __future__ import annotations

import importlib.metadata as md
import json
import os
import pathlib
import subprocess
import sys
import typing

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "check_newest.sh"

RECORDER = """#!/usr/bin/env bash
# records one build/test step of check_newest.sh (argv, and the constraints file it is given)
python3 - "$@" <<'PY'
import json, os, sys
argv = sys.argv[1:]
constraints = None
if "-c" in argv:
    constraints = open(argv[argv.index("-c") + 1]).read().split()
with open(os.environ["FAKE_RECORD"], "a") as f:
    f.write(json.dumps({"argv": argv, "constraints": constraints}) + "\\n")
PY
case " $* " in *" pytest "*) exit "${FAKE_PYTEST_RC:-0}";; esac
exit 0
"""


def _report(path: pathlib.Path, releases: dict[str, str]) -> pathlib.Path:
    path.write_text(json.dumps({"version": "1", "install": [
        {"metadata": {"name": name, "version": version}} for name, version in releases.items()]}))
    return path


def _run(tmp_path: pathlib.Path, releases: dict[str, str], *pytest_args: str,
         pytest_rc: int = 0) -> tuple[subprocess.CompletedProcess[str], list[dict[str, typing.Any]]]:
    recorder = tmp_path / "recorder.sh"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    record = tmp_path / "record.jsonl"
    env = dict(os.environ, INSITU_VENV=str(pathlib.Path(sys.executable).parents[1]),
               INSITU_NEWEST_VENV=str(tmp_path / "newest-venv"),
               INSITU_NEWEST_REPORT=str(_report(tmp_path / "report.json", releases)),
               INSITU_NEWEST_RUN=str(recorder), FAKE_RECORD=str(record), FAKE_PYTEST_RC=str(pytest_rc))
    env.pop("INSITU_NEWEST_FORCE", None)
    result = subprocess.run(["bash", str(SCRIPT), *pytest_args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    calls = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return result, calls


def test_newer_releases_are_selected_pinned_installed_into_a_fresh_venv_and_tested(tmp_path: pathlib.Path) -> None:
    releases = {"nionswift": "16.18.0", "nionswift-instrumentation": "23.8.0",
                "nionswift-insitu": "0.0.1",            # the project itself: never pinned
                "numpy": md.version("numpy")}            # unchanged: not an upgrade
    result, calls = _run(tmp_path, releases, "-x", "-k", "smoke", pytest_rc=3)
    assert result.returncode == 3, result.stdout + result.stderr  # the suite's exit code is the script's
    out = result.stdout
    assert f"nionswift {md.version('nionswift')} -> 16.18.0" in out
    assert f"nionswift-instrumentation {md.version('nionswift-instrumentation')} -> 23.8.0" in out
    assert "numpy" not in out.split("newer releases available:")[1].split("building")[0]
    newest = str(tmp_path / "newest-venv")
    steps = [c["argv"] for c in calls]
    assert steps[0] == ["rm", "-rf", newest]                                 # a throwaway venv, rebuilt
    assert steps[1][1:] == ["-m", "venv", newest]
    installs = [c for c in calls if c["argv"][:4] == [f"{newest}/bin/python", "-m", "pip", "install"]
                and "-c" in c["argv"]]
    assert installs, steps
    assert sorted(installs[0]["constraints"]) == ["nionswift-instrumentation==23.8.0", "nionswift==16.18.0"]
    assert ".[test]" in installs[0]["argv"]                                  # the project with its test extra
    pytest_calls = [s for s in steps if "pytest" in s]
    assert pytest_calls == [[f"{newest}/bin/python", "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
                             "-x", "-k", "smoke"]]                           # the whole suite, args passed on
    assert steps.index(pytest_calls[0]) > steps.index(installs[0]["argv"])
    assert "exited with 3" in out


def test_nothing_newer_stops_without_building_anything(tmp_path: pathlib.Path) -> None:
    releases = {name: md.version(name) for name in ("nionswift", "nionswift-instrumentation", "numpy")}
    result, calls = _run(tmp_path, dict(releases, **{"nionswift-insitu": "0.0.1"}))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing newer; skipped." in result.stdout
    assert calls == []
    assert not (tmp_path / "newest-venv").exists()
