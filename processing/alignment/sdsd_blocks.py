"""SDSD on stacks that need not fit in memory: frames read in blocks, band-limited spectra kept only while a pair
still needs them, shifts applied block by block (issue 10, "build on the execution floor").

:func:`processing.alignment.sdsd.align_stack` measures every stack through :class:`FrameBlocks` and
:func:`measure_in_blocks`; an in-memory array is one block, a lazy stack (:func:`processing.io.stacks.open_stack`,
a Dask array, a memory map) is read ``block_frames`` frames at a time. What stays in memory:

* the frames of one block (``block_frames`` x H x W float32) while it is pre-filtered;
* the band-limited spectra (:class:`~processing.alignment.stack_filters.PairSpectra`, at 512² and the default
  low-pass 144 x 73 complex64 = 84 kB per frame, 1/12 of the frame) of the blocks a remaining pair still needs:
  in banded / previous mode the band (about K + 2 blocks of frames), in all-pairs / first-frame mode every frame's
  spectrum (all pairs need them; with ``lowpass_sigma_px = 0`` a spectrum is as large as the frame).

Pairs are measured in the order and in the batches of the pair list, and blocks start at multiples of 16 frames
(the pre-filter's FFT batch), so the result equals the in-memory one exactly. :func:`aligned_blocks` and
:func:`aligned_dask` give the aligned stack block by block (the command line writes it with RosettaSciIO from the
Dask array, never holding the whole stack).
"""
from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
from numpy.typing import NDArray

from processing.alignment.stack_filters import PairSpectra, prefilter_spectra, validate_stack
from processing.base import InputError, ParameterError

if typing.TYPE_CHECKING:
    from processing.alignment.sdsd import PairMeasurement

__all__ = ["FrameBlocks", "measure_in_blocks", "aligned_blocks", "aligned_dask", "BLOCK_BYTES"]

Float32Array = NDArray[np.float32]
#: default memory budget of one block of frames read from a lazy stack
BLOCK_BYTES = 256 * 2 ** 20
_FFT_BATCH = 16          # prefilter_spectra transforms 16 frames at a time: blocks start at multiples of it


class FrameBlocks:
    """Frames (N, H, W) of an array-like read as float32 blocks.

    frames : a numpy array or list of frames (validated whole, in memory: one block), or a lazy stack: a
        :class:`processing.io.stacks.Stack`, a Dask array, a memory map, an h5py dataset (read ``block_frames``
        at a time; each block is checked when read, errors name the global frame index).
    block_frames : frames per block (rounded up to a multiple of 16); None: the whole stack when it is in memory,
        else as many as fit in :data:`BLOCK_BYTES`.
    """

    def __init__(self, frames: typing.Any, block_frames: int | None = None) -> None:
        self.__stack = frames if hasattr(frames, "frame") and hasattr(frames, "n_frames") else None
        data = self.__stack.data if self.__stack is not None else frames
        if isinstance(data, (list, tuple)) or (isinstance(data, np.ndarray) and not isinstance(data, np.memmap)):
            self.__memory: Float32Array | None = validate_stack(data)
            data = self.__memory
        else:
            self.__memory = None
        shape = tuple(int(s) for s in np.shape(data)) if self.__stack is None else \
            (self.__stack.n_frames,) + tuple(self.__stack.frame_shape)
        if len(shape) != 3:
            raise InputError(f"a stack must be a real (N, H, W) array; got shape {shape}. Pass an image sequence.")
        self.__data = data
        self.n_frames, self.frame_shape = shape[0], (shape[1], shape[2])
        if self.n_frames < 2:
            raise InputError(f"the stack has {self.n_frames} frame(s); alignment needs at least 2. Acquire or load "
                             f"more frames.")
        if block_frames is not None and block_frames < 1:
            raise ParameterError(f"block_frames must be >= 1; got {block_frames}. Use e.g. 64 (or None: automatic).")
        if block_frames is None:
            fit = BLOCK_BYTES // max(4 * shape[1] * shape[2], 1)
            block_frames = self.n_frames if self.__memory is not None else max(_FFT_BATCH, int(fit))
        self.block_frames = min(self.n_frames, _FFT_BATCH * math.ceil(block_frames / _FFT_BATCH))

    @property
    def in_memory(self) -> bool:
        return self.__memory is not None

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.n_frames / self.block_frames)

    def block_range(self, block: int) -> tuple[int, int]:
        start = block * self.block_frames
        return start, min(self.n_frames, start + self.block_frames)

    def read(self, start: int, stop: int) -> Float32Array:
        """Frames [start, stop) as float32 (N', H, W), checked (finite, not constant)."""
        if self.__memory is not None:
            return self.__memory[start:stop]
        if self.__stack is not None and getattr(self.__stack, "_frame_reader", None) is not None:
            raw: typing.Any = np.stack([self.__stack.frame(k) for k in range(start, stop)])
        else:
            raw = self.__data[start:stop]
            if hasattr(raw, "compute"):
                raw = raw.compute(scheduler="synchronous")
        block = np.asarray(raw)
        if block.dtype == object or np.iscomplexobj(block) or block.ndim != 3:
            raise InputError(f"a stack must be a real (N, H, W) array; got frames of shape {block.shape[1:]}, dtype "
                             f"{block.dtype}. Pass an image sequence.")
        out = block.astype(np.float32)
        bad = [start + k for k in range(len(out)) if not np.isfinite(out[k]).all()]
        if bad:
            raise InputError(f"frame(s) {bad[:10]} contain NaN/inf; alignment needs finite data. Replace the invalid "
                             f"pixels (camera corrections) or remove those frames.")
        flat = [start + k for k in range(len(out)) if float(out[k].max()) == float(out[k].min())]
        if flat:
            raise InputError(f"frame(s) {flat[:10]} are constant (e.g. all zero): they carry no structure to align "
                             f"on. Remove them (beam blanked or acquisition failed) and align the rest.")
        return out

    def read_shifted(self, start: int, stop: int, offsets: NDArray[np.int64]) -> Float32Array:
        """Frames [start, stop) moved back by whole pixels ``offsets[k]`` (``out[y, x] = frame[y + oy, x + ox]``,
        edges repeated)."""
        block = self.read(start, stop)
        if not np.any(offsets[start:stop]):
            return block
        h, w = self.frame_shape
        out = np.empty_like(block)
        for k in range(len(block)):
            oy, ox = offsets[start + k]
            rows = np.clip(np.arange(h) + oy, 0, h - 1)
            cols = np.clip(np.arange(w) + ox, 0, w - 1)
            out[k] = block[k][np.ix_(rows, cols)]
        return out


def _gather(blocks: dict[int, PairSpectra], frames: NDArray[np.intp], block_frames: int,
            ) -> tuple[PairSpectra, NDArray[np.intp]]:
    """One PairSpectra holding ``frames`` (global indices), and their local indices in it."""
    owners = np.unique(frames // block_frames)
    if len(owners) == 1:                                    # no copy: the block itself, indices shifted
        return blocks[int(owners[0])], frames - int(owners[0]) * block_frames
    needed = np.unique(frames)
    spectra = np.stack([blocks[int(f) // block_frames].spectra[int(f) % block_frames] for f in needed])
    norms = np.asarray([blocks[int(f) // block_frames].norms[int(f) % block_frames] for f in needed])
    template = blocks[int(owners[0])]
    return dataclasses.replace(template, spectra=spectra, norms=norms), np.searchsorted(needed, frames)


def measure_in_blocks(source: FrameBlocks, options: typing.Mapping[str, typing.Any],
                      pairs: typing.Sequence[tuple[int, int]], offsets: NDArray[np.int64], *,
                      batch_pairs: int = 64) -> tuple[list[PairMeasurement], list[str]]:
    """Correlate ``pairs`` (global frame indices) of frames pre-shifted by whole pixels ``offsets`` (N, 2),
    reading ``source`` block by block; pair shifts are returned for the original frames (pre-shifts added back).
    Returns (measurements in the order of ``pairs``, notes of the pre-filter)."""
    from processing.alignment.sdsd import PairMeasurement, measure_pairs
    index = np.asarray(pairs, dtype=np.intp).reshape(-1, 2)
    bf = source.block_frames
    # the last batch that needs each block: a block's spectra are dropped after it
    last_use: dict[int, int] = {}
    batches = [index[s:s + batch_pairs] for s in range(0, len(index), batch_pairs)]
    for b, chunk in enumerate(batches):
        for block in np.unique(chunk // bf).tolist():
            last_use[int(block)] = b
    loaded: dict[int, PairSpectra] = {}
    out: list[PairMeasurement] = []
    notes: list[str] = []
    for b, chunk in enumerate(batches):
        for block in np.unique(chunk // bf).tolist():
            if block not in loaded:
                start, stop = source.block_range(int(block))
                loaded[int(block)] = prefilter_spectra(source.read_shifted(start, stop, offsets), options)
                notes = loaded[int(block)].notes
        spectra, local = _gather(loaded, chunk.reshape(-1), bf)
        local = local.reshape(-1, 2)
        measured = measure_pairs(spectra, [(int(a), int(c)) for a, c in local.tolist()], batch_pairs=batch_pairs,
                                 subpixel_px=float(options["subpixel_px"]),
                                 max_shift_px=float(options["max_shift_px"]) or None,
                                 inverted_contrast=bool(options["inverted_contrast"]))
        for (i, j), m in zip(chunk.tolist(), measured):
            out.append(PairMeasurement(int(i), int(j), (m.shift_px[0] + float(offsets[j, 0] - offsets[i, 0]),
                                                        m.shift_px[1] + float(offsets[j, 1] - offsets[i, 1])),
                                       m.correlation, m.curvature_per_px2))
        for block in [k for k, last in last_use.items() if last == b]:
            loaded.pop(block, None)
    return out, notes


def aligned_blocks(source: FrameBlocks, shifts_px: typing.Any, *, method: str = "spline", crop: str = "crop",
                   ) -> typing.Iterator[tuple[int, Float32Array]]:
    """(start frame, aligned block (n', h, w) float32) for each block of ``source``: the frames moved by
    ``-shifts_px`` exactly as :func:`processing.alignment.stack_shift.apply_shifts` does (same geometry)."""
    from processing.alignment.stack_shift import align_frame, aligned_geometry
    geometry = aligned_geometry(source.frame_shape, shifts_px, crop)
    shifts = np.asarray(shifts_px, dtype=np.float64).reshape(-1, 2)
    for block in range(source.n_blocks):
        start, stop = source.block_range(block)
        frames = source.read(start, stop)
        yield start, np.stack([align_frame(frames[k], shifts[start + k], geometry, method)
                               for k in range(stop - start)])


def aligned_dask(source: FrameBlocks, shifts_px: typing.Any, *, method: str = "spline", crop: str = "crop",
                 ) -> typing.Any:
    """The aligned stack as a Dask array (one chunk per block, computed when stored or summed)."""
    import dask.array as da
    from dask.delayed import delayed
    from processing.alignment.stack_shift import align_frame, aligned_geometry
    geometry = aligned_geometry(source.frame_shape, shifts_px, crop)
    shifts = np.asarray(shifts_px, dtype=np.float64).reshape(-1, 2)

    def one(start: int, stop: int) -> Float32Array:
        frames = source.read(start, stop)
        return np.stack([align_frame(frames[k], shifts[start + k], geometry, method) for k in range(stop - start)])

    parts = []
    for block in range(source.n_blocks):
        start, stop = source.block_range(block)
        parts.append(da.from_delayed(delayed(one)(start, stop),  # type: ignore[no-untyped-call]
                                     (stop - start,) + geometry.out_shape, dtype=np.float32))
    return da.concatenate(parts, axis=0)  # type: ignore[no-untyped-call]
