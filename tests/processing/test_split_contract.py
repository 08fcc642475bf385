"""The split contract: for every registered processor, 200 frames of the simulated in-situ camera run in one piece
and split into uneven chunks give the same outputs (relative difference <= 1e-6), whatever the split kind."""
from __future__ import annotations

import functools
import typing

import numpy as np
import pytest

from instrument_sim.insitu_scene import InSituScene
from processing import make_frame, registry
from processing.base import Calibration, Frame, Processor
from processing.execution import chunks

N_FRAMES = 200
TOLERANCE = 1e-6

#: parameter sets that change the split kind or the state carried (every processor also runs with its defaults)
VARIANTS: dict[str, list[dict[str, typing.Any]]] = {
    "insitu.live_difference": [{"time_in_seconds": True, "fast": 0.1, "slow": 1.0}, {"align": True}],
    "insitu.threshold_tracking": [{"track": "nearest"}, {"history_points": 50}],
    "insitu.radial_kymograph": [{"window_frames": 37, "statistic": "max"}],
    "insitu.max_fft": [{"tile_size_px": 32, "step_px": 16}],
    "insitu.fft_orientation": [{"tile_size_px": 32, "step_px": 16, "colour_by": "spacing"}],
}


@functools.lru_cache(maxsize=2)
def _movie(seed: int, shape: tuple[int, int] = (160, 144)) -> tuple[Frame, ...]:
    """200 frames of the simulated in-situ scene at 20 fps (melting particles, shot noise), calibrated in nm."""
    scene = InSituScene(shape_px=shape, n_particles=3, melt_period_s=2.0, molten_duration_s=0.7, seed=seed)
    rng = np.random.default_rng(seed)
    calibration = (Calibration(0.0, scene.pixel_size_nm, "nm"), Calibration(0.0, scene.pixel_size_nm, "nm"))
    frames = []
    for i in range(N_FRAMES):
        t_s = 0.05 * i
        data = scene.render(t_s, exposure_s=0.05, rng=rng, dose_e_per_px=300.0)
        frames.append(make_frame(data, calibrations=calibration, frame_number=i, timestamp_s=t_s,
                                 intensity_units="counts"))
    return tuple(frames)


def _uneven_chunks(frames: typing.Sequence[Frame], seed: int) -> list[list[Frame]]:
    rng = np.random.default_rng(seed)
    cuts = sorted(set(rng.integers(1, len(frames), size=7).tolist()) | {1, len(frames) - 1})
    bounds = [0, *cuts, len(frames)]
    return [list(frames[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _cases() -> list[typing.Any]:
    cases = []
    for cls in registry.all_processors():
        for k, parameters in enumerate([{}, *VARIANTS.get(cls.processor_id, [])]):
            cases.append(pytest.param(cls, parameters, id=f"{cls.processor_id}-{k}"))
    return cases


@pytest.mark.parametrize(("cls", "parameters"), _cases())
@pytest.mark.parametrize("seed", [1, 2])
def test_chunked_run_equals_one_piece(cls: type[Processor], parameters: dict[str, typing.Any], seed: int) -> None:
    frames = _movie(seed)
    kind = chunks.split_kind(cls, parameters)
    assert kind in ("frame", "merge", "sequential")
    whole = chunks.run_frames(cls(**parameters), frames)
    pieces = _uneven_chunks(frames, seed)
    assert len(pieces) >= 4 and len({len(p) for p in pieces}) > 1
    split = chunks.run_chunked(cls, parameters, pieces)
    assert len(split) == len(whole) == N_FRAMES
    differences = [chunks.outputs_difference(a, b) for a, b in zip(split, whole)]
    worst = int(np.argmax(differences))
    assert differences[worst] <= TOLERANCE, (
        f"{cls.processor_id} ({kind}) {parameters}: frame {worst} differs by {differences[worst]:.3g} relative")


@pytest.mark.parametrize("cls", registry.all_processors(), ids=lambda c: c.processor_id)
def test_state_snapshot_is_picklable_and_restores(cls: type[Processor]) -> None:
    import pickle

    frames = _movie(1)[:30]
    processor = cls()
    chunks.run_frames(processor, frames[:20])
    restored = cls()
    restored.set_state(pickle.loads(pickle.dumps(processor.get_state())))
    for a, b in zip(chunks.run_frames(restored, frames[20:]), chunks.run_frames(processor, frames[20:])):
        assert chunks.outputs_difference(a, b) == 0.0


def test_a_wrong_merge_is_caught() -> None:
    """The comparison can fail: a live difference whose chunks start from a fresh state differs."""
    from processing.live.filters import LiveDifferenceProcessor

    frames = _movie(1)
    pieces = _uneven_chunks(frames, 1)
    whole = chunks.run_frames(LiveDifferenceProcessor(), frames)
    independent = [out for piece in pieces for out in chunks.run_frames(LiveDifferenceProcessor(), piece)]
    assert max(chunks.outputs_difference(a, b) for a, b in zip(independent, whole)) > 1e-3


def test_frame_kind_of_stateless_processors_and_merge_of_live_difference() -> None:
    assert chunks.split_kind(registry.get("insitu.copy"), {}) == "frame"
    assert chunks.split_kind(registry.get("insitu.live_difference"), {}) == "merge"
    assert chunks.split_kind(registry.get("insitu.live_difference"), {"align": True}) == "sequential"
    assert chunks.split_kind(registry.get("insitu.threshold_tracking"), {"track": "nearest"}) == "sequential"
    assert chunks.split_kind(registry.get("insitu.threshold_tracking"), {}) == "merge"
    assert chunks.split_kind(registry.get("insitu.radial_kymograph"), {}) == "merge"
