"""docs/offline.md is executable: its python blocks run, in order, as one script (in a temporary folder); its
command-line block runs through ``python -m processing.cli``."""
from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

from processing.io.results import read_provenance

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "offline.md"


def test_the_worked_example_runs(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "offline_doc"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert (tmp_path / "tracked.hspy").exists() and (tmp_path / "movie.npy").exists()
    markers = namespace["markers"].rows()  # type: ignore[attr-defined]
    assert abs(markers[0]["y_px"] - 50) < 0.5 and abs(markers[39]["x_px"] - (60 + 0.3 * 39)) < 0.5

    command = re.findall(r"```bash\n(.*?)```", text, flags=re.S)[0].replace("\\\n", " ").splitlines()[0]
    argv = shlex.split(command)
    assert argv[0] == "nionswift-insitu"
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "processing.cli", *argv[1:], "--no-progress"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert read_provenance(tmp_path / "run.h5")["insitu.radial_kymograph kymograph"]["frame_range"] == [0, 30]
