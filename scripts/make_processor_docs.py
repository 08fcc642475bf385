#!/usr/bin/env python3
"""Write docs/processors.md from the processor table (processing.registry): one section per built-in processor
with its description, parameters (label, type, default, range, units) and outputs. tests/processing check that the
committed file is up to date, so the documentation cannot drift from the code.

usage: .venv/bin/python scripts/make_processor_docs.py
"""
from __future__ import annotations

import importlib
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def render() -> str:
    from processing import registry
    lines = ["# Live processors", "",
             "Generated from the processor table by `scripts/make_processor_docs.py`; do not edit by hand.", "",
             "Every processor appears in **Processing → In-situ**, in the **In-situ Processors** panel (drop live "
             "data on it), in the Inspector with the parameters below, and in scripting "
             "(`scripting.attach_processor(api, id, data_item, **parameters)`).", ""]
    for spec in registry.BUILTIN:
        module_name, class_name = spec.split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        lines += [f"## {cls.title}", "", f"`{cls.processor_id}`" + (" — stateful: sees every frame when fast "
                  "enough" if cls.stateful else ""), "", " ".join(doc.split()), ""]
        if cls.PARAMETERS:
            lines += ["| parameter | name | type | default | range | units | notes |", "|---|---|---|---|---|---|---|"]
            for p in cls.PARAMETERS:
                rng = "" if p.min is None and p.max is None else f"{p.min if p.min is not None else ''} – " \
                                                                 f"{p.max if p.max is not None else ''}"
                kind = p.type + (f" ({', '.join(p.choices)})" if p.choices else "")
                lines.append(f"| {p.label} | `{p.name}` | {kind} | {p.default!r} | {rng} | {p.units} | "
                             f"{p.description} |")
            lines.append("")
        outputs = ", ".join(f"`{name}` ({kind})" for name, kind in cls.OUTPUTS)
        lines += [f"Outputs: {outputs}.", ""]
    return "\n".join(lines)


def main() -> None:
    target = ROOT / "docs" / "processors.md"
    target.write_text(render())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
