"""Copy, noise reduction and live difference against plain numpy/scipy and known answers."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

from processing import Context, ParameterError, make_frame
from processing.live.filters import (CopyProcessor, LiveDifferenceProcessor, NoiseReductionProcessor,
                                     ewma_span_weight, gaussian_blur, median_blur)
from processing.alignment.registration import phase_correlation_shift_px


@pytest.mark.parametrize("shape", [(64, 64), (37, 91), (3, 5)])
@pytest.mark.parametrize("sigma_px", [0.7, 2.0, 5.0])
def test_gaussian_blur_equals_scipy_reflect(shape: tuple[int, int], sigma_px: float) -> None:
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    expected = scipy.ndimage.gaussian_filter(image, sigma_px, mode="reflect")
    np.testing.assert_allclose(gaussian_blur(image, sigma_px), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size_px", [1, 3, 5, 7])
@pytest.mark.parametrize("shape", [(64, 48), (5, 9)])
def test_median_blur_equals_scipy_reflect(size_px: int, shape: tuple[int, int]) -> None:
    image = np.random.default_rng(1).random(shape, dtype=np.float32)
    expected = scipy.ndimage.median_filter(image, size=size_px, mode="reflect")
    np.testing.assert_array_equal(median_blur(image, size_px), expected)


def test_noise_reduction_reduces_shot_noise_on_a_flat_region() -> None:
    rng = np.random.default_rng(2)
    noisy = rng.poisson(100, (128, 128)).astype(np.float32)
    out = NoiseReductionProcessor(median_size_px=3, sigma_px=2.0).process(make_frame(noisy), Context())[0].data
    assert out[8:-8, 8:-8].std() < noisy.std() / 4, f"{out.std()=} {noisy.std()=}"
    assert abs(out.mean() - 100) < 1


def test_noise_reduction_rejects_even_median_size() -> None:
    with pytest.raises(ParameterError, match="odd"):
        NoiseReductionProcessor(median_size_px=4)


def test_copy_processor_returns_the_roi_with_shifted_calibration() -> None:
    data = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    frame = make_frame(data, roi=((0.5, 0.5), (0.5, 0.5)))
    out = CopyProcessor().process(frame, Context())[0]
    np.testing.assert_array_equal(out.data, data[10:20, 15:30])
    assert frame.origin_px == (10, 15)


def _reference_ewma_difference(frames: list[np.ndarray], n_fast: float, n_slow: float) -> np.ndarray:
    # the averages are float64 (so chunked runs merge exactly), the output float32
    p_fast, p_slow = ewma_span_weight(n_fast), ewma_span_weight(n_slow)
    fast = slow = frames[0].astype(np.float64)
    for f in frames[1:]:
        fast = p_fast * fast + (1.0 - p_fast) * f.astype(np.float64)
        slow = p_slow * slow + (1.0 - p_slow) * f.astype(np.float64)
    return np.abs(fast - slow).astype(np.float32)


def test_live_difference_is_bit_identical_to_the_numpy_reference() -> None:
    rng = np.random.default_rng(3)
    frames = [rng.random((33, 47), dtype=np.float32) for _ in range(12)]
    processor = LiveDifferenceProcessor(fast=2, slow=20)
    for i, f in enumerate(frames):
        out = processor.process(make_frame(f, frame_number=i), Context())[0].data
    np.testing.assert_array_equal(out, _reference_ewma_difference(frames, 2, 20))
    assert processor.frames_integrated == len(frames)


def test_live_difference_lights_up_exactly_where_the_sample_changed() -> None:
    rng = np.random.default_rng(4)
    scene = np.full((64, 64), 100.0, np.float32)
    processor = LiveDifferenceProcessor(fast=2, slow=20)
    for i in range(30):
        frame = scene.copy()
        if i >= 25:  # a particle appears (e.g. recrystallises) in the last frames
            frame[20:30, 40:50] += 80
        processor.process(make_frame(frame + rng.normal(0, 1, frame.shape).astype(np.float32)), Context())
    out = processor.process(make_frame(frame), Context())[0].data
    changed = np.zeros_like(out, bool)
    changed[20:30, 40:50] = True
    assert out[changed].min() > 5 * out[~changed].max(), f"{out[changed].min()=} {out[~changed].max()=}"


def test_live_difference_in_seconds_accounts_for_skipped_frames() -> None:
    processor = LiveDifferenceProcessor(fast=0.1, slow=10.0, time_in_seconds=True)
    processor.process(make_frame(np.zeros((4, 4), np.float32), timestamp_s=0.0), Context())
    out = processor.process(make_frame(np.ones((4, 4), np.float32), timestamp_s=1.0), Context())[0].data
    expected = (1 - np.exp(-1 / 0.1)) - (1 - np.exp(-1 / 10.0))
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_aligned_live_difference_ignores_pure_drift() -> None:
    rng = np.random.default_rng(5)
    base = scipy.ndimage.gaussian_filter(rng.random((96, 96)), 3).astype(np.float32) * 100
    plain, aligned = LiveDifferenceProcessor(), LiveDifferenceProcessor(align=True)
    for i in range(15):
        frame = scipy.ndimage.shift(base, (0.7 * i, -0.5 * i), order=3, mode="wrap").astype(np.float32)
        out_plain = plain.process(make_frame(frame), Context())[0].data
        out_aligned = aligned.process(make_frame(frame), Context())[0].data
    inner = (slice(16, -16), slice(16, -16))
    assert out_aligned[inner].mean() < out_plain[inner].mean() / 3, (out_aligned.mean(), out_plain.mean())


def test_measure_shift_recovers_a_known_subpixel_translation() -> None:
    rng = np.random.default_rng(6)
    reference = scipy.ndimage.gaussian_filter(rng.random((128, 128)), 2).astype(np.float32)
    moving = scipy.ndimage.fourier_shift(np.fft.fftn(reference), (-3.4, 5.25))
    moving = np.fft.ifftn(moving).real.astype(np.float32)
    dy, dx = phase_correlation_shift_px(reference, moving)
    assert abs(dy - 3.4) < 0.15 and abs(dx + 5.25) < 0.15, f"{dy=} {dx=}"


def test_live_difference_restarts_when_the_roi_size_changes() -> None:
    processor = LiveDifferenceProcessor()
    processor.process(make_frame(np.ones((8, 8), np.float32)), Context())
    out = processor.process(make_frame(np.ones((4, 6), np.float32)), Context())[0].data
    assert out.shape == (4, 6) and processor.frames_integrated == 1
