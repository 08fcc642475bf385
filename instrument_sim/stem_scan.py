"""Simulated STEM scan device (hardware source ``"insitu_scan"``): HAADF + MAADF with drift evaluated per pixel time.

A ``nion.device_kit.ScanDevice.Device`` subclass driven by :class:`SimScanSimulator` (a device_kit
``ScanSimulatorLike``), so Swift's Scan Control panel, record, synchronized acquisition (spectrum imaging) and
``DriftTracker`` use it as they use a real scan.

Physics of one frame: pixel ``(i, j)`` sits at scan position ``p_ij`` (nm; field of view, ``center_nm``, sub-scan
region and rotation; see :func:`geometry_from_frame_parameters`) and is visited at time
``t_ij = t0 + i * (W * dwell + flyback) + j * dwell`` (free-running) or when the camera's clock pulse arrives
(synchronized). The probe sees the sample at ``p_ij - (drift(t_ij) - stage - CSH)``, so drift shears a frame and
moves between sections exactly as on a real microscope. The detector signal is Poisson on the scattered electrons
(``beam current * dwell * scattered fraction``).

Ground truth: :attr:`SimScanSimulator.last_frame_truth` (positions, times, true content offsets of the last
frame) and :func:`instrument_sim.samples.truth_image` for the drift-free image of a field.
"""
from __future__ import annotations

import dataclasses
import gettext
import threading
import typing

import numpy as np
from numpy.typing import NDArray

from nion.device_kit import ScanDevice
from nion.instrumentation import scan_base
from nion.utils import Geometry

from instrument_sim.detector import IntegratingDetector
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.samples import scan_positions_nm
from instrument_sim.specimen import Specimen, electrons_in

if typing.TYPE_CHECKING:
    from nion.device_kit import InstrumentDevice
    from instrument_sim.instrument import SimInstrument

__all__ = ["SCAN_DEVICE_ID", "CHANNEL_NAMES", "ScanGeometry", "geometry_from_frame_parameters", "FrameTruth",
           "FrameTiming",
           "SimScanSimulator", "SimScanDevice", "SimScanModule"]

_ = gettext.gettext

SCAN_DEVICE_ID = "insitu_scan"
CHANNEL_NAMES = ("HAADF", "MAADF")
FloatArray = NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class ScanGeometry:
    """Where and when a frame's pixels are: shape (H, W) px, field (nm), centre (nm), rotation (rad), dwell (s),
    flyback time per line (s)."""

    shape_px: tuple[int, int]
    fov_size_nm: tuple[float, float]
    center_nm: tuple[float, float]
    rotation_rad: float
    pixel_time_s: float
    flyback_s: float

    def positions_nm(self) -> tuple[FloatArray, FloatArray]:
        """Scan positions (y, x) nm of every pixel, each (H, W)."""
        return scan_positions_nm(self.shape_px, fov_size_nm=self.fov_size_nm, center_nm=self.center_nm,
                                 rotation_rad=self.rotation_rad)

    def pixel_times_s(self, t0_s: float) -> FloatArray:
        """Free-running visit time of every pixel, (H, W) s: t0 + i (W dwell + flyback) + j dwell."""
        h, w = self.shape_px
        line = w * self.pixel_time_s + self.flyback_s
        return (t0_s + np.arange(h, dtype=np.float64)[:, None] * line
                + np.arange(w, dtype=np.float64)[None, :] * self.pixel_time_s)


def geometry_from_frame_parameters(frame_parameters: scan_base.ScanFrameParameters) -> ScanGeometry:
    """The scanned field of Swift scan frame parameters (sub-scan, centre, rotation included).

    Same conventions as ``nion.device_kit.ScanDevice.Device.get_scan_data``, but keeping non-square fields.
    """
    fp = frame_parameters
    size = Geometry.IntSize.make(fp.subscan_pixel_size if fp.subscan_pixel_size else fp.pixel_size)
    fov = Geometry.FloatSize.make(fp.fov_size_nm) if fp.fov_size_nm else Geometry.FloatSize(fp.fov_nm, fp.fov_nm)
    used = fov
    if fp.subscan_fractional_size:
        frac = Geometry.FloatSize.make(fp.subscan_fractional_size)
        used = Geometry.FloatSize(height=fov.height * frac.height, width=fov.width * frac.width)
    center = Geometry.FloatPoint.make(fp.center_nm)
    if fp.subscan_fractional_center:
        fc = (Geometry.FloatPoint.make(fp.subscan_fractional_center) - Geometry.FloatPoint(y=0.5, x=0.5)).rotate(
            fp.rotation_rad)
        center += Geometry.FloatPoint(y=fc.y * fov.height, x=fc.x * fov.width)
    rotation = fp.rotation_rad - (fp.subscan_rotation or 0.0)
    pixel_time_us = float(fp.pixel_time_us)
    if not pixel_time_us > 0:
        raise SimulatorParameterError(f"pixel_time_us must be > 0; got {pixel_time_us!r}.")
    flyback_us = float(fp.get_parameter("flyback_time_us", 30.0) or 0.0)
    return ScanGeometry(shape_px=(size.height, size.width), fov_size_nm=(used.height, used.width),
                        center_nm=(center.y, center.x), rotation_rad=rotation, pixel_time_s=pixel_time_us * 1e-6,
                        flyback_s=max(flyback_us, 0.0) * 1e-6)


@dataclasses.dataclass
class FrameTruth:
    """Ground truth of one rendered frame (flat arrays in pixel order; NaN for pixels not visited yet).

    positions_nm: (H*W, 2) scan positions (y, x); times_s: (H*W,) visit times; content_offset_nm: (H*W, 2) the
    true ``drift - stage - CSH`` at each visit; expected: channel -> (H, W) noise-free expected counts.
    """

    geometry: ScanGeometry
    positions_nm: FloatArray
    times_s: FloatArray
    content_offset_nm: FloatArray
    electrons_per_pixel: float
    expected: dict[str, FloatArray]


@dataclasses.dataclass(frozen=True)
class FrameTiming:
    """Reported timing of a frame: the first pixel's time (s, instrument clock), the pixel and line periods (s)."""

    first_pixel_time_s: float
    pixel_period_s: float
    line_period_s: float
    shape_px: tuple[int, int]
    pixels_visited: int
    clocked: bool
    #: per line (NaN: not reached): the time of its first pixel and its pixel period (s)
    line_start_times_s: tuple[float, ...] = ()
    line_pixel_periods_s: tuple[float, ...] = ()


class _Frame:
    def __init__(self, geometry: ScanGeometry, electrons_per_pixel: float, t0_s: float) -> None:
        self.geometry = geometry
        y, x = geometry.positions_nm()
        self.y = y.reshape(-1)
        self.x = x.reshape(-1)
        n = self.y.size
        self.t0_s = t0_s
        self.planned_times = geometry.pixel_times_s(t0_s).reshape(-1)  # free-running visit times
        self.times = np.full(n, np.nan)
        self.offsets = np.full((n, 2), np.nan)
        self.electrons = electrons_per_pixel
        self.channels: list[str] = []  # rendered channels (those the device asked for)
        self.buffers = {name: np.zeros(geometry.shape_px, np.float32) for name in CHANNEL_NAMES}
        self.expected = {name: np.full(geometry.shape_px, np.nan) for name in CHANNEL_NAMES}


class SimScanSimulator:
    """device_kit ``ScanSimulatorLike``: probe bookkeeping (external clock, flyback) and per-pixel rendering.

    External clock (synchronized acquisition): each camera frame calls :meth:`advance_pixel`; per line the first
    ``flyback_pixels`` pulses are flyback (probe blanked at the line start), the next W move over the pixels, so the
    camera frame kept by Swift for pixel (i, j) is exposed with the probe on (i, j).
    """

    def __init__(self, instrument: SimInstrument, specimen: Specimen) -> None:
        self.__instrument = instrument
        self.__specimen = specimen
        self.__lock = threading.RLock()
        self.__blanker_signal_condition = threading.Condition()
        self.__rng = specimen.rng("scan")
        self.__detector = IntegratingDetector(counts_per_electron=1.0)
        self.scan_shape_pixels = Geometry.IntSize()
        self.pixel_size_nm = Geometry.FloatSize()
        self.external_clock = False
        self.flyback_pixels = 2
        self.__pulses = 0
        self.__current_flat = -1
        self.__probe_flat = 0
        self.__t0 = 0.0
        self.__frame: _Frame | None = None
        self.__pending: list[tuple[int, float]] = []
        self.__last_truth: FrameTruth | None = None

    # --- ScanSimulatorLike

    @property
    def probe_position_pixels(self) -> Geometry.IntPoint:
        w = max(self.scan_shape_pixels.width, 1)
        with self.__lock:
            frame = self.__frame
            flat = self.__probe_index(frame) if frame is not None else max(self.__probe_flat, 0)
        return Geometry.IntPoint(y=flat // w, x=flat % w)

    @property
    def blanker_signal_condition(self) -> threading.Condition:
        return self.__blanker_signal_condition

    @property
    def current_pixel_flat(self) -> int:
        """Last pixel reached (the device reads pixels up to it): renders the clocked pixels still pending."""
        with self.__lock:
            self.__flush_pending()
            return self.__current_flat

    def reset_frame(self) -> None:
        with self.__lock:
            self.__pulses = 0
            self.__current_flat = -1
            self.__probe_flat = 0
            self.__frame = None
            self.__pending = []
            self.__t0 = self.__instrument.time_s()

    def _advance_pixel(self, n: int) -> None:
        """Free-running: the scan moved ``n`` pixels on (device_kit's read_partial pacing)."""
        with self.__lock:
            total = self.scan_shape_pixels.height * self.scan_shape_pixels.width
            self.__current_flat = min(self.__current_flat + n, total - 1)
            self.__probe_flat = max(self.__current_flat, 0)
        with self.__blanker_signal_condition:
            self.__blanker_signal_condition.notify_all()

    def advance_pixel(self) -> None:
        """External clock pulse from the camera: move to the next flyback slot or pixel, render it at this time."""
        if not self.external_clock:
            return
        notify = False
        with self.__lock:
            h, w = self.scan_shape_pixels.height, self.scan_shape_pixels.width
            if w <= 0:
                return
            f = self.flyback_pixels
            p = self.__pulses
            self.__pulses += 1
            line, col = divmod(p, w + f)
            col -= f
            notify = col == -f
            if line >= h:
                return
            if col < 0:
                self.__probe_flat = line * w  # blanked, waiting at the line start
            else:
                # the pixel is rendered at this time, in a batch when the device next reads (cheap per pulse)
                flat = line * w + col
                self.__pending.append((flat, self.__instrument.time_s()))
                self.__probe_flat = flat
        if notify:
            with self.__blanker_signal_condition:
                self.__blanker_signal_condition.notify_all()

    def generate_scan_data(self, instrument: InstrumentDevice.Instrument,
                           scan_frame_parameters: ScanDevice.ScanFrameParameters) -> NDArray[np.float32]:
        """device_kit protocol entry (HAADF of the given parameters); the device calls :meth:`channel_data`."""
        return self.channel_data(geometry_from_frame_parameters(scan_frame_parameters), "HAADF")

    # --- rendering

    def prepare_frame(self, geometry: ScanGeometry) -> None:
        """Set up the frame being scanned (called at frame start, before any clock pulse is rendered)."""
        with self.__lock:
            if self.__frame is not None and self.__frame.geometry == geometry:
                return
            self.__frame = _Frame(geometry, electrons_in(self.__instrument, geometry.pixel_time_s), self.__t0)
            self.__flush_pending()

    def channel_data(self, geometry: ScanGeometry, channel_name: str) -> NDArray[np.float32]:
        """The (H, W) float32 buffer of ``channel_name`` for the frame (filled now, or pixel by pixel when clocked)."""
        if channel_name not in CHANNEL_NAMES:
            raise SimulatorParameterError(f"unknown scan channel {channel_name!r}; channels: {CHANNEL_NAMES}.")
        self.prepare_frame(geometry)
        with self.__lock:
            frame = self.__frame
            assert frame is not None
            if channel_name not in frame.channels:
                frame.channels.append(channel_name)
                if not self.external_clock:
                    flats = np.arange(frame.y.size)
                    self.__render_pixels(frame, flats, frame.planned_times, (channel_name,))
                else:  # pixels already clocked (if any), for this channel
                    visited = np.nonzero(np.isfinite(frame.times))[0]
                    if visited.size:
                        self.__render_pixels(frame, visited, frame.times[visited], (channel_name,))
            return frame.buffers[channel_name]

    def __flush_pending(self) -> None:
        """Render the clocked pixels recorded by :meth:`advance_pixel` (lock held)."""
        frame = self.__frame
        if frame is None or not self.__pending:
            return
        pending = np.asarray(self.__pending, dtype=np.float64).reshape(-1, 2)
        self.__pending = []
        flats = pending[:, 0].astype(np.int64)
        self.__render_pixels(frame, flats, pending[:, 1], tuple(frame.channels))
        self.__current_flat = max(self.__current_flat, int(flats.max()))

    def __render_pixels(self, frame: _Frame, flats: NDArray[np.int64], times: FloatArray,
                        channels: tuple[str, ...]) -> None:
        offsets = self.__instrument.scan_content_offset_nm(times)
        frame.times[flats] = times
        frame.offsets[flats] = offsets
        if channels:
            sy = frame.y[flats] - offsets[..., 0]
            sx = frame.x[flats] - offsets[..., 1]
            signals = self.__specimen.sample.scattering(sy, sx, channels=channels)
            for name in channels:
                expected = signals[name] * frame.electrons
                frame.expected[name].reshape(-1)[flats] = expected
                frame.buffers[name].reshape(-1)[flats] = self.__detector.read(expected, self.__rng)
        if flats.size and flats[-1] == frame.y.size - 1:
            self.__last_truth = self.__truth(frame)

    @staticmethod
    def __truth(frame: _Frame) -> FrameTruth:
        return FrameTruth(geometry=frame.geometry, positions_nm=np.stack([frame.y, frame.x], 1),
                          times_s=frame.times.copy(), content_offset_nm=frame.offsets.copy(),
                          electrons_per_pixel=frame.electrons,
                          expected={k: frame.expected[k].copy() for k in frame.channels})

    # --- probe and ground truth

    def __probe_index(self, frame: _Frame) -> int:
        """Pixel under the probe now: clocked: the last pulse; free-running: the last planned visit time <= now."""
        if self.external_clock:
            flat = self.__probe_flat
        else:
            flat = int(np.searchsorted(frame.planned_times, self.__instrument.time_s(), side="right")) - 1
        return min(max(flat, 0), frame.y.size - 1)

    def probe_scan_position_nm(self) -> tuple[float, float] | None:
        """Scan position (y, x) nm of the probe in the current frame, None if no frame is being scanned."""
        with self.__lock:
            frame = self.__frame
            if frame is None:
                return None
            flat = self.__probe_index(frame)
            return float(frame.y[flat]), float(frame.x[flat])

    def frame_timing(self) -> FrameTiming | None:
        """Timing of the frame being scanned (or the last one), as a scan device reports frame/line times.

        Measured on the visited pixels: clocked (synchronized) frames advance with the camera's frames (exposure
        plus read-out, flyback slots included), free-running ones with the dwell and flyback time.
        """
        with self.__lock:
            self.__flush_pending()
            frame = self.__frame
            if frame is None:
                return None
            h, w = frame.geometry.shape_px
            times = frame.times.reshape(h, w)
            visited = np.isfinite(times)
            if not visited.any():
                return None
            clocked = self.external_clock
        first = float(times[0, 0]) if visited[0, 0] else float(np.nanmin(times))
        along = np.diff(times, axis=1)
        pixel = float(np.nanmedian(along)) if np.isfinite(along).any() else frame.geometry.pixel_time_s
        starts = times[:, 0]
        down = np.diff(starts[np.isfinite(starts)])
        if down.size:
            line = float(np.median(down))
        elif clocked:
            line = pixel * (w + self.flyback_pixels)
        else:
            line = w * frame.geometry.pixel_time_s + frame.geometry.flyback_s
        # per line: its first pixel's time and its pixel period (a loaded camera clock is not regular)
        line_starts = tuple(float(v) for v in starts)
        with np.errstate(invalid="ignore"):
            per_line = [float(np.nanmedian(row)) if np.isfinite(row).any() else pixel for row in along] if w > 1 \
                else [pixel] * h
        return FrameTiming(first_pixel_time_s=first, pixel_period_s=pixel, line_period_s=line,
                           shape_px=(h, w), pixels_visited=int(np.count_nonzero(visited)), clocked=clocked,
                           line_start_times_s=line_starts, line_pixel_periods_s=tuple(per_line))

    @property
    def last_frame_truth(self) -> FrameTruth | None:
        """Ground truth of the last completely rendered frame (see :class:`FrameTruth`)."""
        with self.__lock:
            self.__flush_pending()
            return self.__last_truth

    def current_frame_truth(self) -> FrameTruth | None:
        """Ground truth of the frame being scanned (unvisited pixels NaN)."""
        with self.__lock:
            self.__flush_pending()
            frame = self.__frame
            return self.__truth(frame) if frame is not None else None


class SimScanDevice(ScanDevice.Device):
    """The scan device: HAADF and MAADF channels, per-pixel-time drift, flyback, sub-scan, rotation."""

    def __init__(self, instrument: SimInstrument, specimen: Specimen, *, device_id: str = SCAN_DEVICE_ID,
                 device_name: str = _("In-situ Sim Scan")) -> None:
        self.__simulator = SimScanSimulator(instrument, specimen)
        super().__init__(device_id, device_name, instrument, self.__simulator)
        self.priority = 20

    @property
    def simulator(self) -> SimScanSimulator:
        return self.__simulator

    def _Device__get_channels(self) -> list[ScanDevice.Channel]:  # overrides device_kit's private channel list
        return [ScanDevice.Channel(0, "HAADF", True), ScanDevice.Channel(1, "MAADF", False)]

    def start_frame(self, is_continuous: bool) -> int:
        frame_number = super().start_frame(is_continuous)
        # set the geometry up now, so clock pulses arriving before the first read are rendered at their own time
        self.__simulator.prepare_frame(geometry_from_frame_parameters(self.current_frame_parameters))
        return frame_number

    def get_scan_data(self, frame_parameters: scan_base.ScanFrameParameters,
                      channel: typing.Union[int, ScanDevice.Channel]) -> NDArray[typing.Any]:
        name = channel.name if isinstance(channel, ScanDevice.Channel) else CHANNEL_NAMES[int(channel)]
        return self.__simulator.channel_data(geometry_from_frame_parameters(frame_parameters), name)

    def frame_timing(self) -> FrameTiming | None:
        """Timing of the frame being (or last) scanned: see :meth:`SimScanSimulator.frame_timing`."""
        return self.__simulator.frame_timing()

    def calculate_flyback_pixels(self, frame_parameters: scan_base.ScanFrameParameters) -> int:
        return self.__simulator.flyback_pixels

    def calculate_max_field_of_view(self, frame_parameters: scan_base.ScanFrameParameters) -> float:
        return 2000.0


class SimScanModule:
    """``scan_module`` registry component for Swift (``stem_controller_id``, ``device``, ``settings``)."""

    def __init__(self, instrument: SimInstrument, specimen: Specimen, *, device_id: str = SCAN_DEVICE_ID,
                 fov_nm: float = 8.0) -> None:
        self.stem_controller_id = instrument.instrument_id
        self.device = SimScanDevice(instrument, specimen, device_id=device_id)
        self.panel_type: str | None = None
        self.panel_delegate_type: str | None = None
        self.data_channel_delegate: typing.Any = None
        scan_modes = (
            scan_base.ScanSettingsMode(_("Fast"), "fast", ScanDevice.ScanFrameParameters(
                pixel_size=(256, 256), pixel_time_us=2, fov_nm=fov_nm)),
            scan_base.ScanSettingsMode(_("Slow"), "slow", ScanDevice.ScanFrameParameters(
                pixel_size=(512, 512), pixel_time_us=4, fov_nm=fov_nm)),
            scan_base.ScanSettingsMode(_("Record"), "record", ScanDevice.ScanFrameParameters(
                pixel_size=(1024, 1024), pixel_time_us=4, fov_nm=fov_nm)),
        )
        self.settings = scan_base.ScanSettings(device_id, scan_modes, lambda d: ScanDevice.ScanFrameParameters(d), 0, 2)


