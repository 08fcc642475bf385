"""The "Drift-corrected SI" dock panel: settings, regions on the survey image, Start/Abort, progress, live views.

Thin glue over :mod:`nionswift_plugin.insitu.drift_si` (the same engine the Python call uses). Every setting is
saved to :func:`drift_si.default_settings_path` when it changes and restored when the panel opens.

Regions: select the context (survey) image and press "Place regions": two rectangle graphics are added, "SI field"
and "Drift reference" (drag them to move/resize); their bounds are read when the run starts. A rectangle already
selected on the display can be taken with "Use selection as field" / "... as reference".

Devices: the scan and the spectrometer are chosen from the hardware sources Swift knows (lists, as in Swift's own
panels); a device that is gone or a camera that is not a spectrometer is refused with a message at Start.

Live: while a run is active the panel keeps three data items up to date (queued on the UI thread): the SI being
filled (HAADF of the acquired pixels), the latest spectrum, and the "Drift Log" line plot (y, x in nm, the
correlation quality and a "flagged" line at 1 for each flagged measurement), plus the live analysis's outputs. Under
the status, one line per section gives its verdict (trusted / FLAGGED with the reasons). At the end the results are
added with :func:`drift_si.create_data_items` (marked INCOMPLETE when aborted or failed, flagged sections counted).
"""
from __future__ import annotations

import logging
import typing

import numpy as np

from nion.data import Calibration
from nion.data import DataAndMetadata
from nion.swift import Panel
from nion.swift import Workspace
from nion.swift.model import DataItem
from nion.swift.model import Graphics

from nionswift_plugin.insitu import display
from nionswift_plugin.insitu import drift_si
from processing.spectroscopy import live_analysis

PANEL_ID = "insitu-drift-si-panel"
FIELD_LABEL = "SI field"
REFERENCE_LABEL = "Drift reference"

__all__ = ["DriftSIPanel", "register_panels", "unregister_panels", "PANEL_ID"]


def _rect_from_graphic(graphic: typing.Any) -> tuple[float, float, float, float]:
    (top, left), (height, width) = graphic.bounds
    return float(top), float(left), float(height), float(width)


class DriftSIPanel(Panel.Panel):
    def __init__(self, document_controller: typing.Any, panel_id: str, properties: typing.Any) -> None:
        super().__init__(document_controller, panel_id, "Drift-corrected SI")
        self.settings = drift_si.DriftSISettings.load()
        self._run: drift_si.DriftCorrectedSI | None = None
        self._listeners: list[typing.Any] = []
        self._live_items: dict[str, typing.Any] = {}
        self._field_graphic: typing.Any = None
        self._reference_graphic: typing.Any = None
        ui = document_controller.ui
        self._ui = ui
        column = ui.create_column_widget(properties={"spacing": 4, "margin": 6})
        s = self.settings

        def row(label: str, widget: typing.Any) -> None:
            r = ui.create_row_widget(properties={"spacing": 4})
            r.add(ui.create_label_widget(label, properties={"width": 150}))
            r.add(widget)
            r.add_stretch()
            column.add(r)

        def line_edit(text: str, on_change: typing.Callable[[str], None]) -> typing.Any:
            edit = ui.create_line_edit_widget(properties={"width": 120})
            edit.text = text

            def changed(value: str) -> None:
                try:
                    on_change(value)
                    self._save()
                except (ValueError, TypeError) as e:
                    self._message(f"invalid value {value!r}: {e}")
            edit.on_editing_finished = changed
            return edit

        def setter(name: str, convert: typing.Callable[[str], typing.Any]) -> typing.Callable[[str], None]:
            return lambda value: setattr(self.settings, name, convert(value))

        def pair(value: str) -> tuple[float, ...]:
            return tuple(float(v) for v in value.replace("x", ",").split(",") if v.strip())

        mode = ui.create_combo_box_widget(items=["EELS", "EEGS"])
        mode.current_index = 0 if s.mode == "EELS" else 1

        def mode_changed(item: str) -> None:
            self.settings.mode = item
            self._save()
        mode.on_current_item_changed = mode_changed
        row("Mode", mode)
        # devices: chosen from the ones Swift knows (as Swift's own panels do); refreshed when the panel opens and
        # before each run; a device that is gone or a camera that is not a spectrometer is refused at Start
        self._scan_combo = ui.create_combo_box_widget(items=[])
        self._camera_combo = ui.create_combo_box_widget(items=[])

        def scan_changed(item: str) -> None:
            self._choose_device("scan_hardware_source_id", self._scan_ids, self._scan_combo)

        def camera_changed(item: str) -> None:
            self._choose_device("camera_hardware_source_id", self._camera_ids, self._camera_combo)
        self._scan_ids: list[str] = []
        self._camera_ids: list[str] = []
        self._refresh_devices()
        self._scan_combo.on_current_item_changed = scan_changed
        self._camera_combo.on_current_item_changed = camera_changed
        row("Scan", self._scan_combo)
        row("Spectrometer", self._camera_combo)
        row("Exposure (ms)", line_edit(f"{s.exposure_s * 1000:g}",
                                       lambda v: setattr(self.settings, "exposure_s", float(v) / 1000)))
        row("SI size (H x W px)", line_edit(f"{s.si_size_px[0]}x{s.si_size_px[1]}",
                                            lambda v: setattr(self.settings, "si_size_px",
                                                              tuple(int(x) for x in pair(v)))))
        row("Section (lines)", line_edit(str(s.section_lines), setter("section_lines", int)))
        row("or interval (s)", line_edit("" if s.section_interval_s is None else f"{s.section_interval_s:g}",
                                         lambda v: setattr(self.settings, "section_interval_s",
                                                           float(v) if v.strip() else None)))
        row("Quality threshold", line_edit(f"{s.quality_threshold:g}", setter("quality_threshold", float)))
        for name, label in (("correct_drift", "Correct drift"), ("correct_shear", "Correct shear in sections"),
                            ("correct_energy", "Align ZLP (energy drift)")):
            box = ui.create_check_box_widget(label)
            box.checked = bool(getattr(s, name))

            def toggled(checked: bool, name: str = name) -> None:
                setattr(self.settings, name, bool(checked))
                self._save()
            box.on_checked_changed = toggled
            column.add(box)
        # live analysis: a choice of the registered analyses and the chosen one's declared parameters
        names = ["None"] + sorted(live_analysis.LIVE_ANALYSES)
        analysis = ui.create_combo_box_widget(items=names)
        analysis.current_index = names.index(s.live_analysis) if s.live_analysis in names else 0
        self._analysis_combo = analysis
        self._analysis_params = ui.create_column_widget(properties={"spacing": 2})

        def analysis_changed(item: str) -> None:
            self.settings.live_analysis = "" if item == "None" else item
            self.settings.live_analysis_parameters = {}
            self._build_analysis_parameters()
            self._save()
        analysis.on_current_item_changed = analysis_changed
        row("Live analysis", analysis)
        column.add(self._analysis_params)
        self._build_analysis_parameters()
        column.add(ui.create_label_widget("EEGS"))
        rng = s.wavelength_range_nm or (560.0, 620.0, 5.0)
        row("λ start,stop,step (nm)", line_edit(",".join(f"{v:g}" for v in rng),
                                                          lambda v: setattr(self.settings, "wavelength_range_nm",
                                                                            pair(v))))
        row("Frames per λ", line_edit(str(s.frames_per_wavelength), setter("frames_per_wavelength", int)))
        geometry = ui.create_combo_box_widget(items=["point", "line", "map"])
        geometry.current_index = ["point", "line", "map"].index(s.eegs_geometry)

        def geometry_changed(item: str) -> None:
            self.settings.eegs_geometry = item
            self._save()
        geometry.on_current_item_changed = geometry_changed
        row("Geometry", geometry)
        row("Point (y,x fraction)", line_edit(",".join(f"{v:g}" for v in s.eegs_point),
                                             lambda v: setattr(self.settings, "eegs_point", pair(v))))
        regions = ui.create_row_widget(properties={"spacing": 4})
        place = ui.create_push_button_widget("Place regions")
        place.on_clicked = self._place_regions
        use_field = ui.create_push_button_widget("Selection → field")
        use_field.on_clicked = lambda: self._use_selection("scan_field")
        use_ref = ui.create_push_button_widget("Selection → reference")
        use_ref.on_clicked = lambda: self._use_selection("reference_region")
        for b in (place, use_field, use_ref):
            regions.add(b)
        column.add(regions)
        buttons = ui.create_row_widget(properties={"spacing": 4})
        self._start_button = ui.create_push_button_widget("Start")
        self._start_button.on_clicked = self.start
        self._abort_button = ui.create_push_button_widget("Abort")
        self._abort_button.on_clicked = self.abort
        buttons.add(self._start_button)
        buttons.add(self._abort_button)
        buttons.add_stretch()
        column.add(buttons)
        self._progress = ui.create_progress_bar_widget(properties={"height": 18, "min-width": 200})
        self._progress.minimum = 0
        self._progress.maximum = 1000
        column.add(self._progress)
        self._status = ui.create_label_widget("Idle.")
        self._status.word_wrap = True
        column.add(self._status)
        column.add(ui.create_label_widget("Sections (verdict)"))
        self._verdicts = ui.create_label_widget("")
        self._verdicts.word_wrap = True
        column.add(self._verdicts)
        column.add_stretch()
        self.widget = column

    def _refresh_devices(self) -> None:
        """Fill the device choices from Swift's hardware sources; keep the remembered choice (listed as missing
        when it is gone, so that Start refuses it with a message instead of picking another device silently)."""
        for name, choices, combo, attr in (
                ("scan_hardware_source_id", drift_si.scan_choices(), self._scan_combo, "_scan_ids"),
                ("camera_hardware_source_id", drift_si.spectrometer_choices(), self._camera_combo, "_camera_ids")):
            ids = [cid for cid, _n in choices]
            labels = [f"{n} ({cid})" for cid, n in choices]
            current = getattr(self.settings, name)
            if current not in ids:
                ids.append(current)
                labels.append(f"{current} (not available)")
            setattr(self, attr, ids)
            combo.items = labels
            combo.current_index = ids.index(current)

    def _choose_device(self, name: str, ids: list[str], combo: typing.Any) -> None:
        index = combo.current_index
        if index is not None and 0 <= index < len(ids):
            setattr(self.settings, name, ids[index])
            self._save()

    def _build_analysis_parameters(self) -> None:
        """One field per declared parameter of the chosen live analysis (values kept in the settings)."""
        ui = self._ui
        box = self._analysis_params
        box.remove_all()
        name = self.settings.live_analysis
        if not name or name not in live_analysis.LIVE_ANALYSES:
            return
        values = self.settings.live_analysis_parameters
        for param in live_analysis.live_analysis_parameters(name):
            r = ui.create_row_widget(properties={"spacing": 4})
            units = f" ({param.units})" if param.units else ""
            r.add(ui.create_label_widget(f"  {param.label}{units}", properties={"width": 150}))
            value = values.get(param.name, param.default)
            if param.type == "boolean":
                widget = ui.create_check_box_widget("")
                widget.checked = bool(value)
                widget.on_checked_changed = lambda v, p=param: self._set_analysis_parameter(p, v)
            elif param.type == "choice":
                widget = ui.create_combo_box_widget(items=list(param.choices))
                widget.current_index = list(param.choices).index(value) if value in param.choices else 0
                widget.on_current_item_changed = lambda v, p=param: self._set_analysis_parameter(p, v)
            else:
                widget = ui.create_line_edit_widget(properties={"width": 120})
                widget.text = str(value)
                widget.on_editing_finished = lambda v, p=param: self._set_analysis_parameter(p, v)
            r.add(widget)
            r.add_stretch()
            box.add(r)

    def _set_analysis_parameter(self, param: typing.Any, value: typing.Any) -> None:
        try:
            converted = param.validate(value if param.type in ("boolean", "choice", "string") else float(value))
        except (ValueError, TypeError) as e:  # ParameterError is a ValueError
            self._message(f"{param.label}: {e}")
            return
        self.settings.live_analysis_parameters = dict(self.settings.live_analysis_parameters, **{param.name: converted})
        self._save()

    # -- settings / regions ----------------------------------------------------------------------------------------
    def _save(self) -> None:
        try:
            self.settings.save()
        except OSError as e:
            logging.warning("Drift-corrected SI: cannot save settings (%s)", e)

    def _message(self, text: str) -> None:
        self.document_controller.queue_task(lambda: setattr(self._status, "text", text))

    def _place_regions(self) -> None:
        display_item = self.document_controller.selected_display_item
        if display_item is None:
            self._message("Select the survey (context) image first.")
            return
        for attr, label, rect in (("_field_graphic", FIELD_LABEL, self.settings.scan_field),
                                  ("_reference_graphic", REFERENCE_LABEL, self.settings.reference_region)):
            graphic = Graphics.RectangleGraphic()
            top, left, h, w = rect
            graphic.bounds = ((top, left), (h, w))
            graphic.label = label
            display_item.add_graphic(graphic)
            setattr(self, attr, graphic)
        self._message("Drag the 'SI field' and 'Drift reference' rectangles; they are read when you press Start.")

    def _use_selection(self, name: str) -> None:
        display_item = self.document_controller.selected_display_item
        graphics = [] if display_item is None else [display_item.graphics[i]
                                                    for i in display_item.graphic_selection.indexes]
        rects = [g for g in graphics if isinstance(g, Graphics.RectangleGraphic)]
        if not rects:
            self._message("Select a rectangle on the survey image first.")
            return
        setattr(self.settings, name, _rect_from_graphic(rects[0]))
        self._save()
        self._message(f"{name} = {getattr(self.settings, name)}")

    def _read_regions(self) -> None:
        for graphic, name in ((self._field_graphic, "scan_field"), (self._reference_graphic, "reference_region")):
            if graphic is not None and getattr(graphic, "container", None) is not None:
                setattr(self.settings, name, _rect_from_graphic(graphic))
        self._save()

    # -- run ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._read_regions()
        self._refresh_devices()
        self._verdicts.text = ""
        run = drift_si.DriftCorrectedSI(self.settings)
        self._listeners = [run.progress_event.listen(self._on_progress), run.section_event.listen(self._on_section),
                           run.drift_event.listen(self._on_drift), run.finished_event.listen(self._on_finished),
                           run.analysis_event.listen(self._on_analysis)]
        try:
            run.start()
        except drift_si.DriftSIError as e:
            self._listeners = []
            self._message(str(e))
            return
        self._run = run
        self._message("Running...")

    def abort(self) -> None:
        if self._run is not None:
            self._run.abort()
            self._message("Aborting; the acquired pixels are kept.")

    def _live(self, key: str, title: str, xdata: DataAndMetadata.DataAndMetadata,
              labels: typing.Sequence[str] | None = None) -> None:
        def update() -> None:
            item = self._live_items.get(key)
            if item is None or item.container is None:
                item = DataItem.new_data_item(xdata)
                item.title = title
                self.document_controller.document_model.append_data_item(item)
                self._live_items[key] = item
                line_labels = drift_si.DRIFT_LOG_LABELS if key == "drift_log" else labels
                if line_labels:
                    display.show_rows_as_lines(
                        self.document_controller.document_model.get_display_item_for_data_item(item), line_labels)
                self._show(item)
            else:
                item.set_xdata(xdata)
        self.document_controller.queue_task(update)

    def _show(self, item: DataItem.DataItem) -> None:
        """Show a new live item in an empty display panel, so the user sees the SI fill (else: the data panel)."""
        workspace = self.document_controller.workspace_controller
        display_item = self.document_controller.document_model.get_display_item_for_data_item(item)
        if workspace is None or display_item is None:
            return
        for display_panel in workspace.display_panels:
            if display_panel.display_item is None:
                display_panel.set_display_panel_display_item(display_item)
                return

    def _on_progress(self, fraction: float, remaining_s: float, text: str) -> None:
        def update() -> None:
            self._progress.value = int(1000 * fraction)
            remaining = "" if not np.isfinite(remaining_s) else f", {remaining_s:.0f} s remaining"
            self._status.text = f"{100 * fraction:.0f} %{remaining} — {text}"
        self.document_controller.queue_task(update)

    def _on_section(self, result: drift_si.DriftSIResult, p: drift_si.PassResult,
                    record: drift_si.SectionRecord) -> None:
        cy, cx = result.si_pixel_size_nm
        haadf = np.where(p.haadf.valid_pixels, p.haadf.data[..., 0], np.nan)
        fill = float(np.nanmin(haadf)) if np.isfinite(haadf).any() else 0.0
        self._live("si", "Drift-corrected SI (live)", DataAndMetadata.new_data_and_metadata(
            np.nan_to_num(haadf, nan=fill),
            dimensional_calibrations=[Calibration.Calibration(0, cy, "nm"), Calibration.Calibration(0, cx, "nm")]))
        self._show_verdicts(result)
        w = p.geometry.shape[1]
        last_pixel = record.row0 * w + max(record.pixels_acquired, 1) - 1  # an aborted section: its last acquired pixel
        axis = result.energy_axis
        spectrum = p.aligned.data[last_pixel // w, last_pixel % w].astype(np.float64)
        self._live("spectrum", "Drift-corrected SI latest spectrum", DataAndMetadata.new_data_and_metadata(
            spectrum, dimensional_calibrations=[Calibration.Calibration(axis.offset_eV if axis else 0.0,
                                                                        axis.scale_eV if axis else 1.0, "eV")]))

    def _show_verdicts(self, result: drift_si.DriftSIResult, *, final: bool = False) -> None:
        """One line per section of the SI: rows, re-acquisitions, and its verdict (during the run: jumps and
        ambiguous measurements so far; at the end: the assigned verdict with the reasons)."""
        lines = []
        for r in result.current_sections(0):
            rows = f"rows {r.row0}-{r.row0 + r.rows - 1}" + (f" (re-acquired x{r.repeat})" if r.repeat else "")
            if final:
                verdict = "trusted" if r.trusted else "FLAGGED: " + "; ".join(r.flags)
            else:
                after = [m for m in result.measurements if m.time_s >= r.t_end_s][:1]
                bad = [m for m in after if m.flagged or m.jump_nm is not None]
                verdict = "measured" if after and not bad else ("pending" if not after else "FLAGGED (see log)")
            lines.append(f"{rows}: {verdict}")
        text = "\n".join(lines)
        self.document_controller.queue_task(lambda: setattr(self._verdicts, "text", text))

    def _on_drift(self, measurement: typing.Any) -> None:
        run = self._run
        if run is not None:
            run.result.measurements = run.estimator.records
            self._live("drift_log", "Drift Log", run.result.drift_log_xdata())

    def _on_analysis(self, outputs: typing.Any, update: typing.Any) -> None:
        """New live-analysis outputs (worker thread): each displayable one updates its own live data item."""
        run = self._run
        stats = run._analysis_runner.stats() if run is not None and run._analysis_runner is not None else None
        for title, xdata in drift_si.live_analysis_xdatas(outputs, stats):
            self._live(f"analysis:{title}", f"{title} (live)", xdata, _line_labels(xdata))
        notices = [o.text for o in outputs if type(o).__name__ == "Notice"]
        if notices:
            self._message("Live analysis: " + "; ".join(notices))

    def _on_finished(self, result: drift_si.DriftSIResult) -> None:
        self._show_verdicts(result, final=True)

        def finish() -> None:
            document_model = self.document_controller.document_model
            for item in drift_si.create_data_items(document_model, result):
                labels = _line_labels(item.xdata) if item.xdata is not None else None
                if labels:   # the saved live-analysis rows are k lines too
                    display.show_rows_as_lines(document_model.get_display_item_for_data_item(item), labels)
            rejected = sum(1 for m in result.measurements if not m.accepted)
            flagged_m = sum(1 for m in result.measurements if m.flagged)
            flagged_s = len(result.flagged_sections(0)) if result.passes else 0
            self._status.text = (f"{result.state}: {len(result.measurements)} drift measurements "
                                 f"({rejected} rejected, {flagged_m} flagged), {flagged_s} section(s) flagged. "
                                 f"{result.message}")
            self._progress.value = 1000 if result.complete else self._progress.value
            self._run = None
            self._listeners = []
        self.document_controller.queue_task(finish)

    def close(self) -> None:
        if self._run is not None:
            self._run.abort()
        self._listeners = []
        super().close()


def _line_labels(xdata: DataAndMetadata.DataAndMetadata) -> list[str] | None:
    """Labels of a (k, n) rows item (component spectra, convergence curves: ``display.rows_xdata`` with labels in
    the metadata, as Decompose SI's outputs), shown as k labelled lines over its x axis; None for anything else."""
    labels = xdata.metadata.get("insitu", {}).get("labels")
    return list(labels) if labels and xdata.is_data_2d and not xdata.is_collection else None


def register_panels() -> None:
    Workspace.WorkspaceManager().register_panel(DriftSIPanel, PANEL_ID, "Drift-corrected SI", ["left", "right"],
                                                "right", {"min-width": 320})


def unregister_panels() -> None:
    Workspace.WorkspaceManager().unregister_panel(PANEL_ID)
