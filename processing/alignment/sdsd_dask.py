"""SDSD pair measurement on a ``dask.distributed`` cluster (issue 10): the stack is read lazily on the workers, block
by block, each worker pre-filters its blocks into band-limited spectra, the pairs are correlated in tasks grouped by
the blocks they need (block i x block j ...), and only the small :class:`~processing.alignment.sdsd.PairMeasurement`
results come back; the weighted least-squares solve (:func:`~processing.alignment.sdsd.solve_shifts`) runs here.

>>> from distributed import Client, LocalCluster                                      # doctest: +SKIP
>>> with LocalCluster(n_workers=2, processes=True) as cluster, Client(cluster) as client:   # doctest: +SKIP
...     result = align_stack_dask("series.h5", client, reference="banded", band_k=10, block_frames=32)

What travels and what stays:

* a stack **file** (a path, or a :class:`processing.io.stacks.Stack` opened from one) is opened on the worker that
  pre-filters a block and only that block is read there (``block_frames`` frames, a multiple of 16); any other
  stack (numpy, memory map, Dask array) is read here one block at a time and each block sent to one worker;
* a block's spectra (:class:`~processing.alignment.stack_filters.PairSpectra`, at 512² and the default low-pass
  1/12 of the frames) stay on the worker that computed them, and move only to a worker whose pair task needs them;
  they are released when the measuring pass ends;
* pairs are correlated in the batches (64 consecutive pairs of the pair list) of the in-memory run, so the result
  equals :func:`processing.alignment.sdsd.align_stack` on the same frames exactly; the batches that need the same
  blocks form one task.

The pre-shifted re-measuring of large shifts (frames moved more than 2 % of the frame) is the in-memory run's:
the pairs whose whole-pixel pre-shifts changed are measured again, on spectra of frames pre-shifted on the workers.
"""
from __future__ import annotations

import os
import typing

import numpy as np
from numpy.typing import NDArray

from processing.alignment.sdsd import PairMeasurement, SDSDResult, measure_and_solve, measure_pairs
from processing.alignment.sdsd_blocks import BLOCK_BYTES, FrameBlocks, _gather
from processing.alignment.stack_band import with_band_choice
from processing.alignment.stack_filters import PairSpectra, prefilter_spectra, sdsd_options
from processing.base import InputError
from processing.execution.dask_run import DaskError, connect

__all__ = ["align_stack_dask", "measure_on_cluster"]

_BATCH_PAIRS = 64        # the in-memory run's batch of pairs (measure_in_blocks): same batches, same result
_FFT_BATCH = 16

#: a block's frames as the worker gets them: ("file", path, dataset) to open there, or the block's float32 frames
#: (a future of them) with its first frame index and the stack's frame count
BlockSource = tuple[typing.Any, ...]


class _BlockWindow:
    """One block of frames seen at its global frame indices: ``shape`` is the whole stack's, slicing
    [start:stop] inside the block returns those frames (so :class:`FrameBlocks` reads and pre-shifts it as if it
    were the stack)."""

    def __init__(self, block: NDArray[np.float32], start: int, n_frames: int) -> None:
        self.block, self.start = block, start
        self.shape = (n_frames,) + tuple(block.shape[1:])

    def __getitem__(self, index: slice) -> NDArray[np.float32]:
        return self.block[index.start - self.start:index.stop - self.start]


# ------------------------------------------------------------------------------------------------ worker tasks
# Module-level functions: pickled by reference, run on the workers.

def _hold(block: NDArray[np.float32]) -> NDArray[np.float32]:
    """A block of frames as a task result (recomputable, unlike scattered data)."""
    return block


def _task_spectra(source: BlockSource, block_frames: int, start: int, stop: int, offsets: NDArray[np.int64],
                  options: dict[str, typing.Any]) -> PairSpectra:
    """Read frames [start, stop) on this worker (from the file, or the block sent), pre-shift them by the
    whole-pixel ``offsets`` (N, 2) and pre-filter them into band-limited spectra."""
    if source[0] == "file":
        from processing.io.stacks import open_stack
        stack = open_stack(str(source[1]), dataset=typing.cast("str | None", source[2]), lazy=True)
        try:
            frames = FrameBlocks(stack, block_frames).read_shifted(start, stop, offsets)
        finally:
            stack.close()
    else:
        window = _BlockWindow(source[1], int(source[2]), int(source[3]))
        frames = FrameBlocks(window, block_frames).read_shifted(start, stop, offsets)
    return prefilter_spectra(frames, options)


def _task_split_noise(path: str, dataset: str | None, block_frames: int, options: dict[str, typing.Any],
                      ) -> tuple[float, int]:
    """The frames' own noise for the drift prior (:func:`processing.alignment.sdsd_prior.split_frame_noise`),
    reading the file block by block on this worker."""
    from processing.alignment.sdsd_prior import split_frame_noise
    from processing.io.stacks import open_stack
    stack = open_stack(path, dataset=dataset, lazy=True)
    try:
        return split_frame_noise(FrameBlocks(stack, block_frames), options)
    finally:
        stack.close()


def _task_pairs(blocks: list[int], spectra: list[PairSpectra], batches: list[NDArray[np.intp]], block_frames: int,
                options: dict[str, typing.Any]) -> list[list[PairMeasurement]]:
    """Correlate each batch of pairs (global frame indices, (n, 2)) on the spectra of ``blocks``: the
    measurements of each batch, for the pre-shifted frames, indices global."""
    loaded = dict(zip(blocks, spectra))
    out: list[list[PairMeasurement]] = []
    for chunk in batches:
        gathered, local = _gather(loaded, chunk.reshape(-1), block_frames)
        local = local.reshape(-1, 2)
        measured = measure_pairs(gathered, [(int(a), int(c)) for a, c in local.tolist()], batch_pairs=_BATCH_PAIRS,
                                 subpixel_px=float(options["subpixel_px"]),
                                 max_shift_px=float(options["max_shift_px"]) or None,
                                 inverted_contrast=bool(options["inverted_contrast"]))
        out.append([PairMeasurement(int(i), int(j), m.shift_px, m.correlation, m.curvature_per_px2)
                    for (i, j), m in zip(chunk.tolist(), measured)])
    return out


# ------------------------------------------------------------------------------------------------ the client side

class _ClusterStack:
    """The stack as the cluster reads it: its size and block layout (nothing read here for a file) and, per
    block, what a task needs to read it."""

    def __init__(self, frames: typing.Any, client: typing.Any, block_frames: int | None, dataset: str | None,
                 n_workers: int) -> None:
        from processing.io.stacks import open_stack
        self.path: str | None = None
        if isinstance(frames, (str, os.PathLike)):
            self.path = os.path.abspath(os.fspath(frames))
            stack = open_stack(self.path, dataset=dataset, lazy=True)
            try:
                shape = (stack.n_frames,) + stack.frame_shape
            finally:
                stack.close()
            self.local: FrameBlocks | None = None
        else:
            source = getattr(frames, "source", None)
            if hasattr(frames, "n_frames") and isinstance(source, str) and os.path.isfile(source):
                self.path = os.path.abspath(source)          # a Stack opened from a file: the workers reopen it
            self.local = FrameBlocks(frames, block_frames or 10 ** 9)
            shape = (self.local.n_frames,) + self.local.frame_shape
        n, h, w = shape
        if block_frames is None:                  # two blocks per worker at least, at most 256 MB of frames each
            fit = max(_FFT_BATCH, BLOCK_BYTES // max(4 * h * w, 1))
            block_frames = min(fit, max(_FFT_BATCH, -(-n // (2 * max(n_workers, 1)))))
        # the block layout (checks N >= 2 and block_frames >= 1)
        self.blocks = FrameBlocks(_BlockWindow(np.zeros((0, h, w), np.float32), 0, n), block_frames)
        self.n_frames, self.frame_shape, self.block_frames = n, (h, w), self.blocks.block_frames
        self.dataset, self.client = dataset, client
        self._held: dict[int, typing.Any] = {}

    def source(self, block: int) -> BlockSource:
        if self.path is not None:
            return ("file", self.path, self.dataset)
        if block not in self._held:               # read here, one block at a time, sent to one worker
            assert self.local is not None
            data = self.local.read(*self.blocks.block_range(block))
            self._held[block] = self.client.submit(_hold, data, pure=False)
        return ("block", self._held[block], self.blocks.block_range(block)[0], self.n_frames)

    def release(self) -> None:
        self._held.clear()


def measure_on_cluster(stack: _ClusterStack, options: typing.Mapping[str, typing.Any],
                       pairs: typing.Sequence[tuple[int, int]], offsets: NDArray[np.int64],
                       ) -> tuple[list[PairMeasurement], list[str]]:
    """Correlate ``pairs`` (global indices) of frames pre-shifted by whole pixels ``offsets`` (N, 2) on the
    cluster; pair shifts are returned for the original frames (pre-shifts added back), in the order of ``pairs``,
    with the pre-filter's notes (as :func:`processing.alignment.sdsd_blocks.measure_in_blocks`)."""
    client, bf = stack.client, stack.block_frames
    opts = dict(options)
    index = np.asarray(pairs, dtype=np.intp).reshape(-1, 2)
    batches = [index[s:s + _BATCH_PAIRS] for s in range(0, len(index), _BATCH_PAIRS)]
    groups: dict[tuple[int, ...], list[int]] = {}
    order: list[int] = []                          # blocks in the order the in-memory run first loads them
    for b, chunk in enumerate(batches):
        needed = tuple(int(k) for k in np.unique(chunk // bf))
        groups.setdefault(needed, []).append(b)
        order.extend(k for k in needed if k not in order)
    spectra = {}
    for block in order:
        start, stop = stack.blocks.block_range(block)
        spectra[block] = client.submit(_task_spectra, stack.source(block), bf, start, stop, offsets, opts,
                                       pure=False)
    tasks = {client.submit(_task_pairs, list(needed), [spectra[k] for k in needed], [batches[b] for b in members],
                           bf, opts, pure=False): members for needed, members in groups.items()}
    notes_future = client.submit(getattr, spectra[order[-1]], "notes", pure=False) if order else None
    by_batch: dict[int, list[PairMeasurement]] = {}
    try:
        for future, members in tasks.items():
            for b, measured in zip(members, future.result()):
                by_batch[b] = measured
        notes = list(notes_future.result()) if notes_future is not None else []
    finally:
        client.cancel(list(tasks) + list(spectra.values()))
        stack.release()
    out: list[PairMeasurement] = []
    for b in range(len(batches)):
        for m in by_batch[b]:
            out.append(PairMeasurement(m.i, m.j, (m.shift_px[0] + float(offsets[m.j, 0] - offsets[m.i, 0]),
                                                  m.shift_px[1] + float(offsets[m.j, 1] - offsets[m.i, 1])),
                                       m.correlation, m.curvature_per_px2))
    return out, notes


def align_stack_dask(frames: typing.Any, client: typing.Any, *, pixel_size_nm: float | tuple[float, float] = 1.0,
                     block_frames: int | None = None, dataset: str | None = None, **options: typing.Any,
                     ) -> SDSDResult:
    """:func:`processing.alignment.sdsd.align_stack` with the pair measurement on a ``dask.distributed`` cluster.

    frames : a stack file path (opened on the workers, read a block at a time there), a
        :class:`processing.io.stacks.Stack` (reopened on the workers when it comes from a file), or any (N, H, W)
        array-like (read here a block at a time, each block sent to one worker).
    client : a ``distributed.Client`` or a scheduler address (``"tcp://host:8786"``).
    block_frames : frames per block (rounded up to a multiple of 16); None: at least two blocks per worker, at most
        256 MB of frames each.
    dataset : the dataset inside a file holding several.
    **options : the SDSD parameters (as ``align_stack``).

    Returns the :class:`~processing.alignment.sdsd.SDSDResult` ``align_stack`` gives on the same frames.
    Raises :class:`~processing.execution.dask_run.DaskError` for an unreachable scheduler or one without workers,
    and the input errors of ``align_stack`` (raised on the worker that read the bad frame, with its index).
    """
    opts = sdsd_options(**options)
    c, owned = connect(client)
    try:
        workers = c.scheduler_info().get("workers") or {}
        if not workers:
            raise DaskError(f"the Dask cluster at {c.scheduler.address} has no worker; start one "
                            f"('dask worker {c.scheduler.address}') or align without a cluster.")
        stack = _ClusterStack(frames, c, block_frames, dataset, len(workers))
        n, (h, w) = stack.n_frames, stack.frame_shape
        if min(h, w) < 16:
            raise InputError(f"the frames are {h}x{w} px; alignment needs at least 16x16 px.")

        def run(o: dict[str, typing.Any]) -> SDSDResult:
            return measure_and_solve(n, (h, w), o,
                                     lambda pairs, offsets: measure_on_cluster(stack, o, pairs, offsets),
                                     pixel_size_nm=pixel_size_nm,
                                     frame_noise=(lambda: _split_noise(stack, o)) if o["drift_prior"] != "off"
                                     else None)
        return with_band_choice(run, lambda k: _read_frame(stack, k), n, opts)
    finally:
        if owned:
            c.close()


def _read_frame(stack: _ClusterStack, k: int) -> NDArray[np.float32]:
    """Frame k read here (the low-pass choice reads a few dozen frames): from the array, or from the file."""
    if stack.local is not None:
        return np.asarray(stack.local.read(k, k + 1)[0], dtype=np.float32)
    from processing.io.stacks import open_stack
    assert stack.path is not None
    opened = open_stack(stack.path, dataset=stack.dataset, lazy=True)
    try:
        return np.asarray(FrameBlocks(opened, 16).read(k, k + 1)[0], dtype=np.float32)
    finally:
        opened.close()


def _split_noise(stack: _ClusterStack, options: dict[str, typing.Any]) -> float:
    """The drift prior's frame noise: on a worker from the file, else here from the array (every ceil(N/32)-th
    frame, :func:`processing.alignment.sdsd_prior.split_frame_noise`)."""
    if stack.path is not None:
        future = stack.client.submit(_task_split_noise, stack.path, stack.dataset, stack.block_frames, options,
                                     pure=False)
        return float(future.result()[0])
    from processing.alignment.sdsd_prior import split_frame_noise
    assert stack.local is not None
    return float(split_frame_noise(stack.local, options)[0])

