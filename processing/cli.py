"""The ``nionswift-insitu`` command line: one entry point, one subcommand per concern.

Each subcommand lives with its concern (``processing/<package>/cli.py``) and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (``func(args) -> int`` exit code).
Add a module to :data:`SUBCOMMAND_MODULES` to add a subcommand. Errors the user can fix are printed as one
message (problem, value, remedy) with exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import typing

#: modules that provide ``register(subparsers)``; one per concern
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "processing.execution.cli",
    "processing.fusion.cli",
    "processing.decomposition.cli",
    "processing.stack.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nionswift-insitu",
        description="nionswift-insitu processing from the command line (the same code as in Nion Swift).")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: typing.Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except KeyboardInterrupt:
        print("nionswift-insitu: interrupted; what was done so far has been written (see the messages above).",
              file=sys.stderr)
        return 130
    except ValueError as e:  # ProcessingError and friends: a message the user can act on
        print(f"nionswift-insitu {args.command}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"nionswift-insitu {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
