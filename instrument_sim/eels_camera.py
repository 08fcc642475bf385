"""Simulated EELS spectrometer camera (hardware source ``"insitu_eels_camera"``).

A ``nion.device_kit.CameraDevice.Camera`` driven by :class:`EELSCameraSimulator`, registered as a Swift camera of
type ``"eels"``, so Swift's Camera panel, EELS tools and synchronized acquisition (spectrum imaging) drive it.

For each frame (time ``t`` on the instrument clock):

* probe position: during a scan (including synchronized acquisition) the scan device's current pixel; parked: the
  probe position in the scan context; otherwise the context centre. The probe sees the sample at
  ``scan position - (drift(t) - stage - CSH)``.
* spectrum: :func:`instrument_sim.samples.expected_spectra` (ZLP of width ``EELS_ZLPWidth`` eV, plasmons,
  power-law background, the edges of the atoms under the probe, EEGS sidebands if the laser is on) with the whole
  spectrum shifted by the true energy drift ``instrument.true_energy_offset_eV(t)``;
* energy axis: channel ``k`` (after binning) at ``ZLPoffset + k * EELS_Dispersion * binning`` eV, which is the
  calibration Swift attaches (controls ``eels_x_offset``/``eels_x_scale``);
* dose: ``BeamCurrent * exposure / e`` (times the laser's blanker duty), spread over the sensor rows with a
  Gaussian profile; counting noise on every sensor pixel (Poisson, plus read noise, or the Merlin-like counting
  model).

Ground truth: :meth:`EELSCameraSimulator.truth_log` (per frame: time, probe/sample position, true ZLP offset,
electrons) and :meth:`EELSCameraSimulator.expected_spectrum` (noise-free spectrum at a sample position).
"""
from __future__ import annotations

import collections
import gettext
import math
import threading
import typing

import numpy as np
from numpy.typing import NDArray

from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.device_kit import CameraDevice
from nion.instrumentation import stem_controller
from nion.utils import Geometry

from instrument_sim.detector import CountingDetector, Detector, IntegratingDetector
from instrument_sim.eels_physics import EnergyAxis, SpectrumModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.laser import SimLaser
from instrument_sim.samples import LaserState, expected_spectra
from instrument_sim.specimen import Specimen, electrons_in
from instrument_sim.stem_scan import SimScanDevice

if typing.TYPE_CHECKING:
    from instrument_sim.instrument import SimInstrument

__all__ = ["EELS_CAMERA_ID", "ZLP_WIDTH_CONTROL", "EELSCameraSimulator", "SimEELSCamera", "create_eels_camera_module",
           "TRUTH_FIELDS"]

_ = gettext.gettext

EELS_CAMERA_ID = "insitu_eels_camera"
ZLP_WIDTH_CONTROL = "EELS_ZLPWidth"
TRUTH_FIELDS = ("t_s", "scan_y_nm", "scan_x_nm", "sample_y_nm", "sample_x_nm", "zlp_offset_eV", "electrons")
FloatArray = NDArray[np.float64]


class EELSCameraSimulator:
    """device_kit ``CameraSimulatorLike`` for the spectrometer.

    Parameters (keyword-only besides instrument and specimen)
    ---------------------------------------------------------
    laser : the EEGS laser (None: no electron-light interaction).
    detector : "integrating" (gain = instrument counts_per_electron, read noise) or "counting" (Merlin-like).
    read_noise_counts : rms read noise per sensor pixel (integrating detector).
    row_fraction : Gaussian sigma of the spectrum across the sensor rows, as a fraction of the rows.
    truth_log_length : number of frames kept in :meth:`truth_log`.
    """

    def __init__(self, instrument: SimInstrument, specimen: Specimen, *, laser: SimLaser | None = None,
                 detector: typing.Literal["integrating", "counting"] = "integrating",
                 read_noise_counts: float = 0.0, row_fraction: float = 0.15, truth_log_length: int = 200_000) -> None:
        if detector not in ("integrating", "counting"):
            raise SimulatorParameterError(f"detector must be 'integrating' or 'counting'; got {detector!r}.")
        if not 0 < row_fraction <= 10:
            raise SimulatorParameterError(f"row_fraction must be in (0, 10]; got {row_fraction!r}.")
        self.instrument = instrument
        self.specimen = specimen
        self.laser = laser
        self.detector_kind = detector
        self.read_noise_counts = float(read_noise_counts)
        self.row_fraction = float(row_fraction)
        self.__rng = specimen.rng("eels")
        self.__lock = threading.Lock()
        self.__model: SpectrumModel | None = None
        self.__detectors: dict[tuple[int, int], Detector] = {}
        self.__truth: collections.deque[tuple[float, ...]] = collections.deque(maxlen=truth_log_length)
        if instrument.get_value(ZLP_WIDTH_CONTROL) is None:
            instrument.add_control(ZLP_WIDTH_CONTROL, 1.0)

    def close(self) -> None:
        pass

    # --- calibration and model

    def energy_axis(self, n_channels: int, binning_width: int = 1) -> EnergyAxis:
        """The calibrated energy axis (eV) of ``n_channels`` binned channels."""
        offset = float(self.instrument.GetVal("ZLPoffset"))
        dispersion = float(self.instrument.GetVal("EELS_Dispersion")) * binning_width
        return EnergyAxis(offset_eV=offset, dispersion_eV_per_channel=dispersion, n_channels=n_channels)

    def get_dimensional_calibrations(self, readout_area: Geometry.IntRect | None,
                                     binning_shape: Geometry.IntSize | None) -> typing.Sequence[Calibration.Calibration]:
        bw = binning_shape.width if binning_shape else 1
        axis = self.energy_axis(1, bw)
        return [Calibration.Calibration(),
                Calibration.Calibration(offset=axis.offset_eV, scale=axis.dispersion_eV_per_channel, units="eV")]

    def spectrum_model(self, axis: EnergyAxis) -> SpectrumModel:
        """The spectrum model for ``axis`` at the current ZLP width (cached while both are unchanged)."""
        fwhm = float(self.instrument.GetVal(ZLP_WIDTH_CONTROL))
        with self.__lock:
            model = self.__model
            if model is None or model.axis != axis or model.zlp_fwhm_eV != fwhm:
                model = SpectrumModel(axis, zlp_fwhm_eV=fwhm)
                self.__model = model
            return model

    # --- probe

    def probe_scan_position_nm(self, scan_context: stem_controller.ScanContext,
                               probe_position: Geometry.FloatPoint | None) -> tuple[float, float]:
        """Scan position (y, x) nm of the probe now (see module docstring)."""
        scan_controller = self.instrument.scan_controller
        device = getattr(scan_controller, "scan_device", None) if scan_controller else None
        if isinstance(device, SimScanDevice) and device.is_scanning:
            position = device.simulator.probe_scan_position_nm()
            if position is not None:
                return position
        if scan_context.fov_size_nm is not None:
            center = scan_context.center_nm or Geometry.FloatPoint()
            if probe_position is not None and self.instrument.probe_state == "parked":
                fov = scan_context.fov_size_nm
                d = Geometry.FloatPoint(y=(probe_position.y - 0.5) * fov.height,
                                        x=(probe_position.x - 0.5) * fov.width).rotate(scan_context.rotation_rad)
                return center.y + d.y, center.x + d.x
            return center.y, center.x
        return 0.0, 0.0

    # --- frames

    def laser_state(self) -> LaserState | None:
        return self.laser.state() if self.laser is not None else None

    def expected_spectrum(self, sample_y_nm: float, sample_x_nm: float, *, n_channels: int, binning_width: int = 1,
                          electrons: float = 1.0, zlp_offset_eV: float = 0.0) -> FloatArray:
        """Noise-free spectrum (expected electrons per channel) at a *sample* position, current settings."""
        axis = self.energy_axis(n_channels, binning_width)
        spectrum: FloatArray = expected_spectra(self.specimen.sample, self.spectrum_model(axis), np.asarray(sample_y_nm),
                                np.asarray(sample_x_nm), electrons=electrons, shift_eV=zlp_offset_eV,
                                laser=self.laser_state())
        return spectrum

    def __detector(self, shape: tuple[int, int]) -> Detector:
        detector = self.__detectors.get(shape)
        if detector is None:
            if self.detector_kind == "counting":
                detector = CountingDetector(shape=shape, seed=self.specimen.seed)
            else:
                detector = IntegratingDetector(counts_per_electron=float(self.instrument.counts_per_electron),
                                               read_noise_counts=self.read_noise_counts)
            self.__detectors[shape] = detector
        return detector

    def row_profile(self, rows: int) -> FloatArray:
        """Fraction of the spectrum falling on each sensor row (sums to 1)."""
        r = np.arange(rows, dtype=np.float64) + 0.5
        sigma = max(self.row_fraction * rows, 0.5)
        profile: FloatArray = np.exp(-0.5 * ((r - rows / 2) / sigma) ** 2)
        out: FloatArray = profile / profile.sum()
        return out

    def get_frame_data(self, readout_area: Geometry.IntRect, binning_shape: Geometry.IntSize, exposure_s: float,
                       scan_context: stem_controller.ScanContext,
                       probe_position: Geometry.FloatPoint | None) -> DataAndMetadata.DataAndMetadata:
        t = self.instrument.time_s()
        rows = max(readout_area.height // max(binning_shape.height, 1), 1)
        channels = max(readout_area.width // max(binning_shape.width, 1), 1)
        scan_y, scan_x = self.probe_scan_position_nm(scan_context, probe_position)
        sample_y, sample_x = Specimen.sample_positions_nm(self.instrument, np.asarray(scan_y), np.asarray(scan_x), t)
        zlp = float(self.instrument.true_energy_offset_eV(t))
        laser = self.laser_state()
        electrons = electrons_in(self.instrument, exposure_s) * (laser.blanker_duty if laser is not None else 1.0)
        axis = self.energy_axis(channels, binning_shape.width)
        spectrum = expected_spectra(self.specimen.sample, self.spectrum_model(axis), sample_y, sample_x,
                                    electrons=electrons, shift_eV=zlp, laser=laser)
        expected = self.row_profile(rows)[:, None] * spectrum[None, :]
        data = self.__detector((rows, channels)).read(expected, self.__rng)
        self.__truth.append((t, scan_y, scan_x, float(sample_y), float(sample_x), zlp, electrons))
        calibrations = [Calibration.Calibration(),
                        Calibration.Calibration(offset=axis.offset_eV, scale=axis.dispersion_eV_per_channel,
                                                units="eV")]
        return DataAndMetadata.new_data_and_metadata(data, intensity_calibration=Calibration.Calibration(units="counts"),
                                                     dimensional_calibrations=calibrations)

    def truth_log(self, *, clear: bool = False) -> dict[str, FloatArray]:
        """Ground truth of the frames acquired so far (oldest first): field -> (N,) array, fields
        :data:`TRUTH_FIELDS` (time s, probe scan position nm, probe sample position nm, true ZLP offset eV,
        incident electrons)."""
        rows = list(self.__truth)
        if clear:
            self.__truth.clear()
        table: FloatArray = np.asarray(rows, dtype=np.float64).reshape(-1, len(TRUTH_FIELDS))
        return {name: table[:, i] for i, name in enumerate(TRUTH_FIELDS)}

    def si_truth(self, shape_px: tuple[int, int], *, flyback_pixels: int = 2) -> dict[str, FloatArray]:
        """Ground truth of the last synchronized acquisition of ``shape_px`` (H, W) pixels, as (H, W) maps.

        Takes the last ``H * (W + flyback_pixels)`` frames of :meth:`truth_log` and drops the flyback frames at the
        start of each line (what Swift drops), so ``maps["sample_x_nm"][i, j]`` is where the probe of SI pixel
        (i, j) was on the sample, ``maps["zlp_offset_eV"][i, j]`` the true ZLP offset of that spectrum, etc.
        """
        h, w = (int(v) for v in shape_px)
        per_line = w + int(flyback_pixels)
        log = self.truth_log()
        n = h * per_line
        if len(log["t_s"]) < n:
            raise SimulatorParameterError(
                f"the truth log holds {len(log['t_s'])} frames, fewer than the {n} of a {h}x{w} acquisition with "
                f"{flyback_pixels} flyback pixels per line; acquire first (or clear the log before acquiring).")
        return {name: values[-n:].reshape(h, per_line)[:, flyback_pixels:] for name, values in log.items()}


class SimEELSCamera(CameraDevice.Camera):
    """device_kit camera whose ``close`` may be called twice (by Swift and by the simulator handle), and which
    delivers synchronized (spectrum-image) data line by line, as a detector with a fast read-out does.

    device_kit's camera hands over a synchronized acquisition in pieces of ``update_period / exposure`` frames
    (Swift asks for 1 s) and drops the piece in progress when the acquisition is cancelled, so an abort lost up to
    a second of spectra. Here each piece is ``lines_per_delivery`` scan lines (flyback included; ``None``: device_kit's
    pieces): an abort loses at most the line being scanned.
    """

    #: scan lines per partial delivery of a synchronized acquisition (None: device_kit's update-period pieces)
    lines_per_delivery: int | None = 1

    def __init__(self, camera_id: str, camera_name: str, simulator: EELSCameraSimulator,
                 instrument: SimInstrument) -> None:
        super().__init__(camera_id, "eels", camera_name, simulator, instrument)
        self.__eels_simulator = simulator
        self.__closed = False
        self.__line_s: float | None = None  # duration of one scan line of the running synchronized acquisition
        self.__exposure_s = 0.0
        self.camera_panel_type = "eels"

    def acquire_synchronized_begin(self, camera_frame_parameters: typing.Any, collection_shape: typing.Any,
                                   **kwargs: typing.Any) -> typing.Any:
        shape = tuple(int(v) for v in collection_shape)
        exposure_s = float(camera_frame_parameters.exposure_ms) / 1000.0
        self.__line_s = shape[-1] * exposure_s if len(shape) > 1 and exposure_s > 0 else None
        self.__exposure_s = exposure_s
        return super().acquire_synchronized_begin(camera_frame_parameters, collection_shape, **kwargs)

    def acquire_synchronized_continue(self, *, update_period: float = 1.0, **kwargs: typing.Any) -> typing.Any:
        lines = self.lines_per_delivery
        if lines is not None and self.__line_s is not None:
            # device_kit takes int(update_period / exposure) frames: half a frame more avoids rounding one off
            update_period = min(update_period, lines * self.__line_s + 0.5 * self.__exposure_s)
        return super().acquire_synchronized_continue(update_period=update_period, **kwargs)

    def acquire_synchronized_end(self, **kwargs: typing.Any) -> None:
        self.__line_s = None
        super().acquire_synchronized_end(**kwargs)

    @property
    def eels_simulator(self) -> EELSCameraSimulator:
        return self.__eels_simulator

    def close(self) -> None:
        if not self.__closed:
            self.__closed = True
            super().close()


def create_eels_camera_module(instrument: SimInstrument, specimen: Specimen, *, laser: SimLaser | None = None,
                              camera_id: str = EELS_CAMERA_ID, sensor_shape: tuple[int, int] = (16, 1024),
                              **simulator_options: typing.Any) -> CameraDevice.CameraModule:
    """Build the EELS camera (device + settings) as a ``camera_module`` registry component.

    ``sensor_shape`` (rows, channels) sets the instrument's ``"eels"`` sensor shape before the camera is created.
    """
    rows, width = (int(v) for v in sensor_shape)
    if rows < 1 or width < 8 or not math.isfinite(rows * width):
        raise SimulatorParameterError(f"sensor_shape must be (rows >= 1, channels >= 8); got {sensor_shape!r}.")
    instrument.set_camera_shape("eels", (rows, width))
    simulator = EELSCameraSimulator(instrument, specimen, laser=laser, **simulator_options)
    device = SimEELSCamera(camera_id, _("In-situ Sim EELS"), simulator, instrument)
    settings = CameraDevice.CameraSettings(camera_id, base_exposure=0.01)
    module = CameraDevice.CameraModule(instrument.instrument_id, device, settings)
    return module
