"""The most a temporal drift prior can gain, analytically (issue 10): positions y_k = p_k + e_k measured with frame
noise e_k ~ N(0, r) per axis, true drift linear + random walk with step variance q; the smoother with the TRUE q and r
(the exact posterior, no estimation) against the measured positions, frame-0 referenced RMS error, N frames.

    .venv/bin/python bench/sdsd_prior_oracle.py [--frames 20]

The ratio depends only on q / r, i.e. (random-walk step sigma / frame-noise sigma)^2. In the issue's scenarios the
walk is 0.1-0.6 px/frame and a frame's own error 0.02-0.07 px per axis (bench/results_sdsd.md): q / r = 2-900.
"""
from __future__ import annotations

import argparse

import numpy as np


def oracle_ratio(walk_over_noise: float, n: int) -> float:
    q, r = walk_over_noise ** 2, 1.0
    index = np.arange(n)
    g = np.minimum.outer(index, index).astype(np.float64)
    v = q * g + r * np.eye(n)
    x = np.stack([np.ones(n), index], axis=1)
    vi = np.linalg.inv(v)
    p = vi - vi @ x @ np.linalg.solve(x.T @ vi @ x, x.T @ vi)
    c = r * (np.eye(n) - r * p)                                    # posterior covariance of p given y
    relative = np.diag(c) - 2 * c[:, 0] + c[0, 0]
    return float(np.sqrt(relative[1:].mean() / (2 * r)))          # measured: var(e_k - e_0) = 2 r


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    print(f"N = {args.frames}: RMS error of the exact smoother / RMS error as measured (frame-0 referenced)")
    for ratio in (0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0):
        print(f"  walk / frame noise = {ratio:5.1f}: {oracle_ratio(ratio, args.frames):.3f}")


if __name__ == "__main__":
    main()
