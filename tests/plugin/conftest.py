"""Headless Nion Swift fixtures (nion.swift.test.TestContext) shared by the plug-in tests."""
from __future__ import annotations

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
