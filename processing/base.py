"""The processor interface: frames in, typed outputs out.

A *processor* is one small class (or one function wrapped by :func:`processor_from_function`):

* ``PARAMETERS``: the parameters, declared once (name, label, type, default, min/max, units). The Swift glue
  builds the inspector from them; ``Processor(**values)`` rebuilds the object.
* ``process(frame, context) -> Outputs``: called once per frame, on a worker thread. State across frames lives
  in the instance.
* ``reset()``: forget all state (the next frame is treated as the first).
* ``split``: how a run over many frames may be cut into chunks (``"frame"``: each frame independent;
  ``"merge"``: chunk states merge exactly, see :meth:`Processor.merge_states`; ``"sequential"``: in order only),
  with ``get_state``/``set_state`` carrying the state between frames (see :mod:`processing.execution.chunks`).

No Swift import here: the same processor runs in a notebook, a script, Dask, or Nion Swift.

Example
-------
>>> import numpy as np
>>> class Negate(Processor):
...     processor_id = "example.negate"
...     title = "Negate"
...     def process(self, frame: Frame, context: Context) -> Outputs:
...         return (ImageOutput("image", -frame.data, frame.calibrations),)
>>> out = Negate().process(Frame(np.ones((4, 4), np.float32)), Context())
>>> float(out[0].data[0, 0])
-1.0
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import threading
import typing

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ProcessingError", "InputError", "ParameterError",
    "Parameter", "Calibration", "Frame", "Context",
    "ImageOutput", "RGBImageOutput", "LinePlotOutput", "KymographOutput", "TimeSeriesOutput",
    "CircleAnnotation", "Notice", "Output", "Outputs", "SplitKind",
    "Processor", "processor_from_function", "validate_image", "crop_fractional",
]

FloatArray = NDArray[np.float32]

#: how a processor's work over many frames may be split (see :attr:`Processor.split`)
SplitKind = typing.Literal["frame", "merge", "sequential"]


class ProcessingError(ValueError):
    """Base of every error a processor raises on bad input or parameters. The message says problem, value, remedy."""


class InputError(ProcessingError):
    """The frame cannot be processed (wrong dimensionality, dtype, NaN, empty ROI...)."""


class ParameterError(ProcessingError):
    """A parameter value is out of its declared range or of the wrong type."""


ParameterType = typing.Literal["real", "integral", "boolean", "string", "choice"]


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One declared parameter. Same keys as Swift's ``create_variable`` (value_min/value_max)."""

    name: str
    label: str
    type: ParameterType
    default: typing.Any
    min: float | None = None
    max: float | None = None
    units: str = ""
    choices: tuple[str, ...] = ()
    description: str = ""

    def validate(self, value: typing.Any) -> typing.Any:
        """Return ``value`` converted to this parameter's type, or raise :class:`ParameterError`."""
        if self.type == "boolean":
            if isinstance(value, (bool, np.bool_, int)) and value in (0, 1, True, False):
                return bool(value)
            raise ParameterError(f"parameter '{self.name}' must be a boolean; got {value!r}.")
        if self.type in ("string", "choice"):
            if not isinstance(value, str):
                raise ParameterError(f"parameter '{self.name}' must be a string; got {value!r}.")
            if self.type == "choice" and value not in self.choices:
                raise ParameterError(f"parameter '{self.name}' must be one of {list(self.choices)}; got {value!r}.")
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"parameter '{self.name}' must be a number; got {value!r}.") from None
        if not np.isfinite(number):
            raise ParameterError(f"parameter '{self.name}' must be finite; got {value!r}.")
        if self.type == "integral":
            if number != int(number):
                raise ParameterError(f"parameter '{self.name}' must be a whole number; got {value!r}.")
            number = int(number)
        lo, hi = self.min, self.max
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            units = f" {self.units}" if self.units else ""
            raise ParameterError(
                f"parameter '{self.name}' = {value!r}{units} is outside its range [{lo}, {hi}]{units}; "
                f"choose a value inside the range.")
        return number


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Linear axis calibration: calibrated = offset + scale * index."""

    offset: float = 0.0
    scale: float = 1.0
    units: str = ""


@dataclasses.dataclass(frozen=True)
class Frame:
    """One image frame.

    data: (H, W) float32 array, axis order (y, x). calibrations: (y, x) spatial calibrations (e.g. nm per px).
    origin_px: (y0, x0) of this (cropped) frame inside the full source frame, so annotations can be placed on the
    source display. timestamp_s: acquisition time in seconds (monotonic within a stream).
    """

    data: FloatArray
    calibrations: tuple[Calibration, Calibration] = (Calibration(), Calibration())
    frame_number: int = 0
    timestamp_s: float = 0.0
    origin_px: tuple[int, int] = (0, 0)
    source_shape: tuple[int, int] | None = None
    intensity_units: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return typing.cast(tuple[int, int], self.data.shape)


class Context:
    """What a processor may use besides the frame: the frame-shared memo and the stream's bookkeeping.

    ``memo(key, fn)`` computes ``fn()`` once per frame and shares the result with every processor on the same
    frame (e.g. one tile-FFT pass feeding Max-FFT and the orientation map). Thread safe: a second caller with
    the same key waits for the first.
    ``dropped_frames``: how many frames of this stream this processor has not seen (it was busy).
    ``peers``: the other processors fed the same frames (so one can compute a shared pass its peers also need);
    empty when the processor runs alone.
    """

    def __init__(self, *, dropped_frames: int = 0, memo: "FrameMemo | None" = None,
                 peers: typing.Sequence["Processor"] = ()) -> None:
        self.dropped_frames = dropped_frames
        self.peers = tuple(peers)
        self._memo = memo if memo is not None else FrameMemo()

    def memo(self, key: typing.Hashable, fn: typing.Callable[[], typing.Any]) -> typing.Any:
        return self._memo.get(key, fn)


class FrameMemo:
    """Once-per-frame shared results keyed by a hashable key (thread safe, compute-once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[typing.Hashable, tuple[threading.Event, list[typing.Any]]] = {}

    def get(self, key: typing.Hashable, fn: typing.Callable[[], typing.Any]) -> typing.Any:
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = (threading.Event(), [])
                self._entries[key] = entry
        event, slot = entry
        if owner:
            try:
                slot.append((True, fn()))
            except BaseException as e:  # shared with waiters, re-raised to each
                slot.append((False, e))
            finally:
                event.set()
        else:
            event.wait()
        ok, value = slot[0]
        if not ok:
            raise value
        return value


# ---------------------------------------------------------------------------------------------------------------
# Outputs. Each has a ``name`` unique within its processor; the glue maps names to Swift data items / graphics.

@dataclasses.dataclass(frozen=True)
class ImageOutput:
    """A 2-D image (H, W), float, shown as an image."""

    name: str
    data: NDArray[typing.Any]
    calibrations: tuple[Calibration, Calibration] = (Calibration(), Calibration())
    intensity_units: str = ""
    title: str = ""


@dataclasses.dataclass(frozen=True)
class RGBImageOutput:
    """A colour image (H, W, 3) uint8 RGB."""

    name: str
    data: NDArray[np.uint8]
    calibrations: tuple[Calibration, Calibration] = (Calibration(), Calibration())
    title: str = ""


@dataclasses.dataclass(frozen=True)
class LinePlotOutput:
    """One or more lines over a common calibrated x axis: data (n,) or (k, n)."""

    name: str
    data: NDArray[typing.Any]
    x_calibration: Calibration = Calibration()
    intensity_units: str = ""
    labels: tuple[str, ...] = ()
    title: str = ""


@dataclasses.dataclass(frozen=True)
class KymographOutput:
    """An image that grows by one column per frame: data (n_rows, n_columns); x = time, y = ``y_calibration``."""

    name: str
    data: NDArray[typing.Any]
    y_calibration: Calibration = Calibration()
    time_calibration: Calibration = Calibration(units="s")
    intensity_units: str = ""
    title: str = ""


@dataclasses.dataclass(frozen=True)
class TimeSeriesOutput:
    """Scalar series versus time, one point per processed frame: values (k, n), times_s (n,)."""

    name: str
    times_s: NDArray[np.float64]
    values: NDArray[np.float64]
    labels: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    title: str = ""


@dataclasses.dataclass(frozen=True)
class CircleAnnotation:
    """A circle marker in **source-frame** pixel coordinates (y, x); ``visible=False`` hides it."""

    name: str
    center_px: tuple[float, float]
    radius_px: float
    label: str = ""
    visible: bool = True


@dataclasses.dataclass(frozen=True)
class Notice:
    """A message for the user that is not an error (e.g. "no region above threshold")."""

    name: str
    text: str


Output = typing.Union[ImageOutput, RGBImageOutput, LinePlotOutput, KymographOutput, TimeSeriesOutput,
                      CircleAnnotation, Notice]
Outputs = tuple[Output, ...]


# ---------------------------------------------------------------------------------------------------------------

class Processor:
    """Base class of every live processor.

    Subclasses set ``processor_id`` (stable, dotted), ``title`` and ``PARAMETERS`` and implement ``process``.
    Keyword arguments of ``__init__`` are exactly the names in ``PARAMETERS``; values are validated and stored as
    attributes of the same name.
    """

    processor_id: typing.ClassVar[str] = ""
    title: typing.ClassVar[str] = ""
    description: typing.ClassVar[str] = ""
    PARAMETERS: typing.ClassVar[tuple[Parameter, ...]] = ()
    #: names of the outputs, in order, with their kinds ("image", "rgb", "line", "kymograph", "timeseries",
    #: "circle", "notice"). The first image-like output is the main result shown in Swift.
    OUTPUTS: typing.ClassVar[tuple[tuple[str, str], ...]] = (("image", "image"),)
    #: True when the result depends on earlier frames (EWMA, kymograph...): the engine feeds every frame.
    stateful: typing.ClassVar[bool] = False
    #: how a run over many frames may be split (offline, Dask): "frame" = stateless, each frame independent;
    #: "merge" = chunks build partial states that :meth:`merge_states` folds exactly (linear recursions such as
    #: EWMAs, append-only histories); "sequential" = in order only, state carried by get_state/set_state.
    #: A kind that depends on the parameters is returned by :meth:`split_kind`.
    split: typing.ClassVar[SplitKind] = "frame"

    def __init__(self, **params: typing.Any) -> None:
        known = {p.name: p for p in self.PARAMETERS}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ParameterError(f"{type(self).__name__} has no parameter(s) {unknown}; "
                                 f"known parameters are {sorted(known)}.")
        for p in self.PARAMETERS:
            setattr(self, p.name, p.validate(params.get(p.name, p.default)))

    @property
    def parameters(self) -> dict[str, typing.Any]:
        """Current parameter values by name."""
        return {p.name: getattr(self, p.name) for p in self.PARAMETERS}

    def process(self, frame: Frame, context: Context) -> Outputs:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the state accumulated from earlier frames."""

    # ------------------------------------------------------------------------------------------- split contract
    def split_kind(self) -> SplitKind:
        """The split kind for this instance's parameters (default: the class's :attr:`split`)."""
        return self.split

    def get_state(self) -> dict[str, typing.Any]:
        """A picklable snapshot of the state carried between frames (``{}`` when there is none).

        Default: a deep copy of every instance attribute that is not a parameter, which covers processors keeping
        their state in plain attributes (numpy arrays, numbers, lists); override for anything else.
        """
        names = {p.name for p in self.PARAMETERS}
        return {k: copy.deepcopy(v) for k, v in vars(self).items() if k not in names}

    def set_state(self, state: typing.Mapping[str, typing.Any]) -> None:
        """Restore a snapshot made by :meth:`get_state` (of an instance with the same parameters)."""
        names = {p.name for p in self.PARAMETERS}
        bad = sorted(set(state) & names)
        if bad:
            raise ParameterError(f"{type(self).__name__}.set_state: the state holds parameter(s) {bad}; "
                                 f"build the processor with its parameters and pass only get_state()'s snapshot.")
        for k, v in state.items():
            setattr(self, k, copy.deepcopy(v))

    def start_partial(self) -> None:
        """("merge" only) Reset to the identity state: the frames processed from now on build a *partial* state
        that :meth:`merge_states` can carry forward exactly from any earlier state."""
        raise NotImplementedError(f"{type(self).__name__} declares split={self.split_kind()!r}; only 'merge' "
                                  f"processors implement start_partial.")

    def merge_states(self, earlier: dict[str, typing.Any], partial: dict[str, typing.Any],
                     partial_frames: int) -> dict[str, typing.Any]:
        """("merge" only) The state after ``earlier`` (a :meth:`get_state` snapshot) followed by the chunk of
        ``partial_frames`` frames summarised by ``partial`` (made after :meth:`start_partial`). Pure: changes no
        attribute of ``self``."""
        raise NotImplementedError(f"{type(self).__name__} declares split={self.split_kind()!r}; only 'merge' "
                                  f"processors implement merge_states.")


def processor_from_function(fn: typing.Callable[..., NDArray[typing.Any]], *, processor_id: str, title: str,
                            parameters: typing.Sequence[Parameter] = ()) -> type[Processor]:
    """Make a stateless processor class from ``fn(data, **params) -> (H', W') array``.

    >>> import numpy as np
    >>> Doubler = processor_from_function(lambda data, gain: gain * data, processor_id="ex.gain", title="Gain",
    ...                                   parameters=[Parameter("gain", "Gain", "real", 2.0, 0.0, 10.0)])
    >>> float(Doubler(gain=3.0).process(Frame(np.ones((2, 2), np.float32)), Context())[0].data[0, 0])
    3.0
    """
    names = [p.name for p in parameters]
    signature = inspect.signature(fn)
    missing = [n for n in names if n not in signature.parameters]
    if missing:
        raise ParameterError(f"function {fn.__name__} does not accept parameter(s) {missing}; "
                             f"add them as keyword arguments.")

    def process(self: Processor, frame: Frame, context: Context) -> Outputs:
        result = np.asarray(fn(frame.data, **self.parameters))
        if result.ndim != 2:
            raise InputError(f"{title}: the function returned shape {result.shape}; it must return a 2-D image.")
        calibrations = frame.calibrations if result.shape == frame.data.shape else (Calibration(), Calibration())
        return (ImageOutput("image", result, calibrations, frame.intensity_units),)

    cls = type(fn.__name__.title().replace("_", ""), (Processor,), {
        "processor_id": processor_id, "title": title, "PARAMETERS": tuple(parameters), "process": process,
        "__doc__": fn.__doc__, "__module__": getattr(fn, "__module__", __name__)})
    return typing.cast(type[Processor], cls)


# ---------------------------------------------------------------------------------------------------------------
# Input validation and ROI cropping shared by every processor and the glue.

def validate_image(data: typing.Any, *, what: str = "frame", allow_nan: bool = False) -> FloatArray:
    """Return ``data`` as a C-contiguous float32 (H, W) array, or raise :class:`InputError` saying why not.

    Integer data is converted exactly up to 2**24 (no overflow: conversion happens before any arithmetic).
    Complex data, RGB, spectra, stacks, empty arrays and NaN/inf pixels are rejected with a message.
    """
    array = np.asarray(data)
    if array.dtype.fields is not None or array.dtype == object:
        raise InputError(f"{what} has dtype {array.dtype}; expected a real-valued image. "
                         f"For RGB data, extract a channel first.")
    if np.iscomplexobj(array):
        raise InputError(f"{what} is complex ({array.dtype}); expected a real image. "
                         f"Apply the processor to the image, not to its FFT, or take abs() first.")
    if array.ndim != 2:
        hint = {1: "a spectrum or line profile", 3: "a stack or spectrum image", 4: "a 4D-STEM data set"}.get(
            array.ndim, f"{array.ndim}-D data")
        raise InputError(f"{what} must be a 2-D image (H, W); got shape {array.shape} ({hint}). "
                         f"Attach the processor to an image (a camera or scan view).")
    if array.size == 0:
        raise InputError(f"{what} is empty (shape {array.shape}); check that the region of interest lies "
                         f"inside the image and is at least one pixel large.")
    if array.dtype == np.bool_:
        array = array.astype(np.float32)
    out = np.ascontiguousarray(array, dtype=np.float32)
    if not allow_nan and not np.isfinite(out).all():
        bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        raise InputError(f"{what} has {bad} NaN/inf pixel(s) of {out.size}; the processor needs finite data. "
                         f"Check the detector (dead or saturated pixels) or mask them out first.")
    return out


def crop_fractional(shape: tuple[int, int], bounds: tuple[tuple[float, float], tuple[float, float]] | None,
                    ) -> tuple[slice, slice]:
    """Convert Swift-style fractional bounds ((top, left), (height, width)) into pixel slices of ``shape``.

    ``None`` means the whole frame. The rectangle is clipped to the frame; a rectangle that lies entirely outside
    or covers less than one pixel raises :class:`InputError`.
    """
    h, w = shape
    if bounds is None:
        return slice(0, h), slice(0, w)
    (top, left), (height, width) = bounds
    y0, x0 = int(round(top * h)), int(round(left * w))
    y1, x1 = int(round((top + height) * h)), int(round((left + width) * w))
    if y1 < y0:
        y0, y1 = y1, y0
    if x1 < x0:
        x0, x1 = x1, x0
    cy0, cx0, cy1, cx1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if cy1 - cy0 < 1 or cx1 - cx0 < 1:
        raise InputError(
            f"the region of interest (top={top:.3f}, left={left:.3f}, height={height:.3f}, width={width:.3f}, "
            f"as fractions of the image) covers no pixel of the {h}x{w} image; move or enlarge it.")
    return slice(cy0, cy1), slice(cx0, cx1)


def make_frame(data: typing.Any, *, calibrations: typing.Sequence[Calibration] | None = None, frame_number: int = 0,
               timestamp_s: float = 0.0, roi: tuple[tuple[float, float], tuple[float, float]] | None = None,
               intensity_units: str = "") -> Frame:
    """Validate ``data`` (H, W), crop it to ``roi`` (fractional bounds) and wrap it as a :class:`Frame`.

    The cropped frame's calibrations are shifted so calibrated coordinates stay those of the source.
    """
    raw = np.asarray(data)
    if raw.ndim != 2:
        validate_image(raw)  # raises with the right message
    ys, xs = crop_fractional(typing.cast(tuple[int, int], raw.shape), roi)
    image = validate_image(raw[ys, xs], what="frame" if roi is None else "region of interest")
    cal_y, cal_x = tuple(calibrations) if calibrations else (Calibration(), Calibration())
    cropped = (Calibration(cal_y.offset + cal_y.scale * ys.start, cal_y.scale, cal_y.units),
               Calibration(cal_x.offset + cal_x.scale * xs.start, cal_x.scale, cal_x.units))
    return Frame(image, cropped, frame_number, timestamp_s, (ys.start, xs.start),
                 typing.cast(tuple[int, int], raw.shape), intensity_units)
