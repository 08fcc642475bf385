"""Simulated EEGS laser: wavelength, power, shutter, pulse frequency/width/delay, blanker duty and coupling.

A plain device object registered in ``nion.utils.Registry`` as component type ``"insitu_laser"`` (no Swift
hardware source: it produces no data). The EELS camera reads :meth:`SimLaser.state` for every frame, so a change
takes effect on the next frame. Settings have declared ranges (:data:`LASER_SETTINGS`); bad values raise
:class:`~instrument_sim.errors.SimulatorParameterError` with the range.

Example
-------
>>> laser = SimLaser()
>>> laser.set("wavelength_nm", 600.0)
>>> laser.state().wavelength_nm
600.0
"""
from __future__ import annotations

import dataclasses
import math
import threading
import typing

from nion.utils import Event
from nion.utils import Registry

from instrument_sim.errors import SimulatorParameterError
from instrument_sim.samples import LaserState
from instrument_sim.settings_schema import SettingField

__all__ = ["LASER_COMPONENT_TYPE", "LASER_SETTINGS", "SimLaser", "register_laser",
           "unregister_laser", "find_laser"]

LASER_COMPONENT_TYPE = "insitu_laser"


#: the laser's settings (names are :class:`~instrument_sim.samples.LaserState` fields)
LASER_SETTINGS: tuple[SettingField, ...] = (
    SettingField("wavelength_nm", "Wavelength", "nm", 200.0, 2000.0, "Laser", 532.0),
    SettingField("power_mW", "Power (average)", "mW", 0.0, 1000.0, "Laser", 0.0),
    SettingField("shutter_open", "Shutter open", "", 0.0, 1.0, "Laser", False, "boolean"),
    SettingField("pulse_frequency_Hz", "Pulse frequency (0 = CW)", "Hz", 0.0, 1e9, "Laser", 0.0),
    SettingField("pulse_width_s", "Pulse width", "s", 0.0, 1.0, "Laser", 0.0),
    SettingField("pulse_delay_s", "Pulse delay", "s", -1.0, 1.0, "Laser", 0.0),
    SettingField("blanker_duty", "Beam blanker duty", "", 1e-6, 1.0, "Laser", 1.0),
    SettingField("beta_squared_per_mW", "Coupling |beta|^2 per mW", "1/mW", 0.0, 100.0, "Laser", 0.5),
)
_BY_NAME = {s.name: s for s in LASER_SETTINGS}


class SimLaser:
    """The simulated laser. ``property_changed_event`` fires with the setting name after every change."""

    def __init__(self, *, laser_id: str = LASER_COMPONENT_TYPE, name: str = "In-situ Sim Laser") -> None:
        self.laser_id = laser_id
        self.name = name
        self.property_changed_event = Event.Event()
        self.__lock = threading.Lock()
        self.__values: dict[str, float | bool] = {s.name: s.default for s in LASER_SETTINGS}

    def get(self, name: str) -> float | bool:
        self.__setting(name)
        with self.__lock:
            return self.__values[name]

    def set(self, name: str, value: typing.Any) -> None:
        """Set one setting (validated against its range)."""
        setting = self.__setting(name)
        if setting.kind == "boolean":
            if value not in (0, 1, True, False):
                raise SimulatorParameterError(f"laser setting {name!r} must be a boolean; got {value!r}.")
            checked: float | bool = bool(value)
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise SimulatorParameterError(f"laser setting {name!r} must be a number; got {value!r}.") from None
            if not (math.isfinite(number) and setting.in_range(number)):
                raise SimulatorParameterError(
                    f"laser setting {name!r} = {value!r} {setting.units} is outside [{setting.minimum}, "
                    f"{setting.maximum}] {setting.units}; choose a value in the range.")
            checked = number
        with self.__lock:
            changed = self.__values[name] != checked
            self.__values[name] = checked
        if changed:
            self.property_changed_event.fire(name)

    def __setting(self, name: str) -> SettingField:
        if name not in _BY_NAME:
            raise SimulatorParameterError(f"unknown laser setting {name!r}; settings: {sorted(_BY_NAME)}.")
        return _BY_NAME[name]

    def state(self) -> LaserState:
        """Snapshot of the settings as a :class:`~instrument_sim.samples.LaserState`."""
        with self.__lock:
            return LaserState(**self.__values)  # type: ignore[arg-type]

    def settings_dict(self) -> dict[str, float | bool]:
        """All settings (JSON-serialisable), e.g. to persist them."""
        with self.__lock:
            return dict(self.__values)

    def apply_settings(self, settings: typing.Mapping[str, typing.Any]) -> None:
        """Apply a (possibly partial) settings dict; unknown keys are ignored, bad values raise."""
        for name, value in settings.items():
            if name in _BY_NAME:
                self.set(name, value)

    @property
    def photon_energy_eV(self) -> float:
        from instrument_sim.pinem import photon_energy_eV
        return photon_energy_eV(float(self.get("wavelength_nm")))


def register_laser(laser: SimLaser) -> None:
    """Register the laser in the Registry (component type ``"insitu_laser"``)."""
    Registry.register_component(laser, {LASER_COMPONENT_TYPE})


def unregister_laser(laser: SimLaser) -> None:
    Registry.unregister_component(laser, {LASER_COMPONENT_TYPE})


def find_laser() -> SimLaser | None:
    """The registered laser, if any."""
    component = Registry.get_component(LASER_COMPONENT_TYPE)
    return component if isinstance(component, SimLaser) else None
