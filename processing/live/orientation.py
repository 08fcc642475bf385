"""FFT orientation colour map (``insitu.fft_orientation``): each tile's strongest lattice peak (BenMillerScripts
``FFTArrayAnalysis``): orientation 0-180 deg as hue (or its spacing), strength as brightness, a colour-wheel legend,
optionally blended over the image.

Pure functions (:func:`orientation_map`, :func:`brightness`, :func:`orientation_rgb`, legends, blending) and the live
processor :class:`OrientationMapProcessor`. It shares its tile pass with Max-FFT (:mod:`processing.live.fft_common`).
"""
from __future__ import annotations

import dataclasses
import functools
import typing

import numpy as np
from numpy.typing import NDArray

from processing import warmup
from processing.live import tiles
from processing.live.fft_common import (TILE_PARAMETERS, check_finite, check_tile_parameters, frequency_units,
                                        pixel_size, shared_tile_pass)
from processing.base import Calibration, Context, Frame, Outputs, Parameter, Processor, RGBImageOutput

__all__ = ["orientation_map", "OrientationMap", "orientation_rgb", "colour_wheel_legend", "spacing_legend",
           "brightness", "blend_over_image", "map_calibrations", "OrientationMapProcessor"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
U8 = NDArray[np.uint8]


@dataclasses.dataclass(frozen=True)
class OrientationMap:
    """Per-tile peak maps (n_y, n_x) float32: orientation deg [0, 180) (counter-clockwise from +x, y up),
    spacing in cycles/px (spatial frequency of the peak) and strength (smoothed natural-log power at the peak)."""

    theta_deg: F32
    spacing_cpp: F32
    strength: F32
    tile_px: int
    step_px: int
    flat: NDArray[np.bool_] | None = None  # exactly flat tiles, all pixels equal (see TilePass.flat)


def orientation_map(data: F32, *, tile_px: int = 128, step_px: int = 32, mask_percent: float = 10.0,
                    bar_width_px: int = 2, smooth: bool = True) -> OrientationMap:
    """Each tile's strongest FFT peak (the reference colour map's search; see :class:`processing.live.tiles.PeakSpec`).

    Raises :class:`InputError` for frames smaller than one tile or with NaN pixels.
    """
    check_tile_parameters(tile_px, step_px)
    tp = tiles.tile_pass(np.asarray(data, np.float32), tile_px=tile_px, step_px=step_px,
                         peaks=tiles.PeakSpec(mask_percent, bar_width_px, smooth))
    return _map_from_pass(tp, "orientation map")


def _map_from_pass(tp: tiles.TilePass, what: str) -> OrientationMap:
    assert tp.theta_deg is not None and tp.spacing_cpp is not None and tp.strength is not None
    check_finite(tp.strength, what)
    return OrientationMap(tp.theta_deg, tp.spacing_cpp, tp.strength, tp.tile_px, tp.step_px, tp.flat)


def brightness(omap: OrientationMap) -> F64:
    """(n_y, n_x) float64 in [0, 1]: the strength scaled from its per-frame minimum to its maximum over the tiles
    that hold a measurement. Flat tiles (all pixels equal, :attr:`OrientationMap.flat`) and NaN
    tiles are black (0) and excluded from the range, so an exactly flat region (behind a beam stop) does not
    collapse the contrast of the rest. All tiles equal: 1 (0 if all are flat)."""
    s = omap.strength.astype(np.float64)
    valid = np.isfinite(s)
    if omap.flat is not None:
        valid &= ~omap.flat
    if not valid.any():
        return np.zeros_like(s)
    lo, hi = float(s[valid].min()), float(s[valid].max())
    out = np.clip((s - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.ones_like(s)
    out[~valid] = 0.0
    return out


def _lut(segments: typing.Sequence[tuple[float, tuple[float, float, float]]], n: int = 256) -> F64:
    xs = np.array([s[0] for s in segments])
    cols = np.array([s[1] for s in segments])
    x = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(x, xs, cols[:, k]) for k in range(3)], axis=1)


#: matplotlib's 'gist_rainbow' (the reference's hue for orientation), 256 entries
GIST_RAINBOW = _lut([(0.000, (1.00, 0.00, 0.16)), (0.030, (1.00, 0.00, 0.00)), (0.215, (1.00, 1.00, 0.00)),
                     (0.400, (0.00, 1.00, 0.00)), (0.586, (0.00, 1.00, 1.00)), (0.770, (0.00, 0.00, 1.00)),
                     (0.954, (1.00, 0.00, 1.00)), (1.000, (1.00, 0.00, 0.75))])


def _jet_lut(n: int = 256) -> F64:
    x = np.linspace(0.0, 1.0, n)
    red = np.interp(x, [0, 0.35, 0.66, 0.89, 1], [0, 0, 1, 1, 0.5])
    green = np.interp(x, [0, 0.125, 0.375, 0.64, 0.91, 1], [0, 0, 1, 1, 0, 0])
    blue = np.interp(x, [0, 0.11, 0.34, 0.65, 1], [0.5, 1, 1, 0, 0])
    return np.stack([red, green, blue], axis=1)


#: matplotlib's 'jet' (the reference's colour for spacing), 256 entries
JET = _jet_lut()


def _lut_index(x: NDArray[typing.Any]) -> NDArray[np.intp]:
    """matplotlib's index arithmetic: x in [0, 1] -> int(x * N) clipped to [0, N-1]."""
    x = np.nan_to_num(x, nan=0.0)
    return np.clip((x * 256).astype(np.intp), 0, 255)


def _spacing_range(spacing: F32) -> tuple[float, float]:
    finite = spacing[np.isfinite(spacing)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, (5, 95)))
    return (lo, hi) if hi > lo else (lo, lo + 1e-6)


def orientation_rgb(omap: OrientationMap, *, colour_by: str = "orientation", pad_border: bool = True) -> U8:
    """(n_y', n_x', 3) uint8 RGB of the map: hue = orientation through 'gist_rainbow' over 0-180 deg (or spacing
    through 'jet' over its 5-95 percentiles), brightness = strength scaled from its per-frame minimum to maximum
    (:func:`brightness`: flat tiles black).
    ``pad_border`` adds ``T//step//2`` black tiles on each side (the reference), so map x step ~ frame size."""
    theta, spacing = omap.theta_deg, omap.spacing_cpp
    if colour_by == "orientation":
        colour = GIST_RAINBOW[_lut_index(theta / 180.0)]
    elif colour_by == "spacing":
        lo, hi = _spacing_range(spacing)
        colour = JET[_lut_index((spacing - lo) / (hi - lo))]
    else:
        from processing.base import ParameterError
        raise ParameterError(f"colour_by must be 'orientation' or 'spacing'; got {colour_by!r}.")
    pad = omap.tile_px // omap.step_px // 2 if pad_border else 0
    bright = brightness(omap)
    if pad:  # the padded border takes the map minimum: black
        bright = np.pad(bright, pad, constant_values=0.0)
        colour = np.pad(colour, ((pad, pad), (pad, pad), (0, 0)))
    return (colour * (bright * 255.0)[..., None]).astype(np.uint8)


def map_calibrations(omap: OrientationMap, calibrations: tuple[Calibration, Calibration], *, pad_border: bool = True,
                     ) -> tuple[Calibration, Calibration]:
    """Calibrations (y, x) of the (padded) tile map: map pixel m is centred on its tile's centre in the frame."""
    pad = omap.tile_px // omap.step_px // 2 if pad_border else 0
    first_px = omap.tile_px / 2 - pad * omap.step_px - omap.step_px / 2
    return typing.cast(tuple[Calibration, Calibration], tuple(
        Calibration(c.offset + c.scale * first_px, c.scale * omap.step_px, c.units) for c in calibrations))


@functools.lru_cache(maxsize=4)
def colour_wheel_legend(size_px: int = 129) -> U8:
    """(size, size, 3) uint8 orientation legend: direction -> hue of that orientation (opposite directions share a
    colour), distance from the centre -> brightness (peak strength). Read-only."""
    c = (size_px - 1) / 2
    yy, xx = np.mgrid[0:size_px, 0:size_px]
    dx, dy = xx - c, c - yy
    rho = np.hypot(dx, dy) / c
    theta = np.degrees(np.arctan2(dy, dx)) % 180.0
    rgb = GIST_RAINBOW[_lut_index(theta / 180.0)] * np.clip(rho, 0, 1)[..., None]
    rgb[rho > 1] = 0.0
    out = (rgb * 255).astype(np.uint8)
    out.flags.writeable = False
    return typing.cast(U8, out)


def spacing_legend(*, height_px: int = 24) -> U8:
    """(height, 256, 3) uint8 colour bar of the spacing colouring ('jet', left = 5th, right = 95th percentile of
    the spatial frequency; the processor's legend output carries that range as its x calibration)."""
    return typing.cast(U8, np.repeat((JET[None, :, :] * 255).astype(np.uint8), height_px, axis=0))


def blend_over_image(rgb_map: U8, strength_map: F64, image: F32, *, tile_px: int, step_px: int,
                     pad_border: bool = True) -> U8:
    """Tint the frame by the map: (H, W, 3) uint8 = grey image (1/99 percentile stretch) x ((1 - s) + s * hue),
    s = sqrt(normalised strength); the map is resampled bilinearly onto the frame (tile centres on tile centres)."""
    import cv2

    h, w = image.shape
    pad = tile_px // step_px // 2 if pad_border else 0
    hue = rgb_map.astype(np.float32)
    norm = np.maximum(hue.max(axis=2, keepdims=True), 1.0)
    hue = hue / norm
    s = np.sqrt(np.clip(strength_map, 0.0, 1.0)).astype(np.float32)
    size = (hue.shape[1] * step_px, hue.shape[0] * step_px)
    hue_up = cv2.resize(hue, size, interpolation=cv2.INTER_LINEAR)
    s_up = cv2.resize(s, size, interpolation=cv2.INTER_LINEAR)
    off = int(round(pad * step_px + step_px / 2 - tile_px / 2))
    pad_y = max(0, off + h - size[1])
    pad_x = max(0, off + w - size[0])
    if off < 0 or pad_y or pad_x:
        lo = max(0, -off)
        hue_up = np.pad(hue_up, ((lo, pad_y), (lo, pad_x), (0, 0)), mode="edge")
        s_up = np.pad(s_up, ((lo, pad_y), (lo, pad_x)), mode="edge")
        off += lo
    hue_up = hue_up[off:off + h, off:off + w]
    s_up = s_up[off:off + h, off:off + w]
    sample = image[::4, ::4]
    p1, p99 = (float(v) for v in np.percentile(sample, (1, 99)))
    grey = np.clip((image - p1) / (p99 - p1), 0.0, 1.0) if p99 > p1 else np.full_like(image, 0.5)
    out = grey[..., None] * ((1.0 - s_up)[..., None] + s_up[..., None] * hue_up)
    return typing.cast(U8, (out * 255.0).astype(np.uint8))


class OrientationMapProcessor(Processor):
    """FFT orientation colour map: per tile, the strongest lattice peak's orientation (0-180 deg) as hue and its
    strength as brightness (or its spacing as colour), with a colour-wheel legend; optionally over the image.
    Strength = the smoothed log power at that peak, searched in the upper half-plane (rows 0..T/2-1 of the shifted
    tile FFT; real data has a symmetric spectrum, so this is the peak shown by the hue). The peer script
    (BenMillerScripts FFTArrayAnalysis) takes the whole plane's maximum instead: identical on lattice tiles, up to
    ~0.5 log units higher on noise-only tiles (where the lower half's border smoothing differs). Brightness = strength
    scaled from its per-frame minimum to maximum over the tiles that are not flat; exactly flat tiles (e.g. behind a
    beam stop) are black and do not compress the others' contrast.

    Details: :func:`brightness`, :class:`processing.live.tiles.PeakSpec`."""

    processor_id = "insitu.fft_orientation"
    split = "frame"
    title = "FFT Orientation Map"
    description = "Orientation (or spacing) and strength of the strongest lattice peak in each tile."
    PARAMETERS = TILE_PARAMETERS + (
        Parameter("colour_by", "Colour by", "choice", "orientation", choices=("orientation", "spacing"),
                  description="Hue from the peak orientation (0-180 deg) or from its spacing."),
        Parameter("blend_over_image", "Blend over image", "boolean", False,
                  description="Tint the frame with the map instead of showing the tile map."),
        Parameter("mask_percent", "Centre mask", "real", 10.0, 0.0, 50.0, "%",
                  description="Diameter of the masked low-frequency disc, in % of the tile."),
    )
    OUTPUTS = (("image", "rgb"), ("legend", "rgb"))

    tile_size_px: int
    step_px: int
    colour_by: str
    blend_over_image: bool
    mask_percent: float

    def __init__(self, **params: typing.Any) -> None:
        super().__init__(**params)
        check_tile_parameters(self.tile_size_px, self.step_px)
        warmup.warm_up_in_background()

    @property
    def peak_spec(self) -> tiles.PeakSpec:
        return tiles.PeakSpec(float(self.mask_percent), 2, True)

    def process(self, frame: Frame, context: Context) -> Outputs:
        tp = shared_tile_pass(frame, context, tile_px=self.tile_size_px, step_px=self.step_px,
                              peaks=self.peak_spec)
        omap = _map_from_pass(tp, self.title)
        rgb = orientation_rgb(omap, colour_by=self.colour_by)
        if self.colour_by == "orientation":
            legend = RGBImageOutput("legend", colour_wheel_legend(), title="Orientation legend (0-180 deg)")
        else:
            lo, hi = _spacing_range(omap.spacing_cpp)
            px = pixel_size(frame.calibrations[1])
            cal = Calibration(lo / px, (hi - lo) / px / 256, frequency_units(frame.calibrations[1].units))
            legend = RGBImageOutput("legend", spacing_legend(), (Calibration(), cal),
                                    title="Spacing legend (spatial frequency)")
        if self.blend_over_image:
            pad = omap.tile_px // omap.step_px // 2
            strength = np.pad(brightness(omap), pad)
            image = blend_over_image(rgb, strength, frame.data, tile_px=omap.tile_px, step_px=omap.step_px)
            main = RGBImageOutput("image", image, frame.calibrations, title="FFT orientation (blended)")
        else:
            main = RGBImageOutput("image", rgb, map_calibrations(omap, frame.calibrations), title="FFT orientation")
        return (main, legend)

