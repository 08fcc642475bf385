"""A scripted user for the real-GUI check (``scripts/swift_xvfb.py``), active only when ``INSITU_GUI_DRIVER`` names a
directory. After the first window opens it does what a user would: plays the simulated camera, shows the live view
with a rectangle ROI, picks processors from Processing > In-situ, opens the In-situ Processors panel and lays out a
grid of displays. It writes ``ready`` when done, and on ``quit`` writes ``status.json`` (runner counters) and closes.
"""
from __future__ import annotations

import json
import pathlib
import time
import typing

from nion.instrumentation import HardwareSource
from nion.swift import Application
from nion.swift.model import Graphics
from nion.utils import Geometry

from nionswift_plugin.insitu import panels
from nionswift_plugin.insitu.live_engine import ENGINE

CAMERA_ID = "insitu_camera"
DEFAULT_PROCESSORS = ("insitu.noise_reduction", "insitu.live_difference", "insitu.copy")
#: what a user would set in the Inspector for the simulated bright-field camera (dark particles)
SIMULATOR_SETTINGS = {"insitu.threshold_tracking": {"polarity": "dark", "smooth_sigma_px": 2.0}}


class GuiDriver:
    def __init__(self, folder: str, processors: typing.Sequence[str] = DEFAULT_PROCESSORS) -> None:
        self.folder = pathlib.Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.processors = list(processors)
        self.stage = 0
        self.t0 = time.time()
        self.periodic: typing.Any = None
        self.log: list[str] = []
        self.pending_extras: list[tuple[typing.Any, str]] = []

    def on_window(self, document_controller: typing.Any) -> None:
        if self.periodic is None:
            self.periodic = document_controller.add_periodic(0.2, lambda: self.step(document_controller))

    def say(self, text: str) -> None:
        self.log.append(text)
        print(f"INSITU GUI DRIVER: {text}", flush=True)

    def step(self, dc: typing.Any) -> None:
        now = time.time()
        if self.stage == 0 and now - self.t0 > 1.0:
            self.stage = 1
            try:
                self.setup(dc)
            except Exception as e:  # reported to the test through the log and the ready file
                import traceback
                traceback.print_exc()
                self.say(f"setup failed: {e}")
            (self.folder / "ready").write_text("\n".join(self.log))
        elif self.stage == 1 and self.pending_extras:
            for panel, wanted in list(self.pending_extras):
                item = next((d for d in dc.document_model.display_items if wanted in (d.displayed_title or "")), None)
                if item is not None:
                    panel.set_display_panel_display_item(item)
                    self.pending_extras.remove((panel, wanted))
                    self.say(f"showing {item.displayed_title!r}")
        if self.stage == 1 and (self.folder / "quit").exists():
            self.stage = 2
            status = {"runners": [dict(runner.latest()[2], title=runner.title, error=runner.latest()[1],
                                       streaming=runner.is_streaming) for runner in ENGINE.runners],
                      "log": self.log}
            (self.folder / "status.json").write_text(json.dumps(status, indent=1))
            camera = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(CAMERA_ID)
            if camera is not None:
                camera.stop_playing()
            for window in list(Application.app.windows):
                window.queue_request_close()

    def setup(self, dc: typing.Any) -> None:
        import os
        for panel_id in [panels.PANEL_ID] + [p for p in os.environ.get("INSITU_GUI_PANELS", "").split(",") if p]:
            panel = dc.find_dock_panel(panel_id)
            if panel:
                panel.show()
        for panel_id in [p for p in os.environ.get("INSITU_GUI_HIDE", "").split(",") if p]:
            panel = dc.find_dock_panel(panel_id)
            if panel:
                panel.hide()
        camera = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(CAMERA_ID)
        if camera is None:
            self.say("no simulated camera (simulator mode off?)")
            return
        # the workspace is split before the camera plays: nion.ui's splitter can race a live display's repaint thread
        # while it gains children (see scripts/swift_xvfb.KNOWN_UPSTREAM_TRACEBACKS), as it would for a user
        primary = dc.selected_display_panel or dc.workspace_controller.display_panels[0]
        # INSITU_GUI_SHOW: data item titles (substrings, comma-separated) to show too, in panels after the processors'
        extras = [t for t in os.environ.get("INSITU_GUI_SHOW", "").split(",") if t]
        needed = 1 + len(self.processors) + len(extras)
        columns = 2 if needed <= 4 else 3 if needed <= 9 else 4
        rows = 2 if needed <= 6 else 3
        grid = dc.workspace_controller.apply_layouts(primary, [primary], columns, rows) or [primary]
        camera.start_playing()
        self.say("camera playing")
        deadline = time.time() + 10
        display_item = None
        while display_item is None and time.time() < deadline:
            dc.periodic()
            reference = dc.document_model.get_data_item_channel_reference(CAMERA_ID, None)
            live = reference.data_item if reference else None
            display_item = dc.document_model.get_display_item_for_data_item(live) if live else None
            if display_item is None:
                time.sleep(0.1)
        if display_item is None:
            self.say("no live data item appeared")
            return
        display_panels = list(dc.workspace_controller.display_panels)
        display_panels[0].set_display_panel_display_item(display_item)
        roi = Graphics.RectangleGraphic()
        roi.bounds = Geometry.FloatRect.from_tlhw(0.2, 0.2, 0.6, 0.6)
        display_item.add_graphic(roi)
        display_item.graphic_selection.set(display_item.graphics.index(roi))
        submenu = dc._insitu_menu
        actions = {a.title: a for a in submenu.items if a.title}
        from processing import registry
        for index, processor_id in enumerate(self.processors):
            dc.selected_display_panel = display_panels[0]
            title = registry.get(processor_id).title
            actions[title].action.trigger()  # the Processing > In-situ menu item, as a user picks it
            self.say(f"attached {processor_id} through the menu")
            out = dc.selected_display_panel.display_item if dc.selected_display_panel else None
            computation = dc.document_model.get_data_item_computation(out.data_item) if out is not None else None
            for name, value in SIMULATOR_SETTINGS.get(processor_id, {}).items():
                if computation is not None:
                    computation.set_input_value(name, value)  # as typed into the Inspector
            if index + 1 < len(display_panels) and out is not None:
                display_panels[index + 1].set_display_panel_display_item(out)
            display_panels[0].set_display_panel_display_item(display_item)
        del grid
        # outputs past a processor's first appear with its first result: placed by step() when they exist
        self.pending_extras = [(display_panels[1 + len(self.processors) + offset], wanted)
                               for offset, wanted in enumerate(extras)
                               if 1 + len(self.processors) + offset < len(display_panels)]
        if os.environ.get("INSITU_GUI_DRIFT_SI"):  # press Start in the Drift-corrected SI panel
            from nionswift_plugin.insitu import drift_si_panel
            panel = dc.find_dock_panel(drift_si_panel.PANEL_ID)
            if panel is not None:
                panel.show()
                panel.start()
                self.say("drift-corrected SI started from the panel")
        select = os.environ.get("INSITU_GUI_SELECT")  # show this processor's computation in the Inspector
        for panel in display_panels:
            item = panel.display_item
            computation = dc.document_model.get_data_item_computation(item.data_item) if item else None
            if select and computation is not None and computation.processing_id == select:
                dc.selected_display_panel = panel
                for dock_id in ("histogram-panel", "info-panel", panels.PANEL_ID):
                    dock = dc.find_dock_panel(dock_id)
                    if dock:
                        dock.hide()  # room for the Inspector
        self.say("ready")
