"""What the tile-based FFT processors share: tile parameters, frequency units, checks, the per-frame tile pass.

Used by :mod:`processing.live.fft_analysis` (Max-FFT, radial kymograph) and :mod:`processing.live.orientation`
(FFT orientation map). Max-FFT and the orientation map share one tile pass per frame through ``Context.memo``
(:func:`shared_tile_pass`).
"""
from __future__ import annotations

import typing

import numpy as np
from numpy.typing import NDArray

from processing.live import tiles
from processing.base import Calibration, Context, Frame, InputError, Parameter

__all__ = ["TILE_PARAMETERS", "frequency_units", "pixel_size", "check_finite", "check_tile_parameters",
           "shared_tile_pass"]

TILE_PARAMETERS = (
    Parameter("tile_size_px", "Tile size", "integral", 128, 16, 1024, "px",
              description="Side of the square tiles (a power of two); about the diameter of the crystalline regions "
                          "to find (see docs/processors-ground-truth.md)."),
    Parameter("step_px", "Tile step", "integral", 32, 1, 1024, "px",
              description="Distance between neighbouring tiles; smaller than the tile size means overlap."),
)


def frequency_units(units: str) -> str:
    """Units of spatial frequency for a spatial calibration in ``units`` ("nm" -> "1/nm", "" -> "1/px")."""
    return f"1/{units}" if units else "1/px"


def pixel_size(calibration: Calibration) -> float:
    """Size of a pixel in its calibration units (1 when uncalibrated)."""
    return abs(calibration.scale) if calibration.scale else 1.0


def check_finite(value: NDArray[typing.Any], what: str) -> None:
    """Raise :class:`InputError` naming ``what`` when ``value`` holds NaN or infinite values."""
    if not np.isfinite(value).all():
        raise InputError(f"{what}: the frame contains NaN or infinite pixels, so the result would be NaN; "
                         f"mask or replace the bad pixels (dead/saturated detector pixels) first.")


def check_tile_parameters(tile_px: int, step_px: int) -> None:
    """Raise :class:`ParameterError` unless ``tile_px`` is a power of two of at least 8."""
    if tile_px < 8 or tile_px & (tile_px - 1):
        from processing.base import ParameterError
        raise ParameterError(f"tile size {tile_px} px must be a power of two (16, 32, 64, 128, 256, 512 or 1024); "
                             f"use e.g. 128.")



def shared_tile_pass(frame: Frame, context: Context, *, tile_px: int, step_px: int,
                     peaks: tiles.PeakSpec | None) -> tiles.TilePass:
    """The frame's tile pass, computed once per frame and region and shared through ``context.memo``."""
    key = ("processing.live.tiles.tile_pass", frame.origin_px, frame.shape, tile_px, step_px, peaks)
    job = typing.cast(tiles.TilePassJob, context.memo(
        key, lambda: tiles.TilePassJob(frame.data, tile_px=tile_px, step_px=step_px, peaks=peaks)))
    return job.result()  # every processor sharing the pass works on it: nobody idles waiting

