"""Trial (issue 13, session 12), part 1 of 2: run one sweep scenario and keep every reference scan with the
simulator's true drift at its time (``DriftEstimator.add_image`` wrapped). A diagnostic; nothing here is used by the
engine. Part 2: ``bench/drift_alias_content_score.py``.

    .venv/bin/python bench/drift_alias_content_capture.py SEED     # writes drift_alias_content_SEED.pkl here
"""
import pathlib
import pickle
import sys
ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
import numpy as np
import bench_drift_si_sweep as sw
from processing.spectroscopy import drift as drift_mod
seed = int(sys.argv[1])
sc = sw.draw_scenario(seed)
print(sc)
captured = []
orig = drift_mod.DriftEstimator.add_image
def add_image(self, image, *, time_s, pixel_size_nm, applied_offset_nm=(0.0, 0.0), rotation_rad=0.0, rate_check=False):
    rec = orig(self, image, time_s=time_s, pixel_size_nm=pixel_size_nm, applied_offset_nm=applied_offset_nm,
               rotation_rad=rotation_rad, rate_check=rate_check)
    captured.append(dict(image=np.array(image, dtype=np.float64), time_s=time_s, pixel=tuple(pixel_size_nm),
                         applied=tuple(applied_offset_nm), rotation=rotation_rad, rate_check=rate_check,
                         drift_nm=tuple(rec.drift_nm), candidates=[tuple(c) for c in rec.candidates_nm],
                         ambiguous=rec.ambiguous, quality=rec.quality,
                         truth=tuple(np.asarray(sw._drift(sc).offset_nm(time_s), dtype=float).reshape(-1))))
    return rec
drift_mod.DriftEstimator.add_image = add_image
sw.REFERENCE_ON_FEATURE = True
out = sw.run_engine(sc, 24, corrected=True)
print({k: out[k] for k in ("rms_px", "rms_trusted_px", "flagged_pixel_fraction", "measurements", "ambiguous")})
pickle.dump(dict(sc=sc, captured=captured, out=out), open(f"drift_alias_content_{seed}.pkl", "wb"))
