"""docs/fusion.md is executable: its Python blocks run in order, from the repository root, on the shipped DyScO3
data (../shared/data/DyScO3_HAADF_EDS.npz relative to the repository)."""
from __future__ import annotations

import pathlib
import re

import pytest

from processing.fusion import PARAMETERS

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "fusion.md"
DATA = ROOT / ".." / "shared" / "data" / "DyScO3_HAADF_EDS.npz"


def test_the_worked_example_runs_on_the_shipped_data(monkeypatch: pytest.MonkeyPatch) -> None:
    if not DATA.exists():
        pytest.skip(f"the shipped DyScO3 data is absent ({DATA.resolve()}); the worked example needs it")
    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 3
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)


def test_every_option_is_documented() -> None:
    text = DOC.read_text()
    for p in PARAMETERS:
        assert f"`{p.name}`" in text, p.name
