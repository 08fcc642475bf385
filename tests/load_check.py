#!/usr/bin/env python3
"""Prove that test files do not depend on timing or load (issue 14): each file runs ALONE (its own pytest process),
in a RANDOM order of its tests (seeded, printed), on a COLD numba cache (a fresh empty NUMBA_CACHE_DIR) and with
every core BUSY (one busy-loop process per core beside pytest), all at once.

Not collected by pytest (no ``test_`` prefix); run by ``scripts/check_load.sh`` (called by scripts/test.sh when
``CI`` is set). The default files are the live-engine and drift-SI tests, the ones that failed under load or on a
cold cache; ``--all`` checks every test file (slow, not for CI).

usage: .venv/bin/python tests/load_check.py [--seed N] [--all | FILE ...] [--busy N] [--no-busy]
exit:  0 every file passed; 1 otherwise (the failing files, their seed and order are printed)
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time
import typing

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_FILES = ("tests/plugin/test_live_engine.py", "tests/plugin/test_drift_si.py")


def busy_loop(stop: typing.Any) -> None:
    """Keep one core busy until ``stop`` is set (pure Python arithmetic, no sleeping)."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def collect(path: str) -> list[str]:
    """The node ids of the tests in ``path`` (pytest --collect-only)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", path],
                         cwd=ROOT, capture_output=True, text=True)
    ids = [line.strip() for line in out.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if not ids:
        raise SystemExit(f"load_check: no tests collected from {path}:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return ids


def run_file(path: str, seed: int, extra: list[str], *, shuffle: bool = True, cold: bool = True,
             ) -> tuple[int, float, list[str]]:
    """Run one file alone, its tests shuffled with ``seed``, on a cold numba cache. Returns (rc, seconds, order)."""
    ids = collect(path)
    if shuffle:
        random.Random(seed).shuffle(ids)
    with tempfile.TemporaryDirectory(prefix="insitu-cold-numba-") as cache:
        env = dict(os.environ, PYTHONHASHSEED=str(seed))
        if cold:
            env["NUMBA_CACHE_DIR"] = cache
        t0 = time.monotonic()
        # node ids given on the command line run in that order
        rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, *ids],
                            cwd=ROOT, env=env).returncode
        return rc, time.monotonic() - t0, ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help=f"test files (default: {', '.join(DEFAULT_FILES)})")
    parser.add_argument("--all", action="store_true", help="every tests/**/test_*.py file")
    parser.add_argument("--seed", type=int, default=None, help="order seed (default: random, printed)")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy-loop processes (default: cores)")
    parser.add_argument("--no-busy", action="store_true", help="diagnosis: no busy-loop processes")
    parser.add_argument("--no-shuffle", action="store_true", help="diagnosis: the file's own order")
    parser.add_argument("--warm", action="store_true", help="diagnosis: the usual numba cache (NUMBA_CACHE_DIR)")
    args, extra = parser.parse_known_args()
    files = ([str(p.relative_to(ROOT)) for p in sorted((ROOT / "tests").rglob("test_*.py"))] if args.all
             else args.files or list(DEFAULT_FILES))
    files = [f for f in files if (ROOT / f).exists()]
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    n_busy = 0 if args.no_busy else args.busy
    print(f"load_check: {len(files)} file(s), each alone, "
          f"{'file order' if args.no_shuffle else f'random order (seed {seed})'}, "
          f"{'warm' if args.warm else 'cold'} numba cache, {n_busy} busy-loop process(es) beside pytest", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a CI timeout still stops the busy loops (finally)
    stop = multiprocessing.Event()
    workers = [multiprocessing.Process(target=busy_loop, args=(stop,), daemon=True) for _ in range(n_busy)]
    for w in workers:
        w.start()
    failures = []
    try:
        for i, path in enumerate(files):
            file_seed = seed + i
            rc, seconds, order = run_file(path, file_seed, extra, shuffle=not args.no_shuffle, cold=not args.warm)
            print(f"load_check: {path}: {'passed' if rc == 0 else f'FAILED (pytest exit {rc})'} in {seconds:.0f} s "
                  f"(order seed {file_seed})", flush=True)
            if rc != 0:
                failures.append((path, file_seed, order))
    finally:
        stop.set()
        for w in workers:
            w.join(5)
            if w.is_alive():
                w.terminate()
    flags = " ".join(f for f, on in (("--no-busy", args.no_busy), ("--no-shuffle", args.no_shuffle),
                                     ("--warm", args.warm)) if on)
    for path, file_seed, order in failures:
        print(f"load_check: reproduce {path}: .venv/bin/python tests/load_check.py --seed {file_seed} {flags} {path}"
              f"\n  order: {' '.join(order)}")
    conditions = ", ".join(c for c, on in (("shuffled", not args.no_shuffle), ("cold", not args.warm),
                                           (f"{n_busy} busy", n_busy > 0)) if on)
    print(f"load_check: {len(files) - len(failures)}/{len(files)} file(s) passed alone ({conditions or 'plain'})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
