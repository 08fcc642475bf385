"""Defocus through the weak-object CTF: contrast reversals, fringe visibility, true defocus in the record."""
from __future__ import annotations

import typing

import numpy as np
import pytest

from instrument_sim import ctf
from instrument_sim.configuration import (SimulatorConfiguration, build_simulator, insitu_camera_factory,
                                          unregister_simulator)
from instrument_sim.drift import DriftModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.instrument import ManualClock


def test_wavelength_and_identity_at_zero_aberrations() -> None:
    assert ctf.electron_wavelength_nm(200e3) == pytest.approx(2.5079e-3, rel=1e-3)
    assert ctf.electron_wavelength_nm(300e3) == pytest.approx(1.9687e-3, rel=1e-3)
    k = np.linspace(0, 5, 50)
    assert np.array_equal(ctf.transfer(k, defocus_m=0.0, cs_m=0.0, high_tension_V=200e3), np.ones(50))
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    assert ctf.apply_ctf(image, pixel_size_nm=0.1, defocus_m=0.0, cs_m=0.0, high_tension_V=200e3,
                         mean_level=0.5) is image


def test_transfer_reverses_sign_with_defocus() -> None:
    # at k = 1/0.3 nm^-1 the transfer changes sign between two defoci (contrast reversal of 0.3 nm fringes)
    k = np.array([1 / 0.3])
    values = [float(ctf.transfer(k, defocus_m=d * 1e-9, cs_m=1.2e-3, high_tension_V=200e3)[0])
              for d in np.linspace(-100, 100, 81)]
    signs = np.sign(values)
    assert np.count_nonzero(np.diff(signs)) >= 4
    # Scherzer focus transfers low frequencies with phase contrast (|T| ~ phase_ratio)
    scherzer = ctf.scherzer_defocus_m(1.2e-3, 200e3)
    assert scherzer == pytest.approx(-63.4e-9, rel=0.02)
    t = ctf.transfer(np.array([2.0]), defocus_m=scherzer, cs_m=1.2e-3, high_tension_V=200e3)
    assert abs(float(t[0])) > 1.5


def test_bad_high_tension() -> None:
    with pytest.raises(SimulatorParameterError, match="high tension"):
        ctf.electron_wavelength_nm(0.0)


@pytest.fixture
def camera() -> typing.Iterator[typing.Any]:
    handle = build_simulator(SimulatorConfiguration(
        seed=5, frame_shape=(256, 256), n_particles=3, melt_period_s=None, clock=ManualClock(1.0),
        drift=DriftModel(), device_factories=[insitu_camera_factory],
        scene_options={"lattice_spacings_nm": (0.272,)}))
    try:
        yield handle
    finally:
        unregister_simulator(handle)


def _set(handle: typing.Any, defocus_nm: float, cs_mm: float = 1.2) -> typing.Any:
    handle.instrument.set_value("C10", defocus_nm * 1e-9)
    handle.instrument.set_value("C30", cs_mm * 1e-3)
    return handle.insitu_camera.simulator


def _fringe_amplitude(frame: np.ndarray, spacing_px: float) -> float:
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(frame - frame.mean())))
    n = frame.shape[0]
    yy, xx = np.indices(spectrum.shape) - n // 2
    r = np.hypot(yy, xx)
    ring = np.abs(r - n / spacing_px) < 2.0
    return float(spectrum[ring].max())


@pytest.mark.parametrize("seed", [0, 1])
def test_camera_image_changes_with_defocus_and_records_it(camera: typing.Any, seed: int) -> None:
    frames = {}
    for defocus in (0.0, -5.0, 5.0):
        sim = _set(camera, defocus, cs_mm=0.0)
        sim.optics = ctf.Optics(phase_ratio=3.0)
        frames[defocus] = sim.render(t_s=1.0 + seed, exposure_s=2.0)
        assert sim.frame_log[-1].defocus_m == pytest.approx(defocus * 1e-9)
        assert sim.frame_log[-1].as_metadata()["defocus_m"] == pytest.approx(defocus * 1e-9)
    in_focus = frames[0.0]
    # over- and underfocus give opposite phase contrast: their deviations from focus anti-correlate
    under = frames[-5.0] - in_focus
    over = frames[5.0] - in_focus
    assert np.corrcoef(under.ravel(), over.ravel())[0, 1] < -0.3
    # the image at zero aberrations is the scene itself (unchanged camera)
    assert np.corrcoef(in_focus.ravel(), frames[-5.0].ravel())[0, 1] < 0.99


def test_fringe_visibility_follows_the_transfer(camera: typing.Any) -> None:
    # 0.272 nm fringes fade and come back as the defocus changes, as |T(1/0.272 nm)| predicts
    defoci = np.linspace(-60, 60, 25)
    amplitudes = []
    for defocus in defoci:
        sim = _set(camera, float(defocus))
        frame = sim.render(t_s=1.0, exposure_s=2.0)
        amplitudes.append(_fringe_amplitude(frame, 0.272 / 0.06))
    predicted = np.abs([ctf.transfer(np.array([1 / 0.272]), defocus_m=d * 1e-9, cs_m=1.2e-3,
                                     high_tension_V=200e3, optics=sim.optics)[0] for d in defoci])
    assert np.max(amplitudes) > 3 * np.min(amplitudes)
    assert np.corrcoef(amplitudes, predicted)[0, 1] > 0.9
