"""Readers of :mod:`processing.io.stacks` that do not go through RosettaSciIO: generic HDF5/NeXus (h5py) and
folders of numbered images (tifffile / imageio). Use :func:`processing.io.stacks.open_stack`, not these."""
from __future__ import annotations

import pathlib
import re
import typing

import numpy as np
from numpy.typing import NDArray

from processing.base import Calibration
from processing.io.stacks import (IMAGE_EXTENSIONS, Stack, StackError, _attr, holder_values, json_safe,
                                  stack_from_array, time_scale_to_s)


def open_hdf5(p: pathlib.Path, dataset: str | None) -> Stack:
    """A generic HDF5/NeXus file through h5py, kept open for lazy reading (closed by ``Stack.close``)."""
    import dask.array as da
    import h5py
    f = h5py.File(p, "r")
    try:
        candidates: list[tuple[str, typing.Any]] = []
        signals: list[str] = []

        def visit(name: str, obj: typing.Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and obj.dtype.kind in "biuf":
                candidates.append((name, obj))
            elif isinstance(obj, h5py.Group) and _attr(obj, "signal"):
                signals.append(f"{name}/{_attr(obj, 'signal')}".lstrip("/"))
        f.visititems(visit)
        if dataset is not None:
            if dataset.strip("/") not in f or not isinstance(f[dataset.strip("/")], h5py.Dataset):
                raise StackError(f"'{p.name}' has no dataset '{dataset}'; its image-like datasets are "
                                 f"{[n for n, _ in candidates]}: pass one of these as dataset=.")
            name, node = dataset.strip("/"), f[dataset.strip("/")]
        else:
            if not candidates:
                raise StackError(f"'{p.name}' has no numeric dataset with 2 or more dimensions, so no image "
                                 f"sequence; open a file that holds frames (N, H, W).")
            preferred = [c for c in candidates if c[0] in signals] or candidates
            name, node = max(preferred, key=lambda c: int(np.prod(c[1].shape)))
        notes = []
        if dataset is None and len(candidates) > 1:
            notes.append(f"{len(candidates)} image-like datasets; playing '{name}' (choose another with dataset=): "
                         f"{[n for n, _ in candidates][:10]}")
        if node.ndim not in (2, 3):
            raise StackError(f"dataset '{name}' of '{p.name}' has shape {node.shape}, not an image sequence "
                             f"(N, H, W); pass a 2-D or 3-D dataset with dataset=.")
        chunks = (1,) + tuple(node.shape[1:]) if node.ndim == 3 else node.shape
        data = da.from_array(node, chunks=chunks)  # type: ignore[no-untyped-call]
        parent = node.parent
        calibrations = [Calibration(), Calibration()]
        axes = _attr(parent, "axes")
        if isinstance(axes, str):
            axes = [axes]
        axis_names = [a.decode() if isinstance(a, bytes) else str(a) for a in (list(axes) if len(axes) else [])]
        timestamps = None
        for position, axis_name in enumerate(axis_names[-node.ndim:]):
            if axis_name in parent and isinstance(parent[axis_name], h5py.Dataset) and parent[axis_name].ndim == 1:
                values = np.asarray(parent[axis_name][...], dtype=np.float64)
                units = str(_attr(parent[axis_name], "units"))
                index = position - (node.ndim - 2)
                if index >= 0 and values.size >= 2:
                    calibrations[index] = Calibration(float(values[0]), float(values[1] - values[0]), units)
                elif index < 0 and time_scale_to_s(units) is not None and values.size == node.shape[0]:
                    timestamps = values * typing.cast(float, time_scale_to_s(units))
        for time_name in ("timestamps_s", "timestamps", "time_s", "time"):
            if timestamps is None and time_name in parent and isinstance(parent[time_name], h5py.Dataset):
                values = np.asarray(parent[time_name][...], dtype=np.float64).reshape(-1)
                if node.ndim == 3 and values.size == node.shape[0]:
                    timestamps = values * (time_scale_to_s(str(_attr(parent[time_name], "units")) or "s") or 1.0)
        original = {k: json_safe(v) for k, v in node.attrs.items()}
        stack = stack_from_array(data, calibrations=(calibrations[0], calibrations[1]), timestamps_s=timestamps,
                                 source=str(p), intensity_units=str(_attr(node, "units")))
        stack.metadata = {"original": original, "holder": holder_values(original),
                          "insitu": {"format": "hdf5", "dataset": name, "notes": notes}}
        stack._closers.append(f.close)
        return stack
    except BaseException:
        f.close()
        raise


_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)(?P<ext>\.[A-Za-z]+)$")


def open_folder(folder: pathlib.Path, *, prefix: str | None) -> Stack:
    """A folder of numbered image files, one frame each, read when asked for (Dask, one task per file)."""
    import dask.array as da
    from dask.delayed import delayed
    series: dict[tuple[str, str], list[tuple[int, pathlib.Path]]] = {}
    for entry in folder.iterdir():
        match = _NUMBERED.match(entry.name)
        if entry.is_file() and match and match["ext"].lower() in IMAGE_EXTENSIONS:
            if prefix is None or match["prefix"] == prefix:
                key = (match["prefix"], match["ext"].lower())
                series.setdefault(key, []).append((int(match["number"]), entry))
    if not series:
        raise StackError(f"'{folder}' is not an image sequence: it holds no numbered image files "
                         f"({'/'.join(IMAGE_EXTENSIONS)}, e.g. frame_0001.png)"
                         f"{f' starting with {prefix!r}' if prefix else ''}; choose the folder of the exported frames.")
    notes = []
    if len(series) > 1:
        names = [f"{k[0]}#{k[1]} ({len(v)} files)" for k, v in series.items()]
        notes.append(f"several numbered series in the folder {names}; playing the longest (choose with dataset=<prefix>)")
    key, files = max(series.items(), key=lambda kv: len(kv[1]))
    files.sort()
    numbers = [n for n, _ in files]
    if len(set(numbers)) != len(numbers):
        raise StackError(f"'{folder}' has two files with the same frame number in series '{key[0]}*{key[1]}'; "
                         f"remove the duplicates (e.g. frame_1.png and frame_001.png).")
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        shown = missing[:20]
        notes.append(f"gaps in the numbering: {len(missing)} frame numbers missing ({shown}"
                     f"{' ...' if len(missing) > 20 else ''}); the frames that exist are played in order")
    first = _read_image(files[0][1])
    for _, path in files[1:]:
        shape = _image_shape(path)
        if shape != first.shape:
            raise StackError(f"mixed frame shapes in '{folder}': '{files[0][1].name}' is {first.shape[1]} x "
                             f"{first.shape[0]} px but '{path.name}' is {shape[1]} x {shape[0]} px; put frames of "
                             f"one size in the folder (or crop/resample them to one size).")
    frames = [da.from_delayed(delayed(_read_image)(path), shape=first.shape,  # type: ignore[no-untyped-call]
                              dtype=first.dtype) for _, path in files]
    stack = stack_from_array(da.stack(frames), source=str(folder))  # type: ignore[no-untyped-call]
    stack.metadata = {"original": {}, "holder": {},
                      "insitu": {"format": "image folder", "series": f"{key[0]}*{key[1]}", "notes": notes,
                                 "frame_numbers": numbers if len(numbers) <= 100000 else [],
                                 "missing_frame_numbers": missing}}
    return stack


def _image_shape(path: pathlib.Path) -> tuple[int, ...]:
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile
            with tifffile.TiffFile(path) as tif:
                shape = tuple(tif.pages[0].shape)
        else:
            from PIL import Image
            with Image.open(path) as image:
                shape = (image.size[1], image.size[0])
    except Exception as error:
        raise StackError(f"image file '{path}' cannot be read ({type(error).__name__}: {error}); it is probably "
                         f"truncated or corrupt: export it again or remove it from the folder.") from error
    return shape[:2]


def _read_image(path: pathlib.Path) -> NDArray[typing.Any]:
    """One image file as (H, W); RGB(A) becomes grey (mean of R, G, B)."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile
            image = np.asarray(tifffile.imread(path))
        else:
            import imageio.v3 as iio
            image = np.asarray(iio.imread(path))
    except Exception as error:
        raise StackError(f"image file '{path}' cannot be read ({type(error).__name__}: {error}); it is probably "
                         f"truncated or corrupt: export it again or remove it from the folder.") from error
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3].mean(axis=-1).astype(np.float32)
    if image.ndim != 2:
        raise StackError(f"image file '{path}' has shape {image.shape}, not one 2-D frame; "
                         f"export one grey or RGB image per file.")
    return image
