"""A headless Nion Swift session with the suite and the simulated instrument: for the demo, tests and scripts.

>>> with HeadlessSwift() as swift:                                    # doctest: +SKIP
...     camera = swift.hardware_source("insitu_camera")
...     camera.start_playing()
"""
from __future__ import annotations

import contextlib
import pathlib
import tempfile
import time
import typing
import weakref

from nion.instrumentation import HardwareSource
from nion.instrumentation import stem_controller
from nion.swift import Facade
from nion.swift.model import Cache
from nion.swift.test import TestContext
from nion.ui import TestUI

from nionswift_plugin.insitu import computations
from nionswift_plugin.insitu import swift_workarounds
from nionswift_plugin.insitu.live_engine import ENGINE


def release_removed_widgets_like_qt() -> bool:
    """Make the test UI free a box's removed child widget, as the real (Qt) UI does; idempotent, returns whether the
    patch is (now) installed.

    ``nion.ui.UserInterface.BoxWidget.remove`` calls ``behavior.remove(child)`` and then ``child.close()``; the Qt
    behavior's ``remove`` does nothing because closing the Qt widget removes it from its layout, but the test UI's
    ``TestUI.BoxWidgetBehavior.remove`` does nothing too, so its ``widget.children`` and ``__widgets`` lists keep
    every removed child forever. In a soak that is every row Swift's Activity panel ever showed (one per computation
    run, ~100 MiB per 10 minutes with seven processors): a leak of the harness, not of the application. Private API
    of nionui 10.2 (the parallel ``widget.children`` / ``_BoxWidgetBehavior__widgets`` lists); without them (another
    release) nothing is patched."""
    cls = TestUI.BoxWidgetBehavior
    if getattr(cls.remove, "_insitu_like_qt", False):
        return True
    if not hasattr(TestUI, "extract_widget"):
        return False

    def remove(self: typing.Any, child: typing.Any) -> None:
        child_widget = TestUI.extract_widget(child)
        children = getattr(getattr(self, "widget", None), "children", None)
        items = getattr(self, "_BoxWidgetBehavior__widgets", None)
        if children is None or items is None or child_widget not in children:
            return
        index = children.index(child_widget)
        del children[index]
        if index < len(items) and items[index].widget is child_widget:
            del items[index]

    remove._insitu_like_qt = True  # type: ignore[attr-defined]
    cls.remove = remove  # type: ignore[method-assign]
    return True


class _CacheOfRemovedItemsDropper:
    """Drop removed items' entries from the harness's in-memory storage cache, since the real application's cache
    is a file.

    The test document (``TestContext.MemoryProfileContext``) caches per item uuid in a ``Cache.DictStorageCache``
    (the data panel's 256x256 thumbnail of every display item: 256 KiB each) and never removes an entry; the real
    application uses a ``DbStorageCache`` (SQLite file), whose rows of removed items cost no memory. Without this a
    churn of 200 attach-seven/detach cycles grows the harness by ~2 MiB per cycle where the application does not.
    Entries are dropped after the removal (on the event loop) and again at each later removal (a thumbnail computed
    on a pool thread may write its entry after the item was removed)."""

    def __init__(self, document_model: typing.Any) -> None:
        self._model_ref = weakref.ref(document_model)
        self._removed: set[typing.Any] = set()
        self._listener = document_model.item_removed_event.listen(self._item_removed)

    def _item_removed(self, key: str, value: typing.Any, index: int) -> None:
        item_uuid = getattr(value, "uuid", None)
        model = self._model_ref()
        if item_uuid is None or model is None:
            return
        self._removed.add(item_uuid)
        event_loop = getattr(model, "event_loop", None)
        if event_loop is not None and not event_loop.is_closed():
            event_loop.call_soon_threadsafe(self.drop)

    def drop(self) -> int:
        """Drop the cache entries of every removed item; returns how many."""
        model = self._model_ref()
        cache = getattr(getattr(model, "_project", None), "storage_cache", None)
        if not isinstance(cache, Cache.DictStorageCache):
            return 0
        dropped = 0
        for item_uuid in list(self._removed):
            dropped += cache._cache_dict.pop(item_uuid, None) is not None
            cache._cache_dirty_dict.pop(item_uuid, None)
        return dropped

    def close(self) -> None:
        self._listener = None


class HeadlessSwift:
    """Swift application + document window without a screen, instrument-kit started, simulator registered."""

    def __init__(self, simulator_configuration: typing.Any = None, *, with_window: bool = True) -> None:
        self._configuration = simulator_configuration
        self._with_window = with_window
        self._stack = contextlib.ExitStack()
        self.document_controller: typing.Any = None
        self.document_model: typing.Any = None
        self.simulator: typing.Any = None

    def __enter__(self) -> HeadlessSwift:
        from instrument_sim import configuration
        from nionswift_plugin import nion_instrumentation_ui
        Facade.initialize()
        self._setup = TestContext.TestSetup()
        folder = pathlib.Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="insitu-headless-")))
        nion_instrumentation_ui.configuration_location = folder
        nion_instrumentation_ui.run()
        self._stack.callback(nion_instrumentation_ui.stop)
        computations.register_all()
        swift_workarounds.install_all()  # as the plug-in does when Swift loads it (register_panels)
        release_removed_widgets_like_qt()  # the test UI keeps removed widgets, Qt does not
        config = self._configuration or configuration.SimulatorConfiguration()
        self.simulator = configuration.register_simulator(config)
        self._stack.callback(configuration.unregister_simulator, self.simulator)
        memory_context = self._stack.enter_context(TestContext.create_memory_context())
        if self._with_window:
            self.document_controller = memory_context.create_document_controller_with_application(auto_close=False)
        else:
            self.document_controller = memory_context.create_document_controller(auto_close=False)
        self.document_model = self.document_controller.document_model
        self._cache_dropper = _CacheOfRemovedItemsDropper(self.document_model)  # the application's cache is a file
        self._stack.callback(self._cache_dropper.close)
        # like the real application: computations run on Swift's dispatcher thread, not only when a test pumps
        self.document_model.start_dispatcher()
        stem_controller.register_event_loop(self.document_controller.event_loop)
        self._stack.callback(stem_controller.unregister_event_loop)
        return self

    def __exit__(self, *exc: typing.Any) -> None:
        for hardware_source in HardwareSource.HardwareSourceManager().hardware_sources:
            if hardware_source.is_playing:
                hardware_source.stop_playing(sync_timeout=5.0)
        ENGINE.close()
        if self.document_controller is not None:
            self.document_controller.periodic()
            self.document_controller.close()
        self._stack.close()
        del self._setup

    def hardware_source(self, hardware_source_id: str) -> typing.Any:
        source = HardwareSource.HardwareSourceManager().get_hardware_source_for_hardware_source_id(hardware_source_id)
        if source is None:
            raise KeyError(f"no hardware source '{hardware_source_id}'")
        return source

    def live_data_item(self, hardware_source_id: str, timeout_s: float = 10.0) -> typing.Any:
        """The live data item of a playing hardware source (pumps the event loop until it appears)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.pump()
            reference = self.document_model.get_data_item_channel_reference(hardware_source_id, None)
            data_item = reference.data_item if reference is not None else None
            if data_item is not None and self.document_model.get_display_item_for_data_item(data_item) is not None:
                return data_item  # with its display item (created a moment after the data item)
            time.sleep(0.02)
        raise TimeoutError(f"no live data item for '{hardware_source_id}' after {timeout_s} s")

    def play(self, hardware_source_id: str, *, exposure_ms: float | None = None) -> tuple[typing.Any, typing.Any]:
        """Start a camera playing (optionally with an exposure) and return (live data item, its display item)."""
        source = self.hardware_source(hardware_source_id)
        if exposure_ms is not None:
            parameters = source.get_current_frame_parameters()
            parameters.exposure_ms = exposure_ms
            source.set_current_frame_parameters(parameters)
        source.start_playing()
        live = self.live_data_item(hardware_source_id)
        return live, self.document_model.get_display_item_for_data_item(live)

    def pump(self, seconds: float = 0.0) -> None:
        """Run Swift's main-thread work (data item updates, computation commits) for ``seconds``."""
        end = time.monotonic() + seconds
        while True:
            self.document_controller.periodic()
            if time.monotonic() >= end:
                break
            time.sleep(0.01)
