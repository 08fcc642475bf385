"""Image stacks (N, H, W) from files, read lazily: one entry point, :func:`open_stack`.

Formats (by extension, or a folder):

* ``.npy``: memory-mapped (``numpy.load(mmap_mode="r")``); no calibration in the format.
* ``.h5 .hdf5 .hspy .nxs .nx``: a HyperSpy file (incl. the Recorder's files) through RosettaSciIO; any other
  HDF5/NeXus file through h5py: the dataset ``dataset=`` or else the largest numeric dataset with >= 2 dimensions
  (an NXdata ``signal`` first); NXdata ``axes`` give the calibrations, a sibling ``timestamps_s``/``time`` the times.
* ``.emd`` (Velox and Berkeley/NCEM), ``.dm3 .dm4``, ``.tif .tiff``, ``.mrc``, single ``.png`` etc.: RosettaSciIO,
  lazy (Dask). DM5 is not read by RosettaSciIO 0.15: a clear error says to export DM4.
* a folder of numbered images (``frame_0001.png`` ...): PNG/TIFF/JPEG/BMP, one frame per file, read when asked for;
  RGB(A) is converted to grey (mean of R, G, B). Gaps in the numbering are *not* an error: the frames that exist are
  played in order and the missing numbers are listed in ``metadata["insitu"]["missing_frame_numbers"]`` (and in
  :func:`describe`), because a holder export with one lost file must still be playable.

Every failure raises :class:`StackError` (a ``ValueError``) saying problem, value and remedy.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import Calibration, ProcessingError

__all__ = ["Stack", "StackError", "open_stack", "stack_from_array", "describe", "SUPPORTED_EXTENSIONS",
           "json_safe", "time_scale_to_s", "holder_values"]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
SUPPORTED_EXTENSIONS = (".npy", ".h5", ".hdf5", ".hspy", ".nxs", ".nx", ".emd", ".dm3", ".dm4", ".tif", ".tiff",
                        ".mrc", ".png", ".jpg", ".jpeg", ".bmp")
_TIME_UNITS_S = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9, "min": 60.0}
_HOLDER_KEYS = re.compile(r"temperature|temp_|heating|holder|stage|pressure|bias|voltage_v|current_a|tilt|gas",
                          re.IGNORECASE)


class StackError(ProcessingError):
    """A file cannot be read as an image stack. The message says problem, value and remedy."""


@dataclasses.dataclass
class Stack:
    """An image sequence.

    data: (N, H, W), a Dask array or a (memory-mapped) numpy array: nothing is read until a frame is asked for.
    calibrations: (y, x) spatial calibrations. timestamps_s: (N,) seconds from the first frame's clock, or None.
    metadata: json-serialisable; ``metadata["original"]`` is the file's own metadata, ``metadata["holder"]`` the
    stage/holder values found in it (temperature, tilt, pressure, ...), ``metadata["insitu"]`` our notes.
    """

    data: typing.Any
    calibrations: tuple[Calibration, Calibration] = (Calibration(), Calibration())
    timestamps_s: NDArray[np.float64] | None = None
    intensity_units: str = ""
    metadata: dict[str, typing.Any] = dataclasses.field(default_factory=dict)
    source: str = "array"
    _closers: list[typing.Callable[[], None]] = dataclasses.field(default_factory=list, repr=False)
    _frame_reader: typing.Callable[[int], NDArray[typing.Any]] | None = dataclasses.field(default=None, repr=False)

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        return int(self.data.shape[1]), int(self.data.shape[2])

    @property
    def dtype(self) -> np.dtype[typing.Any]:
        dtype: np.dtype[typing.Any] = np.dtype(self.data.dtype)
        return dtype

    def frame(self, index: int) -> NDArray[typing.Any]:
        """Frame ``index`` (H, W) as a numpy array, read now (only this frame, or its chunk)."""
        if not 0 <= index < self.n_frames:
            raise StackError(f"frame index {index} is outside the stack's {self.n_frames} frames; "
                             f"use 0 to {self.n_frames - 1}.")
        if self._frame_reader is not None:
            return self._frame_reader(index)
        part = self.data[index]
        if hasattr(part, "compute"):
            part = part.compute(scheduler="synchronous")
        return np.asarray(part)

    def duration_s(self) -> float | None:
        if self.timestamps_s is None or self.n_frames < 2:
            return None
        return float(self.timestamps_s[-1] - self.timestamps_s[0])

    def close(self) -> None:
        """Release open file handles (h5py files kept open for lazy reading)."""
        for closer in self._closers:
            try:
                closer()
            except Exception:  # closing twice, or a file already gone: nothing left to release
                pass
        self._closers.clear()


# ----------------------------------------------------------------------------------------------- helpers

def json_safe(value: typing.Any, *, max_list: int = 64, depth: int = 0) -> typing.Any:
    """``value`` converted to plain json types; long arrays are summarised, unknown objects become strings."""
    if depth > 20:
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v, max_list=max_list, depth=depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) > max_list:
            return f"<{len(value)} items>"
        return [json_safe(v, max_list=max_list, depth=depth + 1) for v in value]
    if isinstance(value, np.ndarray):
        if value.size > max_list:
            return f"<array {value.shape} {value.dtype}>"
        return json_safe(value.tolist(), max_list=max_list, depth=depth + 1)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        number = float(value)
        return number if math.isfinite(number) else str(number)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, str):
        return value
    return str(value)


def holder_values(metadata: typing.Any, prefix: str = "") -> dict[str, typing.Any]:
    """Scalar stage/holder entries (temperature, tilt, pressure, bias...) found anywhere in nested metadata."""
    found: dict[str, typing.Any] = {}
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and _HOLDER_KEYS.search(str(key)) and "value" in value:
                found[path] = value["value"]  # Velox CustomProperties: {"type": ..., "value": ...}
            elif isinstance(value, dict):
                found.update(holder_values(value, path))
            elif _HOLDER_KEYS.search(str(key)) and isinstance(value, (int, float, str)) and not isinstance(value, bool):
                if not (isinstance(value, str) and len(value) > 80):
                    found[path] = value
    return found


def time_scale_to_s(units: str) -> float | None:
    """Seconds per unit of a time axis (``"ms"`` -> 1e-3), or None when ``units`` is not a time unit."""
    return _TIME_UNITS_S.get(units.strip()) if isinstance(units, str) else None


def _check_image_sequence(data: typing.Any, source: str) -> typing.Any:
    shape = tuple(int(s) for s in data.shape)
    if len(shape) == 2:
        data = data[np.newaxis]
    elif len(shape) != 3:
        raise StackError(
            f"'{source}' holds data of shape {shape}, which is not an image sequence (N, H, W); "
            f"open a 2-D image or a 3-D stack (for a spectrum image use open_spectrum_image, for 4-D data pick "
            f"a dataset with dataset=...).")
    if data.dtype.kind not in "biuf":
        raise StackError(f"'{source}' has data type {data.dtype}, not a real-valued image; "
                         f"convert it to integers or floats (complex and RGB stacks are not played).")
    if min(data.shape) < 1 or data.shape[1] < 2 or data.shape[2] < 2:
        raise StackError(f"'{source}' holds frames of shape {tuple(data.shape[1:])} ({data.shape[0]} frames), too "
                         f"small to be images; open a file with at least 2x2 pixel frames.")
    return data


def stack_from_array(array: typing.Any, *, calibrations: tuple[Calibration, Calibration] | None = None,
                     timestamps_s: typing.Any = None, source: str = "array", intensity_units: str = "",
                     metadata: dict[str, typing.Any] | None = None) -> Stack:
    """A :class:`Stack` around an in-memory, memory-mapped or Dask array: (N, H, W) or one (H, W) image.

    timestamps_s: (N,) seconds, increasing, or None.
    """
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        array = np.asarray(array)
    data = _check_image_sequence(array, source)
    times = None
    if timestamps_s is not None:
        times = np.asarray(timestamps_s, dtype=np.float64).reshape(-1)
        if times.shape[0] != data.shape[0]:
            raise StackError(f"{times.shape[0]} timestamps were given for {data.shape[0]} frames of '{source}'; "
                             f"give one timestamp per frame, or none.")
        if not np.all(np.isfinite(times)) or (times.size > 1 and np.any(np.diff(times) < 0)):
            raise StackError(f"the timestamps of '{source}' are not finite and non-decreasing "
                             f"(first {times[:5].tolist()}); give increasing seconds, or none.")
    return Stack(data=data, calibrations=calibrations or (Calibration(), Calibration()), timestamps_s=times,
                 intensity_units=intensity_units, metadata=json_safe(metadata or {}), source=source)


def describe(stack: Stack) -> list[str]:
    """Human-readable lines: size, calibration, frame count, duration, holder values, notes."""
    n, (h, w) = stack.n_frames, stack.frame_shape
    cy, cx = stack.calibrations
    lines = [f"source: {stack.source}", f"frames: {n} of {w} x {h} px, {stack.dtype}"]
    if cx.units or cx.scale != 1.0:
        lines.append(f"calibration: {cx.scale:.4g} {cx.units or 'px'}/px (x), {cy.scale:.4g} {cy.units or 'px'}/px (y)")
    else:
        lines.append("calibration: none in the file (pixels)")
    duration = stack.duration_s()
    if duration is not None and n > 1:
        lines.append(f"duration: {duration:.3f} s (recorded timestamps, mean {(n - 1) / max(duration, 1e-12):.2f} fps)")
    else:
        lines.append("duration: no timestamps in the file (played at the chosen frame rate)")
    if stack.intensity_units:
        lines.append(f"intensity: {stack.intensity_units}")
    for key, value in list(stack.metadata.get("holder", {}).items())[:12]:
        lines.append(f"{key}: {value}")
    for note in stack.metadata.get("insitu", {}).get("notes", []):
        lines.append(f"note: {note}")
    return lines


# ----------------------------------------------------------------------------------------------- readers

def open_stack(path: str | os.PathLike[str], *, dataset: str | None = None, lazy: bool = True) -> Stack:
    """Open ``path`` (a file or a folder of numbered images) as a :class:`Stack` (N, H, W).

    dataset: the dataset to read when the file holds several (HDF5 path, EMD/DM title); for a folder, a file-name
    prefix. lazy: keep the data on disk (Dask or memory map) until frames are asked for; False reads it all now.
    Raises :class:`StackError` (problem, value, remedy) for a missing, empty, truncated, corrupt or unsupported
    file, data that is not an image sequence, or mixed frame shapes.
    """
    p = pathlib.Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise StackError(f"'{p}' does not exist; check the path (a file, or a folder of numbered images).")
    if p.is_dir():
        from processing.io import _readers
        stack = _readers.open_folder(p, prefix=dataset)
    else:
        ext = p.suffix.lower()
        if ext == ".dm5":
            raise StackError(f"'{p.name}' is a DM5 file, which the file reader (RosettaSciIO) does not read yet; "
                             f"export it from DigitalMicrograph as DM4 (File > Save As) and open that.")
        if ext not in SUPPORTED_EXTENSIONS:
            raise StackError(f"'{p.name}': the format '{ext or '(no extension)'}' is not supported; "
                             f"supported: {', '.join(SUPPORTED_EXTENSIONS)} or a folder of numbered images.")
        if p.stat().st_size == 0:
            raise StackError(f"'{p}' is empty (0 bytes); the file was not written completely: open another copy.")
        try:
            stack = _open_file(p, ext, dataset)
        except StackError:
            raise
        except Exception as error:  # any reader failure: report it as a bad file, never as a crash
            raise StackError(f"'{p.name}' cannot be read as {ext[1:].upper()} ({type(error).__name__}: {error}); the "
                             f"file is probably truncated or corrupt, or not really {ext[1:].upper()}: check that "
                             f"it opens in the software that wrote it, or export it again.") from error
    if not lazy:
        stack.data = np.asarray(stack.data.compute() if hasattr(stack.data, "compute") else np.array(stack.data))
        stack._frame_reader = None
    return stack


def _open_file(p: pathlib.Path, ext: str, dataset: str | None) -> Stack:
    if ext == ".npy":
        array = np.load(p, mmap_mode="r", allow_pickle=False)
        stack = stack_from_array(array, source=str(p), metadata={"insitu": {"format": "npy"}})
        if array.ndim == 3 and array.flags.c_contiguous and hasattr(os, "preadv"):
            _add_pread_reader(stack, p, int(array.offset))
        return stack
    if ext in (".h5", ".hdf5", ".hspy", ".nxs", ".nx"):
        import h5py
        with h5py.File(p, "r") as f:
            is_hyperspy = str(_attr(f, "file_format")).lower() == "hyperspy"
        if is_hyperspy:
            from rsciio.hspy import file_reader as hspy_reader
            return _from_rsciio(hspy_reader(str(p), lazy=True), p, dataset, "hspy")
        from processing.io import _readers
        return _readers.open_hdf5(p, dataset)
    if ext == ".emd":
        from rsciio.emd import file_reader as emd_reader
        return _from_rsciio(emd_reader(str(p), lazy=True), p, dataset, "emd")
    if ext in (".dm3", ".dm4"):
        from rsciio.digitalmicrograph import file_reader as dm_reader
        return _from_rsciio(dm_reader(str(p), lazy=True), p, dataset, ext[1:])
    if ext in (".tif", ".tiff"):
        from rsciio.tiff import file_reader as tiff_reader
        stack = _from_rsciio(tiff_reader(str(p), lazy=True), p, dataset, "tiff")
        if stack.timestamps_s is None and stack.n_frames > 1:
            import tifffile
            with tifffile.TiffFile(p) as tif:
                interval_s = (tif.imagej_metadata or {}).get("finterval")
            if interval_s:
                stack.timestamps_s = float(interval_s) * np.arange(stack.n_frames, dtype=np.float64)
        return stack
    if ext == ".mrc":
        from rsciio.mrc import file_reader as mrc_reader
        return _from_rsciio(mrc_reader(str(p), lazy=True), p, dataset, "mrc")
    from rsciio.image import file_reader as image_reader
    return _from_rsciio(image_reader(str(p), lazy=True), p, dataset, "image")


def _add_pread_reader(stack: Stack, p: pathlib.Path, offset: int) -> None:
    """Frames of a C-ordered NPY read with ``preadv`` into a new array: nothing stays mapped, so playing a file
    larger than memory keeps the resident memory at a few frames (a memory map would count every touched page)."""
    fd = os.open(p, os.O_RDONLY)
    shape, dtype = stack.frame_shape, stack.dtype
    frame_bytes = shape[0] * shape[1] * dtype.itemsize

    def read(index: int) -> NDArray[typing.Any]:
        out = np.empty(shape, dtype)
        if os.preadv(fd, [memoryview(typing.cast(typing.Any, out)).cast("B")], offset + index * frame_bytes) != frame_bytes:
            raise StackError(f"frame {index} of '{p.name}' could not be read completely; the file is truncated.")
        return out
    stack._frame_reader = read
    stack._closers.append(lambda: os.close(fd))


def _attr(obj: typing.Any, name: str) -> typing.Any:
    value = obj.attrs.get(name, "")
    return value.decode() if isinstance(value, bytes) else value


def _title(signal: dict[str, typing.Any]) -> str:
    general = signal.get("metadata", {}).get("General", {})
    return str(general.get("title", ""))


def _signal_dims(signal: dict[str, typing.Any]) -> int:
    axes = signal.get("axes", [])
    flags = [a.get("navigate") for a in axes]
    if axes and all(f is not None for f in flags):
        return sum(1 for f in flags if not f)
    return min(2, len(axes))


def _is_image_signal(signal: dict[str, typing.Any]) -> bool:
    """2 signal axes, or 3 axes without navigation flags (Berkeley EMD) whose last one is not an energy axis."""
    dims, ndim = _signal_dims(signal), signal["data"].ndim
    if dims == 2 and ndim in (2, 3):
        return True
    axes = signal.get("axes", [])
    last_units = str(axes[-1].get("units", "") or "") if axes else ""
    return dims == 3 and ndim == 3 and last_units not in ("eV", "keV", "meV", "nm-1", "1/nm")


def _from_rsciio(signals: list[dict[str, typing.Any]], p: pathlib.Path, dataset: str | None, fmt: str) -> Stack:
    if not signals:
        raise StackError(f"'{p.name}' contains no dataset RosettaSciIO can read: the file is probably "
                         f"truncated or corrupt; check that it opens in the software that wrote it, or export it again.")
    if dataset is not None:
        chosen = [s for s in signals if _title(s) == dataset]
        if not chosen:
            raise StackError(f"'{p.name}' has no dataset titled '{dataset}'; it has "
                             f"{[_title(s) for s in signals]}: pass one of these as dataset=.")
        signals = chosen
    images = [s for s in signals if _is_image_signal(s)]
    if not images:
        shapes = [(_title(s), tuple(s["data"].shape), _signal_dims(s)) for s in signals]
        raise StackError(
            f"'{p.name}' holds no image or image sequence (datasets (title, shape, signal dims): {shapes}); "
            f"open a file with 2-D frames (a spectrum image is read by open_spectrum_image).")
    notes = []
    if len(images) > 1:
        images.sort(key=lambda s: -int(np.prod(s["data"].shape)))
        notes.append(f"{len(images)} image datasets in the file; playing the largest, "
                     f"'{_title(images[0])}' (choose another with dataset=): {[_title(s) for s in images]}")
    signal = images[0]
    data = _check_image_sequence(signal["data"], p.name)
    axes = list(signal.get("axes", []))
    spatial = axes[-2:] if len(axes) >= 2 else [{}, {}]
    calibrations = typing.cast(tuple[Calibration, Calibration], tuple(
        Calibration(offset=float(a.get("offset", 0.0) or 0.0), scale=float(a.get("scale", 1.0) or 1.0),
                    units=str(a.get("units", "") or "")) for a in spatial))
    timestamps = None
    original = signal.get("original_metadata", {}) or {}
    recorded = original.get("insitu", {}).get("timestamps_s") if isinstance(original.get("insitu"), dict) else None
    if recorded is not None:
        timestamps = np.asarray(recorded, dtype=np.float64).reshape(-1)
    elif len(axes) == 3:
        unit_s = time_scale_to_s(str(axes[0].get("units", "")))
        if unit_s is not None and axes[0].get("scale"):
            timestamps = unit_s * (float(axes[0].get("offset", 0.0) or 0.0)
                                   + float(axes[0]["scale"]) * np.arange(data.shape[0], dtype=np.float64))
    if timestamps is not None and timestamps.shape[0] != data.shape[0]:
        notes.append(f"{timestamps.shape[0]} timestamps for {data.shape[0]} frames: timestamps ignored")
        timestamps = None
    meta = signal.get("metadata", {}) or {}
    units = str(meta.get("Signal", {}).get("quantity", "") or "")
    original_safe = json_safe(original)
    holder = holder_values(original_safe)
    holder.update(holder_values(json_safe(meta.get("Acquisition_instrument", {})), "instrument"))
    source_json = original_safe.get("insitu", {}).get("metadata_json") \
        if isinstance(original_safe.get("insitu"), dict) else None
    if isinstance(source_json, str):  # a Recorder file: the source's metadata, kept as json
        try:
            holder.update(holder_values(json.loads(source_json)))
        except ValueError:
            notes.append("the recorded source metadata is not valid json; ignored")
    metadata = {"original": original_safe, "metadata": json_safe(meta), "holder": holder,
                "insitu": {"format": fmt, "title": _title(signal), "notes": notes}}
    stack = stack_from_array(data, calibrations=calibrations, timestamps_s=timestamps, source=str(p),
                             intensity_units=units)
    stack.metadata = metadata
    return stack
