#!/usr/bin/env python3
"""One scripted user for the real Nion Swift under Xvfb (the machinery the screenshot scripts and the real-GUI tests
share; ``scripts/swift_xvfb.py`` has the low-level pieces: profile, Xvfb, launcher, screenshot, log scan).

Two halves talk through files in one folder (``INSITU_SCRIPTED_USER``):

* inside Swift, a driver plug-in (its source given as text, written to a temporary ``nionswift_plugin.<package>``)
  whose extension subclasses :class:`ScriptedUser`: ``step(dc)`` runs every ``period_s`` on Swift's main thread
  after the first window opens (the stage machine of the scripted user), ``answer(dc, name)`` answers a request
  ``<name>.request`` with ``<name>.json``; an exception in ``step`` is written to ``error``; ``quit`` closes the
  windows (Swift then exits);
* outside, :class:`SwiftSession` (a context manager) starts Xvfb and the Swift launcher with a fresh profile, the
  simulator and the driver plug-in, waits for the driver's files (``wait_for``: a condition, never a fixed sleep;
  it fails at once when Swift exits or the driver reports an error), asks (``ask``), screenshots, quits and cleans up
  by PID.

>>> DRIVER = '''
... from swift_scripted_user import ScriptedUser
... class ShotExtension(ScriptedUser):
...     extension_id = "insitu.example-driver"
...     def step(self, dc):
...         if self.stage == 0:
...             self.stage = 1
...             self.signal("ready")
... '''
>>> with SwiftSession(DRIVER) as swift:                                            # doctest: +SKIP
...     swift.wait_for("ready", 180, "Swift to start")
...     swift.screenshot(pathlib.Path("shot.png"))
...     swift.quit()
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import typing

SCRIPTS = pathlib.Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))
import swift_xvfb  # noqa: E402

__all__ = ["ScriptedUser", "SwiftSession", "FOLDER_VARIABLE"]

#: the environment variable naming the folder the two halves share
FOLDER_VARIABLE = "INSITU_SCRIPTED_USER"


# ------------------------------------------------------------------------------------------------ inside Swift

class ScriptedUser:
    """Base of a driver plug-in's extension (Swift instantiates the subclass, whose name ends in ``Extension``)."""

    extension_id = "insitu.scripted-user"
    period_s = 0.25

    def __init__(self, api_broker: typing.Any) -> None:
        from nion.swift import Application
        self.folder = pathlib.Path(os.environ[FOLDER_VARIABLE])
        self.stage = 0
        self.t0 = time.time()
        self.__periodic: typing.Any = None
        self.__quitting = False
        if Application.app is not None:
            Application.app.register_menu_handler(self.__on_window)

    def close(self) -> None:
        pass

    @property
    def elapsed_s(self) -> float:
        return time.time() - self.t0

    def signal(self, name: str, text: str = "") -> None:
        """Write ``name`` into the shared folder (what the outside waits for)."""
        (self.folder / name).write_text(text)

    def step(self, dc: typing.Any) -> None:
        """One tick of the scripted user on Swift's main thread (override)."""

    @staticmethod
    def arrange(dc: typing.Any, rows: int, columns: int,
                hide: typing.Sequence[str] = ("histogram-panel", "info-panel", "insitu-processors-panel")) -> None:
        """Hide the dock panels ``hide`` and split the workspace into rows x columns display panels."""
        for dock_id in hide:
            dock = dc.find_dock_panel(dock_id)
            if dock:
                dock.hide()
        primary = dc.selected_display_panel or dc.workspace_controller.display_panels[0]
        dc.workspace_controller.apply_layouts(primary, [primary], rows, columns)

    def answer(self, dc: typing.Any, name: str) -> dict[str, typing.Any]:
        """The answer to request ``name`` (override), on Swift's main thread."""
        return {"error": f"no answer for request {name!r}"}

    def __on_window(self, dc: typing.Any) -> None:
        if self.__periodic is None:    # the first window only; keep the handle: Swift holds it weakly
            self.__periodic = dc.add_periodic(self.period_s, lambda: self.__tick(dc))

    def __tick(self, dc: typing.Any) -> None:
        from nion.swift import Application
        if self.__quitting:
            return
        if (self.folder / "quit").exists():
            self.__quitting = True
            for window in list(Application.app.windows):
                window.queue_request_close()
            return
        for request in sorted(self.folder.glob("*.request")):
            name = request.stem
            request.unlink()
            try:
                result = self.answer(dc, name)
            except Exception:
                result = {"error": traceback.format_exc()}
            partial = self.folder / f"{name}.json.part"
            partial.write_text(json.dumps(result))
            partial.replace(self.folder / f"{name}.json")     # whole or absent: never read half-written
        if self.stage >= 0:
            try:
                self.step(dc)
            except Exception:
                self.signal("error", traceback.format_exc())
                self.stage = -1


# ------------------------------------------------------------------------------------------------ outside

class SwiftSession:
    """The real Swift under Xvfb with a driver plug-in (``driver_source``: the module text of
    ``nionswift_plugin.<package>``), in simulator mode, in a temporary HOME.

    env : extra environment for Swift; drop_env : variables removed from it; keep_log : copy Swift's log there when
    the session ends (kept also when it fails).
    """

    def __init__(self, driver_source: str, *, package: str = "insitu_scripted_user",
                 env: typing.Mapping[str, str] | None = None, drop_env: typing.Sequence[str] = (),
                 keep_log: pathlib.Path | None = None, screen: str = "1600x1000x24") -> None:
        self.driver_source, self.package = driver_source, package
        self.extra_env, self.drop_env = dict(env or {}), tuple(drop_env)
        self.keep_log, self.screen = keep_log, screen
        self.work = pathlib.Path(tempfile.mkdtemp(prefix="insitu-scripted-user-"))
        self.folder = self.work / "driver"
        self.log_path = self.work / "swift.log"
        self.display = ""
        self.env: dict[str, str] = {}
        self.__xvfb: subprocess.Popen[bytes] | None = None
        self.__swift: subprocess.Popen[bytes] | None = None
        self.t0 = 0.0

    def __enter__(self) -> SwiftSession:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        self.close()

    def start(self) -> None:
        home, plugins = self.work / "home", self.work / "plugins"
        swift_xvfb.make_profile(home)
        self.folder.mkdir()
        package = plugins / "nionswift_plugin" / self.package
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(self.driver_source)
        self.__xvfb, self.display = swift_xvfb.start_xvfb(self.screen)
        path = [str(plugins), str(SCRIPTS), str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH", "")] if p]
        env = dict(os.environ, DISPLAY=self.display, HOME=str(home), XDG_RUNTIME_DIR=str(self.work),
                   QT_QPA_PLATFORM="xcb", INSITU_SIMULATOR="1", PYTHONPATH=os.pathsep.join(path))
        env[FOLDER_VARIABLE] = str(self.folder)
        for k in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "INSITU_GUI_DRIVER") + self.drop_env:
            env.pop(k, None)
        env.update(self.extra_env)
        self.env = env
        with open(self.log_path, "w") as log:
            self.__swift = subprocess.Popen([str(swift_xvfb.LAUNCHER), str(swift_xvfb.VENV), "nionui_app.nionswift"],
                                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.work)
        self.t0 = time.monotonic()

    @property
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def check_alive(self, what: str) -> None:
        if (self.folder / "error").exists():
            raise RuntimeError(f"the scripted user failed while waiting for {what}:\n"
                               f"{(self.folder / 'error').read_text()}")
        if self.__swift is None or self.__swift.poll() is not None:
            code = None if self.__swift is None else self.__swift.returncode
            raise RuntimeError(f"Nion Swift exited ({code}) while waiting for {what}; log:\n{self.log_text[-3000:]}")

    def wait_for(self, name: str | pathlib.Path, timeout_s: float, what: str) -> str:
        """Wait until the file ``name`` (in the shared folder, or a path) exists; returns its text. Fails at once
        when Swift exits or the scripted user reports an error; on timeout with Swift's log."""
        path = name if isinstance(name, pathlib.Path) else self.folder / name
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            self.check_alive(what)
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s:.0f} s for {what}; log:\n{self.log_text[-3000:]}")
            time.sleep(0.2)
        return path.read_text()

    def ask(self, name: str, timeout_s: float = 60.0) -> dict[str, typing.Any]:
        """Ask the scripted user (answered on Swift's main thread)."""
        (self.folder / f"{name}.request").write_text("")
        answer = self.folder / f"{name}.json"
        self.wait_for(answer, timeout_s, f"the answer to '{name}'")
        data = json.loads(answer.read_text())
        answer.unlink()
        return typing.cast(dict[str, typing.Any], data)

    def until(self, name: str, condition: typing.Callable[[dict[str, typing.Any]], bool], timeout_s: float,
              what: str, every_s: float = 0.5) -> dict[str, typing.Any]:
        """Ask ``name`` until ``condition(answer)`` holds; returns that answer (TimeoutError with the last one)."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.ask(name)
            if condition(answer):
                return answer
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout_s:.0f} s for {what}; last answer {answer}; "
                                   f"log:\n{self.log_text[-3000:]}")
            time.sleep(every_s)

    def xdotool(self, *args: str) -> None:
        subprocess.run(["xdotool", *args], env=self.env, check=True, capture_output=True, timeout=30)

    def maximize(self) -> None:
        swift_xvfb.maximize(self.env, self.screen.rsplit("x", 1)[0])

    def screenshot(self, path: pathlib.Path) -> pathlib.Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        swift_xvfb.screenshot(self.display, path)
        return path

    def publish(self, shot: pathlib.Path) -> pathlib.Path:
        """Check that the screenshot ``shot`` shows something (not a blank screen) and copy it to docs/screenshots
        (with ``INSITU_UPDATE_SCREENSHOTS=1``) or out/screenshots; returns the copy."""
        import numpy as np
        from PIL import Image
        image = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
        assert image.std() > 10 and len(np.unique(image)) > 100, f"the screenshot {shot} is (nearly) blank"
        folder = "docs/screenshots" if os.environ.get("INSITU_UPDATE_SCREENSHOTS") else "out/screenshots"
        target = ROOT / folder / shot.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
        return target

    def quit(self, timeout_s: float = 60.0, *, via: pathlib.Path | None = None) -> int:
        """Ask the scripted user to close the windows (or touch the quit file ``via`` of another driver, e.g. the
        suite's ``INSITU_GUI_DRIVER``, which stops the camera first); Swift's exit code."""
        (via or self.folder / "quit").touch()
        assert self.__swift is not None
        return int(self.__swift.wait(timeout=timeout_s))

    def close(self) -> None:
        if self.__swift is not None:
            swift_xvfb.stop(self.__swift)
        if self.__xvfb is not None:
            swift_xvfb.stop(self.__xvfb)
        if self.keep_log is not None and self.log_path.exists():
            self.keep_log.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.log_path, self.keep_log)
        shutil.rmtree(self.work, ignore_errors=True)
