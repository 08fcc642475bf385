"""Camera corrections: dark subtraction, gain normalisation, dead/hot pixel patching; on the fly, memory-light.

A :class:`CameraCorrections` holds a dark reference (counts, for one exposure and binning), a gain reference
(relative, mean 1) and a defect mask; :meth:`CameraCorrections.apply` corrects one frame with one float32 working
copy. :func:`find_defects` finds hot pixels in a dark reference and dead/hot pixels in a flat field (robust
z-scores against a local median). Patching replaces each defect by the median of its valid 3x3 neighbours.

>>> import numpy as np
>>> dark = np.full((8, 8), 100.0, np.float32); gain = np.ones((8, 8), np.float32); gain[2, 3] = 2.0
>>> c = CameraCorrections(dark=dark, gain=gain)
>>> frame = 100 + 50 * gain
>>> float(c.apply(frame)[2, 3])
50.0
"""
from __future__ import annotations

import dataclasses
import typing

import numpy as np
import scipy.ndimage
from numpy.typing import NDArray

from processing.base import (Calibration, Context, Frame, ImageOutput, InputError, Notice, Outputs, Parameter,
                             ParameterError, Processor)

__all__ = ["CameraCorrections", "find_defects", "gain_from_flats", "patch_defects", "CameraCorrectionsProcessor"]

Float32Array = NDArray[np.float32]
BoolArray = NDArray[np.bool_]


def _image(data: typing.Any, what: str) -> Float32Array:
    array = np.asarray(data)
    if array.ndim != 2 or np.iscomplexobj(array) or array.dtype == object:
        raise InputError(f"{what} must be a real 2-D image (H, W); got shape {array.shape}, dtype {array.dtype}.")
    return np.asarray(array, dtype=np.float32)


def patch_defects(frame: Float32Array, mask: BoolArray) -> Float32Array:
    """Replace ``mask`` pixels of ``frame`` (in place) by the median of their non-defect 3x3 neighbours (the mean
    of a wider neighbourhood when all 8 are defects). Returns ``frame``."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return frame
    h, w = frame.shape
    for y, x in zip(ys.tolist(), xs.tolist()):
        for radius in (1, 2, 4):
            y0, y1, x0, x1 = max(0, y - radius), min(h, y + radius + 1), max(0, x - radius), min(w, x + radius + 1)
            values = frame[y0:y1, x0:x1][~mask[y0:y1, x0:x1]]
            if values.size:
                frame[y, x] = np.median(values)
                break
    return frame


def find_defects(*, dark: typing.Any | None = None, gain: typing.Any | None = None, z_threshold: float = 8.0,
                 ) -> BoolArray:
    """Defect mask from a dark reference (hot pixels: far above the local dark level) and/or a gain reference
    (dead pixels: gain near 0; hot/odd pixels: far from the local gain). Robust z-score against a 5x5 median,
    scaled by the median absolute deviation."""
    if dark is None and gain is None:
        raise ParameterError("find_defects needs a dark and/or a gain reference.")
    mask: BoolArray | None = None
    for reference, kind in ((dark, "dark"), (gain, "gain")):
        if reference is None:
            continue
        image = _image(reference, f"{kind} reference")
        local = scipy.ndimage.median_filter(image, size=5, mode="reflect")
        residual = image - local
        mad = float(np.median(np.abs(residual))) * 1.4826
        scale = max(mad, 1e-6 * max(float(np.abs(local).mean()), 1.0), 1e-12)
        found = (residual > z_threshold * scale) if kind == "dark" else (np.abs(residual) > z_threshold * scale)
        if kind == "gain":
            found |= image < 0.2 * float(np.median(image))
        mask = found if mask is None else (mask | found)
    assert mask is not None
    return mask


def gain_from_flats(flats: typing.Any, dark: typing.Any) -> Float32Array:
    """Gain reference (mean 1) from flat-field frames (N, H, W) or (H, W) and the dark reference of their
    exposure: mean(flat - dark) normalised by its mean (defects included: mask them with :func:`find_defects`)."""
    stack = np.asarray(flats, dtype=np.float32)
    if stack.ndim == 2:
        stack = stack[None]
    d = _image(dark, "dark reference")
    if stack.ndim != 3 or stack.shape[1:] != d.shape:
        raise InputError(f"flats {stack.shape} and dark {d.shape} do not match; take flats with the dark's shape.")
    signal = stack.mean(axis=0) - d
    level = float(np.median(signal))
    if not level > 0:
        raise InputError(f"the flat field has no signal above the dark (median {level:.3g} counts); illuminate the "
                         f"camera evenly and take the flats again.")
    return np.asarray(signal / level, dtype=np.float32)


@dataclasses.dataclass
class CameraCorrections:
    """References for on-the-fly correction. All optional; shapes must match the frames (same binning/area).

    dark : (H, W) counts for the frames' exposure and binning. gain : (H, W) relative gain, mean 1.
    defects : (H, W) bool mask of pixels to patch (e.g. :func:`find_defects`).
    """

    dark: Float32Array | None = None
    gain: Float32Array | None = None
    defects: BoolArray | None = None

    def __post_init__(self) -> None:
        shapes = {name: np.shape(v) for name, v in (("dark", self.dark), ("gain", self.gain),
                                                      ("defects", self.defects)) if v is not None}
        if len(set(shapes.values())) > 1:
            raise InputError(f"the correction references differ in shape {shapes}; take them with the same binning "
                             f"and readout area.")
        if self.dark is not None:
            self.dark = _image(self.dark, "dark reference")
        if self.gain is not None:
            gain = _image(self.gain, "gain reference")
            if not np.isfinite(gain).all():
                raise InputError("the gain reference has NaN/inf values; rebuild it from flat fields.")
            bad = gain <= 0.05
            self._inverse_gain = np.where(bad, 0.0, 1.0 / np.where(bad, 1.0, gain)).astype(np.float32)
            if bad.any():
                self.defects = bad if self.defects is None else (np.asarray(self.defects, bool) | bad)
            self.gain = gain
        if self.defects is not None:
            self.defects = np.asarray(self.defects, dtype=bool)

    @property
    def shape(self) -> tuple[int, int] | None:
        for v in (self.dark, self.gain, self.defects):
            if v is not None:
                return typing.cast(tuple[int, int], tuple(np.shape(v)))
        return None

    def apply(self, frame: typing.Any, *, out: Float32Array | None = None) -> Float32Array:
        """Corrected frame: (frame - dark) / gain, defects patched; float32 (H, W) (``out`` reused if given)."""
        data = np.asarray(frame)
        if data.ndim != 2:
            raise InputError(f"camera corrections need a 2-D frame; got shape {data.shape}.")
        if self.shape is not None and data.shape != self.shape:
            raise InputError(f"frame {data.shape} and correction references {self.shape} differ in shape; take the "
                             f"references with the frame's binning and readout area.")
        if out is None:
            work: Float32Array = np.array(data, dtype=np.float32)
        else:
            np.copyto(out, data, casting="unsafe")
            work = out
        if self.dark is not None:
            work -= self.dark
        if self.gain is not None:
            work *= self._inverse_gain
        if self.defects is not None:
            patch_defects(work, self.defects)
        return work


class CameraCorrectionsProcessor(Processor):
    """Live processor: dark subtraction, gain normalisation and defect patching of every frame.

    References are set from Python (``processor.corrections = CameraCorrections(...)``) or learned from the
    stream: with ``learn_dark_frames`` > 0 the first frames (taken with the beam blanked) are averaged into the
    dark reference and their hot pixels patched from then on. Without references the frame passes unchanged and a
    notice says so.
    """

    processor_id = "insitu.camera_corrections"
    title = "Camera corrections"
    description = "Dark subtraction, gain normalisation and dead/hot pixel patching, frame by frame."
    PARAMETERS = (
        Parameter("learn_dark_frames", "Learn dark from first", "integral", 0, 0, 1000, "frames",
                  description="average the first N frames (beam blanked) into the dark reference; 0 = off"),
        Parameter("patch_hot", "Patch hot/dead pixels", "boolean", True),
        Parameter("z_threshold", "Defect threshold", "real", 8.0, 3.0, 100.0, "sigma"),
    )
    OUTPUTS = (("image", "image"), ("status", "notice"))
    stateful = True

    def __init__(self, **params: typing.Any) -> None:
        super().__init__(**params)
        self.corrections: CameraCorrections | None = None
        self.__dark_sum: NDArray[np.float64] | None = None
        self.__dark_count = 0

    def reset(self) -> None:
        self.__dark_sum = None
        self.__dark_count = 0
        if getattr(self, "learn_dark_frames"):
            self.corrections = None

    def process(self, frame: Frame, context: Context) -> Outputs:
        data = frame.data
        learn = int(getattr(self, "learn_dark_frames"))
        if learn and self.__dark_count < learn:
            if self.__dark_sum is None or self.__dark_sum.shape != data.shape:
                self.__dark_sum, self.__dark_count = np.zeros(data.shape), 0
            self.__dark_sum += data
            self.__dark_count += 1
            if self.__dark_count == learn:
                dark = (self.__dark_sum / learn).astype(np.float32)
                threshold = float(getattr(self, "z_threshold"))
                defects = find_defects(dark=dark, z_threshold=threshold) if getattr(self, "patch_hot") else None
                self.corrections = CameraCorrections(dark=dark, defects=defects)
            return (ImageOutput("image", data, frame.calibrations, frame.intensity_units),
                    Notice("status", f"learning the dark reference: {self.__dark_count}/{learn} frames"))
        corrections = self.corrections
        if corrections is None:
            return (ImageOutput("image", data, frame.calibrations, frame.intensity_units),
                    Notice("status", "no correction references: frame passed unchanged (set learn_dark_frames or "
                                     "processor.corrections)"))
        if corrections.shape is not None and corrections.shape != data.shape:
            raise InputError(f"frame {data.shape} and correction references {corrections.shape} differ in shape "
                             f"(ROI or binning changed); reset the processor to learn new references.")
        corrected = corrections.apply(data)
        n_defects = int(corrections.defects.sum()) if corrections.defects is not None else 0
        return (ImageOutput("image", corrected, frame.calibrations, frame.intensity_units),
                Notice("status", f"corrected (dark {'yes' if corrections.dark is not None else 'no'}, gain "
                                 f"{'yes' if corrections.gain is not None else 'no'}, {n_defects} defects patched)"))
