#!/usr/bin/env python3
"""Real-GUI screenshot of a live decomposition during a drift-corrected SI (issue 12).

Runs the real Nion Swift on a virtual X screen in simulator mode (the scripted user of ``scripts/swift_scripted_user.py``), with
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
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import swift_scripted_user  # noqa: E402
import swift_xvfb  # noqa: E402

DRIVER = r'''
from swift_scripted_user import ScriptedUser


class DecomposeShotExtension(ScriptedUser):
    extension_id = "insitu.decompose-screenshot-driver"
    period_s = 0.5

    panel = None

    def step(self, dc):
        if self.stage == 0 and self.elapsed_s > 2.0:
            self.stage = 2
            from nionswift_plugin.insitu import drift_si_panel
            self.arrange(dc, 3, 3)
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
            self.signal("ready", "started")
        elif self.stage == 2 and self.panel is not None and self.panel._run is None:
            self.stage = 3
            self.signal("finished", "done")
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
    with tempfile.TemporaryDirectory(prefix="insitu-decompose-settings-") as settings_dir:
        os.environ["INSITU_SETTINGS_DIR"] = settings_dir
        DriftSISettings(si_size_px=(48, 48), section_lines=4, exposure_s=0.004, camera_binning=1,
                        scan_field=(0.25, 0.25, 0.5, 0.5), live_analysis=f"Decomposition {args.method}",
                        live_analysis_parameters={"n_components": 3, "poisson": True,
                                                  "reconstruct": bool(args.reconstruct)}).save()
        stem = f"live-decomposition-{args.method.lower()}" + ("-denoised" if args.reconstruct else "")
        keep = args.out.parent / f"live-decomposition-{args.method.lower()}.log" if os.environ.get("H5_KEEP_LOG") \
            else None
        with swift_scripted_user.SwiftSession(DRIVER, package="insitu_decompose_shot", keep_log=keep,
                                              env={"INSITU_SETTINGS_DIR": settings_dir}) as swift:
            swift.wait_for("ready", 180, "Swift to start the run")
            swift.maximize()
            t_run = time.monotonic()
            while time.monotonic() - t_run < args.seconds and not (swift.folder / "finished").exists():
                swift.check_alive("the first screenshot")
                time.sleep(0.5)
            swift.screenshot(args.out / f"{stem}-running.png")
            swift.wait_for("finished", 600, "the run to finish")
            time.sleep(3.0)                                # the displays repaint the last outputs
            swift.screenshot(args.out / f"{stem}.png")
            rc = swift.quit()
    print(f"Swift exit code {rc}; run took {time.monotonic() - t_run:.0f} s; screenshots in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
