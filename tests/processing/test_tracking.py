"""Threshold + tracking: exact agreement with scikit-image, ground truth on simulated discs, bad input."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops
from skimage.morphology import convex_hull_image, disk

from processing.live import reference
from processing.base import (Calibration, CircleAnnotation, Context, Frame, InputError, Notice, TimeSeriesOutput,
                             make_frame)
from processing.live.tracking import (ThresholdTrackingProcessor, convex_area_px, find_regions, open_close,
                                 otsu_threshold, track_region)

NM = Calibration(0.0, 0.1, "nm")


def disc_frame(shape: tuple[int, int], centres: list[tuple[float, float]], radii: list[float], *, seed: int,
               background: float = 20.0, brightness: float = 40.0) -> np.ndarray:
    """Poisson counts: flat background plus bright discs, anti-aliased by 4x4 supersampling (exact area)."""
    sub = 4
    yy, xx = np.mgrid[0:shape[0] * sub, 0:shape[1] * sub]
    yy = (yy + 0.5) / sub - 0.5
    xx = (xx + 0.5) / sub - 0.5
    cover = np.zeros((shape[0] * sub, shape[1] * sub))
    for (cy, cx), r in zip(centres, radii):
        cover = np.maximum(cover, (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2)
    cover = cover.reshape(shape[0], sub, shape[1], sub).mean(axis=(1, 3))
    return np.random.default_rng(seed).poisson(background + brightness * cover).astype(np.float32)


def test_otsu_equals_scikit_image() -> None:
    rng = np.random.default_rng(1)
    for k in range(20):
        data = (rng.normal(size=(37, 53)) * rng.uniform(0.01, 1e3) + rng.uniform(-1e3, 1e3)).astype(np.float32)
        if k % 3 == 0:
            data = np.round(data)  # many exact ties with the bin edges
        assert otsu_threshold(data) == pytest.approx(float(threshold_otsu(data)), rel=0, abs=0)


def test_open_close_equals_scipy_with_ignore_borders() -> None:
    rng = np.random.default_rng(2)
    mask = rng.random((60, 70)) < 0.45
    fp = disk(2).astype(bool)
    expected = ndi.binary_dilation(ndi.binary_erosion(mask, fp, border_value=1), fp, border_value=0)
    expected = ndi.binary_erosion(ndi.binary_dilation(expected, fp, border_value=0), fp, border_value=1)
    np.testing.assert_array_equal(open_close(mask.astype(np.uint8), 2) > 0, expected)


def test_regions_and_convex_areas_equal_regionprops() -> None:
    rng = np.random.default_rng(3)
    for _ in range(60):
        h, w = rng.integers(1, 40, 2)
        mask = rng.random((h, w)) < rng.uniform(0.05, 0.9)
        regions = find_regions(mask.astype(np.uint8))
        props = regionprops(label(mask, connectivity=2))
        assert len(regions) == len(props)
        for i, p in enumerate(props):
            r = regions.region(i)
            assert r.area_px == p.area
            assert r.centroid_px == pytest.approx(p.centroid, abs=1e-9)
            assert r.bbox == (p.bbox[0], p.bbox[1], p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert convex_area_px(regions, i) == int(convex_hull_image(p.image).sum())


def test_track_region_equals_the_reference() -> None:
    data = disc_frame((300, 340), [(120.3, 200.7), (60.0, 60.0)], [30.0, 12.0], seed=4)
    fast = track_region(data)
    ref = reference.ref_threshold_tracking(data)
    assert fast.region is not None and ref.centroid_px is not None
    assert fast.threshold == ref.threshold
    np.testing.assert_array_equal(fast.mask > 0, ref.mask)
    assert fast.region.centroid_px == pytest.approx(ref.centroid_px, abs=1e-9)
    assert fast.area_convex_px == ref.area_convex_px and fast.region.area_px == ref.area_px


@pytest.mark.parametrize("shape,centre,radius", [((256, 320), (100.3, 150.8), 25.0), ((96, 112), (40.5, 41.2), 9.5),
                                                 ((256, 320), (200.0, 30.1), 18.3)])
def test_tracking_finds_the_simulated_particle(shape: tuple[int, int], centre: tuple[float, float],
                                               radius: float) -> None:
    # Otsu needs the particle to be a visible mode of the histogram (here >= 2.5 % of the field)
    second = (0.8 * shape[0], 0.8 * shape[1])
    data = disc_frame(shape, [centre, second], [radius, 0.6 * radius], seed=5)
    result = track_region(data)
    assert result.region is not None
    assert np.hypot(*np.subtract(result.region.centroid_px, centre)) <= 0.5
    assert result.area_convex_px == pytest.approx(np.pi * radius ** 2, rel=0.05)
    assert result.radius_px == pytest.approx(radius, rel=0.03)


def test_processor_marker_and_time_plot_follow_the_particle_in_a_roi() -> None:
    proc = ThresholdTrackingProcessor()
    roi = ((0.25, 0.125), (0.5, 0.75))  # top, left, height, width as fractions of the 256 x 320 source
    path = [(128.0 + 10 * np.sin(k), 150.0 + 12 * k) for k in range(5)]
    for k, (cy, cx) in enumerate(path):
        source = disc_frame((256, 320), [(cy, cx)], [14.0], seed=20 + k)
        frame = make_frame(source, calibrations=(NM, NM), frame_number=k, timestamp_s=0.2 * k, roi=roi)
        outputs = proc.process(frame, Context())
        marker = next(o for o in outputs if isinstance(o, CircleAnnotation))
        assert marker.visible
        assert np.hypot(marker.center_px[0] - cy, marker.center_px[1] - cx) <= 0.5  # source-frame pixels
        assert marker.radius_px == pytest.approx(14.0, rel=0.03)
    series = next(o for o in outputs if isinstance(o, TimeSeriesOutput))
    assert series.values.shape == (3, 5)
    np.testing.assert_allclose(series.times_s, 0.2 * np.arange(5))
    np.testing.assert_allclose(series.values[0], [0.1 * cx for _, cx in path], atol=0.05)  # calibrated x, nm
    np.testing.assert_allclose(series.values[1], [0.1 * cy for cy, _ in path], atol=0.05)
    np.testing.assert_allclose(series.values[2], np.pi * 14.0 ** 2 * 0.01, rtol=0.05)  # nm²
    assert series.units == ("nm", "nm", "nm²")
    image = outputs[0].data  # type: ignore[union-attr]
    assert image.shape == (128, 240) and set(np.unique(image)) <= {0, 1, 2} and (image == 2).sum() > 500


def test_particle_leaving_the_field_then_returning() -> None:
    proc = ThresholdTrackingProcessor(threshold_mode="manual", manual_level=40.0)
    frames = [disc_frame((128, 128), [(64.0, 64.0)], [10.0], seed=30),
              disc_frame((128, 128), [], [], seed=31),
              disc_frame((128, 128), [(30.0, 90.0)], [10.0], seed=32)]
    results = [proc.process(Frame(f, (NM, NM), k, float(k)), Context()) for k, f in enumerate(frames)]
    lost = results[1]
    assert any(isinstance(o, Notice) and "no region above the threshold" in o.text for o in lost)
    assert not next(o for o in lost if isinstance(o, CircleAnnotation)).visible
    assert next(o for o in lost if isinstance(o, TimeSeriesOutput)).values.shape == (3, 1)
    back = next(o for o in results[2] if isinstance(o, CircleAnnotation))
    assert back.visible and back.center_px == pytest.approx((30.0, 90.0), abs=0.5)
    assert next(o for o in results[2] if isinstance(o, TimeSeriesOutput)).values.shape == (3, 2)


def test_nearest_mode_follows_the_previous_region_not_the_largest() -> None:
    big, small = (60.0, 60.0), (180.0, 200.0)
    proc = ThresholdTrackingProcessor(track="nearest")
    first = disc_frame((256, 256), [small], [12.0], seed=40)
    proc.process(Frame(first), Context())
    second = disc_frame((256, 256), [big, (small[0] + 3, small[1] - 2)], [30.0, 12.0], seed=41)
    marker = next(o for o in proc.process(Frame(second), Context()) if isinstance(o, CircleAnnotation))
    assert marker.center_px == pytest.approx((small[0] + 3, small[1] - 2), abs=0.5)
    largest = ThresholdTrackingProcessor().process(Frame(second), Context())
    assert next(o for o in largest if isinstance(o, CircleAnnotation)).center_px == pytest.approx(big, abs=0.5)


def test_flat_frame_reports_no_region() -> None:
    outputs = ThresholdTrackingProcessor().process(Frame(np.full((64, 64), 5.0, np.float32)), Context())
    assert any(isinstance(o, Notice) for o in outputs)
    assert outputs[0].data.max() == 0  # type: ignore[union-attr]


def test_nan_frame_is_a_clear_error() -> None:
    data = np.ones((64, 64), np.float32)
    data[3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        ThresholdTrackingProcessor().process(Frame(data), Context())
    with pytest.raises(InputError, match="NaN"):
        ThresholdTrackingProcessor(threshold_mode="manual").process(Frame(data), Context())


def test_time_plot_keeps_the_last_history_points() -> None:
    proc = ThresholdTrackingProcessor(history_points=3)
    for k in range(5):
        data = disc_frame((64, 64), [(30.0, 20.0 + 4 * k)], [8.0], seed=50 + k)
        outputs = proc.process(Frame(data, (NM, NM), k, 0.5 * k), Context())
    series = next(o for o in outputs if isinstance(o, TimeSeriesOutput))
    np.testing.assert_allclose(series.times_s, [1.0, 1.5, 2.0])
    np.testing.assert_allclose(series.values[0], [0.1 * (20.0 + 4 * k) for k in (2, 3, 4)], atol=0.05)


def test_dark_particles_with_pre_smoothing_agree_with_the_reference() -> None:
    bright = disc_frame((200, 240), [(90.4, 120.2)], [22.0], seed=60)
    dark = (120.0 - bright).astype(np.float32)  # the same particle, dark on a bright background (bright field)
    fast = track_region(dark, dark=True, smooth_sigma_px=1.5)
    ref = reference.ref_threshold_tracking(dark, dark=True, smooth_sigma_px=1.5)
    assert fast.region is not None and ref.centroid_px is not None
    assert np.hypot(*np.subtract(fast.region.centroid_px, ref.centroid_px)) <= 0.1
    assert fast.area_convex_px == pytest.approx(ref.area_convex_px, rel=0.01)
    assert np.hypot(*np.subtract(fast.region.centroid_px, (90.4, 120.2))) <= 0.5
    marker = next(o for o in ThresholdTrackingProcessor(polarity="dark", threshold_mode="manual", manual_level=80.0)
                  .process(Frame(dark), Context()) if isinstance(o, CircleAnnotation))
    assert marker.center_px == pytest.approx((90.4, 120.2), abs=0.5)  # pixels below 80 counts
