"""User-facing settings of the simulated STEM ("simulator mode"): drift terms, sample, beam, resolution, laser.

:class:`SimulatorSettings` is a flat, JSON-serialisable record of what the Simulator panel shows. It can be read
from a running simulator (:meth:`SimulatorSettings.from_instrument`), applied to it (:meth:`apply`) and saved to /
loaded from a JSON file (:func:`save_settings`, :func:`load_settings`), which is how the settings persist between
Swift sessions. No Swift UI here; the panel in ``nionswift_plugin/insitu/simulator_panel.py`` only binds fields.

Example
-------
>>> s = SimulatorSettings(drift_rate_x_nm_per_s=0.2)
>>> SimulatorSettings.from_dict(s.to_dict()) == s
True
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import typing

from instrument_sim.drift import DriftModel, EnergyDriftModel
from instrument_sim.errors import SimulatorParameterError
from instrument_sim.samples import SAMPLE_NAMES
from instrument_sim.settings_schema import SettingField

if typing.TYPE_CHECKING:
    from instrument_sim.instrument import SimInstrument

__all__ = ["SimulatorSettings", "FIELDS", "SettingField", "save_settings", "load_settings", "SETTINGS_FILE_NAME"]

SETTINGS_FILE_NAME = "insitu_simulator_settings.json"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimulatorSettings:
    """The simulator's user settings (units in the names). Laser settings are in ``laser`` (see
    :data:`instrument_sim.laser.LASER_SETTINGS`; ``beta_squared_per_mW`` is the laser coupling)."""

    sample: str = "perovskite"
    beam_current_pA: float = 200.0
    zlp_fwhm_eV: float = 1.0
    drift_rate_y_nm_per_s: float = 0.0
    drift_rate_x_nm_per_s: float = 0.0
    sine_amplitude_y_nm: float = 0.0
    sine_amplitude_x_nm: float = 0.0
    sine_period_s: float = 60.0
    random_walk_nm_per_sqrt_s: float = 0.0
    jump_rate_per_s: float = 0.0
    jump_size_nm: float = 0.0
    drift_seed: int = 0
    energy_rate_meV_per_s: float = 0.0
    energy_random_walk_meV_per_sqrt_s: float = 0.0
    energy_jump_rate_per_s: float = 0.0
    energy_jump_size_meV: float = 0.0
    laser: typing.Mapping[str, typing.Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sample not in SAMPLE_NAMES:
            raise SimulatorParameterError(f"sample must be one of {list(SAMPLE_NAMES)}; got {self.sample!r}.")
        for f in FIELDS:
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SimulatorParameterError(f"setting {f.name!r} must be a finite number; got {value!r}.")
            if (f.minimum is not None and value < f.minimum) or (f.maximum is not None and value > f.maximum):
                raise SimulatorParameterError(
                    f"setting {f.name!r} = {value!r} {f.units} is outside [{f.minimum}, {f.maximum}] {f.units}; "
                    f"choose a value inside the range.")

    def drift_model(self) -> DriftModel:
        return DriftModel(rate_nm_per_s=(self.drift_rate_y_nm_per_s, self.drift_rate_x_nm_per_s),
                          sine_amplitude_nm=(self.sine_amplitude_y_nm, self.sine_amplitude_x_nm),
                          sine_period_s=self.sine_period_s, random_walk_nm_per_sqrt_s=self.random_walk_nm_per_sqrt_s,
                          jump_rate_per_s=self.jump_rate_per_s, jump_size_nm=self.jump_size_nm, seed=self.drift_seed)

    def energy_drift_model(self) -> EnergyDriftModel:
        return EnergyDriftModel(rate_meV_per_s=self.energy_rate_meV_per_s,
                                random_walk_meV_per_sqrt_s=self.energy_random_walk_meV_per_sqrt_s,
                                jump_rate_per_s=self.energy_jump_rate_per_s,
                                jump_size_meV=self.energy_jump_size_meV, seed=self.drift_seed + 1)

    def replace(self, **changes: typing.Any) -> SimulatorSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, typing.Any]:
        d = dataclasses.asdict(self)
        d["laser"] = dict(self.laser)
        return d

    @classmethod
    def from_dict(cls, d: typing.Mapping[str, typing.Any]) -> SimulatorSettings:
        """Build from a dict (e.g. read from JSON); unknown keys are ignored, missing ones take defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        if "drift_seed" in values:
            values["drift_seed"] = int(values["drift_seed"])
        return cls(**values)

    @classmethod
    def from_instrument(cls, instrument: SimInstrument) -> SimulatorSettings:
        """Read the settings of a running simulator."""
        from instrument_sim.stem_devices import stem_parts
        parts = stem_parts(instrument)
        d, e = instrument.sample_drift, instrument.energy_drift
        return cls(sample=parts.specimen.sample.name, beam_current_pA=float(instrument.GetVal("BeamCurrent")) * 1e12,
                   zlp_fwhm_eV=float(instrument.GetVal("EELS_ZLPWidth", 1.0)),
                   drift_rate_y_nm_per_s=float(d.rate_nm_per_s[0]), drift_rate_x_nm_per_s=float(d.rate_nm_per_s[1]),
                   sine_amplitude_y_nm=float(d.sine_amplitude_nm[0]), sine_amplitude_x_nm=float(d.sine_amplitude_nm[1]),
                   sine_period_s=float(d.sine_period_s), random_walk_nm_per_sqrt_s=float(d.random_walk_nm_per_sqrt_s),
                   jump_rate_per_s=float(d.jump_rate_per_s), jump_size_nm=float(d.jump_size_nm), drift_seed=int(d.seed),
                   energy_rate_meV_per_s=float(e.rate_meV_per_s),
                   energy_random_walk_meV_per_sqrt_s=float(e.random_walk_meV_per_sqrt_s),
                   energy_jump_rate_per_s=float(e.jump_rate_per_s), energy_jump_size_meV=float(e.jump_size_meV),
                   laser=parts.laser.settings_dict())

    def apply(self, instrument: SimInstrument) -> None:
        """Apply to a running simulator (drift models are replaced; the sample is reloaded only if it changed)."""
        from instrument_sim.stem_devices import stem_parts
        parts = stem_parts(instrument)
        instrument.sample_drift = self.drift_model()
        instrument.energy_drift = self.energy_drift_model()
        instrument.SetVal("BeamCurrent", self.beam_current_pA * 1e-12)
        if instrument.get_value("EELS_ZLPWidth") is None:
            instrument.add_control("EELS_ZLPWidth", self.zlp_fwhm_eV)
        instrument.SetVal("EELS_ZLPWidth", self.zlp_fwhm_eV)
        if parts.specimen.sample.name != self.sample:
            parts.specimen.load(self.sample)
        parts.laser.apply_settings(self.laser)


FIELDS: tuple[SettingField, ...] = (
    SettingField("beam_current_pA", "Beam current", "pA", 0.0, 1e5, "Beam"),
    SettingField("zlp_fwhm_eV", "ZLP width (FWHM)", "eV", 0.01, 10.0, "Beam"),
    SettingField("drift_rate_y_nm_per_s", "Drift rate y", "nm/s", -1e3, 1e3, "Sample drift"),
    SettingField("drift_rate_x_nm_per_s", "Drift rate x", "nm/s", -1e3, 1e3, "Sample drift"),
    SettingField("sine_amplitude_y_nm", "Oscillation amplitude y", "nm", 0.0, 1e3, "Sample drift"),
    SettingField("sine_amplitude_x_nm", "Oscillation amplitude x", "nm", 0.0, 1e3, "Sample drift"),
    SettingField("sine_period_s", "Oscillation period", "s", 1e-3, 1e6, "Sample drift"),
    SettingField("random_walk_nm_per_sqrt_s", "Random walk", "nm/sqrt(s)", 0.0, 1e3, "Sample drift"),
    SettingField("jump_rate_per_s", "Jump rate", "1/s", 0.0, 1e3, "Sample drift"),
    SettingField("jump_size_nm", "Jump size", "nm", 0.0, 1e3, "Sample drift"),
    SettingField("drift_seed", "Drift seed", "", 0, 2**31 - 1, "Sample drift"),
    SettingField("energy_rate_meV_per_s", "Energy drift rate", "meV/s", -1e4, 1e4, "Energy drift"),
    SettingField("energy_random_walk_meV_per_sqrt_s", "Energy random walk", "meV/sqrt(s)", 0.0, 1e4, "Energy drift"),
    SettingField("energy_jump_rate_per_s", "Energy jump rate", "1/s", 0.0, 1e3, "Energy drift"),
    SettingField("energy_jump_size_meV", "Energy jump size", "meV", 0.0, 1e5, "Energy drift"),
)



def save_settings(settings: SimulatorSettings, path: str | pathlib.Path) -> None:
    """Write the settings as JSON (creating the folder)."""
    p = pathlib.Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(settings.to_dict(), indent=2, sort_keys=True), encoding="utf-8")


def load_settings(path: str | pathlib.Path) -> SimulatorSettings | None:
    """Read settings saved by :func:`save_settings`; None if the file does not exist. A corrupt file raises
    :class:`SimulatorParameterError` naming the file (delete it to start from defaults)."""
    p = pathlib.Path(path)
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return SimulatorSettings.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise SimulatorParameterError(f"simulator settings file {p} is invalid ({exc}); fix or delete it to start "
                                      f"from the defaults.") from None
