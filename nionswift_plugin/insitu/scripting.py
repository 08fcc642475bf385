"""Facade scripting: attach live processors from a script or the Swift console.

>>> from nionswift_plugin.insitu import scripting                              # doctest: +SKIP
>>> out = scripting.attach_processor(api, "insitu.noise_reduction", live_item, sigma_px=3.0)   # doctest: +SKIP

``api`` is the Facade API object (``api_broker.get_api("~1.0")`` or the console's ``api``); ``data_item`` a Facade
DataItem (e.g. ``api.library.get_data_item_for_hardware_source(camera)``). Returns the output Facade DataItem.
``api.library.create_computation(processor_id, inputs={"src": data_item}, outputs={"target": None})`` works too,
because every processor is a registered Swift computation type, but it does not set parameter labels and ranges.

Drift-corrected EELS/EEGS spectrum imaging, the same engine as the "Drift-corrected SI" panel (docs/drift_si.md):

>>> settings = scripting.DriftSISettings(si_size_px=(64, 64), section_lines=4, exposure_s=0.002)  # doctest: +SKIP
>>> result = scripting.run_drift_corrected_si(settings)            # blocking; DriftCorrectedSI(...).start() is not
>>> scripting.add_drift_si_results(api, result)                    # SI (nm, nm, eV), HAADF, Drift Log data items
"""
from __future__ import annotations

import typing

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu.drift_si import DriftCorrectedSI, DriftSIResult, DriftSISettings, run_drift_corrected_si
from processing import registry

__all__ = ["processor_ids", "attach_processor", "DriftSISettings", "DriftCorrectedSI", "DriftSIResult",
           "run_drift_corrected_si", "add_drift_si_results"]


def processor_ids() -> list[str]:
    """Ids of every registered processor (built-in and custom)."""
    return [cls.processor_id for cls in registry.all_processors()]


def attach_processor(api: typing.Any, processor_id: str, data_item: typing.Any, *, roi: typing.Any = None,
                     **parameters: typing.Any) -> typing.Any:
    """Attach ``processor_id`` to ``data_item`` (Facade objects); ``roi`` a Facade rectangle Graphic or None."""
    document_model = api.library._document_model
    internal_item = data_item._data_item
    display_item = document_model.get_display_item_for_data_item(internal_item)
    if display_item is None:
        raise ValueError(f"data item '{internal_item.title}' has no display; show it first.")
    roi_graphic = roi._graphic if roi is not None else None
    new_item = computations.attach(document_model, processor_id, display_item, data_item=internal_item,
                                   roi=roi_graphic, parameters=parameters)
    return api.library.get_data_item_by_uuid(new_item.uuid)


def add_drift_si_results(api: typing.Any, result: DriftSIResult) -> list[typing.Any]:
    """Add a drift-corrected SI run's results to the document (also for an aborted run: marked incomplete)."""
    from nionswift_plugin.insitu import drift_si
    items = drift_si.create_data_items(api.library._document_model, result)
    return [api.library.get_data_item_by_uuid(item.uuid) for item in items]
