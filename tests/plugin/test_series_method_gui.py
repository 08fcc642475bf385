"""The real Nion Swift under Xvfb: a user opens Swift's own Acquisition panel, chooses the repeat mode "In-situ focal /
energy series" with the mouse and keyboard (xdotool: clicks on the combo boxes, the radio button, the line edits,
typed values, Return), sets an energy series of 5 slices across the Sc L2,3 edge, presses Acquire; the series data
item appears with 5 slices whose intensity profile follows the simulator's truth at the planned energies (a slice
late by one frame would fail), every slice was rendered at its energy with the slit in, and the controls are
restored. Screenshot: docs/screenshots/series_acquisition_panel.png with INSITU_UPDATE_SCREENSHOTS=1, else
out/screenshots/. Any traceback of ours in Swift's log fails (``swift_xvfb.classify_tracebacks``).

The scripted user (scripts/swift_scripted_user.py) only sets the simulator up (no drift, the energy filter's specimen
maps computed beforehand) and reports widget positions and state; every choice in the panel is a real click or key.
Waits are for conditions, with generous timeouts (a loaded CI machine). Skipped where Xvfb, xdotool or the Swift
launcher is missing.
"""
from __future__ import annotations

import pathlib
import shutil
import sys
import time
import typing

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import swift_scripted_user  # noqa: E402
import swift_xvfb  # noqa: E402

_reason = swift_xvfb.available() or (None if shutil.which("xdotool") else "xdotool is not installed")
pytestmark = [pytest.mark.gui, pytest.mark.skipif(_reason is not None, reason=str(_reason))]

METHOD = "In-situ focal / energy series"
START_EV, STEP_EV, COUNT = 360.0, 20.0, 5

DRIVER = r'''
import gc, threading
from swift_scripted_user import ScriptedUser

METHOD = "In-situ focal / energy series"


def _live(kind):
    return [o for o in gc.get_objects() if type(o).__name__ == kind and getattr(o, "_behavior", None) is not None]


def _box(widget):
    from nion.utils import Geometry
    size = widget.size
    corner = widget.map_to_global(Geometry.IntPoint(0, 0))
    return {"x": corner.x, "y": corner.y, "w": size.width, "h": size.height}


def _text(item):
    return str(getattr(item, "display_name", item))


class SeriesMethodUserExtension(ScriptedUser):
    extension_id = "insitu.test-series-method-gui"

    def step(self, dc):
        if self.stage == 0 and self.elapsed_s > 1.0:
            self.stage = 1
            from nion.utils import Registry
            from instrument_sim.drift import DriftModel
            from instrument_sim.insitu_camera import SimulatorSeriesDevice
            import nionswift_plugin.insitu as insitu
            for dock_id in ("histogram-panel", "info-panel", "insitu-processors-panel", "inspector-panel"):
                dock = dc.find_dock_panel(dock_id)
                if dock:
                    dock.hide()
            dc.find_dock_panel("acquisition-panel").show()
            self.instrument = Registry.get_component("stem_controller")
            self.instrument.sample_drift = DriftModel(rate_nm_per_s=(0.0, 0.0), seed=1)   # truth per pixel holds
            self.instrument.SetVal("BeamCurrent", 2e-6)
            self.simulator = insitu._simulator_handle.insitu_camera.simulator
            # the energy filter's first frame computes the specimen maps (tens of s on a busy machine): off the UI
            # thread, before the user starts (the series' frames are then fast)
            device = SimulatorSeriesDevice(self.simulator)
            self.instrument.SetVal("EFTEM_Slit", 1.0)
            self.instrument.SetVal("EFTEM_EnergyOffset", 400.0)
            self.warm = threading.Thread(target=lambda: device.acquire(0.01, 1), daemon=True)
            self.warm.start()
        elif self.stage == 1 and not self.warm.is_alive():
            self.stage = 2
            self.instrument.SetVal("EFTEM_Slit", 0.0)
            self.instrument.SetVal("EFTEM_EnergyOffset", 0.0)
            self.log_t0_s = self.simulator.instrument.time_s()       # frames rendered from now on: the user's
            self.rendered = {}
            self.signal("ready")
        elif self.stage == 2:      # every frame rendered from now on, kept before the log's window moves on
            for r in self.simulator.frame_log:
                if r.t_s >= self.log_t0_s:
                    self.rendered[r.t_s] = (r.energy_offset_eV, r.slit_in, r.slit_width_eV)

    def answer(self, dc, name):
        self.document_controller = dc
        if name == "widgets":
            return self.widgets()
        if name == "state":
            return self.state(dc)
        if name == "truth":
            return self.truth(dc)
        return {"error": name}

    def widgets(self):
        """Screen boxes of the Acquisition panel's shown widgets (zero-size or outside the panel: hidden pages)."""
        out = {"combos": [], "radios": {}, "buttons": {}, "edits": {}, "panel": None}
        panel = self.document_controller.find_dock_panel("acquisition-panel")
        if panel is None or getattr(panel.widget, "_behavior", None) is None:
            return out
        area = out["panel"] = _box(panel.widget)

        def shown(widget):
            box = _box(widget)
            inside = area["x"] <= box["x"] < area["x"] + area["w"] and area["y"] <= box["y"] < area["y"] + area["h"]
            return box if inside and box["w"] > 0 and box["h"] > 0 else None

        for combo in _live("ComboBoxWidget"):
            box = shown(combo)
            if box:
                out["combos"].append({"items": [_text(i) for i in (combo.items or [])], "current": combo.current_index,
                                      **box})
        for kind, key in (("RadioButtonWidget", "radios"), ("PushButtonWidget", "buttons")):
            for widget in _live(kind):
                box = shown(widget)
                if box:
                    out[key][str(widget.text)] = box
        edits = [b for b in (shown(e) for e in _live("LineEditWidget")) if b]
        for label in _live("LabelWidget"):
            text, box = str(label.text), shown(label)
            if box and text in ("Start (nm or eV)", "Step (nm or eV)", "Images", "Slit width (eV)"):
                row = [b for b in edits if abs((b["y"] + b["h"] / 2) - (box["y"] + box["h"] / 2)) < 8
                       and b["x"] > box["x"]]
                if row:
                    out["edits"][text] = min(row, key=lambda b: b["x"])
        return out

    def _controller(self):
        found = [o for o in gc.get_objects() if type(o).__name__ == "AcquisitionController"
                 and getattr(o, "is_acquiring_model", None) is not None]
        return found[0] if found else None

    def state(self, dc):
        controller = self._controller()
        handlers = [o for o in gc.get_objects() if type(o).__name__ == "InsituSeriesMethodHandler"]
        config = handlers[0].configuration if handlers else None
        devices = [o for o in gc.get_objects() if type(o).__name__ == "CameraAcquisitionDeviceComponentHandler"
                   and getattr(o, "_camera_settings_model", None) is not None]
        source = devices[0]._camera_settings_model.camera_hardware_source if devices else None
        items = [{"title": d.title, "shape": list(d.xdata.data_shape) if d.xdata is not None else None,
                  "sequence": bool(d.xdata.is_sequence) if d.xdata is not None else None}
                 for d in dc.document_model.data_items]
        return {"method": controller.method_model.value if controller else None,
                "mode": controller.acquisition_mode_model.value if controller else None,
                "acquiring": bool(controller.is_acquiring_model.value) if controller else None,
                "progress": controller.progress_value_model.value if controller else None,
                "config": {k: getattr(config, k) for k in ("kind", "start", "step", "count", "slit_width_eV")}
                if config is not None else None,
                "camera": getattr(source, "hardware_source_id", None), "items": items, "slit": self.instrument.GetVal("EFTEM_Slit"),
                "offset": self.instrument.GetVal("EFTEM_EnergyOffset")}

    def truth(self, dc):
        import numpy as np
        item = next(d for d in dc.document_model.data_items if (d.title or "").startswith("Energy series"))
        data = np.asarray(item.xdata.data, dtype=np.float64)
        n, h, w = data.shape
        points = [(y, x) for y in range(h // 32, h, h // 16) for x in range(w // 32, w, w // 16)]
        config = [o for o in gc.get_objects() if type(o).__name__ == "InsituSeriesMethodHandler"][0].configuration
        energies = [config.start + k * config.step for k in range(config.count)]
        sim = self.simulator
        truth = [float(np.mean([sim.eftem_truth(y, x, energy_offset_eV=e, slit_width_eV=config.slit_width_eV)
                                for y, x in points])) for e in energies]
        measured = [float(np.mean([data[k, y, x] for y, x in points])) for k in range(n)]
        rendered = [self.rendered[t] for t in sorted(self.rendered)]
        return {"energies": energies, "truth": truth, "measured": measured, "rendered": rendered,
                "mean_counts": float(data.mean())}
'''


def _centre(box: dict[str, typing.Any]) -> tuple[str, str]:
    return str(int(box["x"] + box["w"] / 2)), str(int(box["y"] + box["h"] / 2))


def _choose(swift: typing.Any, combo: dict[str, typing.Any], item: str,
            chosen: typing.Callable[[dict[str, typing.Any]], bool], what: str) -> None:
    """Open the combo box with a click, move to ``item`` with the arrow keys, Return (as a user would), until the
    panel's state says ``chosen`` (a popup that opened late under load: Escape, and again)."""
    target, current = combo["items"].index(item), combo["current"] or 0
    keys = ["Down"] * (target - current) if target >= current else ["Up"] * (current - target)
    for attempt in range(4):
        swift.xdotool("mousemove", *_centre(combo))
        swift.xdotool("click", "1")
        time.sleep(1.0 + 2.0 * attempt)                      # the popup opens (longer on each retry)
        for key in keys + ["Return"]:
            swift.xdotool("key", "--delay", "150", key)
        try:
            swift.until("state", chosen, 10 + 10 * attempt, what)
            return
        except TimeoutError:
            if attempt == 3:
                raise
            swift.xdotool("key", "Escape")
            state = swift.ask("widgets")
            combo = next(c for c in state["combos"] if c["items"] == combo["items"])
            current = combo["current"] or 0
            keys = ["Down"] * (target - current) if target >= current else ["Up"] * (current - target)


def _act(swift: typing.Any, action: typing.Callable[[], None], done: typing.Callable[[dict[str, typing.Any]], bool],
         what: str, attempts: int = 3) -> dict[str, typing.Any]:
    """Do ``action`` (clicks, keys) until the panel's state says ``done`` (an input lost to a popup still open or
    a busy machine: Escape, and again)."""
    for attempt in range(attempts):
        action()
        try:
            return swift.until("state", done, 20 + 20 * attempt, what)
        except TimeoutError:
            if attempt == attempts - 1:
                raise
            swift.xdotool("key", "Escape")
    raise AssertionError("unreachable")


def _widen(swift: typing.Any, panel: dict[str, typing.Any], by_px: int = 300) -> None:
    """Drag the splitter left of the Acquisition panel to the left (the panel's rows then fit)."""
    x, y = panel["x"] - 4, panel["y"] + panel["h"] // 2
    swift.xdotool("mousemove", str(x), str(y))
    swift.xdotool("mousedown", "1")
    for i in range(1, 21):
        swift.xdotool("mousemove", str(x - by_px * i // 20), str(y))
    swift.xdotool("mouseup", "1")


def _click(swift: typing.Any, box: dict[str, typing.Any]) -> None:
    swift.xdotool("mousemove", *_centre(box))
    swift.xdotool("click", "1")


def _type_into(swift: typing.Any, box: dict[str, typing.Any], value: str) -> None:
    swift.xdotool("mousemove", *_centre(box))
    swift.xdotool("click", "--repeat", "3", "1")          # select the field's text
    swift.xdotool("key", "ctrl+a")
    swift.xdotool("type", "--delay", "60", value)
    swift.xdotool("key", "Return")


def test_energy_series_from_swifts_acquisition_panel_clicked_in_the_real_gui(tmp_path: pathlib.Path) -> None:
    with swift_scripted_user.SwiftSession(DRIVER, package="insitu_series_method_user",
                                          keep_log=tmp_path / "swift.log") as swift:
        swift.wait_for("ready", 300, "Swift to start and the energy filter to warm up")
        swift.maximize()
        widgets = swift.until("widgets", lambda w: any(METHOD in c["items"] for c in w["combos"])
                              and "Camera" in w["radios"] and "Acquire" in w["buttons"], 60,
                              "the Acquisition panel to show")
        narrow = widgets["panel"]["w"]
        _widen(swift, widgets["panel"])
        widgets = swift.until("widgets", lambda w: w["panel"]["w"] > narrow + 100, 30, "the panel to be wider")
        # 1. the repeat mode
        methods = next(c for c in widgets["combos"] if METHOD in c["items"])
        _choose(swift, methods, METHOD, lambda s: s["method"] == "insitu-series", "the method to be chosen")
        # 2. camera mode, our simulated camera (the layout changed: positions asked again)
        widgets = swift.ask("widgets")
        camera = widgets["radios"]["Camera"]
        _act(swift, lambda: _click(swift, camera),
             lambda s: s["mode"] == "camera", "camera mode")
        widgets = swift.until("widgets", lambda w: "Images" in w["edits"] and any(
            "Energy (EFTEM offset), eV" in c["items"] for c in w["combos"]), 30, "the method's fields")
        cameras = [c for c in widgets["combos"] if "In-situ Camera" in c["items"]]
        if cameras and swift.ask("state")["camera"] != "insitu_camera":     # a choice of cameras: the in-situ one
            _choose(swift, cameras[0], "In-situ Camera", lambda s: s["camera"] == "insitu_camera", "the camera")
            widgets = swift.ask("widgets")
        # 3. an energy series: 360, 380, ... 440 eV, slit 10 eV
        kinds = next(c for c in widgets["combos"] if "Energy (EFTEM offset), eV" in c["items"])
        _choose(swift, kinds, "Energy (EFTEM offset), eV", lambda s: s["config"]["kind"] == 1, "energy series")
        for label, key, value in (("Start (nm or eV)", "start", START_EV), ("Step (nm or eV)", "step", STEP_EV),
                                  ("Images", "count", COUNT), ("Slit width (eV)", "slit_width_eV", 10.0)):
            box = widgets["edits"][label]
            _act(swift, lambda: _type_into(swift, box, f"{value:g}"),
                 lambda s: s["config"][key] == value, f"{label} = {value:g}")
        state = swift.until("state", lambda s: s["config"] == {"kind": 1, "start": START_EV, "step": STEP_EV,
                                                               "count": COUNT, "slit_width_eV": 10.0}
                            and s["camera"] == "insitu_camera", 30, "the typed values to reach the method")
        before = {i["title"] for i in state["items"]}
        # 4. Acquire
        widgets = swift.ask("widgets")
        acquire = widgets["buttons"]["Acquire"]
        title = f"Energy series {START_EV:g}-{START_EV + STEP_EV * (COUNT - 1):g} eV"
        # started (or already done): never clicked again once started (a second click would cancel)
        _act(swift, lambda: _click(swift, acquire),
             lambda s: s["acquiring"] or any(i["title"].startswith(title) for i in s["items"]), "the series to start")

        def finished(s: dict[str, typing.Any]) -> bool:
            return not s["acquiring"] and any(i["title"].startswith(title) and i["shape"] for i in s["items"])
        state = swift.until("state", finished, 600, "the series to be acquired", every_s=1.0)
        truth = swift.ask("truth", timeout_s=300)
        shot = swift.screenshot(tmp_path / "series_acquisition_panel.png")
        swift.quit()
        log_text = swift.log_text
    series = [i for i in state["items"] if i["title"].startswith(title) and i["title"] not in before]
    assert len(series) == 1, state["items"]
    assert series[0]["sequence"] and series[0]["shape"][0] == COUNT, series
    energies = [START_EV + k * STEP_EV for k in range(COUNT)]
    assert truth["energies"] == energies
    # every slice rendered at its energy, slit in at 10 eV (frames before the first slice may be at the start value)
    rendered = {round(e, 6) for e, slit_in, width in truth["rendered"] if slit_in and width == 10.0}
    assert set(energies) <= rendered, truth["rendered"]
    assert state["slit"] == 0.0 and state["offset"] == 0.0                  # controls restored
    # the profile over the slices follows the truth's (a slice late by one frame would not)
    measured, expected = np.asarray(truth["measured"]), np.asarray(truth["truth"])
    profile, reference = measured / measured.mean(), expected / expected.mean()
    lagged = np.r_[expected[:1], expected[:-1]]
    assert not np.allclose(lagged / lagged.mean(), reference, rtol=0.03)
    print(f"slices {series[0]['shape']}, mean {truth['mean_counts']:.1f} counts/px; profile {np.round(profile, 4)}, "
          f"truth {np.round(reference, 4)}, max deviation {np.abs(profile / reference - 1).max():.4f}")
    assert np.allclose(profile, reference, rtol=0.03), (profile, reference, truth["mean_counts"])
    unexpected, _known = swift_xvfb.classify_tracebacks(log_text)
    assert not unexpected, "\n\n".join(unexpected)[-5000:]
    swift.publish(shot)
