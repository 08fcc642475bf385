"""Swift side of a drift-corrected SI's result: xdata (calibrated, with the audit trail), data items, device lists.

:class:`DriftSIResult` is :class:`processing.spectroscopy.si_result.SIRunResult` plus its Swift views
(``si_xdata``, ``haadf_xdata``, ``drift_log_xdata``). :func:`create_data_items` adds them to a document.
:func:`scan_choices` / :func:`spectrometer_choices` list the devices Swift knows (as Swift's own panels do) and
:func:`check_devices` refuses a bad choice (a device that is gone, a camera that is not a spectrometer) with a
message before anything is acquired.
"""
from __future__ import annotations

import typing

import numpy as np

from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.instrumentation import HardwareSource

from processing import base as processing_base
from processing.spectroscopy.si_result import SIRunResult
from processing.spectroscopy.si_settings import DriftSIError
from processing.spectroscopy.spectrum_alignment import EnergyAxis

__all__ = ["DriftSIResult", "DRIFT_LOG_LABELS", "create_data_items", "live_analysis_xdatas", "scan_choices",
           "spectrometer_choices", "check_devices"]

#: rows of the Drift Log: drift y and x (nm), correlation quality, and 1 where the measurement is flagged
DRIFT_LOG_LABELS = ("y (nm)", "x (nm)", "quality", "flagged")


class DriftSIResult(SIRunResult):
    """Everything a run produced (see :class:`SIRunResult`), with its Swift xdata views."""

    def si_xdata(self, pass_index: int = 0, *, raw: bool = False) -> DataAndMetadata.DataAndMetadata:
        """(H, W, E) SI (aligned unless ``raw``), calibrations (nm, nm, eV), audit metadata under ``drift_si``.

        An incomplete run returns only the rows up to the last one holding an acquired pixel (possibly none: an
        empty (0, W, E) SI whose metadata says why); ``drift_si.trusted_mask`` marks the pixels of trusted sections.
        """
        if not self.passes:
            w = self.settings.si_size_px[1]
            data = np.zeros((0, w, 1), np.float32)
            metadata = {"drift_si": self.metadata(None)}
        else:
            p = self.passes[pass_index]
            rows = self.rows_to_keep(p)
            data = (p.raw if raw else p.aligned).data[:rows].copy()
            metadata = {"drift_si": self.metadata(p)}
            metadata["drift_si"]["trusted_mask"] = self.trusted_pixels(pass_index)[:rows].astype(int).tolist()
        metadata["drift_si"]["aligned"] = not raw
        axis = self.energy_axis or EnergyAxis(0.0, 1.0)
        cy, cx = self.si_pixel_size_nm
        calibrations = [Calibration.Calibration(0.0, cy, "nm"), Calibration.Calibration(0.0, cx, "nm"),
                        Calibration.Calibration(axis.offset_eV, axis.scale_eV, self.energy_units)]
        return DataAndMetadata.new_data_and_metadata(
            data, intensity_calibration=Calibration.Calibration(units="counts"), dimensional_calibrations=calibrations,
            metadata=metadata, data_descriptor=DataAndMetadata.DataDescriptor(False, 2, 1))

    def haadf_xdata(self, pass_index: int = 0) -> DataAndMetadata.DataAndMetadata:
        p = self.passes[pass_index]
        rows = self.rows_to_keep(p)
        cy, cx = self.si_pixel_size_nm
        valid = p.haadf.valid_pixels[:rows]
        # NaN where no HAADF was acquired (an abort: the scan reports a line only once the next one has begun)
        data = np.where(valid, p.haadf.data[:rows, :, 0], np.nan).astype(np.float32)
        return DataAndMetadata.new_data_and_metadata(
            data,
            dimensional_calibrations=[Calibration.Calibration(0.0, cy, "nm"), Calibration.Calibration(0.0, cx, "nm")],
            metadata={"drift_si": {"state": self.state, "pass": p.label,
                                   "valid_pixels_per_row": valid.sum(axis=1).tolist()}})

    def drift_log_xdata(self) -> DataAndMetadata.DataAndMetadata:
        """(4, N) rows drift y (nm), drift x (nm), quality, flagged (0/1) versus time (s since the run started).

        The time axis is the first measurement time plus the mean interval; the exact times, the accepted and the
        flagged marks are in the metadata. Shown as four labelled lines (``display.show_rows_as_lines``).
        """
        log = self.drift_log()
        times = np.asarray(log["time_s"], np.float64)
        data = (np.stack([log["y_nm"], log["x_nm"], log["quality"], log["flagged"]]) if len(times)
                else np.zeros((4, 1)))
        scale = float((times[-1] - times[0]) / (len(times) - 1)) if len(times) > 1 and times[-1] > times[0] else 1.0
        offset = float(times[0]) if len(times) else 0.0
        return DataAndMetadata.new_data_and_metadata(
            data, intensity_calibration=Calibration.Calibration(units="nm"),
            dimensional_calibrations=[Calibration.Calibration(), Calibration.Calibration(offset, scale, "s")],
            metadata={"drift_si": {"time_s": times.tolist(), "accepted": log["accepted"].tolist(),
                                   "flagged": log["flagged"].tolist(),
                                   "flag_reasons": {str(m.index): m.reason for m in self.measurements if m.flagged},
                                   "labels": list(DRIFT_LOG_LABELS)}})


def live_analysis_xdatas(outputs: processing_base.Outputs, stats: typing.Mapping[str, typing.Any] | None
                         ) -> list[tuple[str, DataAndMetadata.DataAndMetadata]]:
    """(title, xdata) of every displayable live-analysis output; metadata ``insitu`` carries the runner's record
    (ms per update, updates skipped) under ``live_analysis``."""
    from nionswift_plugin.insitu.computations import output_to_xdata
    title = str((stats or {}).get("title", "Live analysis"))
    found: list[tuple[str, DataAndMetadata.DataAndMetadata]] = []
    for output in outputs:
        xdata = output_to_xdata(output, {"live_analysis": dict(stats or {}), "output": output.name})
        if xdata is not None:
            found.append((f"{title}: {getattr(output, 'title', '') or output.name}", xdata))
    return found


def create_data_items(document_model: typing.Any, result: DriftSIResult) -> list[typing.Any]:
    """Add the run's results to a Swift document: the SI (one per pass), its HAADF, the live-analysis outputs and
    the Drift Log.

    An incomplete run (aborted / error) is marked in the title and in the metadata (``drift_si.complete`` False,
    ``drift_si.state``, ``drift_si.message``) and holds exactly the rows that have acquired pixels; flagged
    sections are counted in the title. Returns the new data items.
    """
    from nion.swift.model import DataItem
    from nionswift_plugin.insitu import display
    items: list[typing.Any] = []
    suffix = "" if result.complete else f" [INCOMPLETE: {result.state}]"

    def add(xdata: DataAndMetadata.DataAndMetadata, title: str) -> None:
        item = DataItem.new_data_item(xdata)
        item.title = title + suffix
        document_model.append_data_item(item)
        items.append(item)

    for i, p in enumerate(result.passes):
        if p.aligned.acquired_pixels == 0:
            continue
        flagged = len(result.flagged_sections(i))
        note = f" [{flagged} flagged section{'s' if flagged != 1 else ''}]" if flagged else ""
        add(result.si_xdata(i), f"Drift-corrected SI ({p.label}){note}")
        if i == 0:
            add(result.haadf_xdata(i), f"Drift-corrected SI HAADF ({p.label})")
    for title, xdata in live_analysis_xdatas(result.live_outputs, result.live_analysis_stats):
        add(xdata, title)
        if xdata.metadata.get("insitu", {}).get("labels") and xdata.is_data_2d and not xdata.is_collection:
            display.show_rows_as_lines(document_model.get_display_item_for_data_item(items[-1]),
                                       xdata.metadata["insitu"]["labels"])
    if result.measurements:
        add(result.drift_log_xdata(), "Drift Log")
        display.show_rows_as_lines(document_model.get_display_item_for_data_item(items[-1]), DRIFT_LOG_LABELS)
    return items


# -- devices -----------------------------------------------------------------------------------------------------
def _sources() -> list[typing.Any]:
    return list(HardwareSource.HardwareSourceManager().hardware_sources)


def scan_choices() -> list[tuple[str, str]]:
    """(hardware_source_id, display name) of every scan device Swift knows."""
    return [(s.hardware_source_id, s.display_name) for s in _sources() if s.features.get("is_scanning")]


def spectrometer_choices() -> list[tuple[str, str]]:
    """(hardware_source_id, display name) of every EELS spectrometer camera Swift knows."""
    return [(s.hardware_source_id, s.display_name) for s in _sources() if s.features.get("is_eels_camera")]


def check_devices(scan_id: str, camera_id: str) -> tuple[typing.Any, typing.Any]:
    """The scan and spectrometer hardware sources for these ids, or :class:`DriftSIError` saying what is wrong."""
    manager = HardwareSource.HardwareSourceManager()
    scan = manager.get_hardware_source_for_hardware_source_id(scan_id)
    camera = manager.get_hardware_source_for_hardware_source_id(camera_id)
    scans = [sid for sid, _n in scan_choices()]
    cams = [cid for cid, _n in spectrometer_choices()]
    if scan is None:
        raise DriftSIError(f"scan '{scan_id}' not found (is the instrument or simulator running?); scans Swift "
                           f"knows: {scans or 'none'}.")
    if not scan.features.get("is_scanning"):
        raise DriftSIError(f"'{scan_id}' is not a scan device; choose one of {scans or 'none'}.")
    if camera is None:
        raise DriftSIError(f"spectrometer '{camera_id}' not found; spectrometers Swift knows: {cams or 'none'}.")
    if not camera.features.get("is_eels_camera"):
        raise DriftSIError(f"'{camera_id}' is a camera but not a spectrometer (EELS camera); an SI needs one of "
                           f"{cams or 'none'}.")
    return scan, camera
