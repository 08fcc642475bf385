"""A scripted user of the In-situ Player for the real-GUI check (tests/plugin/test_player_gui.py), active only when
``INSITU_PLAYER_GUI_DRIVER`` names a folder. It is loaded by a one-line shim plug-in that the test puts on the path
(:data:`SHIM`), so the suite itself never contains it in normal use.

After the first window opens it does what a user would: opens the In-situ Player panel, opens the file
``INSITU_PLAYER_GUI_FILE`` there, switches on loop (and drift correction when ``INSITU_PLAYER_GUI_DRIFT=1``), presses
Play, attaches two processors (``INSITU_PLAYER_GUI_PROCESSORS``) to the player's live view through the
Processing > In-situ menu and lays the outputs out next to it. It writes ``ready``; on ``quit`` it writes
``status.json`` (runner counters, player state) and closes the windows.
"""
from __future__ import annotations

import json
import os
import pathlib
import time
import typing

from nion.swift import Application

from nionswift_plugin.insitu.player import device

SHIM = "from nionswift_plugin.insitu.player.gui_check import PlayerGuiExtension  # noqa: F401\n"
DEFAULT_PROCESSORS = ("insitu.live_difference", "insitu.radial_kymograph")


class PlayerGuiDriver:
    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.stage = 0
        self.t0 = time.time()
        self.periodic: typing.Any = None
        self.log: list[str] = []
        self.panel: typing.Any = None

    def on_window(self, document_controller: typing.Any) -> None:
        if self.periodic is None:
            self.periodic = document_controller.add_periodic(0.2, lambda: self.step(document_controller))

    def say(self, text: str) -> None:
        self.log.append(text)
        print(f"INSITU PLAYER GUI DRIVER: {text}", flush=True)

    def step(self, dc: typing.Any) -> None:
        if self.stage == 0 and time.time() - self.t0 > 1.0:
            self.stage = 1
            try:
                self.setup(dc)
            except Exception as e:  # reported through the log and the ready file
                import traceback
                traceback.print_exc()
                self.say(f"setup failed: {e}")
            (self.folder / "ready").write_text("\n".join(self.log))
        elif self.stage == 1 and (self.folder / "quit").exists():
            self.stage = 2
            from nionswift_plugin.insitu.live_engine import ENGINE
            module = device.get_player()
            state = module.player.playback.state() if module and module.player.playback else None
            status = {"runners": [dict(r.latest()[2], title=r.title, error=r.latest()[1], streaming=r.is_streaming)
                                  for r in ENGINE.runners],
                      "frames_delivered": module.camera_device.frames_delivered if module else 0,
                      "player_index": state.index if state else None, "log": self.log,
                      "panel_message": self.panel.message.text if self.panel else ""}
            (self.folder / "status.json").write_text(json.dumps(status, indent=1))
            source = self.panel.hardware_source if self.panel else None
            if source is not None:
                source.stop_playing()
            for window in list(Application.app.windows):
                window.queue_request_close()

    def setup(self, dc: typing.Any) -> None:
        from nionswift_plugin.insitu import panels
        from nionswift_plugin.insitu.player.panel import PANEL_ID
        from processing import registry
        for hide in (panels.PANEL_ID, "histogram-panel"):
            dock = dc.find_dock_panel(hide)
            if dock:
                dock.hide()
        self.panel = dc.find_dock_panel(PANEL_ID)
        if self.panel is None:
            self.say("no In-situ Player panel")
            return
        self.panel.show()
        path = os.environ.get("INSITU_PLAYER_GUI_FILE", "")
        if not self.panel.open_path(path):
            self.say(f"open failed: {self.panel.message.text}")
            return
        self.say(f"opened {path}")
        self.panel.loop_box.checked = True
        self.panel.loop_box.on_checked_changed(True)
        if os.environ.get("INSITU_PLAYER_GUI_DRIFT") == "1":
            self.panel.drift_box.checked = True
            self.panel.set_drift_correction(True)
        self.panel.toggle_play()
        self.say("playing")
        deadline = time.time() + 15
        display_item = None
        while display_item is None and time.time() < deadline:
            dc.periodic()
            reference = dc.document_model.get_data_item_channel_reference(device.PLAYER_ID, None)
            live = reference.data_item if reference else None
            display_item = dc.document_model.get_display_item_for_data_item(live) if live else None
            if display_item is None:
                time.sleep(0.1)
        if display_item is None:
            self.say("no live data item of the player appeared")
            return
        primary = dc.selected_display_panel or dc.workspace_controller.display_panels[0]
        dc.workspace_controller.apply_layouts(primary, [primary], 2, 2)
        display_panels = list(dc.workspace_controller.display_panels)
        display_panels[0].set_display_panel_display_item(display_item)
        actions = {a.title: a for a in dc._insitu_menu.items if a.title}
        processors = [p for p in os.environ.get("INSITU_PLAYER_GUI_PROCESSORS", "").split(",") if p] \
            or list(DEFAULT_PROCESSORS)
        for index, processor_id in enumerate(processors):
            dc.selected_display_panel = display_panels[0]
            actions[registry.get(processor_id).title].action.trigger()  # Processing > In-situ > ..., as a user
            self.say(f"attached {processor_id} through the menu")
            out = dc.selected_display_panel.display_item if dc.selected_display_panel else None
            if index + 1 < len(display_panels) and out is not None:
                display_panels[index + 1].set_display_panel_display_item(out)
            display_panels[0].set_display_panel_display_item(display_item)
        self.say("ready")


class PlayerGuiExtension:
    extension_id = "nionswift.insitu.player_gui_check"

    def __init__(self, api_broker: typing.Any) -> None:
        self.__handler = None
        folder = os.environ.get("INSITU_PLAYER_GUI_DRIVER")
        if folder and Application.app is not None:
            self.__handler = Application.app.register_menu_handler(PlayerGuiDriver(pathlib.Path(folder)).on_window)

    def close(self) -> None:
        if self.__handler is not None and Application.app is not None:
            Application.app.unregister_menu_handler(self.__handler)
