"""Validation and normalisation of the fusion inputs (HAADF + chemical maps) into a :class:`FusionProblem`.

Every refusal is a :class:`processing.base.InputError` or :class:`~processing.base.ParameterError` whose message
names the map, the offending value and what to do.
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
import scipy.ndimage
import scipy.optimize
from numpy.typing import NDArray

from processing.base import Calibration, InputError, ParameterError
from processing.fusion.elements import atomic_number, element_symbol
from processing.fusion.model import F32, FusionProblem, published_tv_delta
from processing.fusion.options import FusionOptions

__all__ = ["PreparedInputs", "prepare_inputs", "check_calibrations", "haadf_weights"]


@dataclasses.dataclass(frozen=True)
class PreparedInputs:
    problem: FusionProblem
    u0: F32
    names: tuple[str, ...]
    elements: tuple[str, ...]
    raw_maps: F32
    haadf: F32
    region_px: tuple[int, int, int, int]
    map_offset: F32   # (n,) input = offset + span * u
    map_span: F32
    haadf_offset: float
    haadf_span: float
    notes: tuple[str, ...]

    def to_input_units(self, u: F32) -> F32:
        return typing.cast(F32, (self.map_offset[:, None, None] + self.map_span[:, None, None] * u).astype(
            np.float32))

    def haadf_to_input_units(self, b: F32) -> F32:
        return typing.cast(F32, (self.haadf_offset + self.haadf_span * b).astype(np.float32))


def check_calibrations(reference: typing.Sequence[Calibration], others: typing.Mapping[str, typing.Sequence[Calibration]],
                       *, what: str = "HAADF", rtol: float = 1e-3) -> None:
    """Refuse maps whose pixel size or units differ from the HAADF's (offsets may differ by less than a pixel)."""
    for name, cals in others.items():
        for axis, (a, b) in enumerate(zip(reference, cals)):
            label = "yx"[axis]
            if (a.units or "") != (b.units or "") and a.units and b.units:
                raise InputError(f"map {name!r} has {label} units {b.units!r}, the {what} {a.units!r}; fuse images of "
                                 f"the same field (convert or recalibrate one of them).")
            if not np.isclose(a.scale, b.scale, rtol=rtol):
                raise InputError(f"map {name!r} has a {label} pixel size of {b.scale:g} {b.units}, the {what} "
                                 f"{a.scale:g} {a.units}; fusion needs the same pixels: bin or resample one of them "
                                 f"to the other's pixel size.")
            if abs(a.offset - b.offset) > 0.5 * abs(a.scale):
                raise InputError(f"map {name!r} starts at {label} = {b.offset:g} {b.units}, the {what} at "
                                 f"{a.offset:g} {a.units} (more than half a pixel apart); crop both to the same field.")


def _as_image(data: typing.Any, what: str) -> NDArray[np.float64]:
    array = np.asarray(data)
    if array.dtype == object or np.iscomplexobj(array) or array.dtype.fields is not None:
        raise InputError(f"{what} has dtype {array.dtype}; expected a real-valued image.")
    array = np.squeeze(array)
    if array.ndim != 2:
        raise InputError(f"{what} must be a 2-D image (H, W); got shape {np.shape(data)}. Give one map per element "
                         f"(sum a spectrum image over an edge window first).")
    if min(array.shape) < 3:
        raise InputError(f"{what} is {array.shape[0]} x {array.shape[1]} pixels; fusion needs at least 3 x 3.")
    return array.astype(np.float64)


def haadf_weights(elements: typing.Sequence[str], weighting: str, gamma: float, b: F32 | None = None,
                  u: F32 | None = None, mask: NDArray[np.bool_] | None = None) -> tuple[F32, str]:
    """HAADF weights w_i (n,) and a note: Z / mean Z, Z^gamma / mean, or fitted (NNLS of b on smoothed u**gamma)."""
    z = np.asarray([atomic_number(e) for e in elements], dtype=np.float64)
    if weighting == "Z":
        return (z / z.mean()).astype(np.float32), ""
    if weighting == "Z^gamma":
        zg = z ** gamma
        return (zg / zg.mean()).astype(np.float32), ""
    if b is None or u is None:
        raise ParameterError("fitted weights need the HAADF and the maps.")
    smooth = np.stack([scipy.ndimage.gaussian_filter(ui.astype(np.float64), 1.0) for ui in u])
    design = np.clip(smooth, 0, None) ** gamma
    sel = np.ones(b.shape, bool) if mask is None else mask
    a_matrix = design[:, sel].T
    w, _ = scipy.optimize.nnls(a_matrix, b[sel].astype(np.float64))
    if not np.any(w > 0):
        raise InputError("fitting the HAADF weights to the maps gave all zeros: the HAADF does not look like any "
                         "combination of the maps; check that they show the same field, or use weighting 'Z'.")
    zero = [e for e, wi in zip(elements, w) if wi <= 0]
    note = (f"HAADF weights fitted to the data: {', '.join(f'{e} {wi:.3g}' for e, wi in zip(elements, w))}"
            + (f" ({', '.join(zero)} not seen in the HAADF: fused by its map and TV only)" if zero else ""))
    return w.astype(np.float32), note


def prepare_inputs(haadf: typing.Any, maps: typing.Mapping[str, typing.Any], options: FusionOptions, *,
                   elements: typing.Sequence[str] | None = None, mask: typing.Any = None) -> PreparedInputs:
    """Validate, crop to the region, normalise; build the problem and the starting point (the measured maps)."""
    if not isinstance(maps, typing.Mapping) or len(maps) < 2:
        count = len(maps) if isinstance(maps, typing.Mapping) else 0
        raise InputError(f"fusion needs at least two chemical maps (got {count}); with a single map the HAADF "
                         f"cannot tell the elements apart: add the maps of the other elements of the sample.")
    names = tuple(str(n) for n in maps)
    if elements is not None and len(elements) != len(names):
        raise ParameterError(f"{len(elements)} element name(s) {list(elements)} for {len(names)} maps {list(names)}; "
                             f"give one element per map.")
    symbols = tuple(element_symbol(e) for e in (elements if elements is not None else names))
    duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
    if duplicates:
        raise ParameterError(f"element(s) {duplicates} appear more than once in {list(names)}; give one map per "
                             f"element (sum the maps of the same element first).")
    h = _as_image(haadf, "the HAADF image")
    if not np.isfinite(h).all():
        bad = int(h.size - np.count_nonzero(np.isfinite(h)))
        raise InputError(f"the HAADF image has {bad} NaN/inf pixel(s) of {h.size}; choose a region without them "
                         f"(region top,left,height,width) or fill them.")
    raw: list[NDArray[np.float64]] = []
    for name in names:
        m = _as_image(maps[name], f"map {name!r}")
        if m.shape != h.shape:
            raise InputError(f"map {name!r} is {m.shape[0]} x {m.shape[1]} pixels, the HAADF {h.shape[0]} x "
                             f"{h.shape[1]}; fusion needs maps of the same field and pixels as the HAADF: crop or "
                             f"resample them to the HAADF's shape.")
        if not np.isfinite(m).all():
            bad = int(m.size - np.count_nonzero(np.isfinite(m)))
            raise InputError(f"map {name!r} has {bad} NaN/inf pixel(s) of {m.size}; choose a region without them or "
                             f"fill them.")
        raw.append(m)
    region = options.region_px or (0, 0, h.shape[0], h.shape[1])
    top, left, height, width = region
    if top + height > h.shape[0] or left + width > h.shape[1]:
        raise ParameterError(f"region {list(region)} (top, left, height, width) does not fit in the "
                             f"{h.shape[0]} x {h.shape[1]} images; choose a region inside them.")
    rows, cols = slice(top, top + height), slice(left, left + width)
    h = h[rows, cols]
    raw = [m[rows, cols] for m in raw]
    sel: NDArray[np.bool_] | None = None
    if mask is not None:
        full = np.asarray(mask, dtype=bool)
        if full.shape != (height, width) and full.shape == np.asarray(haadf).shape:
            full = full[rows, cols]
        if full.shape != (height, width) or not full.any():
            raise InputError(f"mask must be a (H, W) boolean image with at least one True pixel; got shape "
                             f"{full.shape}.")
        sel = full
    pixels = sel if sel is not None else np.ones(h.shape, bool)
    h_lo, h_hi = float(h[pixels].min()), float(h[pixels].max())
    if not h_hi > h_lo:
        raise InputError(f"the HAADF image is constant ({h_lo:g}) in the region; it carries no structure to fuse.")
    notes: list[str] = []
    offsets, spans, measured = [], [], []
    for name, m in zip(names, raw):
        lo, hi = float(m[pixels].min()), float(m[pixels].max())
        if hi == 0 and lo == 0:
            raise InputError(f"map {name!r} is all zeros in the region; there is nothing to fuse for it: remove it "
                             f"or check the edge/line window it was made with.")
        if not hi > lo:
            raise InputError(f"map {name!r} is constant ({lo:g}) in the region; it carries no structure: remove it.")
        if options.map_mode == "counts":
            if lo < 0:
                n_neg = int(np.count_nonzero(m[pixels] < 0))
                raise InputError(f"map {name!r} has {n_neg} negative pixel(s) (min {lo:g}) but map_mode is 'counts' "
                                 f"(a Poisson term needs counts >= 0); use map_mode 'normalised' (background-"
                                 f"subtracted maps) or clip the map at 0.")
            offsets.append(0.0)
            spans.append(hi)
            measured.append(m)
        else:
            if lo < 0:
                notes.append(f"map {name!r} has negative pixels (min {lo:.3g}); normalisation shifts its minimum to 0.")
            offsets.append(lo)
            spans.append(hi - lo)
            measured.append((m - lo) / (hi - lo))
    m_stack = np.stack(measured).astype(np.float32)
    span = np.asarray(spans, dtype=np.float32)
    offset = np.asarray(offsets, dtype=np.float32)
    scale = span if options.map_mode == "counts" else np.ones_like(span)
    u0 = (m_stack / scale[:, None, None]).astype(np.float32)
    b = ((h - h_lo) / (h_hi - h_lo)).astype(np.float32)
    if sel is not None:
        u0 = np.where(sel[None], u0, 0.0).astype(np.float32)
        b = np.where(sel, b, 0.0).astype(np.float32)
    weights, note = haadf_weights(symbols, options.weighting, options.gamma, b, u0, sel)
    if note:
        notes.append(note)
    lambda_tv = options.lambda_tv
    if options.regulariser == "published" and options.tv_iterations < 2 and lambda_tv > 0:
        lambda_tv = 0.0
        notes.append("regulariser 'published' with 1 TV iteration: the published loop applies no TV then (its FGP "
                     "makes tv_iterations - 1 dual updates), so none is applied; use 2 or more, or regulariser 'tv'.")
    problem = FusionProblem(b=b, m=m_stack, scale=scale.astype(np.float32), weights=weights, gamma=options.gamma,
                            lambda_haadf=options.haadf_weight(len(names)), lambda_chem=options.lambda_chem,
                            lambda_tv=lambda_tv,
                            background=options.background, mask=sel,
                            tv_delta=published_tv_delta(options.lambda_tv, options.tv_iterations)
                            if options.regulariser == "published" else 0.0)
    return PreparedInputs(problem=problem, u0=u0, names=names, elements=symbols,
                          raw_maps=np.stack(raw).astype(np.float32), haadf=h.astype(np.float32),
                          region_px=(top, left, height, width), map_offset=offset, map_span=span,
                          haadf_offset=h_lo, haadf_span=h_hi - h_lo, notes=tuple(notes))
