"""``nionswift-insitu run``: processors over a recorded stack, from the command line.

    nionswift-insitu run PROCESSOR_ID [PROCESSOR_ID ...] --input FILE --output FILE
                         [--param NAME=VALUE ...] [--frames START:STOP] [--scheduler ADDRESS]

The output format follows the extension (``.hspy``, ``.h5``, ``.zspy``; see :mod:`processing.io.results`).
``--param`` takes ``NAME=VALUE`` (every processor of the run that has ``NAME``) or ``PROCESSOR_ID:NAME=VALUE``;
values are read as JSON when they can be (``2``, ``0.5``, ``true``), else as text. ``nionswift-insitu run --list``
lists the processors and their parameters. Exit codes: 0 complete, 3 incomplete (some frames failed; partial
results written), 130 interrupted (Ctrl-C; partial results written), 2 bad arguments (a message, no traceback).
"""
from __future__ import annotations

import argparse
import json
import sys
import typing

from processing.base import ParameterError

__all__ = ["register", "parse_params", "parse_frames", "run_command"]


def register(subparsers: typing.Any) -> None:
    """Add the ``run`` subcommand to the ``nionswift-insitu`` parser."""
    parser = subparsers.add_parser(
        "run", help="run processors over a recorded image stack (file), optionally on a Dask cluster",
        description="Run one or several processors over a recorded image stack and write their full results "
                    "(image sequences, whole kymographs, time plots, marker tables) to a HyperSpy file.")
    parser.add_argument("processor_ids", nargs="*", metavar="PROCESSOR_ID",
                        help="processor ids, e.g. insitu.live_difference (see --list)")
    parser.add_argument("--input", "-i", metavar="FILE",
                        help="the stack: .npy, .h5/.hdf5/.hspy/.nxs, .emd, .dm3/.dm4, .tif, .mrc, or a folder")
    parser.add_argument("--output", "-o", metavar="FILE", help="the results file: .hspy, .h5 or .zspy (HyperSpy Zarr)")
    parser.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter value (repeatable); PROCESSOR_ID:NAME=VALUE targets one processor")
    parser.add_argument("--frames", metavar="START:STOP", help="frame range (stop exclusive), e.g. 100:400")
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler, e.g. tcp://host:8786")
    parser.add_argument("--dataset", metavar="NAME", help="the dataset to read when the file holds several")
    parser.add_argument("--block-frames", type=int, metavar="N", help="frames read (and sent to a task) at a time")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true", help="list the processors and their parameters, then exit")
    parser.set_defaults(func=run_command)


def parse_params(items: typing.Sequence[str]) -> dict[str, typing.Any]:
    """``["fast=2", "insitu.radial_kymograph:statistic=max"]`` -> ``{"fast": 2, "insitu...:statistic": "max"}``."""
    params: dict[str, typing.Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"--param '{item}' is not NAME=VALUE; write e.g. --param fast=2 or "
                                 f"--param insitu.live_difference:slow=40.")
        try:
            value: typing.Any = json.loads(text)
        except ValueError:
            value = text
        params[name.strip()] = value
    return params


def parse_frames(text: str | None) -> slice | None:
    """``"100:400"`` -> ``slice(100, 400)``; either side may be empty; None -> None (all frames)."""
    if text is None:
        return None
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)
    except ValueError:
        raise ParameterError(f"--frames '{text}' is not START:STOP; write e.g. --frames 100:400 (stop exclusive), "
                             f"--frames :200 or --frames 50:.") from None


def _list() -> int:
    from processing import registry

    for cls in registry.all_processors():
        try:
            split = cls().split_kind()
        except (ValueError, TypeError):  # no valid default parameters
            split = cls.split
        print(f"{cls.processor_id}  ({cls.title}; split: {split})")
        for p in cls.PARAMETERS:
            extra = f" {list(p.choices)}" if p.choices else (
                f" [{p.min}, {p.max}]" if p.min is not None or p.max is not None else "")
            units = f" {p.units}" if p.units else ""
            print(f"    {p.name} = {p.default!r}{units}  ({p.type}{extra}) {p.label}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    """The ``run`` subcommand (``args`` from :func:`register`'s parser)."""
    from processing.execution.offline import run_offline

    if args.list:
        return _list()
    missing = [flag for flag, value in (("PROCESSOR_ID", args.processor_ids), ("--input", args.input),
                                        ("--output", args.output)) if not value]
    if missing:
        raise ParameterError(f"missing {', '.join(missing)}; usage: nionswift-insitu run PROCESSOR_ID [...] "
                             f"--input FILE --output FILE (nionswift-insitu run --list shows the processors).")
    run = run_offline(args.processor_ids, args.input, parameters=parse_params(args.param),
                      frames=parse_frames(args.frames), client=args.scheduler, progress=not args.no_progress,
                      output=args.output, dataset=args.dataset, block_frames=args.block_frames)
    for pid, result in run.results.items():
        outputs = [*result.images, *result.kymographs, *result.time_series, *result.markers]
        state = "complete" if result.complete else "INCOMPLETE"
        first, stop = result.provenance["frame_range"]
        print(f"{pid}: {result.frames_processed} frames processed (frames {first}-{stop - 1}), "
              f"{len(result.failed_frames)} skipped, {state}; outputs: {', '.join(outputs) or 'none'}")
        for frame, text in result.failed_frames[:3]:
            print(f"    frame {frame}: {text}")
        if len(result.failed_frames) > 3:
            print(f"    ... and {len(result.failed_frames) - 3} more skipped frames (listed in the file)")
    for message in run.messages:
        print(f"note: {message}", file=sys.stderr)
    if run.output_path:
        print(f"results: {run.output_path}")
    if run.interrupted:
        return 130
    return 0 if run.complete and run.output_path else 3
