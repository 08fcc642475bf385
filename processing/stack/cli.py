"""``nionswift-insitu align``: SDSD alignment of an image stack file.

    nionswift-insitu align --input series.h5 --output aligned.hspy [--reference all|banded|first|previous]
        [--band-k 10] [--region t,l,b,r] [--lowpass-sigma-px 2] ... [--method spline|fourier] [--crop crop|pad]
        [--scheduler ADDRESS|local]

Reads any stack :func:`processing.io.stacks.open_stack` reads, lazily: a stack larger than 256 MB (or
``--block-frames N``) is read, measured and written N frames at a time (:mod:`processing.alignment.sdsd_blocks`);
writes a HyperSpy file (``.hspy``/``.h5``) with the
aligned sequence, the aligned sum and the shifts (px, with uncertainty); the shifts (px and calibrated units) and
notes are also written next to the output as ``<output>.shifts.json``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import typing

import numpy as np
from numpy.typing import NDArray

from processing.alignment.sdsd import SDSD_PARAMETERS, align_stack
from processing.alignment.sdsd_blocks import BLOCK_BYTES, FrameBlocks, aligned_blocks, aligned_dask
from processing.alignment.stack_shift import aligned_geometry, apply_shifts
from processing.base import Calibration, ParameterError

__all__ = ["register", "run_align"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def register(subparsers: typing.Any) -> None:
    parser = subparsers.add_parser("align", help="align an image stack by SDSD (all pairs, weighted, robust)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="stack file (h5/hspy/emd/dm4/tif/npy or a folder)")
    parser.add_argument("--output", required=True, help="output file: .hspy/.h5 (sequence, sum, shifts)")
    parser.add_argument("--dataset", default=None, help="dataset inside the input file, when it holds several")
    for p in SDSD_PARAMETERS:
        kind: typing.Any = {"real": float, "integral": int, "string": str, "choice": str}.get(p.type, str)
        if p.type == "boolean":
            parser.add_argument(_flag(p.name), action="store_true", default=bool(p.default),
                                help=p.description.replace("%", "%%"))
        else:
            parser.add_argument(_flag(p.name), type=kind, default=p.default,
                                choices=list(p.choices) if p.choices else None,
                                help=f"{p.description} (default {p.default!r}{' ' + p.units if p.units else ''})"
                                .replace("%", "%%"))
    parser.add_argument("--method", choices=("spline", "fourier"), default="spline", help="how shifts are applied")
    parser.add_argument("--crop", choices=("crop", "pad"), default="crop",
                        help="keep the common area (crop) or everything on a larger canvas (pad)")
    parser.add_argument("--block-frames", type=int, default=0,
                        help="read, measure and write the stack this many frames at a time (bounded memory; "
                             "rounded up to a multiple of 16); 0 = in memory if the stack fits in 256 MB, else "
                             "blocks of 256 MB")
    parser.add_argument("--scheduler", metavar="ADDRESS", default="",
                        help="measure the pairs on this Dask scheduler (tcp://host:8786; the workers read the file "
                             "themselves, block by block), or 'local' for a 2-worker cluster on this computer")
    parser.set_defaults(func=run_align)


def run_align(args: argparse.Namespace) -> int:
    from processing.io.results import _axis, _signal, _write_hdf5, check_output_path
    from processing.io.stacks import open_stack

    output = check_output_path(args.output)
    if output.suffix.lower() not in (".hspy", ".h5", ".hdf5"):
        raise ParameterError(f"align writes HyperSpy HDF5 files; got output '{output}'. Use a .hspy or .h5 name.")
    stack = open_stack(args.input, dataset=args.dataset)   # lazy: frames are read when a block needs them
    cal_y, cal_x = stack.calibrations
    options = {p.name: getattr(args, p.name) for p in SDSD_PARAMETERS}
    if args.block_frames < 0:
        raise ParameterError(f"--block-frames must be >= 0; got {args.block_frames}. Use e.g. 64, or 0 (automatic).")
    h, w = stack.frame_shape
    fits = stack.n_frames * h * w * 4 <= BLOCK_BYTES
    source = FrameBlocks(stack, args.block_frames or None)
    if args.block_frames == 0 and fits:
        source = FrameBlocks(source.read(0, source.n_frames))      # small: one block in memory
    if args.scheduler:
        result = _align_on_cluster(args, options, (cal_y.scale, cal_x.scale))
    else:
        result = align_stack(source, pixel_size_nm=(cal_y.scale, cal_x.scale), **options)
    aligned = _aligned(source, result.shifts_px, args.method, args.crop)
    summary = result.to_dict()
    summary.update({"input": str(args.input), "units": [cal_y.units, cal_x.units], "method": args.method,
                    "crop": args.crop, "origin_px": list(aligned.origin_px), "options": options})
    sidecar = output.with_name(output.name + ".shifts.json")
    sidecar.write_text(json.dumps(summary, indent=1))
    oy, ox = aligned.origin_px
    ys = Calibration(cal_y.offset + cal_y.scale * oy, cal_y.scale, cal_y.units)
    xs = Calibration(cal_x.offset + cal_x.scale * ox, cal_x.scale, cal_x.units)
    n, h, w = aligned.frames.shape
    image_axes = [_axis("y", h, ys, navigate=False), _axis("x", w, xs, navigate=False)]
    frame_axis = _axis("frame", n, Calibration(0.0, 1.0, "frame"), navigate=True)
    shifts = np.concatenate([result.shifts_px, np.nan_to_num(result.uncertainty_px, nan=-1.0)], axis=1).T
    sequence = _signal("aligned sequence", aligned.frames, [frame_axis] + image_axes, stack.intensity_units, summary)
    sequence["attributes"]["_lazy"] = not isinstance(aligned.frames, np.ndarray)   # Dask: written block by block
    signals = [
        sequence,
        _signal("aligned sum", aligned.total, image_axes, stack.intensity_units, summary),
        _signal("shifts (dy, dx, sigma_y, sigma_x) px", shifts,
                [_axis("component", 4, Calibration(), navigate=True),
                 _axis("frame", n, Calibration(0.0, 1.0, "frame"), navigate=False)], "px", summary),
    ]
    _write_hdf5(signals, output)
    print(f"aligned {n} frames "
          f"({result.reference} pairs: {len(result.pairs)}, rejected {len(result.rejected)}, residual "
          f"{result.residual_rms_px:.3f} px); largest shift {np.abs(result.shifts_px).max():.2f} px; wrote {output} "
          f"and {sidecar.name}")
    for note in result.notes:
        print(f"note: {note}")
    stack.close()
    return 0


def _align_on_cluster(args: argparse.Namespace, options: dict[str, typing.Any],
                      pixel_size_nm: tuple[float, float]) -> typing.Any:
    """``--scheduler``: the pair measurement on a Dask cluster (:mod:`processing.alignment.sdsd_dask`)."""
    from processing.alignment.sdsd_dask import align_stack_dask
    kwargs = dict(pixel_size_nm=pixel_size_nm, block_frames=args.block_frames or None, dataset=args.dataset,
                  **options)
    if args.scheduler != "local":
        return align_stack_dask(args.input, args.scheduler, **kwargs)
    import distributed
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,  # type: ignore[no-untyped-call]
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        return align_stack_dask(args.input, client, **kwargs)


class _Aligned(typing.NamedTuple):
    frames: typing.Any            # (N, h, w) float32 numpy array, or a Dask array computed block by block
    total: NDArray[np.float32]
    origin_px: tuple[int, int]


def _aligned(source: FrameBlocks, shifts_px: NDArray[np.float64], method: str, crop: str) -> _Aligned:
    """In memory (one block): :func:`apply_shifts`. In blocks: the sum from one pass over the blocks, the frames as
    a Dask array the writer computes block by block (each frame is read and shifted twice: the price of bounded
    memory)."""
    if source.in_memory:
        whole = apply_shifts(source.read(0, source.n_frames), shifts_px, method=method, crop=crop)
        return _Aligned(whole.frames, whole.total, whole.origin_px)
    geometry = aligned_geometry(source.frame_shape, shifts_px, crop)
    total = np.zeros(geometry.out_shape, dtype=np.float64)
    for _start, block in aligned_blocks(source, shifts_px, method=method, crop=crop):
        total += np.nansum(block, axis=0)
    return _Aligned(aligned_dask(source, shifts_px, method=method, crop=crop), total.astype(np.float32),
                    geometry.origin_px)
