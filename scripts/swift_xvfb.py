#!/usr/bin/env python3
"""Run the real Nion Swift (Qt launcher) on a virtual X screen with the suite in simulator mode, let the scripted
user (nionswift_plugin/insitu/gui_driver.py) play the camera and attach processors through the menu, take
screenshots, and shut everything down cleanly by PID.

usage: .venv/bin/python scripts/swift_xvfb.py [--out out/launch] [--seconds 30] [--processors id,id,...]
Needs Debian's xvfb (installed by scripts/setup.sh as root) and the nionswift-tool launcher (setup.cfg extra).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import typing
import uuid

VENV = pathlib.Path(sys.prefix)
LAUNCHER = VENV / "bin" / "NionSwiftLauncher" / "NionSwiftLauncher"


def available() -> str | None:
    """None when the real GUI can run here, else the reason it cannot."""
    if not shutil.which("Xvfb"):
        return "Xvfb is not installed (run scripts/setup.sh as root)"
    if not LAUNCHER.exists():
        return f"the Swift launcher {LAUNCHER} is missing (pip install nionswift-tool)"
    return None


# Tracebacks that Nion Swift itself prints and recovers from, with no frame of ours in them. Each is matched on its
# whole text (all the needles) and on the absence of any frame from the suite's own packages.
KNOWN_UPSTREAM_TRACEBACKS: dict[str, tuple[str, ...]] = {
    # nion.ui 10.2: SplitterCanvasItem._base_insert_canvas_item installs the new layout (n + 1 sizings) before the new
    # child, so a repaint thread composing in between lays out n children with n + 1 sizings; __repaint_layer catches
    # the AssertionError, prints it ("CanvasItem Render Error") and the next repaint is right. Seen when a workspace
    # layout changes while a live display repaints (CI run of 2026-12-01).
    "nion.ui splitter repaint race": ("in __repaint_layer", "assert len(canvas_items) == len(sizings)",
                                      "AssertionError"),
    # Swift's scripting server finding its port (8199) taken by another Swift on this machine.
    "Swift scripting server port taken": ("SimpleXMLRPCServer((",),
}
ROOT = pathlib.Path(__file__).resolve().parents[1]
OWN_PACKAGES = ("nionswift_plugin/insitu", "processing/", "instrument_sim/")


def _is_own_frame(line: str) -> bool:
    """A stack line 'File "<path>", line N, in f' from the suite's code (the repository outside any venv, or one of
    its packages wherever installed)."""
    if not line.strip().startswith("File "):
        return False
    path = line.split('"')[1] if line.count('"') >= 2 else line
    if "site-packages" in path or "/.venv" in path:
        return any(f"site-packages/{package}" in path for package in OWN_PACKAGES)
    return path.startswith(str(ROOT) + "/") or any(f"/{package}" in path for package in OWN_PACKAGES)


def traceback_blocks(log_text: str, max_lines: int = 400) -> list[str]:
    """Every traceback in a Swift log: from a "Traceback (most recent call last)" header to the next header or the end
    (at most ``max_lines`` lines). Swift's Qt launcher writes its Python stderr unindented and often one token per
    line, so a traceback's end cannot be told from the next log line: a block may carry some log lines after it,
    which can only make a block look more like ours, never less."""
    lines = log_text.splitlines()
    starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    return ["\n".join(lines[a:min(b, a + max_lines)]) for a, b in zip(starts, starts[1:] + [len(lines)])]


def classify_tracebacks(log_text: str) -> tuple[list[str], dict[str, int]]:
    """(tracebacks that fail a test, {known upstream name: count}). A block is upstream only when it carries all of
    one signature's needles and no frame from the suite's own code; everything else is ours and fails."""
    unexpected: list[str] = []
    known: dict[str, int] = {}
    for block in traceback_blocks(log_text):
        ours = any(_is_own_frame(line) for line in block.splitlines())
        name = next((n for n, needles in KNOWN_UPSTREAM_TRACEBACKS.items()
                     if all(needle in block for needle in needles)), None)
        if name is None or ours:
            unexpected.append(block)
        else:
            known[name] = known.get(name, 0) + 1
    return unexpected, known


def make_profile(home: pathlib.Path) -> None:
    """A Swift profile whose last project exists, so Swift opens a window instead of the Choose Project dialog."""
    data_dir = home / ".local" / "share" / "Nion" / "Nion Swift"
    data_dir.mkdir(parents=True, exist_ok=True)
    project_dir = home / "InSituProject"
    project_dir.mkdir(parents=True, exist_ok=True)
    project_uuid, reference_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    project_path = project_dir / "InSituProject.nsproj"
    project_path.write_text(json.dumps({"version": 3, "uuid": project_uuid,
                                        "project_data_folders": ["InSituProject Data"]}))
    (data_dir / "Profile.nsproj").write_text(json.dumps({
        "version": 2, "uuid": str(uuid.uuid4()),
        "project_references": [{"type": "project_index", "uuid": reference_uuid, "project_uuid": project_uuid,
                                "project_path": str(project_path)}],
        "last_project_reference": reference_uuid}))


def start_xvfb(size: str = "1600x1000x24") -> tuple[subprocess.Popen[bytes], str]:
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", size, "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        raise RuntimeError("Xvfb failed to start")
    return proc, ":" + number


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def maximize(env: dict[str, str], size: str = "1600x1000") -> None:
    """Resize the Swift window to the whole virtual screen (xdotool needs no window manager for that)."""
    if not shutil.which("xdotool"):
        return
    found = subprocess.run(["xdotool", "search", "--name", "Nion Swift|Workspace"], env=env, capture_output=True,
                           text=True)
    width, height = size.split("x")
    for window_id in found.stdout.split():
        subprocess.run(["xdotool", "windowsize", window_id, width, height], env=env, capture_output=True)
        subprocess.run(["xdotool", "windowmove", window_id, "0", "0"], env=env, capture_output=True)


def screenshot(display: str, path: pathlib.Path) -> None:
    from PIL import ImageGrab
    ImageGrab.grab(xdisplay=display).save(path)


def run(out_dir: pathlib.Path, *, seconds: float = 8.0, processors: typing.Sequence[str] = (),
        panels: typing.Sequence[str] = (), timeout_s: float = 120.0) -> dict[str, typing.Any]:
    """Launch, drive, screenshot, quit. Returns {"rc", "log", "status", "screenshot", "ready_s"}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="insitu-gui-"))
    home = work / "home"
    make_profile(home)
    driver = work / "driver"
    xvfb = swift = None
    log_path = out_dir / "swift.log"
    try:
        xvfb, display = start_xvfb()
        env = dict(os.environ, DISPLAY=display, HOME=str(home), XDG_RUNTIME_DIR=str(work), QT_QPA_PLATFORM="xcb",
                   INSITU_SIMULATOR="1", INSITU_GUI_DRIVER=str(driver))
        if processors:
            env["INSITU_GUI_PROCESSORS"] = ",".join(processors)
        if panels:
            env["INSITU_GUI_PANELS"] = ",".join(panels)
        for k in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
            env.pop(k, None)
        with open(log_path, "w") as log:
            t0 = time.monotonic()
            swift = subprocess.Popen([str(LAUNCHER), str(VENV), "nionui_app.nionswift"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=work)
            while not (driver / "ready").exists():
                if swift.poll() is not None:
                    raise RuntimeError(f"Nion Swift exited early with {swift.returncode}; see {log_path}")
                if time.monotonic() - t0 > timeout_s:
                    raise TimeoutError(f"Nion Swift did not become ready in {timeout_s} s; see {log_path}")
                time.sleep(0.2)
            ready_s = time.monotonic() - t0
            maximize(env)
            time.sleep(seconds)
            shot = out_dir / "swift.png"
            screenshot(display, shot)
            (driver / "quit").touch()
            rc = swift.wait(timeout=60)
        status = json.loads((driver / "status.json").read_text()) if (driver / "status.json").exists() else {}
        return {"rc": rc, "log": log_path.read_text(), "status": status, "screenshot": shot, "ready_s": ready_s}
    finally:
        if swift is not None:
            stop(swift)
        if xvfb is not None:
            stop(xvfb)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/launch"))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processors", default="", help="processor ids to attach (default: the first three)")
    parser.add_argument("--panels", default="", help="extra dock panel ids to show, e.g. insitu-simulator-panel")
    args = parser.parse_args()
    reason = available()
    if reason:
        print(f"Cannot run the real GUI here: {reason}.")
        return 2
    result = run(args.out, seconds=args.seconds, processors=[p for p in args.processors.split(",") if p],
                 panels=[p for p in args.panels.split(",") if p])
    print(f"Nion Swift ran {args.seconds:.0f} s (ready after {result['ready_s']:.1f} s), exit code {result['rc']}.")
    for runner in result["status"].get("runners", []):
        print(f"  {runner['title']}: {runner['frames_processed']} frames processed, {runner['frames_dropped']} "
              f"dropped, {runner['mean_ms']:.1f} ms/frame" + (f", error: {runner['error']}" if runner['error'] else ""))
    print(f"Screenshot: {result['screenshot']}; log: {args.out / 'swift.log'}")
    return int(result["rc"] or 0)


if __name__ == "__main__":
    sys.exit(main())
