"""nionswift-insitu fuse: maps from files (RosettaSciIO .hspy with calibrations, numpy .npz), output, exit codes."""
from __future__ import annotations

import json
import pathlib
import typing

import numpy as np
import pytest

from processing.cli import main


def _write_hspy(path: pathlib.Path, data: np.ndarray, title: str, scale_nm: float) -> None:
    from rsciio.hspy import file_writer
    axes = [{"name": n, "size": s, "offset": 0.0, "scale": scale_nm, "units": "nm", "navigate": False}
            for n, s in zip("yx", data.shape)]
    file_writer(str(path), {"data": data, "axes": axes, "metadata": {"General": {"title": title}},
                            "original_metadata": {}, "attributes": {"_lazy": False}, "tmp_parameters": {},
                            "package_info": {"name": "", "version": ""}, "learning_results": {}, "models": {}},
                show_progressbar=False)


def write_velox_emd(path: pathlib.Path, images: dict[str, np.ndarray], pixel_nm: float) -> None:
    """A minimal Velox (v11) EMD: one /Data/Image/<uuid> per image (Data (H, W, 1) + Metadata JSON as uint8), the
    layout RosettaSciIO's Velox reader reads (titles from the detector names)."""
    import uuid

    import h5py
    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=np.array([json.dumps({"format": "Velox", "version": "11"}).encode()]))
        group = f.create_group("Data/Image")
        for index, (title, data) in enumerate(images.items()):
            sub = group.create_group(uuid.UUID(int=index + 1).hex)
            array = np.asarray(data, np.float32)[:, :, None]
            sub.create_dataset("Data", data=array, chunks=array.shape)
            md = {"BinaryResult": {"PixelSize": {"width": str(pixel_nm * 1e-9), "height": str(pixel_nm * 1e-9)},
                                   "PixelUnitX": "m", "PixelUnitY": "m", "Offset": {"x": "0", "y": "0"},
                                   "DetectorIndex": str(index)},
                  "Detectors": {f"Detector-{index}": {"DetectorName": title}}, "Acquisition": {},
                  "CustomProperties": {}}
            sub.create_dataset("Metadata", data=np.frombuffer(json.dumps(md).encode(), dtype=np.uint8)[:, None])


def _scene(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    a = (np.sin(xx / 2.0) * np.sin(yy / 2.0) > 0.3).astype(float)
    b = 1.0 - a
    return {"HAADF": rng.poisson(400 * a + 40 * b).astype(float), "Dy": rng.poisson(6 * a).astype(float),
            "O": rng.poisson(6 * b).astype(float)}


def test_fuse_from_hspy_files_to_npz(tmp_path: pathlib.Path, capsys: typing.Any) -> None:
    s = _scene()
    for name, data in s.items():
        _write_hspy(tmp_path / f"{name}.hspy", data, name, 0.05)
    out = tmp_path / "fused.npz"
    code = main(["fuse", "--haadf", str(tmp_path / "HAADF.hspy"), "--map", f"Dy={tmp_path / 'Dy.hspy'}",
                 "--map", f"O={tmp_path / 'O.hspy'}", "--output", str(out), "--lambda-tv", "0.3"])
    assert code == 0, capsys.readouterr().err
    with np.load(out) as r:
        assert r["maps"].shape == (2, 32, 32) and list(r["elements"]) == ["Dy", "O"]
        summary = json.loads(str(r["summary"]))
        assert summary["options"]["lambda_tv"] == 0.3 and summary["cost_final"]["total"] < summary["cost_start_total"]
        assert r["cost"].shape[1] == 4
    assert "fused Dy, O" in capsys.readouterr().out


def test_fuse_velox_emd_eds_maps(tmp_path: pathlib.Path, capsys: typing.Any) -> None:
    s = _scene(2)
    emd = tmp_path / "DyO_EDS.emd"
    write_velox_emd(emd, s, 0.05)
    out = tmp_path / "fused.npz"
    code = main(["fuse", "--haadf", f"{emd}:HAADF", "--map", f"Dy={emd}:Dy", "--map", f"O={emd}:O",
                 "--output", str(out)])
    assert code == 0, capsys.readouterr().err
    with np.load(out) as r:
        np.testing.assert_allclose(r["haadf"], s["HAADF"].astype(np.float32))
        assert r["maps"].shape == (2, 32, 32)


def test_fuse_npz_datasets_to_hspy_and_region(tmp_path: pathlib.Path) -> None:
    s = _scene(1)
    src = tmp_path / "scene.npz"
    np.savez(src, **s)
    out = tmp_path / "fused.hspy"
    code = main(["fuse", "--haadf", f"{src}:HAADF", "--map", f"Dy={src}:Dy", "--map", f"O={src}:O",
                 "--output", str(out), "--region", "4,4,20,24"])
    assert code == 0
    from rsciio.hspy import file_reader
    signal = file_reader(str(out))[0]
    assert signal["data"].shape == (2, 20, 24)


@pytest.mark.parametrize("problem, message", [
    ("scale", "pixel size"), ("missing", "does not exist"), ("element", "unknown element name"),
    ("single", "at least two"), ("format", "not supported"), ("gamma", "gamma"),
])
def test_bad_input_exits_2_with_one_message(tmp_path: pathlib.Path, capsys: typing.Any, problem: str,
                                            message: str) -> None:
    s = _scene()
    for name, data in s.items():
        _write_hspy(tmp_path / f"{name}.hspy", data, name, 0.1 if (problem == "scale" and name == "O") else 0.05)
    maps = ["--map", f"Dy={tmp_path / 'Dy.hspy'}", "--map", f"O={tmp_path / 'O.hspy'}"]
    out = str(tmp_path / "fused.npz")
    extra: list[str] = []
    if problem == "missing":
        maps[1] = f"Dy={tmp_path / 'nope.hspy'}"
    elif problem == "element":
        maps[1] = f"Qq={tmp_path / 'Dy.hspy'}"
    elif problem == "single":
        maps = maps[:2]
    elif problem == "format":
        out = str(tmp_path / "fused.xyz")
    elif problem == "gamma":
        extra = ["--gamma", "3"]
    code = main(["fuse", "--haadf", str(tmp_path / "HAADF.hspy"), *maps, "--output", out, *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
