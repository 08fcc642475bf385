"""docs/player.md: the Swift-free example runs and prints what the text says."""
from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_swift_free_example_of_the_player_doc_runs(tmp_path: pathlib.Path) -> None:
    text = (ROOT / "docs" / "player.md").read_text()
    section = text[text.index("Without Swift (a notebook"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code.group(1), "docs/player.md", "exec"), {})
    finally:
        os.chdir(cwd)
    printed = out.getvalue()
    assert "frames: 20 of 64 x 64 px, float32" in printed
    assert "temperature_C: 350.0" in printed
    assert "[5, 6, 7, 8, 9, 10, 11, 12, 13, 14]" in printed
    assert "(20, 64, 64)" in printed
