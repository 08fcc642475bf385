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
from nionswift_plugin.insitu.live_engine import ENGINE

Facade.initialize()  # registers the API broker; without it every computation fails silently


@pytest.fixture
def swift() -> typing.Iterator[TestContext.TestSetup]:
    """A fresh Swift application (Application.app) per test; engine runners are stopped afterwards."""
    computations.register_all()
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


#: tracebacks that Swift itself prints and that our code does not cause, each with its reason (anything else fails)
KNOWN_SWIFT_TRACEBACKS = (
    # nion.swift.Thumbnails computes a thumbnail on a pool thread and fires thumbnail_updated_event after the data
    # panel has already removed the item's canvas item (a race inside Swift between its thumbnail thread and item
    # removal, independent of the order in which we update or delete outputs; issue 14 3(c))
    "GridFlowItemCanvasItem",
)


def _unknown_tracebacks(err: str) -> list[str]:
    # nion.utils prints an event's failure as "Event Fire Traceback" (who fired) + "Event Handler Traceback" and the
    # handler's own traceback: one report, judged as a whole
    reports = err.split("Event Fire Traceback")
    unknown = []
    for i, report in enumerate(reports):
        if "Traceback (most recent call last)" not in report and i > 0:
            report = "Traceback" + report
        if "Traceback" in report and not any(known in report for known in KNOWN_SWIFT_TRACEBACKS):
            unknown.append(report)
    return unknown


def assert_no_traceback(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    err = capsys.readouterr().err
    logged = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records
                        if r.levelno >= logging.ERROR or r.exc_info)
    unknown = _unknown_tracebacks(err)
    assert not unknown, unknown[0][-4000:]
    assert "Traceback" not in logged and not logged, logged[-4000:]


def rss_mib() -> float:
    """Resident memory of this process in MiB (Linux /proc)."""
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def live_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.is_alive())


def collected_object_count() -> int:
    gc.collect()
    return len(gc.get_objects())
