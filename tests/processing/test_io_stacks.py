"""processing.io.stacks: every format written small, read back with calibrations and timestamps; bad input."""
from __future__ import annotations

import pathlib

import h5py
import numpy as np
import pytest
import tifffile

from processing.base import Calibration
from processing.io.stacks import Stack, StackError, describe, open_stack, stack_from_array

RNG = np.random.default_rng(7)
FRAMES = RNG.integers(0, 4000, size=(5, 12, 16)).astype(np.uint16)


def _frames_equal(stack: Stack, frames: np.ndarray) -> None:
    assert stack.n_frames == frames.shape[0]
    assert stack.frame_shape == frames.shape[1:]
    for i in range(frames.shape[0]):
        np.testing.assert_array_equal(stack.frame(i), frames[i])


def test_npy_is_memory_mapped_and_read_back(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "movie.npy"
    np.save(path, FRAMES)
    stack = open_stack(path)
    assert isinstance(stack.data, np.memmap)
    _frames_equal(stack, FRAMES)
    assert stack.timestamps_s is None
    assert stack.calibrations == (Calibration(), Calibration())


def test_single_image_npy_is_a_one_frame_stack(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "one.npy", FRAMES[0])
    stack = open_stack(tmp_path / "one.npy")
    _frames_equal(stack, FRAMES[:1])


def _hspy_signal(data: np.ndarray, times_s: np.ndarray) -> dict:
    axes = [{"name": "time", "units": "s", "scale": float(times_s[1] - times_s[0]), "offset": 0.0,
             "size": data.shape[0], "navigate": True},
            {"name": "y", "units": "nm", "scale": 0.5, "offset": 1.0, "size": data.shape[1], "navigate": False},
            {"name": "x", "units": "nm", "scale": 0.25, "offset": 2.0, "size": data.shape[2], "navigate": False}]
    return {"data": data, "axes": axes,
            "metadata": {"General": {"title": "heating"}, "Signal": {"signal_type": "", "quantity": "counts"}},
            "original_metadata": {"insitu": {"timestamps_s": times_s}, "holder": {"temperature_C": 450.0}},
            "tmp_parameters": {}, "attributes": {"_lazy": False}, "package_info": {"name": "test", "version": "0"}, "learning_results": {}, "models": {}}


def test_hyperspy_file_through_rosettasciio(tmp_path: pathlib.Path) -> None:
    from rsciio.hspy import file_writer
    times = np.array([0.0, 0.05, 0.11, 0.14, 0.2])
    path = tmp_path / "rec.hspy"
    file_writer(str(path), _hspy_signal(FRAMES, times))
    stack = open_stack(path)
    _frames_equal(stack, FRAMES)
    np.testing.assert_allclose(stack.timestamps_s, times)
    assert stack.calibrations == (Calibration(1.0, 0.5, "nm"), Calibration(2.0, 0.25, "nm"))
    assert stack.metadata["holder"]["holder.temperature_C"] == 450.0
    assert stack.intensity_units == "counts"
    assert any("temperature" in line for line in describe(stack))


def test_generic_hdf5_nexus_with_axes_and_timestamps(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "exp.nxs"
    times = np.array([0.0, 10.0, 25.0, 30.0, 41.0])  # ms
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/instrument/small", data=np.zeros((3, 3)))
        g = f.create_group("entry/data")
        g.attrs["NX_class"] = "NXdata"
        g.attrs["signal"] = "frames"
        g.attrs["axes"] = ["t", "y", "x"]
        g.create_dataset("frames", data=FRAMES)
        g.create_dataset("t", data=times).attrs["units"] = "ms"
        g.create_dataset("y", data=3.0 + 0.2 * np.arange(12)).attrs["units"] = "um"
        g.create_dataset("x", data=0.1 * np.arange(16)).attrs["units"] = "um"
    stack = open_stack(path)
    _frames_equal(stack, FRAMES)
    np.testing.assert_allclose(stack.timestamps_s, times * 1e-3)
    assert stack.calibrations[0].units == "um" and stack.calibrations[0].scale == pytest.approx(0.2)
    assert stack.calibrations[0].offset == pytest.approx(3.0)
    assert stack.calibrations[1].scale == pytest.approx(0.1)
    assert any("image-like datasets" in n for n in stack.metadata["insitu"]["notes"])
    stack.close()
    small = open_stack(path, dataset="entry/instrument/small")
    assert small.n_frames == 1 and small.frame_shape == (3, 3)
    small.close()
    with pytest.raises(StackError, match="no dataset 'nope'"):
        open_stack(path, dataset="nope")


def test_berkeley_emd(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "movie.emd"
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 0
        f.attrs["version_minor"] = 2
        g = f.create_group("data/movie")
        g.attrs["emd_group_type"] = 1
        g.create_dataset("data", data=FRAMES.T)  # Berkeley EMD stores dim1 (x) first
        for i, (name, units, values) in enumerate([("x", "nm", 0.3 * np.arange(16)),
                                                   ("y", "nm", 0.3 * np.arange(12)),
                                                   ("time", "s", 0.1 * np.arange(5))]):
            d = g.create_dataset(f"dim{i + 1}", data=values)
            d.attrs["name"] = name
            d.attrs["units"] = units
    stack = open_stack(path)
    _frames_equal(stack, FRAMES)
    assert stack.calibrations[1].scale == pytest.approx(0.3) and stack.calibrations[1].units == "nm"
    np.testing.assert_allclose(stack.timestamps_s, 0.1 * np.arange(5))


def test_tiff_stack_with_imagej_calibration(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, FRAMES, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"axes": "TYX", "unit": "micron", "finterval": 0.04})
    stack = open_stack(path)
    _frames_equal(stack, FRAMES)
    assert stack.calibrations[1].scale == pytest.approx(0.5)
    assert stack.calibrations[1].units in ("um", "µm")
    np.testing.assert_allclose(stack.timestamps_s, 0.04 * np.arange(5))


def _write_mrc(path: pathlib.Path, data: np.ndarray, pixel_A: float) -> None:
    nz, ny, nx = data.shape
    header = np.zeros(256, dtype=np.int32)
    header[0:3] = (nx, ny, nz)
    header[3] = {np.dtype(np.float32): 2, np.dtype(np.int16): 1, np.dtype(np.uint16): 6}[data.dtype]
    header[7:10] = (nx, ny, nz)
    floats = header.view(np.float32)
    floats[10:13] = (nx * pixel_A, ny * pixel_A, nz * pixel_A)
    floats[13:16] = 90.0
    header[16:19] = (1, 2, 3)
    header[52] = int.from_bytes(b"MAP ", "little")
    header[53] = 0x00004444
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(data.astype(data.dtype.newbyteorder("<")).tobytes())


def test_mrc_stack(tmp_path: pathlib.Path) -> None:
    data = FRAMES.astype(np.float32)
    _write_mrc(tmp_path / "t.mrc", data, pixel_A=2.0)
    stack = open_stack(tmp_path / "t.mrc")
    _frames_equal(stack, data)


def test_folder_of_numbered_png_and_rgb_to_grey(tmp_path: pathlib.Path) -> None:
    import imageio.v3 as iio
    frames8 = (FRAMES // 16).astype(np.uint8)
    for i, frame in enumerate(frames8):
        iio.imwrite(tmp_path / f"heat_{i + 1:04d}.png", frame)
    (tmp_path / "notes.txt").write_text("not an image")
    stack = open_stack(tmp_path)
    _frames_equal(stack, frames8)
    assert stack.metadata["insitu"]["missing_frame_numbers"] == []
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    for i, frame in enumerate(frames8[:2]):
        iio.imwrite(rgb / f"c{i}.png", np.stack([frame, frame, frame], axis=-1))
    grey = open_stack(rgb)
    np.testing.assert_allclose(grey.frame(1), frames8[1])


def test_folder_with_gap_plays_existing_frames_and_reports_the_gap(tmp_path: pathlib.Path) -> None:
    for i in (1, 2, 3, 6, 7):
        tifffile.imwrite(tmp_path / f"f{i:03d}.tif", FRAMES[i % 5])
    stack = open_stack(tmp_path)
    assert stack.n_frames == 5
    assert stack.metadata["insitu"]["missing_frame_numbers"] == [4, 5]
    np.testing.assert_array_equal(stack.frame(3), FRAMES[6 % 5])
    assert any("gaps in the numbering" in line for line in describe(stack))


def test_folder_with_mixed_shapes_is_refused(tmp_path: pathlib.Path) -> None:
    tifffile.imwrite(tmp_path / "f1.tif", FRAMES[0])
    tifffile.imwrite(tmp_path / "f2.tif", FRAMES[0, :10])
    with pytest.raises(StackError, match="mixed frame shapes.*f2.tif"):
        open_stack(tmp_path)


def test_folder_without_images(tmp_path: pathlib.Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(StackError, match="not an image sequence"):
        open_stack(tmp_path)


@pytest.mark.parametrize("name,content,match", [
    ("missing.npy", None, "does not exist"),
    ("empty.h5", b"", "is empty"),
    ("data.xyz", b"123", "not supported"),
    ("data.dm5", b"123", "DM5"),
    ("corrupt.h5", bytes(RNG.integers(0, 255, 300, dtype=np.uint8)), "truncated or corrupt"),
    ("corrupt.dm3", bytes(RNG.integers(0, 255, 300, dtype=np.uint8)), "truncated or corrupt"),
    ("corrupt.tif", b"II*\x00" + bytes(50), "truncated or corrupt"),
    ("corrupt.emd", b"\x89HDF\r\n" + bytes(40), "truncated or corrupt"),
])
def test_bad_files_give_problem_value_remedy(tmp_path: pathlib.Path, name: str, content: bytes | None,
                                             match: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(StackError, match=match) as info:
        open_stack(path)
    assert name in str(info.value)


def test_truncated_npy(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cut.npy"
    np.save(path, FRAMES)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(StackError, match="truncated or corrupt"):
        open_stack(path)


def test_not_an_image_sequence(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "4d.npy", np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(StackError, match=r"not an image sequence \(N, H, W\)"):
        open_stack(tmp_path / "4d.npy")
    np.save(tmp_path / "1d.npy", np.zeros(7, np.float32))
    with pytest.raises(StackError, match="not an image sequence"):
        open_stack(tmp_path / "1d.npy")
    np.save(tmp_path / "c.npy", np.zeros((2, 4, 4), np.complex64))
    with pytest.raises(StackError, match="not a real-valued image"):
        open_stack(tmp_path / "c.npy")


def test_spectrum_image_hspy_is_not_an_image_sequence(tmp_path: pathlib.Path) -> None:
    from rsciio.hspy import file_writer
    axes = [{"name": n, "size": s, "scale": 1.0, "offset": 0.0, "units": "", "navigate": nav}
            for n, s, nav in (("y", 3, True), ("x", 4, True), ("E", 50, False))]
    file_writer(str(tmp_path / "si.hspy"), {"data": np.zeros((3, 4, 50), np.float32), "axes": axes,
                                             "metadata": {"General": {"title": "si"}, "Signal": {}},
                                             "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False}, "package_info": {"name": "test", "version": "0"}, "learning_results": {}, "models": {}})
    with pytest.raises(StackError, match="no image or image sequence.*open_spectrum_image"):
        open_stack(tmp_path / "si.hspy")


def test_stack_from_array_checks_timestamps() -> None:
    stack = stack_from_array(FRAMES, timestamps_s=np.arange(5) * 0.1)
    assert stack.duration_s() == pytest.approx(0.4)
    with pytest.raises(StackError, match="3 timestamps were given for 5 frames"):
        stack_from_array(FRAMES, timestamps_s=[0, 1, 2])
    with pytest.raises(StackError, match="non-decreasing"):
        stack_from_array(FRAMES, timestamps_s=[0, 1, 0.5, 2, 3])
    with pytest.raises(StackError, match="outside the stack's 5 frames"):
        stack.frame(5)


def test_eager_read(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "m.npy", FRAMES)
    stack = open_stack(tmp_path / "m.npy", lazy=False)
    assert type(stack.data) is np.ndarray
    _frames_equal(stack, FRAMES)


@pytest.mark.parametrize("version", [3, 4])
def test_dm3_dm4_image_sequence_with_calibrations(tmp_path: pathlib.Path, version: int) -> None:
    """DM files written by Nion Swift's own DM writer (nionswift DM_IO), read back through RosettaSciIO."""
    dm = pytest.importorskip("nionswift_plugin.DM_IO.dm3_image_utils")
    from nion.data import Calibration as NionCalibration
    from nion.data import DataAndMetadata
    frames = FRAMES.astype(np.float32)
    xdata = DataAndMetadata.new_data_and_metadata(
        frames, dimensional_calibrations=[NionCalibration.Calibration(0.0, 0.1, "s"),
                                          NionCalibration.Calibration(0.5, 0.25, "nm"),
                                          NionCalibration.Calibration(1.5, 0.25, "nm")],
        intensity_calibration=NionCalibration.Calibration(units="counts"),
        data_descriptor=DataAndMetadata.DataDescriptor(True, 0, 2))
    path = tmp_path / f"movie.dm{version}"
    with open(path, "wb") as f:
        dm.save_image(xdata, f, version)
    stack = open_stack(path)
    _frames_equal(stack, frames)
    assert stack.calibrations == (Calibration(0.5, 0.25, "nm"), Calibration(1.5, 0.25, "nm"))
    if stack.timestamps_s is not None:
        np.testing.assert_allclose(stack.timestamps_s, 0.1 * np.arange(5))


def write_velox_stack(path: pathlib.Path, frames: np.ndarray, pixel_nm: float, frame_time_s: float) -> None:
    """A minimal Velox EMD image stack: /Data/Image/<uuid>/Data (H, W, N) + Metadata (json bytes, N)."""
    import json
    import uuid
    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=np.array([json.dumps({"format": "Velox", "version": "11"}).encode()]))
        sub = f.create_group("Data/Image").create_group(uuid.UUID(int=7).hex)
        sub.create_dataset("Data", data=np.moveaxis(frames, 0, -1), chunks=frames.shape[1:] + (1,))
        md = {"BinaryResult": {"PixelSize": {"width": str(pixel_nm * 1e-9), "height": str(pixel_nm * 1e-9)},
                               "PixelUnitX": "m", "PixelUnitY": "m", "Offset": {"x": "0", "y": "0"},
                               "DetectorIndex": "0"},
              "Detectors": {"Detector-0": {"DetectorName": "BM-Ceta"}}, "Acquisition": {},
              "Scan": {"FrameTime": str(frame_time_s)},
              "CustomProperties": {"Holder.Temperature": {"type": "double", "value": "723.0"}}}
        raw = np.frombuffer(json.dumps(md).encode(), dtype=np.uint8)
        sub.create_dataset("Metadata", data=np.repeat(raw[:, None], frames.shape[0], axis=1))


def test_velox_emd_image_stack(tmp_path: pathlib.Path) -> None:
    frames = FRAMES.astype(np.float32)
    write_velox_stack(tmp_path / "velox.emd", frames, pixel_nm=0.2, frame_time_s=0.05)
    stack = open_stack(tmp_path / "velox.emd")
    _frames_equal(stack, frames)
    assert stack.calibrations[1].scale == pytest.approx(0.2) and stack.calibrations[1].units == "nm"
    np.testing.assert_allclose(stack.timestamps_s, 0.05 * np.arange(5), atol=1e-9)
    assert any(k.endswith("Holder.Temperature") and float(v) == 723.0 for k, v in stack.metadata["holder"].items())


def test_npy_frames_are_read_without_staying_mapped(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "big.npy", FRAMES)
    stack = open_stack(tmp_path / "big.npy")
    frame = stack.frame(3)
    assert frame.base is None or not isinstance(frame.base, np.memmap)  # an own copy, not a view of the map
    frame[0, 0] = 1  # writable, and the file is untouched
    np.testing.assert_array_equal(np.load(tmp_path / "big.npy")[3], FRAMES[3])
    stack.close()


def test_folder_with_a_corrupt_image_names_it(tmp_path: pathlib.Path) -> None:
    import imageio.v3 as iio
    for i in range(3):
        iio.imwrite(tmp_path / f"f{i}.png", (FRAMES[i] // 16).astype(np.uint8))
    (tmp_path / "f3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(StackError, match=r"f3.png.*truncated or corrupt"):
        open_stack(tmp_path)
