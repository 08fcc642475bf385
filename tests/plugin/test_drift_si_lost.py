"""Issue 13 (session 5): once the tracking is lost on a periodic reference the rest of the pass is one section.

The offset is then held near the last trusted drift and no reference scan can regain the register, so each further
section only adds a reference scan and a section start-up (~1 s each under load): the "uncorrected since the last
trusted drift" part of the SI took longer than the uncorrected run and ended worse than it (session-4 sweep seeds
7006, 7015, 7019, 5016, 5021). Glue rule only (the lost state itself: tests/processing/test_drift_guard.py); no
devices, no timing."""
from __future__ import annotations

import types

from nionswift_plugin.insitu import drift_si
from processing.spectroscopy.si_result import PassGeometry


def _lines(lost: bool, *, row0: int, interval_s: float | None = None) -> int:
    settings = drift_si.DriftSISettings(si_size_px=(24, 24), section_lines=4, section_interval_s=interval_s)
    run = drift_si.DriftCorrectedSI(settings)
    run.estimator = types.SimpleNamespace(tracking_lost=lost, alias_spacing_nm=0.395,  # type: ignore[assignment]
                                          alias_safe_interval_s=lambda t, wanted: wanted)
    run._line_period_s = 0.06
    return run._section_lines(PassGeometry(settings.scan_field, (24, 24), 0.002), row0)


def test_lost_tracking_scans_the_rest_of_the_pass_in_one_section() -> None:
    assert _lines(False, row0=8) == 4 and _lines(False, row0=8, interval_s=0.5) < 16  # tracked: the setting
    assert _lines(True, row0=8) == 16 and _lines(True, row0=8, interval_s=0.5) == 16  # old code: the setting (4, the interval)
    assert _lines(True, row0=23) == 1
