"""The three packages type-check with ``mypy --strict`` (the project's style rule)."""
from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_mypy_strict_passes_on_processing_instrument_sim_and_the_plugin() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--namespace-packages", "--explicit-package-bases",
         "--cache-dir", str(pathlib.Path(sys.prefix) / "insitu-mypy-cache"), "-p", "processing", "-p", "instrument_sim",
         "-p", "nionswift_plugin.insitu"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
