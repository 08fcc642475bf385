"""processing.io.spectrum_images: SI files written small and read back with the energy calibration; bad input."""
from __future__ import annotations

import pathlib

import h5py
import numpy as np
import pytest

from processing.io.spectrum_images import SpectrumImageError, open_spectrum_image

RNG = np.random.default_rng(3)
SI = RNG.random((4, 5, 64)).astype(np.float32)


def _hspy(path: pathlib.Path, data: np.ndarray, navigate: tuple[bool, ...], units: tuple[str, ...]) -> None:
    from rsciio.hspy import file_writer
    axes = [{"name": f"a{i}", "size": s, "scale": 0.5 * (i + 1), "offset": float(i), "units": u, "navigate": nav}
            for i, (s, nav, u) in enumerate(zip(data.shape, navigate, units))]
    file_writer(str(path), {"data": data, "axes": axes, "metadata": {"General": {"title": "eels"}, "Signal": {}},
                            "original_metadata": {"stage": {"temperature_C": 20.0}}, "tmp_parameters": {},
                            "attributes": {"_lazy": False}, "package_info": {"name": "t", "version": "0"},
                            "learning_results": {}, "models": {}})


def test_hyperspy_si_with_energy_axis(tmp_path: pathlib.Path) -> None:
    _hspy(tmp_path / "si.hspy", SI, (True, True, False), ("nm", "nm", "eV"))
    data, calibrations, metadata = open_spectrum_image(tmp_path / "si.hspy")
    np.testing.assert_array_equal(np.asarray(data), SI)
    assert calibrations[2].units == "eV" and calibrations[2].scale == pytest.approx(1.5)
    assert calibrations[2].offset == pytest.approx(2.0)
    assert calibrations[0].units == "nm"
    assert metadata["holder"]["stage.temperature_C"] == 20.0


def test_image_stack_is_not_a_spectrum_image(tmp_path: pathlib.Path) -> None:
    _hspy(tmp_path / "stack.hspy", SI, (True, False, False), ("s", "nm", "nm"))
    with pytest.raises(SpectrumImageError, match="no spectrum image"):
        open_spectrum_image(tmp_path / "stack.hspy")


def test_npy_and_generic_hdf5(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "si.npy", SI)
    data, calibrations, _ = open_spectrum_image(tmp_path / "si.npy", lazy=False)
    np.testing.assert_array_equal(data, SI)
    with h5py.File(tmp_path / "si.h5", "w") as f:
        g = f.create_group("entry/si")
        g.attrs["axes"] = ["y", "x", "energy"]
        g.create_dataset("counts", data=SI)
        g.create_dataset("energy", data=100.0 + 0.25 * np.arange(64)).attrs["units"] = "eV"
    data, calibrations, metadata = open_spectrum_image(tmp_path / "si.h5")
    np.testing.assert_array_equal(np.asarray(data), SI)
    assert calibrations[2] .offset == pytest.approx(100.0) and calibrations[2].scale == pytest.approx(0.25)
    assert metadata["insitu"]["dataset"] == "entry/si/counts"


def test_single_spectrum_becomes_1x1(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "s.npy", SI[0, 0])
    data, _, _ = open_spectrum_image(tmp_path / "s.npy")
    assert data.shape == (1, 1, 64)


@pytest.mark.parametrize("name,content,match", [
    ("none.hspy", None, "does not exist"),
    ("e.emd", b"", "empty"),
    ("x.png", b"1", "not supported"),
    ("bad.dm4", bytes(range(200)), "truncated or corrupt"),
])
def test_bad_files(tmp_path: pathlib.Path, name: str, content: bytes | None, match: str) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(SpectrumImageError, match=match):
        open_spectrum_image(tmp_path / name)
