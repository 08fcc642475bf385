"""Simulated scan through Swift's scan hardware source: per-pixel drift shear, field addressing, channels, noise."""
from __future__ import annotations

import math
import typing

import numpy as np
import pytest
from skimage.feature import match_template

from nion.utils import Geometry

from instrument_sim.drift import DriftModel
from instrument_sim.samples import truth_image
from stem_session import StemSession, stem_session


@pytest.fixture(scope="module")
def session() -> typing.Iterator[StemSession]:
    with stem_session(seed=3) as s:
        yield s


@pytest.fixture(autouse=True)
def _reset(session: StemSession) -> None:
    session.reset()


def _record(session: StemSession, **params: typing.Any) -> tuple[list[typing.Any], typing.Any]:
    fp = session.scan.get_current_frame_parameters()
    for name, value in params.items():
        setattr(fp, name, value)
    xdatas = session.scan.record_immediate(fp)
    truth = session.parts.scan_module.device.simulator.last_frame_truth
    return list(xdatas), truth


def _band_shift_px(reference: np.ndarray, band: np.ndarray, margin: int) -> float:
    """How far (px, +x) the content of ``band`` moved relative to ``reference``: normalised cross-correlation of
    the band's interior against the reference rows, parabolic sub-pixel peak."""
    r = match_template(reference, band[:, margin:-margin])[0]
    p = float(np.argmax(r))
    i = int(p)
    if 0 < i < len(r) - 1:
        a, b, c = r[i - 1], r[i], r[i + 1]
        p += 0.5 * (a - c) / (a - 2 * b + c)
    return margin - p


def test_linear_drift_shears_a_frame_as_predicted(session: StemSession) -> None:
    sample = session.parts.specimen.sample  # DyScO3-like lattice: sharp, well-sampled columns
    n, fov, dwell_us = 128, 4.0, 20.0
    px = fov / n
    line_s = n * dwell_us * 1e-6 + 30e-6
    rate_x = 0.45  # nm/s: 4.8 px over the frame, less than half a lattice period (unambiguous)
    session.instrument.sample_drift = DriftModel(rate_nm_per_s=(0.0, rate_x))
    xdatas, truth = _record(session, size=Geometry.IntSize(n, n), fov_nm=fov, pixel_time_us=dwell_us,
                            center_nm=Geometry.FloatPoint())
    image = xdatas[0].data.astype(np.float64)
    assert image.shape == (n, n)
    assert truth.geometry.flyback_s == pytest.approx(30e-6)
    # the drift-free field, as a test would render it for ground truth
    clean = truth_image(sample, shape_px=(n, n), fov_size_nm=(fov, fov), electrons_per_pixel=truth.electrons_per_pixel)
    shifts = []
    for band in range(0, n, 16):
        rows = slice(band, band + 16)
        t_mid = (band + 7.5) * line_s + (n / 2) * dwell_us * 1e-6  # mid-band, mid-line
        measured = _band_shift_px(clean[rows], image[rows], margin=6)
        assert measured == pytest.approx(rate_x * t_mid / px, abs=0.2), band  # content moves by +drift(t)
        shifts.append(measured)
    # a shear (each band further right), not a rigid shift: total = rate x time between the first and last band
    assert shifts[-1] - shifts[0] == pytest.approx(rate_x * 112 * line_s / px, abs=0.25)
    # no shear without drift
    session.instrument.sample_drift = DriftModel()
    xdatas, _ = _record(session, size=Geometry.IntSize(n, n), fov_nm=fov, pixel_time_us=dwell_us)
    still = [_band_shift_px(clean[b:b + 16], xdatas[0].data.astype(np.float64)[b:b + 16], 6) for b in range(0, n, 16)]
    assert np.abs(still).max() < 0.15
    # ground truth per pixel: the recorded content offset is the drift model at the pixel time
    np.testing.assert_allclose(truth.content_offset_nm[:, 1], rate_x * truth.times_s)


def test_pixel_times_include_dwell_and_flyback(session: StemSession) -> None:
    _, truth = _record(session, size=Geometry.IntSize(16, 24), pixel_time_us=5.0, fov_nm=4.0)
    t = truth.times_s.reshape(16, 24)
    assert np.diff(t, axis=1) == pytest.approx(5e-6)
    assert np.diff(t[:, 0]) == pytest.approx(24 * 5e-6 + truth.geometry.flyback_s)
    assert truth.geometry.flyback_s == pytest.approx(30e-6)  # device_kit default flyback_time_us


def test_subscan_center_csh_and_rotation_address_the_right_field(session: StemSession) -> None:
    n, fov = 64, 8.0
    base = dict(size=Geometry.IntSize(n, n), fov_nm=fov, pixel_time_us=1.0, center_nm=Geometry.FloatPoint())
    _, full = _record(session, **base)
    e_full = full.expected["HAADF"]
    # sub-scan of the top-right quarter
    _, sub = _record(session, **base, subscan_pixel_size=Geometry.IntSize(32, 32),
                     subscan_fractional_size=Geometry.FloatSize(0.5, 0.5),
                     subscan_fractional_center=Geometry.FloatPoint(0.25, 0.75))
    np.testing.assert_allclose(sub.expected["HAADF"], e_full[:32, 32:], rtol=1e-9)
    # scan offset (center_nm) by 5 px to the right: content moves 5 px left
    _, offset = _record(session, **{**base, "center_nm": Geometry.FloatPoint(0.0, 5 * fov / n)})
    np.testing.assert_allclose(offset.expected["HAADF"][:, :-5], e_full[:, 5:], rtol=1e-9)
    # probe shift CSH does the same
    session.instrument.SetVal2D("CSH", Geometry.FloatPoint(y=0.0, x=5 * fov / n * 1e-9))
    _, shifted = _record(session, **base)
    np.testing.assert_allclose(shifted.expected["HAADF"][:, :-5], e_full[:, 5:], rtol=1e-6)
    session.instrument.SetVal2D("CSH", Geometry.FloatPoint())
    # stage moves the other way round: stage +5 px shows the content that was 5 px to the right
    session.instrument.SetVal2D("stage_position_m", Geometry.FloatPoint(y=0.0, x=5 * fov / n * 1e-9))
    _, staged = _record(session, **base)
    np.testing.assert_allclose(staged.expected["HAADF"][:, :-5], e_full[:, 5:], rtol=1e-6)
    session.instrument.SetVal2D("stage_position_m", Geometry.FloatPoint())
    # 90 degree scan rotation: pixel (i, j) sees what the unrotated scan saw at (j, N - i)
    _, rotated = _record(session, **{**base, "rotation_rad": math.pi / 2})
    i, j = np.meshgrid(np.arange(1, n), np.arange(n), indexing="ij")
    np.testing.assert_allclose(rotated.expected["HAADF"][i, j], e_full[j, n - i], rtol=1e-6)
    # the ground-truth API renders the same drift-free field from Swift frame parameters (sub-scan, CSH included)
    fp = session.scan.get_current_frame_parameters()
    for name, value in {**base, "subscan_pixel_size": Geometry.IntSize(32, 32),
                        "subscan_fractional_size": Geometry.FloatSize(0.5, 0.5),
                        "subscan_fractional_center": Geometry.FloatPoint(0.25, 0.75)}.items():
        setattr(fp, name, value)
    np.testing.assert_allclose(session.parts.truth_image(fp), sub.expected["HAADF"], rtol=1e-9)


def test_haadf_and_maadf_channels_are_poisson_on_the_scattered_electrons(session: StemSession) -> None:
    session.scan.set_channel_enabled(1, True)
    try:
        xdatas, truth = _record(session, size=Geometry.IntSize(96, 96), fov_nm=4.0, pixel_time_us=4.0,
                                center_nm=Geometry.FloatPoint())
    finally:
        session.scan.set_channel_enabled(1, False)
    assert len(xdatas) == 2
    names = [x.metadata["hardware_source"]["channel_name"] for x in xdatas]
    assert names == ["HAADF", "MAADF"]
    electrons = 200e-12 * 4e-6 / 1.602176634e-19
    assert truth.electrons_per_pixel == pytest.approx(electrons)
    for xdata, name in zip(xdatas, names):
        measured = xdata.data.astype(np.float64)
        expected = truth.expected[name]
        z = (measured - expected) / np.sqrt(np.maximum(expected, 1e-9))
        assert abs(z.mean()) < 0.05 and z.var() == pytest.approx(1.0, rel=0.1)  # Poisson: variance = mean
    # HAADF has the stronger Z contrast (Z^1.7 vs Z^1.2): brightest/darkest column ratio is larger
    h, m = truth.expected["HAADF"], truth.expected["MAADF"]
    assert h.max() / np.percentile(h, 60) > m.max() / np.percentile(m, 60)
    # doubling the beam current doubles the signal
    session.instrument.SetVal("BeamCurrent", 400e-12)
    _, truth2 = _record(session, size=Geometry.IntSize(96, 96), fov_nm=4.0, pixel_time_us=4.0)
    np.testing.assert_allclose(truth2.expected["HAADF"], 2 * truth.expected["HAADF"], rtol=1e-9)
