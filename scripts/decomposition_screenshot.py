#!/usr/bin/env python3
"""Real-GUI screenshot of a live decomposition during a drift-corrected SI (issue 12).

Runs the real Nion Swift on a virtual X screen in simulator mode (the machinery of ``scripts/swift_xvfb.py``), with
a small temporary plug-in that acts as the user: it opens the Drift-corrected SI panel (settings saved beforehand:
live analysis "Decomposition PCA" with 3 components), lays out a 3x3 grid of empty displays and presses Start. The
panel shows the SI, its spectrum and the live PCA outputs (scree, component spectra, score maps) as they update;
the screenshot is taken while the run is going, then again at the end.

usage: .venv/bin/python scripts/decomposition_screenshot.py [--out docs/screenshots] [--method PCA] [--seconds 25]
                                                             [--reconstruct]
(``--reconstruct``: the live analysis's "Denoised SI" option on; files ``live-decomposition-<method>-denoised*.png``)
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import swift_xvfb  # noqa: E402

DRIVER = r'''
import os, pathlib, time
from nion.swift import Application

FOLDER = pathlib.Path(os.environ["H5_SHOT_DRIVER"])


class DecomposeShotExtension:
    extension_id = "insitu.decompose-screenshot-driver"

    def __init__(self, api_broker):
        self.stage = 0
        self.t0 = time.time()
        self.panel = None
        if Application.app is not None:
            Application.app.register_menu_handler(self.on_window)

    def on_window(self, dc):
        if self.stage == 0:
            self.stage = 1
            self.periodic = dc.add_periodic(0.5, lambda: self.step(dc))  # keep the handle: it is weak

    def step(self, dc):
        try:
            self._step(dc)
        except Exception:
            import traceback
            (FOLDER / "error").write_text(traceback.format_exc())
            (FOLDER / "ready").write_text("error")
            self.stage = 99

    def _step(self, dc):
        if self.stage == 1 and time.time() - self.t0 > 2.0:
            self.stage = 2
            from nionswift_plugin.insitu import drift_si_panel
            for dock_id in ("histogram-panel", "info-panel", "insitu-processors-panel"):
                dock = dc.find_dock_panel(dock_id)
                if dock:
                    dock.hide()
            primary = dc.selected_display_panel or dc.workspace_controller.display_panels[0]
            dc.workspace_controller.apply_layouts(primary, [primary], 3, 3)
            # the simulated instrument as in the headless tests: a 4 nm context scan, EELS 1.5 eV/channel
            from nion.instrumentation import HardwareSource
            from nion.utils import Geometry, Registry
            instrument = Registry.get_component("stem_controller")
            for name, value in (("EELS_Dispersion", 1.5), ("ZLPoffset", -20.0)):
                instrument.SetVal(name, value)
            scan = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id("insitu_scan")
            fp = scan.get_current_frame_parameters()
            fp.fov_nm = 4.0
            fp.pixel_size = Geometry.IntSize(128, 128)
            scan.set_current_frame_parameters(fp)
            self.panel = dc.find_dock_panel(drift_si_panel.PANEL_ID)
            self.panel.show()
            self.panel.start()
            (FOLDER / "ready").write_text("started")
        elif self.stage == 2 and self.panel is not None and self.panel._run is None:
            self.stage = 3
            (FOLDER / "finished").write_text("done")
        elif self.stage >= 2 and (FOLDER / "quit").exists():
            self.stage = 9
            for window in list(Application.app.windows):
                window.queue_request_close()
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--method", default="PCA", choices=("PCA", "NMF", "VCA"))
    parser.add_argument("--seconds", type=float, default=60.0, help="time into the run of the first screenshot")
    parser.add_argument("--reconstruct", action="store_true", help="live denoised SI on")
    args = parser.parse_args()
    reason = swift_xvfb.available()
    if reason:
        print(f"Cannot run the real GUI here: {reason}.")
        return 2
    from processing.spectroscopy.si_settings import DriftSISettings
    work = pathlib.Path(tempfile.mkdtemp(prefix="insitu-decompose-shot-"))
    home, driver, plugin_root = work / "home", work / "driver", work / "plugins"
    swift_xvfb.make_profile(home)
    driver.mkdir()
    package = plugin_root / "nionswift_plugin" / "insitu_decompose_shot"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(DRIVER)
    settings_dir = work / "settings"
    settings_dir.mkdir()
    os.environ["INSITU_SETTINGS_DIR"] = str(settings_dir)
    DriftSISettings(si_size_px=(48, 48), section_lines=4, exposure_s=0.004, camera_binning=1,
                    scan_field=(0.25, 0.25, 0.5, 0.5), live_analysis=f"Decomposition {args.method}",
                    live_analysis_parameters={"n_components": 3, "poisson": True,
                                              "reconstruct": bool(args.reconstruct)}).save()
    stem = f"live-decomposition-{args.method.lower()}" + ("-denoised" if args.reconstruct else "")
    args.out.mkdir(parents=True, exist_ok=True)
    xvfb = swift = None
    log_path = work / "swift.log"
    try:
        xvfb, display = swift_xvfb.start_xvfb()
        env = dict(os.environ, DISPLAY=display, HOME=str(home), XDG_RUNTIME_DIR=str(work), QT_QPA_PLATFORM="xcb",
                   INSITU_SIMULATOR="1", H5_SHOT_DRIVER=str(driver), INSITU_SETTINGS_DIR=str(settings_dir),
                   PYTHONPATH=os.pathsep.join([str(plugin_root), os.environ.get("PYTHONPATH", "")]))
        for k in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "INSITU_GUI_DRIVER"):
            env.pop(k, None)
        with open(log_path, "w") as log:
            swift = subprocess.Popen([str(swift_xvfb.LAUNCHER), str(swift_xvfb.VENV), "nionui_app.nionswift"],
                                     env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)
            t0 = time.monotonic()
            while not (driver / "ready").exists():
                if swift.poll() is not None or time.monotonic() - t0 > 180:
                    raise RuntimeError(f"Swift did not start the run; log:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
            if (driver / "error").exists():
                raise RuntimeError(f"the scripted user failed:\n{(driver / 'error').read_text()}")
            swift_xvfb.maximize(env)
            t_run = time.monotonic()
            while time.monotonic() - t_run < args.seconds and not (driver / "finished").exists():
                time.sleep(0.5)
            swift_xvfb.screenshot(display, args.out / f"{stem}-running.png")
            while not (driver / "finished").exists() and time.monotonic() - t_run < 600:
                time.sleep(0.5)
            time.sleep(3.0)
            swift_xvfb.screenshot(display, args.out / f"{stem}.png")
            (driver / "quit").touch()
            rc = swift.wait(timeout=60)
        print(f"Swift exit code {rc}; run took {time.monotonic() - t_run:.0f} s; screenshots in {args.out}")
        shutil.copy(log_path, args.out.parent / f"live-decomposition-{args.method.lower()}.log") \
            if os.environ.get("H5_KEEP_LOG") else None
        return 0
    finally:
        if swift is not None:
            swift_xvfb.stop(swift)
        if xvfb is not None:
            swift_xvfb.stop(xvfb)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
