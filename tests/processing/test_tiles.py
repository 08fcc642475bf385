"""Tile-FFT engine and worker pool: exactness against brute-force per-tile FFTs and the plain reference."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from processing.execution import parallel
from processing.live import reference
from processing.live import tiles
from processing.base import Context, Frame, FrameMemo, InputError, ParameterError


def lattice_frame(shape: tuple[int, int], *, seed: int, angle_deg: float = 30.0, spacing_px: float = 6.4,
                  patch: tuple[slice, slice] | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    a = np.radians(angle_deg)
    wave = np.cos(2 * np.pi / spacing_px * (xx * np.cos(a) - yy * np.sin(a)))
    if patch is not None:
        mask = np.zeros(shape)
        mask[patch] = 1.0
        wave *= mask
    return (10.0 + 2.0 * wave + rng.normal(0.0, 1.0, shape)).astype(np.float32)


def test_tile_grid_counts_like_the_strided_reference() -> None:
    assert tiles.tile_grid((870, 870), 128, 32) == (24, 24)
    assert tiles.tile_grid((2048, 2048), 128, 32) == (61, 61)
    assert tiles.tile_grid((300, 128), 128, 64) == (3, 1)


def test_tile_grid_rejects_small_frames_and_bad_sizes() -> None:
    with pytest.raises(InputError, match="smaller than one 128 px tile"):
        tiles.tile_grid((100, 500), 128, 32)
    with pytest.raises(ParameterError, match="power of two"):
        tiles.tile_grid((500, 500), 96, 32)
    with pytest.raises(ParameterError, match="step"):
        tiles.tile_grid((500, 500), 64, 0)


@pytest.mark.parametrize("tile_px,step_px", [(64, 16), (32, 24), (16, 40)])
def test_max_power_equals_brute_force_per_tile_fft(tile_px: int, step_px: int) -> None:
    data = np.random.default_rng(1).normal(size=(300, 421)).astype(np.float32)
    result = tiles.tile_pass(data, tile_px=tile_px, step_px=step_px)
    window = np.sqrt(np.outer(np.hanning(tile_px), np.hanning(tile_px)))
    n_y, n_x = result.grid
    expected = np.zeros((tile_px, tile_px // 2 + 1))
    for i in range(n_y):
        for j in range(n_x):
            tile = data[i * step_px:i * step_px + tile_px, j * step_px:j * step_px + tile_px]
            expected = np.maximum(expected, np.abs(np.fft.rfft2(window * tile)) ** 2)
    assert result.max_power_half.shape == expected.shape
    np.testing.assert_allclose(result.max_power_half, expected, rtol=2e-5, atol=1e-6 * expected.max())


def test_full_shifted_plane_completes_the_half_plane() -> None:
    tile = np.random.default_rng(2).normal(size=(32, 32))
    half = (np.abs(np.fft.rfft2(tile)) ** 2).astype(np.float32)
    full = np.fft.fftshift(np.abs(np.fft.fft2(tile)) ** 2)
    np.testing.assert_allclose(tiles.full_shifted_plane(half), full, rtol=1e-5)


def test_peaks_agree_with_the_reference_colour_map() -> None:
    data = lattice_frame((320, 352), seed=3, patch=(slice(0, 200), slice(0, 352)))
    fast = tiles.tile_pass(data, tile_px=64, step_px=16, peaks=tiles.PeakSpec())
    ref = reference.ref_orientation_map(data, tile_px=64, step_px=16)
    assert fast.theta_deg is not None and fast.strength is not None and fast.spacing_cpp is not None
    same = np.abs(fast.theta_deg - ref.theta_deg) < 1e-3
    assert same.mean() >= 0.99
    np.testing.assert_allclose(fast.strength, ref.intensity, rtol=1e-5)
    np.testing.assert_allclose(fast.spacing_cpp[same], ref.spacing_cpp[same], rtol=1e-6)


def test_peaks_without_smoothing_agree_with_the_reference() -> None:
    data = lattice_frame((256, 256), seed=4)
    fast = tiles.tile_pass(data, tile_px=64, step_px=32, peaks=tiles.PeakSpec(smooth=False))
    ref = reference.ref_orientation_map(data, tile_px=64, step_px=32, pre_filter=False)
    assert fast.theta_deg is not None
    assert (np.abs(fast.theta_deg - ref.theta_deg) < 1e-3).mean() >= 0.99


def test_centre_mask_shape() -> None:
    mask = tiles.centre_mask(128, 10.0, 2)
    assert mask[64, 64] and mask[64 - 6, 64] and not mask[64 - 7, 62]
    assert mask[0, 63] and mask[0, 65] and not mask[0, 62] and not mask[0, 66]  # vertical bar, 3 px wide
    assert mask[63, 0] and not mask[62, 0]  # horizontal bar


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_tile_pass_rejects_non_finite_pixels_inside_tiles(bad: float) -> None:
    data = np.ones((128, 150), np.float32)
    data[70, 100] = bad
    with pytest.raises(InputError, match="NaN or infinite"):
        tiles.tile_pass(data, tile_px=64, step_px=32)
    data[70, 100] = 1.0
    data[:, 149] = bad  # outside every tile (W=150: tiles end at column 128): does not affect the result
    assert np.isfinite(tiles.tile_pass(data, tile_px=64, step_px=32).max_power_half).all()


def test_map_chunks_order_errors_and_nesting() -> None:
    assert parallel.map_chunks(lambda x: x * 2, range(20)) == [2 * x for x in range(20)]
    nested = parallel.map_chunks(lambda x: sum(parallel.map_chunks(lambda y: y + x, range(5))), range(6))
    assert nested == [sum(range(5)) + 5 * x for x in range(6)]

    def fail(x: int) -> int:
        if x == 3:
            raise ValueError("task 3 failed")
        return x

    with pytest.raises(ValueError, match="task 3 failed"):
        parallel.map_chunks(fail, range(8))


def test_task_group_shared_by_two_threads_runs_each_task_once() -> None:
    calls: list[int] = []
    lock = threading.Lock()

    def task(x: int) -> int:
        with lock:
            calls.append(x)
        return x * x

    group = parallel.TaskGroup(task, range(50))
    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(group.join())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == list(range(50))
    assert results[0] == [x * x for x in range(50)]


def test_max_fft_and_orientation_share_one_tile_pass() -> None:
    from processing.live.fft_analysis import MaxFFTProcessor, OrientationMapProcessor

    class CountingMemo(FrameMemo):
        keys: list[object] = []

        def get(self, key, fn):  # type: ignore[no-untyped-def]
            self.keys.append(key)
            return super().get(key, fn)

    orientation = OrientationMapProcessor(tile_size_px=64, step_px=32)
    max_fft = MaxFFTProcessor(tile_size_px=64, step_px=32)
    memo = CountingMemo()
    frame = Frame(lattice_frame((256, 256), seed=5))
    # as the scheduler does: each processor's context names the other processors fed the same frame (its peers)
    processors = [orientation, max_fft]
    contexts = {id(p): Context(memo=memo, peers=[q for q in processors if q is not p]) for p in processors}
    parallel.map_chunks(lambda p: p.process(frame, contexts[id(p)]), processors)
    assert len(memo.keys) == 2 and memo.keys[0] == memo.keys[1]
    # without peers Max-FFT cannot know an orientation map needs the peak search: two different passes
    alone = CountingMemo()
    alone.keys = []
    max_fft.process(frame, Context(memo=alone))
    assert alone.keys[0] != memo.keys[0]
    del orientation
