"""Known-answer tests of the issue-13 pieces without Swift: scattered resampling, timing, section verdicts."""
from __future__ import annotations

import numpy as np
import pytest

from processing.spectroscopy.drift import DriftMeasurement
from processing.spectroscopy.si_assembly import resample_scattered
from processing.spectroscopy.si_result import PassGeometry, PassResult, SectionRecord, SIRunResult, assign_verdicts
from processing.spectroscopy.si_settings import DriftSISettings
from processing.spectroscopy.si_timing import ScanTiming, lines_for_interval, timing_from_deliveries, \
    timing_from_report


def _pattern(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.sin(0.45 * y) * np.cos(0.3 * x) + 0.05 * x


def test_resample_scattered_undoes_per_section_offsets_and_shear() -> None:
    """Sections of 4 rows scanned with their own offset errors and a linear shear: each pixel saw the content of
    q - r(q); resampling from those positions gives back the drift-free pattern (inside the covered area)."""
    h, w = 24, 24
    yy, xx = np.meshgrid(np.arange(h, dtype=float), np.arange(w, dtype=float), indexing="ij")
    rng = np.random.default_rng(0)
    r = np.zeros((h, w, 2))
    for row0 in range(0, h, 4):
        r[row0:row0 + 4] = rng.uniform(-0.8, 0.8, 2) + 0.05 * (yy[row0:row0 + 4, :, None] - row0)
    seen = _pattern(yy - r[..., 0], xx - r[..., 1])
    out, correction = resample_scattered(seen[..., None].astype(np.float32), r, np.ones((h, w), bool))
    truth = _pattern(yy, xx)
    inner = (slice(3, -3), slice(3, -3))
    assert np.abs(out[..., 0] - truth)[inner].max() < 0.15  # linear interpolation of a curved pattern
    assert np.abs(seen - truth)[inner].max() > 0.3  # the uncorrected error, for scale
    assert np.sqrt(np.mean((out[..., 0] - truth)[inner] ** 2)) < 0.2 * np.sqrt(np.mean((seen - truth)[inner] ** 2))
    assert np.isfinite(correction).all() and np.abs(correction).max() <= np.abs(r).max() + 1e-9


def test_timing_from_report_uses_per_line_times_and_interval_uses_measured_period() -> None:
    report = type("R", (), {"first_pixel_time_s": 10.0, "pixel_period_s": 0.0025, "line_period_s": 0.045,
                            "shape_px": (2, 16), "line_start_times_s": (10.0, 10.1),
                            "line_pixel_periods_s": (0.0025, 0.003)})()
    timing = timing_from_report(report, (2, 16))
    assert timing is not None and timing.source == "scan device"
    t = timing.pixel_times_s(2, 16)
    assert t[1, 0] == pytest.approx(10.1) and t[1, 2] - t[1, 1] == pytest.approx(0.003)
    assert timing_from_report(report, (3, 16)) is None  # another frame's report is not used
    # one delivery: the section span with the measured start-up delay gives the period (not the exposure)
    single = timing_from_deliveries([(11.0, 32)], (2, 16), flyback_pixels=2, t_start_s=10.0, t_end_s=11.0,
                                    nominal_period_s=0.002, start_delay_s=0.1)
    assert single.source == "section span" and single.pixel_period_s == pytest.approx(0.9 / 36)
    # seconds to lines at the measured line period (0.045 s), the start-up delay counted in the interval
    assert lines_for_interval(0.6, 0.045, 64, overhead_s=0.15) == 10
    assert ScanTiming(0.0, 0.002, 0.036, "nominal").pixel_times_s(1, 3).tolist() == [[0.0, 0.002, 0.004]]


def _m(index: int, t: float, **kw: object) -> DriftMeasurement:
    return DriftMeasurement(index, t, (0.0, 0.0), (0.0, 0.0), (0.1, 0.1), (0.0, 0.0), 0.99, True, **kw)  # type: ignore[arg-type]


def test_verdicts_flag_what_cannot_be_trusted() -> None:
    result = SIRunResult(DriftSISettings(si_size_px=(12, 4)))
    result.passes.append(PassResult(0, PassGeometry((0.25, 0.25, 0.5, 0.5), (12, 4), 0.002), 8, label="EELS"))

    def section(i: int, row0: int, t0: float, **kw: object) -> SectionRecord:
        return SectionRecord(i, 0, row0, 4, t0, t0 + 1.0, (0.0, 0.0), t0 + 0.5, 16, **kw)  # type: ignore[arg-type]
    result.sections = [section(0, 0, 1.0), section(1, 4, 3.0), section(2, 4, 5.0, repeat=1),
                       section(3, 8, 7.0)]
    result.sections[1].superseded = True
    result.measurements = (_m(0, 0.5), _m(1, 2.5), _m(2, 4.5, jump_nm=(0.1, 0.0)), _m(3, 6.5, ambiguous=True))
    assign_verdicts(result, correct_drift=True)
    s0, s1, s2, s3 = result.sections
    assert s0.trusted and s0.measurement_before == 0 and s0.measurement_after == 1
    assert s2.flags and "ambiguous" in s2.flags[0]  # the measurement after the re-acquisition is ambiguous
    assert not s3.trusted and any("no drift measurement after" in f for f in s3.flags)
    assert any("(before) ambiguous" in f for f in s3.flags)
    assert [r.index for r in result.current_sections()] == [0, 2, 3]
