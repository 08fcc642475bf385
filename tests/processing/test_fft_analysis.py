"""Max-FFT, radial kymograph and orientation map: agreement with the plain reference, ground truth on synthetic
lattices with known angle/spacing, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from processing import registry
from processing.live import reference
from processing.base import Calibration, Context, Frame, InputError, KymographOutput, Notice, RGBImageOutput
from processing.live.fft_analysis import (MaxFFTProcessor, OrientationMapProcessor, RadialKymographProcessor,
                                     colour_wheel_legend, max_fft, orientation_map, radial_profile)
from spectrum_contrast import full_frame_power, peak_to_background

NM = Calibration(0.0, 0.05, "nm")


def wave(shape: tuple[int, int], *, angle_deg: float, spacing_px: float) -> np.ndarray:
    """cos lattice fringes whose wave vector points at ``angle_deg`` (counter-clockwise from +x, y up)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    a = np.radians(angle_deg)
    result: np.ndarray = np.cos(2 * np.pi / spacing_px * (xx * np.cos(a) - yy * np.sin(a)))
    return result


def noisy(signal: np.ndarray, *, seed: int, sigma: float = 1.0) -> np.ndarray:
    return (10.0 + signal + np.random.default_rng(seed).normal(0.0, sigma, signal.shape)).astype(np.float32)


def frame_of(data: np.ndarray, index: int = 0, dt_s: float = 0.1) -> Frame:
    return Frame(np.ascontiguousarray(data, np.float32), (NM, NM), index, index * dt_s)


# ---------------------------------------------------------------------------------------------------------------
# agreement with the plain reference

@pytest.mark.parametrize("shape,tile_px,step_px", [((256, 288), 64, 16), ((320, 320), 128, 32)])
def test_max_fft_agrees_with_reference(shape: tuple[int, int], tile_px: int, step_px: int) -> None:
    data = noisy(2.0 * wave(shape, angle_deg=35.0, spacing_px=7.0), seed=1)
    fast = max_fft(data, tile_px=tile_px, step_px=step_px)
    ref = reference.ref_max_fft(data, tile_px=tile_px, step_px=step_px)
    assert fast.shape == (tile_px, tile_px)
    assert np.max(np.abs(fast - ref) / np.abs(ref)) < 1e-4


@pytest.mark.parametrize("shape", [(256, 256), (200, 261), (255, 128)])
@pytest.mark.parametrize("statistic", ["mean", "max"])
def test_radial_profile_agrees_with_reference(shape: tuple[int, int], statistic: str) -> None:
    data = noisy(wave(shape, angle_deg=10.0, spacing_px=5.0), seed=2)
    fast = radial_profile(data, statistic=statistic)
    ref = reference.ref_radial_profile(data, statistic=statistic)
    assert fast.shape == (min(shape) // 2 + 1,)
    np.testing.assert_allclose(fast, ref, rtol=1e-4)


def test_orientation_map_agrees_with_reference() -> None:
    data = noisy(2.0 * wave((352, 320), angle_deg=70.0, spacing_px=9.0) * (np.arange(320) < 200), seed=3)
    fast = orientation_map(data)
    ref = reference.ref_orientation_map(data)
    assert (np.abs(fast.theta_deg - ref.theta_deg) < 1e-3).mean() >= 0.99
    np.testing.assert_allclose(fast.strength, ref.intensity, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# ground truth

@pytest.mark.parametrize("n,fraction,tile", [
    (512, 0.0195, 128), (870, 0.02, 256), (1024, 0.0195, 256), (2048, 0.02, 512),  # tile >= patch diameter
    (2048, 0.005, 128),  # the default tile at 2048^2: patches up to 0.5 % (diameter 164 px)
])
def test_max_fft_lifts_a_small_crystalline_patch_out_of_the_background(n: int, fraction: float, tile: int) -> None:
    # Peak/background (spectrum_contrast.peak_to_background): max within 2.5 px of the Friedel peaks over the
    # median of the annulus at the peak's |k|, in each spectrum as displayed (the Max-FFT's background is the max over all tiles, which inflates it by about
    # ln(number of tiles)). The gain over the full-frame FFT is largest with the tile about the patch size; for a
    # 2 % patch with tiles much smaller than it (2048^2, T=128: 0.5x; T=256: 1.7x) the full-frame FFT's coherent
    # gain, proportional to the patch area, wins. Figures: docs/processors-ground-truth.md.
    kx, ky = int(round(n / 8.5 * np.cos(0.35))), int(round(n / 8.5 * np.sin(0.35)))  # on the full-frame FFT grid
    angle = np.degrees(np.arctan2(ky, kx))
    spacing = n / np.hypot(kx, ky)
    yy, xx = np.mgrid[0:n, 0:n]
    patch = np.hypot(yy - 0.55 * n, xx - 0.4 * n) < np.sqrt(fraction * n * n / np.pi)
    assert patch.mean() <= 0.02
    data = noisy(1.5 * wave((n, n), angle_deg=angle, spacing_px=spacing) * patch, seed=4)
    full = full_frame_power(data)
    ratio_full = peak_to_background(full, (n / 2, n / 2), (-ky, kx))  # upper half: row = centre - ky
    maxfft = np.exp(max_fft(data, tile_px=tile, step_px=32).astype(np.float64))
    scale = tile / n
    ratio_max = peak_to_background(maxfft, (tile / 2, tile / 2), (-ky * scale, kx * scale))
    assert ratio_max >= 3.0 * ratio_full, (ratio_max, ratio_full)


def test_orientation_and_spacing_of_two_grains() -> None:
    n = 512
    left = wave((n, n), angle_deg=30.0, spacing_px=6.4)
    right = wave((n, n), angle_deg=125.0, spacing_px=9.0)
    grains = np.where(np.arange(n)[None, :] < n // 2, left, right)
    omap = orientation_map(noisy(1.5 * grains, seed=5))
    starts = np.arange(omap.theta_deg.shape[1]) * 32
    in_left = starts + 128 <= n // 2
    in_right = starts >= n // 2
    for cols, angle, spacing in ((in_left, 30.0, 6.4), (in_right, 125.0, 9.0)):
        theta = omap.theta_deg[:, cols]
        error = np.abs((theta - angle + 90.0) % 180.0 - 90.0)
        assert np.median(error) <= 2.0
        assert np.median(np.abs(1.0 / omap.spacing_cpp[:, cols] - spacing)) <= 0.3


def test_kymograph_peak_sits_at_the_lattice_frequency_and_vanishes_when_molten() -> None:
    n, spacing = 256, 8.0
    crystal = wave((n, n), angle_deg=25.0, spacing_px=spacing)
    states = ["crystal"] * 3 + ["molten"] * 3 + ["crystal"] * 3
    proc = RadialKymographProcessor(window_frames=64)
    for k, state in enumerate(states):
        signal = 2.0 * crystal if state == "crystal" else np.zeros((n, n))
        outputs = proc.process(frame_of(noisy(signal, seed=10 + k), k), Context())
    kymo = outputs[0]
    assert isinstance(kymo, KymographOutput)
    assert kymo.data.shape == (n // 2 + 1, len(states))
    true_bin = n / spacing
    assert kymo.y_calibration.units == "1/nm"
    assert kymo.y_calibration.scale == pytest.approx(1.0 / (n * NM.scale))
    assert kymo.time_calibration.scale == pytest.approx(0.1) and kymo.time_calibration.offset == 0.0
    for column, state in enumerate(states):
        profile = kymo.data[:, column]
        band = profile[5:]
        contrast = np.exp(profile[int(true_bin)] - np.median(profile[int(true_bin) - 8:int(true_bin) + 9]))
        if state == "crystal":
            assert abs(5 + int(np.argmax(band)) - true_bin) <= 1
            assert contrast > 10.0
        else:
            assert contrast < 3.0


def test_kymograph_window_rolls_and_keeps_the_latest_frames() -> None:
    proc = RadialKymographProcessor(window_frames=4, log_scale=False)
    rng = np.random.default_rng(6)
    profiles = []
    for k in range(7):
        data = rng.normal(size=(64, 64)).astype(np.float32)
        profiles.append(radial_profile(data))
        out = proc.process(frame_of(data, k, dt_s=0.5), Context())[0]
    assert isinstance(out, KymographOutput)
    assert out.data.shape == (33, 4)
    np.testing.assert_allclose(out.data, np.stack(profiles[3:], axis=1), rtol=1e-6)
    assert out.time_calibration.offset == pytest.approx(1.5) and out.time_calibration.scale == pytest.approx(0.5)
    proc.reset()
    assert proc.process(frame_of(data, 8), Context())[0].data.shape == (33, 1)  # type: ignore[union-attr]


def test_kymograph_restarts_with_a_notice_when_the_frame_size_changes() -> None:
    proc = RadialKymographProcessor()
    proc.process(frame_of(np.random.default_rng(7).normal(size=(64, 64))), Context())
    outputs = proc.process(frame_of(np.random.default_rng(8).normal(size=(96, 96)), 1), Context())
    assert outputs[0].data.shape == (49, 1)  # type: ignore[union-attr]
    assert any(isinstance(o, Notice) and "restarted" in o.text for o in outputs)


def test_max_fft_processor_output_and_calibration() -> None:
    out = MaxFFTProcessor().process(frame_of(noisy(wave((256, 256), angle_deg=0.0, spacing_px=8.0), seed=9)),
                                    Context())
    image = out[0]
    assert image.data.shape == (128, 128)  # type: ignore[union-attr]
    cal_y, cal_x = image.calibrations  # type: ignore[union-attr]
    assert cal_x.units == "1/nm" and cal_x.scale == pytest.approx(1.0 / (128 * 0.05))
    assert cal_x.offset + 64 * cal_x.scale == pytest.approx(0.0)  # zero frequency at the centre pixel
    peak = np.unravel_index(np.argmax(np.where(np.hypot(*np.mgrid[-64:64, -64:64]) > 4,
                                               image.data, -np.inf)),  # type: ignore[union-attr]
                            (128, 128))
    assert abs(cal_x.offset + cal_x.scale * peak[1]) == pytest.approx(1.0 / (8 * 0.05), abs=cal_x.scale)


def test_orientation_processor_outputs() -> None:
    data = noisy(1.5 * wave((384, 384), angle_deg=60.0, spacing_px=7.0), seed=11)
    out = OrientationMapProcessor().process(frame_of(data), Context())
    assert [o.name for o in out] == [name for name, _ in OrientationMapProcessor.OUTPUTS]
    rgb, legend = out
    assert isinstance(rgb, RGBImageOutput) and rgb.data.shape == (9 + 4, 9 + 4, 3) and rgb.data.dtype == np.uint8
    assert rgb.data[:2].max() == 0  # padded border is black
    assert rgb.calibrations[1].scale == pytest.approx(32 * 0.05)
    assert legend.data.shape == colour_wheel_legend().shape  # type: ignore[union-attr]
    blended = OrientationMapProcessor(blend_over_image=True, colour_by="spacing").process(frame_of(data), Context())
    assert blended[0].data.shape == (384, 384, 3)  # type: ignore[union-attr]
    assert blended[1].calibrations[1].units == "1/nm"  # type: ignore[union-attr]


def test_colour_wheel_is_symmetric_under_half_turns() -> None:
    wheel = colour_wheel_legend(65).astype(int)
    np.testing.assert_array_equal(wheel[10, 20], wheel[64 - 10, 64 - 20])
    assert wheel[0, 0].max() == 0 and wheel[32, 60].max() > 200


# ---------------------------------------------------------------------------------------------------------------
# bad input

@pytest.mark.parametrize("proc", [MaxFFTProcessor(), OrientationMapProcessor()])
def test_frame_smaller_than_a_tile_is_a_clear_error(proc: object) -> None:
    with pytest.raises(InputError, match="smaller than one 128 px tile"):
        proc.process(frame_of(np.ones((100, 300))), Context())  # type: ignore[attr-defined]


@pytest.mark.parametrize("proc", [MaxFFTProcessor(), OrientationMapProcessor(), RadialKymographProcessor()])
def test_nan_frame_is_a_clear_error(proc: object) -> None:
    data = np.ones((256, 256), np.float32)
    data[100:110, 50] = np.nan
    with pytest.raises(InputError, match="NaN"):
        proc.process(frame_of(data), Context())  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", [0.0, 7.0])
def test_flat_frames_give_finite_results(value: float) -> None:
    flat = frame_of(np.full((256, 256), value))
    assert np.isfinite(MaxFFTProcessor().process(flat, Context())[0].data).all()  # type: ignore[union-attr]
    assert np.isfinite(RadialKymographProcessor().process(flat, Context())[0].data).all()  # type: ignore[union-attr]
    rgb = OrientationMapProcessor().process(flat, Context())[0]
    assert rgb.data.shape == (9, 9, 3)  # type: ignore[union-attr]


def test_tile_size_must_be_a_power_of_two() -> None:
    from processing.base import ParameterError
    with pytest.raises(ParameterError, match="power of two"):
        MaxFFTProcessor(tile_size_px=96)
    with pytest.raises(ParameterError, match="outside its range"):
        OrientationMapProcessor(step_px=0)


def test_processors_are_registered() -> None:
    ids = {cls.processor_id for cls in registry.all_processors()}
    assert {"insitu.max_fft", "insitu.radial_kymograph", "insitu.fft_orientation",
            "insitu.threshold_tracking"} <= ids
