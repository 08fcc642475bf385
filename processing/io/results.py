"""Write the full results of a run to a file HyperSpy opens with ``hs.load``, with the right axes and units.

The format follows the extension:

* ``.hspy``: HyperSpy's HDF5 format through RosettaSciIO (``rsciio.hspy``): one signal per output, all in one
  file: ``hs.load("run.hspy")`` returns the list of signals;
* ``.h5`` / ``.hdf5``: the same layout (it is plain HDF5: ``Experiments/<title>/data`` plus ``axis-i`` groups);
  ``hs.load("run.h5", file_format="hspy")`` (the extension alone is claimed by several readers), or h5py;
* ``.zspy``: HyperSpy's Zarr format through RosettaSciIO (``rsciio.zspy``, needs ``zarr``:
  ``rosettasciio[zspy]``): the same signals in a Zarr directory store (a folder named ``run.zspy``, Blosc-compressed
  chunks); ``hs.load("run.zspy")`` returns the list of signals.

Signals (title ``"<processor id> <output>"``):

* image outputs: (N, H, W), navigation axis time (s), signal axes y, x with the frame calibration (e.g. nm);
* colour images: (N, 3, H, W) uint8, navigation axes time and channel (R, G, B);
* line plots: (N, [k,] n): navigation time [and line], signal axis the plot's x calibration;
* the kymograph: (n_rows, N), signal axes spatial frequency (rows, e.g. 1/nm) x time (columns, s);
* each time-plot quantity: (n,) over time (s) (a non-uniform axis when the frames are not evenly spaced);
* marker positions: (N, 4) [y_px, x_px, radius_px, visible] over time.

When the source had no timestamps the time axes are in frames (units ``"frame"``). Every signal's
``original_metadata["insitu"]`` holds ``provenance`` (and ``provenance_json``), ``frame_numbers``, ``notices_json``
and ``failed_frames_json``; :func:`read_provenance` reads it back.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
import typing
import warnings

import numpy as np
from numpy.typing import NDArray

from processing.base import Calibration, ProcessingError
from processing.execution.collect import ProcessorResult
from processing.execution.provenance import jsonable

__all__ = ["ResultsError", "write_results", "check_output_path", "read_provenance", "signal_dicts",
           "OUTPUT_EXTENSIONS"]

OUTPUT_EXTENSIONS = (".hspy", ".h5", ".hdf5", ".zspy")


class ResultsError(ProcessingError):
    """The results cannot be written (bad path, unsupported format, missing library); problem, value, remedy."""


def check_output_path(path: str | os.PathLike[str]) -> pathlib.Path:
    """Validate an output path *before* anything is computed: supported extension, existing writable folder."""
    p = pathlib.Path(os.fspath(path)).expanduser()
    ext = p.suffix.lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise ResultsError(f"output '{p}': the format '{ext or '(no extension)'}' is not supported; use one of "
                           f"{', '.join(OUTPUT_EXTENSIONS)} (.hspy is HyperSpy's HDF5 format).")
    if ext == ".zspy":
        _require_zarr(p)
    folder = p.parent if str(p.parent) else pathlib.Path(".")
    if not folder.is_dir():
        raise ResultsError(f"output '{p}': the folder '{folder}' does not exist; create it or choose another path.")
    if p.is_dir() and not (ext == ".zspy" and _is_zarr_store(p)):
        raise ResultsError(f"output '{p}' is a folder; give a file name such as '{p / 'results.hspy'}'.")
    if ext == ".zspy" and p.exists() and not p.is_dir():
        raise ResultsError(f"output '{p}' is an existing file, but a .zspy result is a folder (a Zarr directory "
                           f"store); remove the file or choose another name.")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ResultsError(f"output '{p}' cannot be written (no write permission in '{folder}'); choose a folder "
                           f"you can write to.")
    return p


def _is_zarr_store(p: pathlib.Path) -> bool:
    """True when the folder ``p`` is a Zarr store (v2 ``.zgroup`` or v3 ``zarr.json`` at its root)."""
    return (p / ".zgroup").is_file() or (p / "zarr.json").is_file()


def _require_zarr(p: pathlib.Path) -> None:
    try:
        import zarr  # noqa: F401
    except ImportError:
        raise ResultsError(f"output '{p}': writing .zspy needs the 'zarr' package, which is not installed; "
                           f"write .hspy instead, or install it (pip install 'rosettasciio[zspy]').") from None


# ------------------------------------------------------------------------------------------------ axes

def _axis(name: str, size: int, cal: Calibration, *, navigate: bool) -> dict[str, typing.Any]:
    return {"name": name, "size": int(size), "offset": float(cal.offset), "scale": float(cal.scale),
            "units": cal.units or "", "navigate": navigate}


def _time_axis(times_s: NDArray[np.float64], frames: NDArray[np.int64], *, as_frames: bool,
               navigate: bool) -> dict[str, typing.Any]:
    values = frames.astype(np.float64) if as_frames else np.asarray(times_s, np.float64)
    name, units = ("frame", "frame") if as_frames else ("time", "s")
    n = int(values.size)
    if n < 2:
        return {"name": name, "size": n, "offset": float(values[0]) if n else 0.0, "scale": 1.0, "units": units,
                "navigate": navigate}
    steps = np.diff(values)
    if steps[0] > 0 and np.allclose(steps, steps[0], rtol=1e-6, atol=0.0):
        return {"name": name, "size": n, "offset": float(values[0]), "scale": float(steps[0]), "units": units,
                "navigate": navigate}
    return {"name": name, "axis": values, "units": units, "navigate": navigate}


def _signal(title: str, data: typing.Any, axes: list[dict[str, typing.Any]], quantity: str,
            insitu: dict[str, typing.Any]) -> dict[str, typing.Any]:
    return {"data": data, "axes": axes,
            "metadata": {"General": {"title": title}, "Signal": {"signal_type": "", "quantity": quantity}},
            "original_metadata": {"insitu": insitu}, "attributes": {"_lazy": False}, "tmp_parameters": {},
            "package_info": {"name": "", "version": ""}, "learning_results": {}, "models": {}}


def signal_dicts(result: ProcessorResult) -> list[dict[str, typing.Any]]:
    """RosettaSciIO signal dicts for every output of ``result`` (outputs with no frame are left out)."""
    pid = result.processor_id
    base = {"provenance": result.provenance, "provenance_json": json.dumps(result.provenance),
            "notices_json": json.dumps(jsonable(result.notices)),
            "failed_frames_json": json.dumps(jsonable(result.failed_frames))}
    frames_as_time = result.times_are_frames
    signals = []
    for name, seq in result.images.items():
        n = seq.data.shape[0]
        if n == 0:
            continue
        t_axis = _time_axis(seq.times_s, seq.frame_numbers, as_frames=frames_as_time, navigate=True)
        insitu = dict(base, output=name, kind=seq.kind, frame_numbers=seq.frame_numbers)
        if not frames_as_time:
            insitu["timestamps_s"] = seq.times_s
        if seq.kind == "image":
            cy, cx = seq.calibrations
            axes = [t_axis, _axis("y", seq.data.shape[1], cy, navigate=False),
                    _axis("x", seq.data.shape[2], cx, navigate=False)]
            signals.append(_signal(f"{pid} {name}", seq.data, axes, seq.intensity_units, insitu))
        elif seq.kind == "rgb":
            cy, cx = seq.calibrations
            data = np.ascontiguousarray(np.moveaxis(seq.data, -1, 1))
            axes = [t_axis, _axis("channel", 3, Calibration(), navigate=True),
                    _axis("y", data.shape[2], cy, navigate=False), _axis("x", data.shape[3], cx, navigate=False)]
            insitu["channels"] = ["R", "G", "B"]
            signals.append(_signal(f"{pid} {name}", data, axes, "", insitu))
        else:
            (cx,) = seq.calibrations
            axes = [t_axis]
            if seq.data.ndim == 3:
                axes.append(_axis("line", seq.data.shape[1], Calibration(), navigate=True))
                insitu["labels"] = list(seq.labels)
            axes.append(_axis("x", seq.data.shape[-1], cx, navigate=False))
            signals.append(_signal(f"{pid} {name}", seq.data, axes, seq.intensity_units, insitu))
    for name, kymo in result.kymographs.items():
        if kymo.data.size == 0:
            continue
        t_axis = _time_axis(kymo.times_s, kymo.frame_numbers, as_frames=frames_as_time, navigate=False)
        axes = [_axis("spatial frequency", kymo.data.shape[0], kymo.y_calibration, navigate=False), t_axis]
        insitu = dict(base, output=name, kind="kymograph", frame_numbers=kymo.frame_numbers)
        signals.append(_signal(f"{pid} {name}", kymo.data, axes, kymo.intensity_units, insitu))
    for name, series in result.time_series.items():
        if series.times_s.size == 0:
            continue
        t_axis = _time_axis(series.times_s, series.frame_numbers, as_frames=frames_as_time, navigate=False)
        for row in range(series.values.shape[0]):
            label = series.labels[row] if row < len(series.labels) else f"value {row}"
            units = series.units[row] if row < len(series.units) else ""
            insitu = dict(base, output=name, kind="timeseries", label=label, units=units,
                          frame_numbers=series.frame_numbers)
            quantity = f"{label} ({units})" if units else label
            signals.append(_signal(f"{pid} {name} {label}", np.ascontiguousarray(series.values[row]), [t_axis],
                                   quantity, insitu))
    for name, table in result.markers.items():
        n = table.frame_numbers.size
        if n == 0:
            continue
        data = np.stack([table.center_y_px, table.center_x_px, table.radius_px,
                         table.visible.astype(np.float64)], axis=1)
        t_axis = _time_axis(table.times_s, table.frame_numbers, as_frames=frames_as_time, navigate=True)
        insitu = dict(base, output=name, kind="markers", columns=["y_px", "x_px", "radius_px", "visible"],
                      frame_numbers=table.frame_numbers)
        signals.append(_signal(f"{pid} {name}", data, [t_axis, _axis("column", 4, Calibration(), navigate=False)],
                               "px", insitu))
    return signals


# ------------------------------------------------------------------------------------------------ writing

def write_results(results: typing.Sequence[ProcessorResult], path: str | os.PathLike[str]) -> pathlib.Path:
    """Write every output of ``results`` into one file at ``path`` (format from the extension); return the path.

    The file is assembled next to the target and moved into place at the end, so an existing file is replaced
    only by a complete one. Raises :class:`ResultsError` (problem, value, remedy) when it cannot be written.
    """
    p = check_output_path(path)
    signals = [s for r in results for s in signal_dicts(r)]
    if not signals:
        raise ResultsError(f"nothing to write to '{p}': no output has any frame (every frame failed or the run "
                           f"stopped before the first); see the messages of the run.")
    titles: dict[str, int] = {}
    for s in signals:  # group names are titles: keep them unique
        title = s["metadata"]["General"]["title"].replace("/", "-")
        titles[title] = titles.get(title, 0) + 1
        if titles[title] > 1:
            title = f"{title} ({titles[title]})"
        s["metadata"]["General"]["title"] = title
    try:
        if p.suffix.lower() == ".zspy":
            return _write_zspy(signals, p)
        return _write_hdf5(signals, p)
    except ResultsError:
        raise
    except OSError as error:
        raise ResultsError(f"writing '{p}' failed ({type(error).__name__}: {error}); check the free disk space "
                           f"and permissions, or choose another output path.") from error


def _write_hdf5(signals: list[dict[str, typing.Any]], p: pathlib.Path) -> pathlib.Path:
    import h5py
    from rsciio.hspy import file_writer

    with tempfile.TemporaryDirectory(prefix=".insitu-", dir=p.parent) as scratch:
        assembled = pathlib.Path(scratch) / "assembled.hspy"
        for i, signal in enumerate(signals):
            if i == 0:
                file_writer(str(assembled), signal, compression=None, show_progressbar=False)
                continue
            part = pathlib.Path(scratch) / f"part{i}.hspy"
            file_writer(str(part), signal, compression=None, show_progressbar=False)
            title = signal["metadata"]["General"]["title"]
            with h5py.File(assembled, "a") as target, h5py.File(part, "r") as source:
                source.copy(source["Experiments"][title], target["Experiments"], title)
            part.unlink()
        os.replace(assembled, p)
    return p


def _write_zspy(signals: list[dict[str, typing.Any]], p: pathlib.Path) -> pathlib.Path:
    """Each signal written by ``rsciio.zspy.file_writer`` into its own store, the signal groups moved into one
    store (``Experiments/<title>``, as in .hspy), its metadata consolidated, the store moved into place."""
    _require_zarr(p)
    import zarr
    from rsciio.zspy import file_writer

    with tempfile.TemporaryDirectory(prefix=".insitu-", dir=p.parent) as scratch:
        assembled = pathlib.Path(scratch) / "assembled.zspy"
        for i, signal in enumerate(signals):
            target = assembled if i == 0 else pathlib.Path(scratch) / f"part{i}.zspy"
            with warnings.catch_warnings():  # rsciio's default store (zarr 2) warns about zarr 3; not ours to fix
                warnings.filterwarnings("ignore", ".*NestedDirectoryStore is deprecated", FutureWarning)
                file_writer(str(target), signal, show_progressbar=False)
            if i:
                title = signal["metadata"]["General"]["title"]
                os.replace(target / "Experiments" / title, assembled / "Experiments" / title)
                shutil.rmtree(target)
        zarr.consolidate_metadata(str(assembled))  # the .zmetadata of the first signal lists every signal now
        previous = pathlib.Path(scratch) / "previous.zspy"
        if p.exists():  # a .zspy store (check_output_path refuses anything else): replaced by the complete one
            os.replace(p, previous)
        try:
            os.replace(assembled, p)
        except OSError:
            if previous.exists():
                os.replace(previous, p)
            raise
    return p


# ------------------------------------------------------------------------------------------------ reading back

def read_provenance(path: str | os.PathLike[str]) -> dict[str, dict[str, typing.Any]]:
    """The provenance of every signal in a results file (.hspy/.h5/.zspy): title -> provenance dict."""
    p = pathlib.Path(os.fspath(path))
    if p.suffix.lower() == ".zspy":
        _require_zarr(p)
        import zarr
        return _provenance_of(zarr.open_group(str(p), mode="r"))
    import h5py

    with h5py.File(p, "r") as f:
        return _provenance_of(f)


def _provenance_of(root: typing.Any) -> dict[str, dict[str, typing.Any]]:
    """title -> provenance of the ``Experiments/<title>`` groups of an open HDF5 file or Zarr group."""
    out: dict[str, dict[str, typing.Any]] = {}
    experiments = root["Experiments"] if "Experiments" in root else {}
    for title, group in experiments.items():
        text = group["original_metadata/insitu"].attrs.get("provenance_json") \
            if "original_metadata/insitu" in group else None
        if text is not None:
            out[str(title)] = json.loads(text.decode() if isinstance(text, bytes) else str(text))
    return out
