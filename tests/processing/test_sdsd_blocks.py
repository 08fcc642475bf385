"""SDSD on lazy stacks in bounded memory (processing.alignment.sdsd_blocks): a stack file read block by block aligns
exactly as the same frames in memory, reads never more than a block, banded mode keeps only the band's spectra,
and ``nionswift-insitu align`` writes the aligned stack block by block equal to the in-memory result."""
from __future__ import annotations

import json
import pathlib
import sys
import typing

import numpy as np
import pytest

from processing.alignment import sdsd_blocks
from processing.alignment.sdsd import align_stack
from processing.alignment.sdsd_blocks import FrameBlocks, aligned_blocks
from processing.alignment.stack_shift import apply_shifts
from processing.base import InputError
from processing.cli import main
from processing.io.stacks import open_stack

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_sdsd import _rms, _series  # noqa: E402


@pytest.fixture(scope="module")
def series() -> tuple[np.ndarray, np.ndarray]:
    # 40 frames, drift up to ~1 px/frame: large enough (> 2 % of 96 px) for the pre-shifted re-measuring passes
    frames, true = _series(31, n=40, size=96, dose=20.0)
    return frames, true


@pytest.fixture
def npy(tmp_path: pathlib.Path, series: tuple[np.ndarray, np.ndarray]) -> pathlib.Path:
    path = tmp_path / "series.npy"
    np.save(path, series[0])
    return path


def _hspy(tmp_path: pathlib.Path, frames: np.ndarray) -> pathlib.Path:
    from processing.base import Calibration
    from processing.io.results import _axis, _signal, _write_hdf5
    path = tmp_path / "series.hspy"
    axes = [_axis("frame", len(frames), Calibration(0.0, 1.0, "frame"), navigate=True),
            _axis("y", frames.shape[1], Calibration(0.0, 0.1, "nm"), navigate=False),
            _axis("x", frames.shape[2], Calibration(0.0, 0.1, "nm"), navigate=False)]
    _write_hdf5([_signal("series", frames, axes, "counts", {})], path)
    return path


@pytest.mark.parametrize("options", [{"reference": "banded", "band_k": 3}, {"reference": "all"},
                                     {"reference": "first"}, {"reference": "previous"}])
def test_lazy_file_in_blocks_equals_in_memory(npy: pathlib.Path, tmp_path: pathlib.Path,
                                              series: tuple[np.ndarray, np.ndarray],
                                              options: dict[str, typing.Any]) -> None:
    frames, true = series
    memory = align_stack(frames, **options)
    assert float(np.abs(memory.shifts_px).max()) > 0.02 * 96          # the pre-shift passes run
    for stack in (open_stack(npy), open_stack(_hspy(tmp_path, frames))):   # pread reader; RosettaSciIO + Dask
        blocks = align_stack(stack, block_frames=16, **options)
        assert np.array_equal(blocks.shifts_px, memory.shifts_px)
        assert np.array_equal(np.nan_to_num(blocks.uncertainty_px), np.nan_to_num(memory.uncertainty_px))
        assert blocks.rejected == memory.rejected and len(blocks.pairs) == len(memory.pairs)
        stack.close()
    if options["reference"] in ("all", "banded"):                       # first, previous: no redundancy
        assert _rms(memory.shifts_px, true) < 0.3


def test_reads_are_bounded_and_banded_keeps_only_the_band(tmp_path: pathlib.Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """96 frames in 6 blocks of 16: banded K = 3 holds the spectra of at most 3 blocks at a time (a batch of 64
    pairs spans ~22 frames), all pairs hold all 6; no read is larger than a block."""
    rng = np.random.default_rng(5)
    import scipy.ndimage
    base = scipy.ndimage.gaussian_filter(rng.normal(size=(96, 96)), 2.0)
    frames = np.stack([rng.poisson(20 * np.clip(1 + 0.3 * base[k % 2:k % 2 + 64, 0:64] / base.std(), 0, None))
                       for k in range(96)]).astype(np.float32)
    path = tmp_path / "long.npy"
    np.save(path, frames)
    reads: list[int] = []
    held: list[int] = []
    original_read, original_gather = FrameBlocks.read, sdsd_blocks._gather

    def read(self: FrameBlocks, start: int, stop: int) -> typing.Any:
        reads.append(stop - start)
        return original_read(self, start, stop)

    def gather(blocks: dict[int, typing.Any], frames: typing.Any, block_frames: int) -> typing.Any:
        held.append(len(blocks))
        return original_gather(blocks, frames, block_frames)

    monkeypatch.setattr(FrameBlocks, "read", read)
    monkeypatch.setattr(sdsd_blocks, "_gather", gather)
    stack = open_stack(path)
    banded = align_stack(stack, block_frames=16, reference="banded", band_k=3)
    assert max(reads) <= 16 and sum(reads) == 96              # each frame read once (no large shift: one pass)
    assert max(held) <= 3
    held.clear()
    everything = align_stack(stack, block_frames=16, reference="all")
    assert max(held) == 6                                       # all pairs need every block's spectra
    assert np.allclose(banded.shifts_px[:, 0], [-(k % 2) for k in range(96)], atol=0.2)
    assert np.allclose(everything.shifts_px[:, 0], [-(k % 2) for k in range(96)], atol=0.2)
    stack.close()


def test_blocks_of_bad_frames_name_the_global_frame(tmp_path: pathlib.Path,
                                                    series: tuple[np.ndarray, np.ndarray]) -> None:
    frames = series[0].copy()
    frames[37, 5, 5] = np.nan
    path = tmp_path / "bad.npy"
    np.save(path, frames)
    with pytest.raises(InputError, match=r"frame\(s\) \[37\] contain NaN"):
        align_stack(open_stack(path), block_frames=16, reference="banded", band_k=3)
    with pytest.raises(InputError, match="at least 2"):
        FrameBlocks(open_stack(path).data[:1])


def test_aligned_blocks_equal_apply_shifts(series: tuple[np.ndarray, np.ndarray]) -> None:
    frames, true = series
    for crop in ("crop", "pad"):
        whole = apply_shifts(frames, true, crop=crop)
        parts = np.concatenate([block for _start, block in aligned_blocks(FrameBlocks(frames, 16), true, crop=crop)])
        assert parts.shape == whole.frames.shape
        assert np.array_equal(np.isnan(parts), np.isnan(whole.frames))
        assert np.array_equal(np.nan_to_num(parts), np.nan_to_num(whole.frames))


def test_cli_aligns_a_file_larger_than_the_block_budget(npy: pathlib.Path, tmp_path: pathlib.Path,
                                                        series: tuple[np.ndarray, np.ndarray],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget is set below the file's size (40 frames of 96^2 float32 = 1.5 MB > 16 frames): the command
    reads, measures and writes in blocks, and its outputs equal the in-memory alignment."""
    frames, _true = series
    budget = 16 * 96 * 96 * 4
    monkeypatch.setattr(sdsd_blocks, "BLOCK_BYTES", budget)
    monkeypatch.setattr("processing.stack.cli.BLOCK_BYTES", budget)
    assert frames.nbytes > budget
    reads: list[int] = []
    original_read = FrameBlocks.read

    def read(self: FrameBlocks, start: int, stop: int) -> typing.Any:
        reads.append(stop - start)
        return original_read(self, start, stop)

    monkeypatch.setattr(FrameBlocks, "read", read)
    output = tmp_path / "aligned.hspy"
    assert main(["align", "--input", str(npy), "--output", str(output), "--reference", "banded", "--band-k", "4",
                 "--crop", "pad"]) == 0
    assert max(reads) <= 16
    memory = align_stack(frames, reference="banded", band_k=4)
    aligned = apply_shifts(frames, memory.shifts_px, crop="pad")
    shifts = json.loads((tmp_path / "aligned.hspy.shifts.json").read_text())
    assert np.array_equal(np.asarray(shifts["shifts_px"]), memory.shifts_px)
    from rsciio.hspy import file_reader
    signals = {s["metadata"]["General"]["title"]: s for s in file_reader(str(output))}
    sequence = np.asarray(signals["aligned sequence"]["data"])
    assert sequence.shape == aligned.frames.shape
    assert np.array_equal(np.isnan(sequence), np.isnan(aligned.frames))
    assert np.array_equal(np.nan_to_num(sequence), np.nan_to_num(aligned.frames))
    assert np.allclose(signals["aligned sum"]["data"], aligned.total, rtol=1e-5, atol=1e-3)
