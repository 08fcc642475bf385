"""The live engine: every frame reaches stateful processors, slow ones drop (and count) instead of queueing,
the camera thread never waits, several processors run concurrently."""
from __future__ import annotations

import threading
import time
import typing

import numpy as np
from nion.data import DataAndMetadata
from nion.utils import Event

from nionswift_plugin.insitu.live_engine import HardwareStream, LiveEngine, Runner
from processing import Context, Frame, ImageOutput, Outputs, Processor, registry


class FakeHardwareSource:
    """Just what the engine uses of a hardware source: an id and the per-frame event."""

    hardware_source_id = "fake_camera"

    def __init__(self) -> None:
        self.xdatas_available_event = Event.Event()

    def emit(self, data: np.ndarray, frame_number: int) -> float:
        xdata = DataAndMetadata.new_data_and_metadata(
            data, metadata={"hardware_source": {"frame_number": frame_number}})

        class Promise:
            def __init__(self, xd: DataAndMetadata.DataAndMetadata) -> None:
                self.xdata = xd

        t = time.perf_counter()
        self.xdatas_available_event.fire([Promise(xdata)])
        return time.perf_counter() - t


class GatedProcessor(Processor):
    """A stateful processor that blocks in ``process`` until the test opens the gate: no sleeps, no timing."""

    processor_id = "test.gated"
    title = "Gated"
    stateful = True
    gate = threading.Event()
    entered = threading.Event()

    def __init__(self, **params: typing.Any) -> None:
        super().__init__(**params)
        self.seen: list[int] = []

    def process(self, frame: Frame, context: Context) -> Outputs:
        type(self).entered.set()
        type(self).gate.wait(60.0)
        self.seen.append(frame.frame_number)
        return (ImageOutput("image", frame.data),)


registry.register(GatedProcessor)


def setup_module() -> None:
    """Kernels are compiled/loaded once before any frame, as the plug-in does at load (processing.warmup)."""
    from processing import warmup
    warmup.warm_up()


class _Key:
    """Stands for the Swift computation a runner belongs to (weak-referenceable)."""


def _wait_idle(runner: Runner, expected_processed: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while runner.stats.frames_processed < expected_processed and time.monotonic() < deadline:
        runner.wait_idle(0.05)


def test_fast_stateful_processor_integrates_every_frame_in_order() -> None:
    """Bursts of up to 3 frames (the jitter buffer) reach a stateful processor whole, whatever the machine's load."""
    engine = LiveEngine()
    source = FakeHardwareSource()
    key = _Key()
    runner = engine.runner_for(key, "insitu.live_difference", {})
    runner.attach_stream(engine.stream_for(source, 0))
    rng = np.random.default_rng(0)
    frames = [rng.random((64, 64), dtype=np.float32) for _ in range(40)]
    for i, f in enumerate(frames):
        source.emit(f, i)
        if i % 3 == 2:  # a burst of 3 frames while the processor may still be busy: absorbed by the buffer
            assert runner.wait_idle(60.0)
    _wait_idle(runner, len(frames))
    assert runner.stats.frames_received == len(frames)
    assert runner.stats.frames_dropped == 0
    assert runner.processor.frames_integrated == len(frames)  # type: ignore[union-attr]
    engine.close()


def test_slow_processor_gets_the_newest_frame_counts_drops_and_never_blocks_the_camera() -> None:
    """While a processor is stuck on a frame the camera keeps emitting (it never waits for processing); the slow
    processor then gets the newest frames (the backlog dropped and counted) and a fast one still sees every frame."""
    GatedProcessor.gate.clear()
    GatedProcessor.entered.clear()
    engine = LiveEngine(workers=2)
    source = FakeHardwareSource()
    slow_key, fast_key = _Key(), _Key()
    slow = engine.runner_for(slow_key, "test.gated", {})
    fast = engine.runner_for(fast_key, "insitu.live_difference", {})
    stream = engine.stream_for(source, 0)
    slow.attach_stream(stream)
    fast.attach_stream(stream)
    n = 50
    source.emit(np.full((32, 32), 0, np.float32), 0)
    assert GatedProcessor.entered.wait(60.0)  # the slow processor is now blocked inside frame 0
    assert fast.wait_idle(60.0)  # frame 0 done by the other worker (on a cold cache it compiles the EWMA kernel)
    for i in range(1, n):
        source.emit(np.full((32, 32), i, np.float32), i)  # returns although a processor is blocked
        if i % 2 == 0:
            # bursts of 2 frames never overflow the 3-frame buffer, however late the worker is scheduled
            assert fast.wait_idle(60.0)  # the other worker keeps the fast processor up to date
    GatedProcessor.gate.set()
    assert slow.wait_idle(60.0) and fast.wait_idle(60.0)
    stats = slow.stats.as_dict()
    assert slow.stats.frames_received == n
    assert slow.stats.frames_processed + slow.stats.frames_dropped == n, stats
    assert slow.stats.frames_dropped >= n - 4, stats  # frame 0, then the newest 3 waiting frames at most
    seen = slow.processor.seen  # type: ignore[union-attr]
    assert seen == sorted(seen) and seen[0] == 0 and seen[-1] == n - 1, seen  # newest frames, in order
    assert fast.stats.frames_dropped == 0 and fast.processor.frames_integrated == n  # type: ignore[union-attr]
    engine.close()


class ConcurrencyProbe(Processor):
    """Records how many probes are inside ``process`` at the same moment; each waits (bounded) until as many as
    the cores are inside, so the test does not depend on how fast the threads start."""

    processor_id = "test.concurrency_probe"
    title = "Probe"
    lock = threading.Condition()
    running = 0
    peak = 0
    target = 1

    def process(self, frame: Frame, context: Context) -> Outputs:
        cls = type(self)
        with cls.lock:
            cls.running += 1
            cls.peak = max(cls.peak, cls.running)
            cls.lock.notify_all()
            cls.lock.wait_for(lambda: cls.peak >= cls.target, timeout=30.0)
            cls.running -= 1
        return (ImageOutput("image", frame.data),)


registry.register(ConcurrencyProbe)


def test_processors_on_one_source_run_concurrently_one_per_core() -> None:
    import os
    engine = LiveEngine()
    source = FakeHardwareSource()
    keys = [_Key() for _ in range(4)]
    runners = [engine.runner_for(k, "test.concurrency_probe", {}) for k in keys]
    stream = engine.stream_for(source, 0)
    for r in runners:
        r.attach_stream(stream)
    cores = os.cpu_count() or 1
    ConcurrencyProbe.peak, ConcurrencyProbe.target = 0, min(cores, len(runners))
    source.emit(np.zeros((8, 8), np.float32), 0)
    for r in runners:
        _wait_idle(r, 1)
    assert all(r.stats.frames_processed == 1 for r in runners)
    # they do run at the same time (not one after another), but never more of them than there are cores
    assert ConcurrencyProbe.peak == min(cores, len(runners)), f"{ConcurrencyProbe.peak=} {cores=}"
    engine.close()


def test_bad_frames_become_the_runner_error_and_it_recovers() -> None:
    engine = LiveEngine()
    source = FakeHardwareSource()
    key = _Key()
    runner = engine.runner_for(key, "insitu.noise_reduction", {})
    runner.attach_stream(engine.stream_for(source, 0))
    bad = np.ones((16, 16), np.float32)
    bad[0, 0] = np.nan
    source.emit(bad, 0)
    _wait_idle(runner, 1)
    assert "NaN" in (runner.latest()[1] or "")
    source.emit(np.ones((16, 16), np.float32), 1)
    _wait_idle(runner, 2)
    outputs, error, _ = runner.latest()
    assert error is None and outputs[0].data.shape == (16, 16)
    engine.close()


def test_closing_the_engine_stops_feeding_and_threads_stay_one_per_core() -> None:
    import os
    engine = LiveEngine()
    source = FakeHardwareSource()
    keys = [_Key() for _ in range(6)]  # the computations: runners live as long as they do
    runners = [engine.runner_for(key, "insitu.copy", {}) for key in keys]
    stream = engine.stream_for(source, 0)
    for runner in runners:
        runner.attach_stream(stream)
    source.emit(np.ones((4, 4), np.float32), 0)
    for runner in runners:
        _wait_idle(runner, 1)
    assert all(runner.stats.frames_processed == 1 for runner in runners)
    assert 1 <= len(engine.scheduler.threads) <= (os.cpu_count() or 1)  # no thread per processor
    engine.close()
    assert engine.scheduler.threads == []  # the workers stop with the engine
    source.emit(np.ones((4, 4), np.float32), 1)  # no listener left: nothing is received
    assert all(runner.stats.frames_received == 1 for runner in runners)
