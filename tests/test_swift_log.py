"""The GUI tests' log scan (scripts/swift_xvfb.classify_tracebacks): every traceback of ours fails; only Swift's own
recovered ones with no frame of ours pass. The race block is the one nion.ui printed in the CI run of 2026-12-01."""
from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("swift_xvfb", ROOT / "scripts" / "swift_xvfb.py")
assert spec and spec.loader
swift_xvfb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(swift_xvfb)

SITE = "/check/work/main/.venv/lib/python3.11/site-packages"
RACE = f"""Traceback (most recent call last):
  File "{SITE}/nion/ui/CanvasItem.py", line 2497, in __repaint_layer
    self._repaint_layer_inner(drawing_context)
  File "{SITE}/nion/ui/CanvasItem.py", line 1756, in layout
    self.update_canvas_item_layout(canvas_origin, canvas_size, canvas_item)
  File "{SITE}/nion/ui/CanvasItem.py", line 2774, in layout
    assert len(canvas_items) == len(sizings)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
AssertionError
  File "/root/.pyenv/versions/3.11.7/lib/python3.11/threading.py", line 1002, in _bootstrap
    self._bootstrap_inner()
  File "/root/.pyenv/versions/3.11.7/lib/python3.11/multiprocessing/pool.py", line 1, in worker
    work_item.run()
  File "{SITE}/nion/ui/CanvasItem.py", line 2526, in __repaint_layer
    traceback.print_stack()"""
OURS = f"""Traceback (most recent call last):
  File "{SITE}/nion/swift/model/Symbolic.py", line 900, in execute
    self.__computation.execute()
  File "{ROOT}/nionswift_plugin/insitu/computations.py", line 120, in execute
    raise ValueError("boom")
ValueError: boom"""
RACE_THROUGH_OUR_CODE = RACE.replace(f'  File "{SITE}/nion/ui/CanvasItem.py", line 1756, in layout',
                                     f'  File "{ROOT}/nionswift_plugin/insitu/panels.py", line 10, in layout')
EVENT = f"""Event Fire Traceback (most recent call last):
  File "{SITE}/nion/utils/Event.py", line 97, in fire
    listener()
KeyError: 'x'"""


def test_only_swifts_own_recovered_tracebacks_pass() -> None:
    log = "\n".join(["Welcome to Nion Swift.", RACE, "INSITU GUI DRIVER: attached insitu.copy through the menu",
                     OURS, "INSITU GUI DRIVER: ready", RACE_THROUGH_OUR_CODE, EVENT, RACE, "bye"])
    unexpected, known = swift_xvfb.classify_tracebacks(log)
    assert known == {"nion.ui splitter repaint race": 2}
    assert len(unexpected) == 3
    assert "ValueError: boom" in unexpected[0]
    assert "panels.py" in unexpected[1]  # the same assertion through a frame of ours is ours
    assert "KeyError" in unexpected[2]  # nion.utils' event traceback: not a known upstream signature


def test_the_launchers_unindented_one_token_per_line_output_is_read_the_same() -> None:
    # Swift's Qt launcher strips the indentation and breaks the exception line into tokens (seen on this machine)
    flat = "\n".join(line.strip() for line in RACE.splitlines()).replace("AssertionError", "AssertionError\n:\n")
    port = "\n".join(["Traceback (most recent call last):", f'File "{SITE}/nion/swift/Facade.py", line 3670, in run',
                      'server = SimpleXMLRPCServer(("localhost", 8199), allow_none=True, logRequests=False)',
                      "^", "^", "OSError", ":", "[Errno 98] Address already in use"])
    ours_flat = "\n".join(line.strip() for line in OURS.splitlines())
    log = "\n".join(["Welcome to Nion Swift.", port, "Loading project x", flat, "INSITU GUI DRIVER: ready", ours_flat,
                     "INSITU GUI DRIVER: quit"])
    unexpected, known = swift_xvfb.classify_tracebacks(log)
    assert known == {"Swift scripting server port taken": 1, "nion.ui splitter repaint race": 1}
    assert len(unexpected) == 1 and "ValueError: boom" in unexpected[0]


def test_a_clean_log_and_a_log_without_a_header_give_nothing() -> None:
    assert swift_xvfb.classify_tracebacks("Welcome to Nion Swift.\nINSITU GUI DRIVER: ready\n") == ([], {})
    assert swift_xvfb.traceback_blocks("") == []
