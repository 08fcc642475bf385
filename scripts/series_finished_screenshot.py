#!/usr/bin/env python3
"""Real-GUI screenshot of a FINISHED energy series with auto-exposure (issue 10): the simulated perovskite across the
Sc L2,3 edge (402 eV), run from the "Focal / energy series" panel in the real Nion Swift on a
virtual X screen (simulator mode, the scripted user of ``scripts/swift_scripted_user.py``).

A small temporary plug-in acts as the user: it opens the panel, chooses "Energy series", 370-460 eV in 10 eV steps,
slit 10 eV, start exposure 50 ms, "Align the series (SDSD) when done", presses Start; when the series is done it
shows the scaled series (at the slice just past the Sc L2,3 edge) and the SDSD-aligned sum next to the panel, whose
status line is the report (slices, exposures used, dark references, time).

usage: .venv/bin/python scripts/series_finished_screenshot.py [--out docs/screenshots]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import swift_scripted_user  # noqa: E402
import swift_xvfb  # noqa: E402

DRIVER = r'''
import time
from swift_scripted_user import ScriptedUser

VALUES = {"kind": "energy", "start": 370.0, "step": 10.0, "count": 10, "slit_width_eV": 10.0, "exposure_ms": 50.0,
          "align": True}
SHOW_SLICE = 4          # 410 eV: just past the Sc L2,3 edge


class SeriesShotExtension(ScriptedUser):
    extension_id = "insitu.series-screenshot-driver"
    period_s = 0.5

    panel = None

    def step(self, dc):
        if self.stage == 0 and self.elapsed_s > 2.0:
            self.stage = 2
            from nionswift_plugin.insitu import series_acquisition
            self.arrange(dc, 1, 2)
            # warm the simulator up first: its first energy-filtered 1024^2 frame computes the specimen maps
            # (~20 s on this machine), longer than the series' 30 s frame timeout when the machine is busy
            from nion.instrumentation import HardwareSource
            from nion.utils import Registry
            self.instrument = Registry.get_component("stem_controller")
            # slow drift (0.08 px/s at 0.06 nm/px): the simulated energy filter recomputes its 1024^2 specimen tile
            # (~15 s) each time the drift moves it by 16 px
            from instrument_sim.drift import DriftModel
            self.instrument.sample_drift = DriftModel(rate_nm_per_s=(0.004, -0.003), random_walk_nm_per_sqrt_s=0.001,
                                                      seed=4)
            # the dose is spread over the 1024^2 sensor: 2 uA gives ~6e6 e/px/s, core-loss slices in about 1 s
            self.instrument.SetVal("BeamCurrent", 2e-6)
            self.instrument.SetVal("EFTEM_Slit", 1.0)
            self.instrument.SetVal("EFTEM_EnergyOffset", 370.0)
            self.camera = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(
                "insitu_camera")
            self.frames = 0

            def frame(*args):
                self.frames += 1
            self.listener = self.camera.xdatas_available_event.listen(frame)
            # compute the specimen maps off the UI thread, then play (the camera's first frame is then fast)
            import threading
            import nionswift_plugin.insitu as insitu
            from instrument_sim.insitu_camera import SimulatorSeriesDevice
            device = SimulatorSeriesDevice(insitu._simulator_handle.insitu_camera.simulator)
            self.warm = threading.Thread(target=lambda: device.acquire(0.01, 1), daemon=True)
            self.warm.start()
            self.panel = dc.find_dock_panel(series_acquisition.PANEL_ID)
            self.panel.show()
            self.panel.values.update(VALUES)
            for name, edit in self.panel.edits.items():
                edit.text = f"{self.panel.values[name]:g}"
            self.panel._align_box.checked = True
            self.panel._kind_box.current_index = 1
            self.stage = 10
        elif self.stage == 10 and not self.warm.is_alive():
            self.stage = 11
            self.camera.start_playing()
        elif self.stage == 11 and self.frames >= 2:
            self.stage = 2
            self.listener.close()
            self.instrument.SetVal("EFTEM_Slit", 0.0)          # the series inserts the slit itself
            self.panel.start()
            self.signal("ready", "started")
        elif self.stage == 2 and self.panel.runner is not None and not self.panel.runner.running:
            self.stage = 3
            self.t_done = time.time()
        elif self.stage == 3 and time.time() - self.t_done > 3.0:     # items added, alignment computed
            model = dc.document_model
            titles = {d.title: d for d in model.data_items}
            done = any(t.endswith("aligned sum") and d.xdata is not None for t, d in titles.items())
            if not done and time.time() - self.t_done < 180.0:          # SDSD of 10 x 1024^2 frames
                return
            self.stage = 4
            panels = dc.workspace_controller.display_panels
            scaled = titles.get("Energy series: scaled to first exposure")
            aligned = next((d for t, d in titles.items() if t.endswith("aligned sum")), None)
            for panel, item in zip(panels, (scaled, aligned)):
                if item is not None:
                    display_item = model.get_display_item_for_data_item(item)
                    panel.set_display_panel_display_item(display_item)
                    if item is scaled:
                        display_item.display_data_channel.sequence_index = SHOW_SLICE
            runner = self.panel.runner
            report = runner.result.report() if runner.result is not None else None
            self.signal("status.txt", f"{self.panel._status.text}\nerror: {runner.error!r}\nreport: {report}")
            self.signal("finished", "done")
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--timeout", type=float, default=300.0, help="longest wait for the series (s)")
    parser.add_argument("--log", type=pathlib.Path, default=None, help="keep Swift's log here")
    args = parser.parse_args()
    reason = swift_xvfb.available()
    if reason:
        print(f"Cannot run the real GUI here: {reason}.")
        return 2
    with swift_scripted_user.SwiftSession(DRIVER, package="insitu_series_shot", drop_env=("INSITU_GUI_SERIES",),
                                          keep_log=args.log) as swift:
        swift.wait_for("ready", 180, "Swift to start the series")
        swift.maximize()
        t_run = time.monotonic()
        try:
            swift.wait_for("finished", args.timeout, "the series to finish")
        except TimeoutError:
            swift.screenshot(args.out / "series_timeout.png")
            raise
        time.sleep(3.0)                                    # the displays repaint the last items
        target = swift.screenshot(args.out / "series_finished.png")
        print(f"panel status: {(swift.folder / 'status.txt').read_text()}")
        rc = swift.quit()
    print(f"Swift exit code {rc}; series took {time.monotonic() - t_run:.0f} s; screenshot {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
