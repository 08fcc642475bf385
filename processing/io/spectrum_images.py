"""Spectrum images (ny, nx, ne) from files: :func:`open_spectrum_image`.

Formats: ``.npy`` (memory-mapped, no calibration), HyperSpy ``.hspy``/``.hdf5``, ``.emd`` (Velox and Berkeley),
``.dm3``/``.dm4`` through RosettaSciIO (lazy), any other HDF5/NeXus file through h5py (the dataset ``dataset=``, else
the largest 3-D numeric dataset). The last axis is the energy axis. Errors are :class:`SpectrumImageError`
(a ``ValueError``) with problem, value and remedy.
"""
from __future__ import annotations

import os
import pathlib
import typing

import numpy as np

from processing.base import Calibration, ProcessingError
from processing.io.stacks import holder_values, json_safe

__all__ = ["SpectrumImageError", "open_spectrum_image", "SI_EXTENSIONS"]

SI_EXTENSIONS = (".npy", ".hspy", ".hdf5", ".h5", ".nxs", ".emd", ".dm3", ".dm4")


class SpectrumImageError(ProcessingError):
    """A file cannot be read as a spectrum image. The message says problem, value and remedy."""


SpectrumImage = tuple[typing.Any, tuple[Calibration, Calibration, Calibration], dict[str, typing.Any]]


def open_spectrum_image(path: str | os.PathLike[str], *, dataset: str | None = None,
                        lazy: bool = True) -> SpectrumImage:
    """Read a spectrum image.

    Returns ``(data, calibrations, metadata)``: data (ny, nx, ne) (Dask or memory-mapped numpy when ``lazy``),
    calibrations (y, x, energy) (energy usually in eV), metadata json-serialisable (``original``, ``holder``,
    ``insitu``). A single spectrum (ne,) or a line (n, ne) is returned as (1, 1, ne) / (1, n, ne).
    """
    p = pathlib.Path(os.fspath(path)).expanduser()
    if not p.is_file():
        raise SpectrumImageError(f"'{p}' does not exist or is not a file; check the path of the spectrum image.")
    ext = p.suffix.lower()
    if ext not in SI_EXTENSIONS:
        raise SpectrumImageError(f"'{p.name}': the format '{ext or '(no extension)'}' is not supported for spectrum "
                                 f"images; supported: {', '.join(SI_EXTENSIONS)}.")
    if p.stat().st_size == 0:
        raise SpectrumImageError(f"'{p}' is empty (0 bytes); the file was not written completely.")
    try:
        data, calibrations, metadata = _read(p, ext, dataset)
    except SpectrumImageError:
        raise
    except Exception as error:  # a reader failure is a bad file, never a crash
        raise SpectrumImageError(f"'{p.name}' cannot be read as {ext[1:].upper()} ({type(error).__name__}: "
                                 f"{error}); the file is probably truncated or corrupt: export it again.") from error
    if data.ndim == 1:
        data = data[np.newaxis, np.newaxis]
    elif data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3 or data.dtype.kind not in "biuf":
        raise SpectrumImageError(f"'{p.name}' holds {data.dtype} data of shape {tuple(data.shape)}, not a spectrum "
                                 f"image (ny, nx, ne) of real numbers; pick the SI dataset with dataset=.")
    if data.shape[-1] < 2:
        raise SpectrumImageError(f"'{p.name}' has {data.shape[-1]} energy channel(s); a spectrum needs at least 2.")
    if not lazy:
        data = np.asarray(data.compute() if hasattr(data, "compute") else np.array(data))
    return data, calibrations, metadata


def _read(p: pathlib.Path, ext: str, dataset: str | None) -> SpectrumImage:
    none3 = (Calibration(), Calibration(), Calibration())
    if ext == ".npy":
        return np.load(p, mmap_mode="r", allow_pickle=False), none3, {"insitu": {"format": "npy"}}
    signals: list[dict[str, typing.Any]]
    if ext in (".h5", ".hdf5", ".hspy", ".nxs"):
        import h5py
        with h5py.File(p, "r") as f:
            fmt = f.attrs.get("file_format", b"")
            is_hyperspy = (fmt.decode() if isinstance(fmt, bytes) else str(fmt)).lower() == "hyperspy"
        if not is_hyperspy:
            return _read_hdf5(p, dataset)
        from rsciio.hspy import file_reader as hspy_reader
        signals = hspy_reader(str(p), lazy=True)
    elif ext == ".emd":
        from rsciio.emd import file_reader as emd_reader
        signals = emd_reader(str(p), lazy=True)
    else:
        from rsciio.digitalmicrograph import file_reader as dm_reader
        signals = dm_reader(str(p), lazy=True)
    titles = [str(s.get("metadata", {}).get("General", {}).get("title", "")) for s in signals]
    if dataset is not None:
        signals = [s for s, t in zip(signals, titles) if t == dataset]
        if not signals:
            raise SpectrumImageError(f"'{p.name}' has no dataset titled '{dataset}'; it has {titles}.")
    spectral = [s for s in signals if s["data"].ndim in (1, 2, 3) and _last_axis_is_signal(s)]
    if not spectral:
        shapes = [tuple(s["data"].shape) for s in signals]
        raise SpectrumImageError(f"'{p.name}' holds no spectrum image (datasets {list(zip(titles, shapes))}); open a "
                                 f"file with one spectrum per pixel (ny, nx, ne), e.g. an EELS or EDS SI.")
    signal = max(spectral, key=lambda s: int(np.prod(s["data"].shape)))
    axes = list(signal.get("axes", []))
    padded = [{}] * (3 - len(axes)) + axes[-3:]
    calibrations = typing.cast(tuple[Calibration, Calibration, Calibration], tuple(
        Calibration(float(a.get("offset", 0.0) or 0.0), float(a.get("scale", 1.0) or 1.0), str(a.get("units", "") or ""))
        for a in padded))
    original = json_safe(signal.get("original_metadata", {}) or {})
    meta = json_safe(signal.get("metadata", {}) or {})
    metadata = {"original": original, "metadata": meta, "holder": holder_values(original),
                "insitu": {"format": ext[1:], "title": meta.get("General", {}).get("title", "")}}
    return signal["data"], calibrations, metadata


def _last_axis_is_signal(signal: dict[str, typing.Any]) -> bool:
    axes = signal.get("axes", [])
    if not axes:
        return False
    flags = [a.get("navigate") for a in axes]
    if all(f is not None for f in flags) and any(f is False for f in flags) and not all(f is False for f in flags):
        return sum(1 for f in flags if not f) == 1 and flags[-1] is False
    return str(axes[-1].get("units", "") or "") in ("eV", "keV", "meV")


def _read_hdf5(p: pathlib.Path, dataset: str | None) -> SpectrumImage:
    import dask.array as da
    import h5py
    f = h5py.File(p, "r")
    candidates: list[tuple[str, typing.Any]] = []
    f.visititems(lambda name, obj: candidates.append((name, obj))
                 if isinstance(obj, h5py.Dataset) and obj.ndim == 3 and obj.dtype.kind in "biuf" else None)
    if dataset is not None:
        key = dataset.strip("/")
        if key not in f or not isinstance(f[key], h5py.Dataset):
            f.close()
            raise SpectrumImageError(f"'{p.name}' has no dataset '{dataset}'; 3-D datasets: "
                                     f"{[n for n, _ in candidates]}.")
        name, node = key, f[key]
    elif candidates:
        name, node = max(candidates, key=lambda c: int(np.prod(c[1].shape)))
    else:
        f.close()
        raise SpectrumImageError(f"'{p.name}' has no 3-D numeric dataset, so no spectrum image (ny, nx, ne).")
    calibrations = [Calibration(), Calibration(), Calibration()]
    parent = node.parent
    axes = parent.attrs.get("axes", [])
    names = [a.decode() if isinstance(a, bytes) else str(a) for a in ([axes] if isinstance(axes, (str, bytes))
                                                                      else list(axes))]
    for index, axis_name in enumerate(names[-3:]):
        if axis_name in parent and isinstance(parent[axis_name], h5py.Dataset) and parent[axis_name].size >= 2:
            values = np.asarray(parent[axis_name][...], dtype=np.float64).reshape(-1)
            units = parent[axis_name].attrs.get("units", "")
            units = units.decode() if isinstance(units, bytes) else str(units)
            calibrations[index + 3 - len(names[-3:])] = Calibration(float(values[0]), float(values[1] - values[0]),
                                                                    units)
    original = {k: json_safe(v) for k, v in node.attrs.items()}
    data = da.from_array(node, chunks=(1,) + tuple(node.shape[1:]))  # type: ignore[no-untyped-call]
    metadata = {"original": original, "holder": holder_values(original),
                "insitu": {"format": "hdf5", "dataset": name}}
    return data, (calibrations[0], calibrations[1], calibrations[2]), metadata
