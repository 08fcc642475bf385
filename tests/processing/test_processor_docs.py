"""docs/processors.md is generated from the processor table and must be up to date."""
from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_processor_documentation_matches_the_processor_table() -> None:
    spec = importlib.util.spec_from_file_location("make_processor_docs", ROOT / "scripts" / "make_processor_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "docs" / "processors.md").read_text()
    assert committed == module.render(), "run: .venv/bin/python scripts/make_processor_docs.py"
