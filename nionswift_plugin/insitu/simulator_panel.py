"""Swift glue for simulator mode: the "Simulator" panel (drift, sample, beam, resolution, laser coupling) and the
"Simulated Laser" panel (wavelength, power, shutter, pulses, blanker duty).

The settings model, validation and persistence live in :mod:`instrument_sim.simulator_settings`; this module only
binds widgets to it. Settings are saved as ``insitu_simulator_settings.json`` in the Swift instrumentation
configuration folder (``nion_instrumentation_ui.configuration_location``, where the camera/scan configurations
are) after every change, and re-applied whenever a simulated instrument is registered.

The plug-in's ``__init__`` calls :func:`register_panels` / :func:`unregister_panels`.
"""
from __future__ import annotations

import logging
import pathlib
import typing

from nion.swift import Panel
from nion.swift import Workspace
from nion.utils import Event
from nion.utils import Registry

from instrument_sim.errors import SimulatorError
from instrument_sim.instrument import SimInstrument
from instrument_sim.laser import LASER_SETTINGS, SimLaser
from instrument_sim.samples import SAMPLE_NAMES
from instrument_sim.simulator_settings import (FIELDS, SETTINGS_FILE_NAME, SimulatorSettings, load_settings,
                                               save_settings)
from instrument_sim.stem_devices import existing_stem_parts

__all__ = ["SIMULATOR_PANEL_ID", "LASER_PANEL_ID", "register_panels", "unregister_panels", "find_simulator",
           "settings_path", "restore_settings", "SimulatorPanel", "LaserPanel"]

SIMULATOR_PANEL_ID = "insitu-simulator-panel"
LASER_PANEL_ID = "insitu-laser-panel"

_listener: Event.EventListener | None = None


def find_simulator() -> SimInstrument | None:
    """The registered simulated instrument that has the STEM devices, if any."""
    for component in Registry.get_components_by_type("stem_controller"):
        if isinstance(component, SimInstrument) and existing_stem_parts(component) is not None:
            return component
    return None


def settings_path() -> pathlib.Path | None:
    """Where the settings persist (None until the instrumentation kit has a configuration folder)."""
    from nionswift_plugin import nion_instrumentation_ui
    location = getattr(nion_instrumentation_ui, "configuration_location", None)
    return pathlib.Path(location) / SETTINGS_FILE_NAME if location else None


def restore_settings(instrument: SimInstrument) -> bool:
    """Apply the saved settings to ``instrument``; False if there are none (or they are invalid: logged)."""
    path = settings_path()
    if path is None or existing_stem_parts(instrument) is None:
        return False
    try:
        settings = load_settings(path)
        if settings is None:
            return False
        settings.apply(instrument)
        return True
    except SimulatorError as e:
        logging.warning("In-situ simulator: saved settings not applied: %s", e)
        return False


def _store(instrument: SimInstrument) -> None:
    path = settings_path()
    if path is not None:
        save_settings(SimulatorSettings.from_instrument(instrument), path)


def _parse(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SimulatorError(f"{text!r} is not a number; type a number such as 0.5.") from None


class _FieldRow:
    """Label + line edit (+ units) bound to a getter/setter; a bad value shows the error and restores the text."""

    def __init__(self, ui: typing.Any, label: str, units: str, getter: typing.Callable[[], typing.Any],
                 setter: typing.Callable[[str], None], status: typing.Any) -> None:
        self.getter = getter
        self.row = ui.create_row_widget()
        self.row.add(ui.create_label_widget(label, properties={"width": 170}))
        self.edit = ui.create_line_edit_widget(properties={"width": 90})
        self.row.add(self.edit)
        self.row.add_spacing(4)
        self.row.add(ui.create_label_widget(units))
        self.row.add_stretch()

        def finished(text: str) -> None:
            try:
                setter(text)
                status.text = ""
            except SimulatorError as e:
                status.text = str(e)
            self.refresh()

        self.edit.on_editing_finished = finished
        self.refresh()

    def refresh(self) -> None:
        value = self.getter()
        self.edit.text = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


class _SettingsPanel(Panel.Panel):
    """Common frame of the simulator panels: a column of setting rows, a status line, the simulated instrument."""

    def __init__(self, document_controller: typing.Any, panel_id: str, title: str) -> None:
        super().__init__(document_controller, panel_id, title)
        self.column = document_controller.ui.create_column_widget(properties={"spacing": 2, "margin": 6})
        self.instrument = find_simulator()
        self.status = document_controller.ui.create_label_widget(properties={"min-height": 20})
        self.status.word_wrap = True
        self.rows: dict[str, _FieldRow] = {}

    def _finish(self) -> None:
        self.column.add(self.status)
        self.column.add_stretch()
        self.widget = self.column


class SimulatorPanel(_SettingsPanel):
    """Drift terms, sample, beam current, ZLP width and laser coupling of the simulated instrument."""

    def __init__(self, document_controller: typing.Any, panel_id: str, properties: typing.Any) -> None:
        super().__init__(document_controller, panel_id, "Simulator")
        ui = document_controller.ui
        column = self.column
        self.sample_combo: typing.Any = None
        if self.instrument is None:
            column.add(ui.create_label_widget("No simulated instrument. Start Swift with INSITU_SIMULATOR=1."))
        else:
            instrument = self.instrument
            sample_row = ui.create_row_widget()
            sample_row.add(ui.create_label_widget("Sample", properties={"width": 170}))
            self.sample_combo = ui.create_combo_box_widget(items=list(SAMPLE_NAMES))
            self.sample_combo.current_item = SimulatorSettings.from_instrument(instrument).sample
            self.sample_combo.on_current_item_changed = lambda item: self.set_setting("sample", item)
            sample_row.add(self.sample_combo)
            sample_row.add_stretch()
            column.add(sample_row)
            group = ""
            for f in FIELDS:
                if f.group != group:
                    group = f.group
                    column.add_spacing(4)
                    column.add(ui.create_label_widget(group, properties={"font": "bold"}))
                self.rows[f.name] = _FieldRow(ui, f.label, f.units, self.__getter(f.name), self.__setter(f.name),
                                              self.status)
                column.add(self.rows[f.name].row)
            column.add_spacing(4)
            column.add(ui.create_label_widget("EEGS", properties={"font": "bold"}))
            self.rows["beta_squared_per_mW"] = _FieldRow(
                ui, "Laser coupling |beta|^2", "1/mW",
                lambda: SimulatorSettings.from_instrument(instrument).laser["beta_squared_per_mW"],
                lambda text: self.set_laser_coupling(_parse(text)), self.status)
            column.add(self.rows["beta_squared_per_mW"].row)
        self._finish()

    def __getter(self, name: str) -> typing.Callable[[], typing.Any]:
        def get() -> typing.Any:
            assert self.instrument is not None
            return getattr(SimulatorSettings.from_instrument(self.instrument), name)
        return get

    def __setter(self, name: str) -> typing.Callable[[str], None]:
        def set_(text: str) -> None:
            self.set_setting(name, _parse(text))
        return set_

    def set_setting(self, name: str, value: typing.Any) -> None:
        """Change one setting (validated), apply it to the instrument and save it."""
        assert self.instrument is not None
        settings = SimulatorSettings.from_instrument(self.instrument).replace(**{name: value})
        settings.apply(self.instrument)
        _store(self.instrument)

    def set_laser_coupling(self, value: float) -> None:
        assert self.instrument is not None
        parts = existing_stem_parts(self.instrument)
        assert parts is not None
        parts.laser.set("beta_squared_per_mW", value)
        _store(self.instrument)


class LaserPanel(_SettingsPanel):
    """The simulated EEGS laser: wavelength, power, shutter, pulse frequency/width/delay, blanker duty."""

    def __init__(self, document_controller: typing.Any, panel_id: str, properties: typing.Any) -> None:
        super().__init__(document_controller, panel_id, "Simulated Laser")
        ui = document_controller.ui
        column = self.column
        self.shutter: typing.Any = None
        parts = existing_stem_parts(self.instrument) if self.instrument is not None else None
        if parts is None:
            column.add(ui.create_label_widget("No simulated laser. Start Swift with INSITU_SIMULATOR=1."))
        else:
            laser = parts.laser
            self.laser: SimLaser = laser
            for s in LASER_SETTINGS:
                if s.name == "beta_squared_per_mW":
                    continue  # the coupling is a property of the sample/set-up: Simulator panel
                if s.kind == "boolean":
                    self.shutter = ui.create_check_box_widget(s.label)
                    self.shutter.checked = bool(laser.get(s.name))
                    self.shutter.on_checked_changed = lambda checked, name=s.name: self.set_laser(name, checked)
                    column.add(self.shutter)
                    continue
                self.rows[s.name] = _FieldRow(ui, s.label, s.units, self.__getter(s.name), self.__setter(s.name),
                                              self.status)
                column.add(self.rows[s.name].row)
            self.photon_label = ui.create_label_widget()
            column.add(self.photon_label)
            self.__update_photon_energy()
        self._finish()

    def __update_photon_energy(self) -> None:
        self.photon_label.text = f"Photon energy {self.laser.photon_energy_eV:.4f} eV"

    def __getter(self, name: str) -> typing.Callable[[], typing.Any]:
        def get() -> typing.Any:
            return self.laser.get(name)
        return get

    def __setter(self, name: str) -> typing.Callable[[str], None]:
        def set_(text: str) -> None:
            self.set_laser(name, _parse(text))
        return set_

    def set_laser(self, name: str, value: typing.Any) -> None:
        """Set one laser setting (validated against its range) and save the simulator settings."""
        self.laser.set(name, value)
        self.__update_photon_energy()
        assert self.instrument is not None
        _store(self.instrument)


def register_panels() -> None:
    """Register the Simulator and Simulated Laser panels, and re-apply saved settings to simulated instruments."""
    global _listener
    Workspace.WorkspaceManager().register_panel(SimulatorPanel, SIMULATOR_PANEL_ID, "Simulator",
                                                ["left", "right"], "right", {"min-width": 320})
    Workspace.WorkspaceManager().register_panel(LaserPanel, LASER_PANEL_ID, "Simulated Laser",
                                                ["left", "right"], "right", {"min-width": 300})

    def registered(component: typing.Any, component_types: set[str]) -> None:
        if "stem_controller" in component_types and isinstance(component, SimInstrument):
            restore_settings(component)

    if _listener is None:
        _listener = Registry.listen_component_registered_event(registered)
    instrument = find_simulator()
    if instrument is not None:
        restore_settings(instrument)


def unregister_panels() -> None:
    global _listener
    Workspace.WorkspaceManager().unregister_panel(SIMULATOR_PANEL_ID)
    Workspace.WorkspaceManager().unregister_panel(LASER_PANEL_ID)
    if _listener is not None:
        _listener.close()
        _listener = None
