"""Tests of processing.spectroscopy.si_assembly: section assembly with a row mask, shear from a rate, shear removal."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

from processing.base import InputError
from processing.spectroscopy.si_assembly import SIAssembler, pixel_times_s, resample_displacement, shear_displacement_px


def test_assembler_keeps_exactly_the_acquired_rows() -> None:
    a = SIAssembler(8, 5, 3)
    a.add_rows(0, np.ones((2, 5, 3)))
    a.add_rows(2, 2 * np.ones((2, 5, 3)))
    assert a.acquired_rows == 4 and not a.complete
    assert a.valid_rows.tolist() == [True] * 4 + [False] * 4
    assert (a.data[4:] == 0).all() and (a.data[2:4] == 2).all()
    a.add_rows(4, 3 * np.ones((2, 5, 3)), n_pixels=7)  # aborted inside the section: 1 row + 2 pixels
    assert a.acquired_rows == 5 and a.acquired_pixels == 27
    assert (a.data[5, :2] == 3).all() and (a.data[5, 2:] == 0).all()
    assert a.valid_pixels[5].tolist() == [True, True, False, False, False]
    with pytest.raises(InputError, match="outside"):
        a.add_rows(7, np.ones((2, 5, 3)))
    with pytest.raises(InputError, match="expected"):
        a.add_rows(4, np.ones((2, 4, 3)))


def test_pixel_times() -> None:
    t = pixel_times_s(10.0, 2, 3, 0.1, flyback_s=0.05)
    assert t[0].tolist() == pytest.approx([10.05, 10.15, 10.25])
    assert t[1, 0] == pytest.approx(10.0 + 0.35 + 0.05)


def test_shear_removed_by_resampling() -> None:
    """A section scanned with a fixed offset while the specimen drifts at a known rate is sheared; resampling
    with the displacement predicted from that rate restores the drift-free image."""
    rng = np.random.default_rng(0)
    truth = scipy.ndimage.gaussian_filter(rng.normal(size=(40, 40)), 2.0)
    pixel_nm, rate = (0.5, 0.5), (0.003, -0.0025)  # nm/s: up to 2.4 px of shear
    times = pixel_times_s(0.0, 40, 40, 0.5)
    disp = shear_displacement_px(times, 400.0, rate, pixel_nm)  # offset computed for the section middle
    yy, xx = np.mgrid[:40, :40].astype(float)
    # pixel q shows the specimen point at q - r(q)
    sheared = scipy.ndimage.map_coordinates(truth, [yy - disp[..., 0], xx - disp[..., 1]], order=3, mode="nearest")
    corrected = resample_displacement(sheared, disp)
    inner = (slice(4, -4), slice(4, -4))
    err_before = np.sqrt(np.mean((sheared - truth)[inner] ** 2))
    err_after = np.sqrt(np.mean((corrected - truth)[inner] ** 2))
    assert np.abs(disp).max() > 1.5  # a visible shear
    assert err_after < 0.25 * err_before


def test_resample_spectrum_image_and_invalid_rows() -> None:
    si = np.arange(6 * 4 * 2, dtype=float).reshape(6, 4, 2)
    disp = np.zeros((6, 4, 2))
    disp[..., 1] = 1.0  # every pixel takes its right neighbour
    valid = np.array([True] * 4 + [False] * 2)
    out = resample_displacement(si, disp, valid_rows=valid)
    assert out[0, 0].tolist() == si[0, 1].tolist()
    assert out[0, 3].tolist() == si[0, 3].tolist()  # clamped at the edge
    assert (out[4:] == 0).all()
    disp[..., 0] = 3.0  # would reach the unacquired rows: clamped to the last valid row
    out = resample_displacement(si, disp, valid_rows=valid)
    assert out[3, 0].tolist() == si[3, 1].tolist()
