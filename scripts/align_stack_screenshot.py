#!/usr/bin/env python3
"""Real-GUI screenshot of Processing > In-situ > Align stack (SDSD) with "Low-pass from data" on (issue 10), in the
real Nion Swift on a virtual X screen (the scripted user of ``scripts/swift_scripted_user.py``).

A small temporary plug-in acts as the user: it adds a drifting low-dose series (20 frames of 256^2, 10 counts/px,
a fine 1.5 px texture, linear drift + random walk, seeded), runs Align stack (SDSD) on it as the menu item does,
with "Low-pass from data" on (as ticking it in the inspector does), and shows the raw series, the aligned sequence,
the aligned sum and the shift plot, with the Inspector's Computation section of the aligned sequence (its
parameters, the checkbox among them).

usage: .venv/bin/python scripts/align_stack_screenshot.py [--out docs/screenshots]
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
import numpy as np
import scipy.ndimage
from swift_scripted_user import ScriptedUser


def series(seed=7, n=20, size=256, dose=10.0):
    rng = np.random.default_rng(seed)
    texture = scipy.ndimage.gaussian_filter(rng.normal(size=(size + 80, size + 80)), 1.5, mode="wrap")
    texture /= texture.std()
    true = np.cumsum(rng.normal(0, 0.4, (n, 2)), axis=0) + np.arange(n)[:, None] * np.array([0.6, -0.9])
    true -= true[0]
    frames = [rng.poisson(dose * np.clip(1 + 0.35 * scipy.ndimage.shift(texture, s, order=3, mode="wrap")
                                         [40:40 + size, 40:40 + size], 0, None)) for s in true]
    return np.asarray(frames, np.float32), true


class AlignShotExtension(ScriptedUser):
    extension_id = "insitu.align-screenshot-driver"
    period_s = 0.5

    def step(self, dc):
        from nion.data import Calibration, DataAndMetadata
        from nion.swift.model import DataItem
        from nionswift_plugin.insitu import stack_computations
        model = dc.document_model
        if self.stage == 0 and self.elapsed_s > 2.0:
            self.stage = 1
            self.arrange(dc, 2, 2, hide=("histogram-panel", "info-panel", "insitu-processors-panel", "data-panel"))
            # the Computation section is the inspector's last: fold the others (but Info: the caption holds the
            # notes, the low-pass chosen among them) so that it shows
            for section in ("display-limits", "image-data", "calibrations", "session", "sequence"):
                dc.ui.set_persistent_string("inspector-section-expanded." + section, "false")
            frames, self.true = series()
            cals = [Calibration.Calibration(), Calibration.Calibration(0, 0.05, "nm"),
                    Calibration.Calibration(0, 0.05, "nm")]
            xdata = DataAndMetadata.new_data_and_metadata(frames, dimensional_calibrations=cals,
                                                          data_descriptor=DataAndMetadata.DataDescriptor(True, 0, 2))
            item = DataItem.new_data_item(xdata)
            item.title = "drifting series (10 counts/px)"
            model.append_data_item(item)
            self.source = item
            dc.find_dock_panel("inspector-panel").show()
            self.target = stack_computations.align_item(model, item, lowpass_auto=True)
            self.t_start = self.elapsed_s
            self.signal("ready", "started")
        elif self.stage == 1:
            titles = {d.title: d for d in model.data_items}
            total = titles.get(f"{stack_computations.TITLE}: aligned sum")
            plot = titles.get(f"{stack_computations.TITLE}: shifts (px) with uncertainty")
            if (total is None or total.xdata is None or plot is None) and self.elapsed_s - self.t_start < 120:
                return
            self.stage = 2
            panels = dc.workspace_controller.display_panels
            for panel, item in zip(panels, (self.source, self.target, total, plot)):
                if item is not None:
                    panel.set_display_panel_display_item(model.get_display_item_for_data_item(item))
            panels[1].request_focus()
            dc.select_display_items_in_data_panel([model.get_display_item_for_data_item(self.target)])
            computation = model.get_data_item_computation(self.target)
            summary = self.target.xdata.metadata["insitu"]["sdsd"] if self.target.xdata is not None else {}
            shifts = np.asarray(summary.get("shifts_px", np.zeros((1, 2))))
            rms = float(np.sqrt(np.mean(np.sum((shifts - self.true) ** 2, axis=1)))) if len(shifts) == len(self.true) else -1
            self.signal("status.txt", f"error: {computation.error_text!r}\nnotes: {summary.get('notes')}\n"
                                      f"rms vs truth px: {rms:.3f}")
            self.t_shown = self.elapsed_s
        elif self.stage == 2 and self.elapsed_s - self.t_shown > 3.0:
            self.stage = 3
            self.signal("finished", "done")
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--log", type=pathlib.Path, default=None, help="keep Swift's log here")
    args = parser.parse_args()
    reason = swift_xvfb.available()
    if reason:
        print(f"Cannot run the real GUI here: {reason}.")
        return 2
    with swift_scripted_user.SwiftSession(DRIVER, package="insitu_align_shot", keep_log=args.log) as swift:
        swift.wait_for("ready", 180, "Swift to start")
        swift.maximize()
        swift.wait_for("finished", 240, "the alignment to finish")
        time.sleep(2.0)
        target = swift.screenshot(args.out / "align_stack_auto_band.png")
        print((swift.folder / "status.txt").read_text())
        rc = swift.quit()
    print(f"Swift exit code {rc}; screenshot {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
