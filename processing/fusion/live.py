"""Live fusion of a drift-corrected SI as it fills: a :class:`processing.spectroscopy.live_analysis.LiveAnalysis`.

After each finished section the EELS edge maps of the chosen elements are made from the acquired rows
(:func:`processing.fusion.eels.edge_maps`), fused with the HAADF acquired in the same run, starting from the
previous update's fused maps (warm start: the solver typically needs a few iterations for the new rows).
Registered as ``"Fusion (HAADF + EELS maps)"`` when this module is imported.
"""
from __future__ import annotations

import time
import typing

import numpy as np

from processing import base
from processing.fusion.eels import edge_maps
from processing.fusion.elements import parse_elements
from processing.fusion.options import PARAMETERS as FUSION_PARAMETERS
from processing.fusion.options import SI_PRESET, FusionOptions
from processing.fusion.solver import fuse
from processing.spectroscopy import live_analysis
from processing.spectroscopy.spectrum_alignment import EnergyAxis

__all__ = ["LIVE_FUSION_NAME", "LIVE_PARAMETERS", "LiveFusion", "parse_elements", "register"]

LIVE_FUSION_NAME = "Fusion (HAADF + EELS maps)"

LIVE_PARAMETERS: tuple[base.Parameter, ...] = (
    base.Parameter("elements", "Elements", "string", "Sc,Dy,O",
                   description="comma-separated element symbols; each is mapped at its EELS edge"),
) + tuple(base.Parameter(p.name, p.label, p.type, SI_PRESET.get(p.name, p.default), p.min, p.max, p.units,
                         p.choices, p.description) for p in FUSION_PARAMETERS)


class LiveFusion:
    """Fuses the SI's HAADF with its EELS edge maps after each section (warm start from the previous update)."""

    title = LIVE_FUSION_NAME
    parameters = LIVE_PARAMETERS

    def __init__(self, elements: str = "Sc,Dy,O", **option_values: typing.Any) -> None:
        self.elements = parse_elements(elements)
        defaults = {p.name: p.default for p in LIVE_PARAMETERS if p.name != "elements"}
        defaults.update(option_values)
        self.options = FusionOptions.from_values(defaults)
        self._state: typing.Any = None
        self._rows = 0
        self.updates = 0
        self.iterations: list[int] = []
        self.costs: list[tuple[float, float]] = []  # (start, final) total cost of each update

    def update(self, update: live_analysis.SectionUpdate) -> base.Outputs:
        if update.haadf is None:
            return (base.Notice("status", "no HAADF channel in this run: live fusion needs the HAADF acquired with "
                                          "the SI (enable the HAADF detector)."),)
        acquired = np.asarray(update.acquired, dtype=bool)
        rows_any = np.flatnonzero(acquired.any(axis=1))
        if rows_any.size < 3:
            return (base.Notice("status", f"waiting for data: {rows_any.size} row(s) acquired (fusion needs 3)."),)
        top, bottom = 0, int(rows_any[-1]) + 1
        if rows_any[0] != 0:  # sections may not start at row 0 (re-acquired section): fuse from the first row
            top = int(rows_any[0])
        block = slice(top, bottom)
        mask = acquired[block]
        axis = EnergyAxis(offset_eV=float(update.energy_offset_eV), scale_eV=float(update.energy_scale_eV))
        t0 = time.perf_counter()
        maps = edge_maps(update.si[block], axis, self.elements, acquired=mask)
        haadf = np.where(mask, np.nan_to_num(np.asarray(update.haadf[block], dtype=np.float64)), 0.0)
        if self.options.map_mode == "counts":
            maps = {k: np.clip(np.nan_to_num(v), 0.0, None) for k, v in maps.items()}
        else:
            maps = {k: np.nan_to_num(v) for k, v in maps.items()}
        warm = self._state if top == 0 and self._rows <= bottom else None
        cal = base.Calibration(0.0, float(update.pixel_size_nm), "nm")
        result = fuse(haadf, maps, self.options, mask=mask, warm_start=warm,
                      calibrations=(base.Calibration(cal.scale * top, cal.scale, "nm"), cal))
        self._state = result.state if top == 0 else None
        self._rows = bottom
        self.updates += 1
        self.iterations.append(result.iterations)
        self.costs.append((float(result.cost[0, 3]), float(result.cost[-1, 3])))
        ms = 1000.0 * (time.perf_counter() - t0)
        ny, nx = acquired.shape
        outputs: list[base.Output] = []
        for i, element in enumerate(result.elements):
            full = np.zeros((ny, nx), np.float32)
            full[block] = np.where(mask, result.maps[i], 0.0)
            outputs.append(base.ImageOutput(f"fused_{element}", full, (cal, cal), "counts", f"Fused {element}"))
        predicted = np.zeros((ny, nx), np.float32)
        predicted[block] = np.where(mask, result.predicted_haadf, 0.0)
        outputs.append(base.ImageOutput("predicted_haadf", predicted, (cal, cal), "", "Predicted HAADF"))
        cost = result.cost
        outputs.append(base.LinePlotOutput("convergence", cost.T.astype(np.float32), base.Calibration(0, 1, "iteration"),
                                           "", ("HAADF", "Poisson", "TV", "total"), "Fusion convergence"))
        outputs.append(base.Notice("status", f"rows {top}-{bottom - 1} fused: {result.iterations} iteration(s) "
                                             f"({'warm' if warm is not None else 'cold'} start), {ms:.0f} ms; "
                                             f"{result.stop_reason}" + ("; " + "; ".join(result.notes)
                                                                        if result.notes else "")))
        return tuple(outputs)

    def close(self) -> None:
        self._state = None


def register() -> None:
    """Offer live fusion in the Drift-corrected SI panel (idempotent)."""
    live_analysis.register_live_analysis(LIVE_FUSION_NAME, LiveFusion, parameters=LIVE_PARAMETERS)


register()
