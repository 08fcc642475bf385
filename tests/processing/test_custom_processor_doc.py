"""docs/custom-processor.md is executable: its code blocks run, in order, as one script."""
from __future__ import annotations

import pathlib
import re

import pytest

from processing import InputError, make_frame, registry

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "custom-processor.md"


def test_the_worked_example_in_the_docs_runs_and_registers_its_processors() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    for block in blocks[:3]:
        exec(compile(block, str(DOC), "exec"), namespace)
    assert registry.get("mylab.running_maximum").title == "Running Maximum"
    assert registry.get("mylab.unsharp_mask").title == "Unsharp Mask"
    processor = namespace["RunningMaximum"](decay=0.0)  # type: ignore[operator]
    import numpy as np
    a = np.zeros((8, 8), np.float32)
    a[2, 3] = 5
    b = np.zeros((8, 8), np.float32)
    b[6, 1] = 7
    from processing import Context
    processor.process(make_frame(a), Context())
    image, _ = processor.process(make_frame(b), Context())
    assert image.data[2, 3] == 5 and image.data[6, 1] == 7
    with pytest.raises(InputError, match="flat"):
        processor.process(make_frame(np.ones((8, 8))), Context())
