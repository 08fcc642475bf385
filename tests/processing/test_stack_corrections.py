"""Camera corrections against the simulator's artefact truth: after dark + gain correction the flat-field
non-uniformity falls below the shot noise; defects found and patched; the live processor."""
from __future__ import annotations

import numpy as np
import pytest

from instrument_sim.detector import CameraArtefacts
from processing.base import Context, Frame, InputError
from processing.registry import all_processors
from processing.stack.corrections import (CameraCorrections, CameraCorrectionsProcessor, find_defects,
                                          gain_from_flats)

SHAPE = (96, 128)


def _frames(artefacts: CameraArtefacts, electrons: float, exposure_s: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([artefacts.read(rng.poisson(np.full(SHAPE, electrons)).astype(np.float64), exposure_s=exposure_s,
                                    rng=rng) for _ in range(n)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flat_field_non_uniformity_falls_below_shot_noise(seed: int) -> None:
    artefacts = CameraArtefacts(seed=seed, gain_spread=0.05, vignetting=0.2)
    exposure_s, electrons = 0.5, 2000.0
    dark = _frames(artefacts, 0.0, exposure_s, 8, seed + 10).mean(axis=0)
    gain = gain_from_flats(_frames(artefacts, electrons, exposure_s, 16, seed + 20), dark)
    defects = find_defects(dark=dark, gain=gain)
    truth = artefacts.maps(SHAPE)
    assert (defects & (truth.hot | truth.dead)).sum() == (truth.hot | truth.dead).sum()   # all found
    assert defects.sum() <= (truth.hot | truth.dead).sum() + 3                          # few false alarms
    corrections = CameraCorrections(dark=dark, gain=gain, defects=defects)
    test = _frames(artefacts, electrons, exposure_s, 1, seed + 30)[0]
    raw_ok = test[~defects] - dark[~defects]
    corrected = corrections.apply(test)
    shot = np.sqrt(electrons)
    assert np.std(raw_ok) > 2 * shot                       # before: dominated by the gain map (5 % of 2000 = 100)
    # after: the spread is the shot noise (plus the read/dark noise and the reference noise), nothing more
    assert np.std(corrected) < 1.15 * shot
    residual = corrections.apply(_frames(artefacts, electrons, exposure_s, 16, seed + 40).mean(axis=0))
    assert np.std(residual) < shot / np.sqrt(16) * 1.6    # fixed-pattern residual below the shot noise of 16 frames
    assert np.isfinite(corrected).all() and abs(float(corrected.mean()) - electrons) < 0.02 * electrons


def test_patching_and_shape_errors() -> None:
    frame = np.ones((10, 10), np.float32) * 5
    mask = np.zeros((10, 10), bool)
    frame[3, 4] = 1e6
    mask[3, 4] = True
    out = CameraCorrections(defects=mask).apply(frame)
    assert out[3, 4] == 5 and frame[3, 4] == 1e6      # the input is not modified
    with pytest.raises(InputError, match="differ in shape"):
        CameraCorrections(defects=mask).apply(np.ones((8, 8)))
    with pytest.raises(InputError, match="differ in shape"):
        CameraCorrections(dark=np.ones((4, 4)), gain=np.ones((5, 5)))
    with pytest.raises(InputError, match="no signal"):
        gain_from_flats(np.ones((2, 4, 4)), np.ones((4, 4)))


def test_live_processor_learns_the_dark_and_is_registered() -> None:
    assert CameraCorrectionsProcessor in all_processors()
    artefacts = CameraArtefacts(seed=4)
    processor = CameraCorrectionsProcessor(learn_dark_frames=4)
    darks = _frames(artefacts, 0.0, 1.0, 4, 1)
    for k, d in enumerate(darks):
        outputs = processor.process(Frame(d.astype(np.float32), frame_number=k), Context())
        assert "learning" in outputs[1].text  # type: ignore[union-attr]
    frame = _frames(artefacts, 500.0, 1.0, 1, 2)[0].astype(np.float32)
    image = processor.process(Frame(frame), Context())[0].data  # type: ignore[union-attr]
    assert abs(float(np.median(image)) - 500.0) < 10.0
    hot = artefacts.maps(SHAPE).hot
    assert float(np.abs(image[hot] - 500.0).max()) < 150.0            # hot pixels patched
    processor.reset()
    passthrough = processor.process(Frame(frame), Context())
    assert "learning" in passthrough[1].text  # type: ignore[union-attr]
    unconfigured = CameraCorrectionsProcessor().process(Frame(frame), Context())
    assert "unchanged" in unconfigured[1].text  # type: ignore[union-attr]
