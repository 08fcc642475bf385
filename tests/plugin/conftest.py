"""Headless Nion Swift fixtures (nion.swift.test.TestContext) shared by the plug-in tests."""
from __future__ import annotations

import gc
import logging
import os
import threading
import typing

import pytest
from nion.swift import Facade
from nion.swift.test import TestContext

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu import panels
from nionswift_plugin.insitu.headless import release_removed_widgets_like_qt
from nionswift_plugin.insitu.live_engine import ENGINE

Facade.initialize()  # registers the API broker; without it every computation fails silently


@pytest.fixture
def swift() -> typing.Iterator[TestContext.TestSetup]:
    """A fresh Swift application (Application.app) per test; engine runners are stopped afterwards."""
    computations.register_all()
    panels.guard_thumbnail_race()  # as the plug-in does when Swift loads it
    release_removed_widgets_like_qt()  # as the real (Qt) UI does
    setup = TestContext.TestSetup()
    try:
        yield setup
    finally:
        ENGINE.close()
        del setup


@pytest.fixture
def document_controller(swift: TestContext.TestSetup) -> typing.Iterator[typing.Any]:
    """A document window with the application (menus, async computations, Facade library)."""
    with TestContext.create_memory_context() as test_context:
        yield test_context.create_document_controller_with_application()


@pytest.fixture
def swift_log(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> typing.Iterator[None]:
    """Fails the test when Swift's log (stderr, where Swift prints commit exceptions, and logging) holds a traceback
    or an exception raised in our glue."""
    caplog.set_level(logging.WARNING)
    yield
    assert_no_traceback(capsys, caplog)


def assert_no_traceback(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    err = capsys.readouterr().err
    logged = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records
                        if r.levelno >= logging.ERROR or r.exc_info)
    # any traceback fails (none is tolerated; nion.utils prints an event handler's failure as "Event Fire Traceback")
    first = err.find("Traceback")
    assert first < 0, err[max(0, first - 200):first + 4000]
    assert "Traceback" not in logged and not logged, logged[-4000:]


def rss_mib() -> float:
    """Resident memory of this process in MiB (Linux /proc)."""
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def retained_rss_mib() -> float:
    """Resident memory held by live objects: RSS after ``gc.collect()`` and after glibc returned its free heap pages
    (``malloc_trim``, as the plug-in's heap trimmer does while streaming), so allocator slack is not counted as a
    leak."""
    from nionswift_plugin.insitu import live_engine
    gc.collect()
    trim = live_engine._malloc_trim()
    if trim is not None:
        trim(0)
    return rss_mib()


def live_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.is_alive())


def collected_object_count() -> int:
    gc.collect()
    return len(gc.get_objects())
