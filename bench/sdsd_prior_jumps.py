"""How often the drift prior finds the jump of bench_sdsd.py's "jump" scenarios (3-8 px at a random frame 5-15),
and whether it reports a jump in the scenarios without one.

    .venv/bin/python bench/sdsd_prior_jumps.py [--seeds 30] [--base-seed 11000]
"""
from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_sdsd import scenario  # noqa: E402
from processing.alignment.sdsd import align_stack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--base-seed", type=int, default=11000)
    args = parser.parse_args()
    for drift in ("jump", "linear+walk", "walk", "smooth"):
        found = spurious = 0
        step_errors: list[float] = []
        for seed in range(args.base_seed, args.base_seed + args.seeds):
            frames, true, _params = scenario(seed, drift=drift)
            result = align_stack(frames, drift_prior="random-walk")
            jumps = set((result.drift_prior or {}).get("jumps", []))
            steps = np.linalg.norm(np.diff(true, axis=0), axis=1)
            real = {int(np.argmax(steps))} if drift == "jump" else set()
            found += len(jumps & real)
            spurious += len(jumps - real)
            for k in jumps & real:
                step = result.shifts_px[k + 1] - result.shifts_px[k]
                step_errors.append(float(np.linalg.norm(step - (true[k + 1] - true[k]))))
        line = f"{drift:12s}: jumps found {found} / {args.seeds if drift == 'jump' else 0}, spurious {spurious}"
        if step_errors:
            line += f", error of the jump step px median {np.median(step_errors):.3f} / worst {max(step_errors):.3f}"
        print(line)


if __name__ == "__main__":
    main()
