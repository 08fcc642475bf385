from __future__ import annotations

import numpy as np
import pytest

from instrument_sim.drift import WALK_GRID_S, DriftModel, EnergyDriftModel
from instrument_sim.errors import SimulatorParameterError


def test_linear_term_is_exact() -> None:
    m = DriftModel(rate_nm_per_s=(0.3, -0.7))
    t = np.array([0.0, 0.5, 3.25, 100.0, 12345.0])
    expected = np.stack([0.3 * t, -0.7 * t], axis=-1)
    np.testing.assert_allclose(m.offset_nm(t), expected, rtol=1e-12, atol=1e-12)


def test_sine_term() -> None:
    m = DriftModel(sine_amplitude_nm=(2.0, 1.0), sine_period_s=8.0)
    np.testing.assert_allclose(m.offset_nm(2.0), [2.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(m.offset_nm(6.0), [-2.0, -1.0], atol=1e-12)


def test_zero_at_time_zero_for_all_terms() -> None:
    m = DriftModel(rate_nm_per_s=(1, 2), sine_amplitude_nm=(1, 1), random_walk_nm_per_sqrt_s=3.0,
                   jump_rate_per_s=5.0, jump_size_nm=2.0, seed=4)
    np.testing.assert_array_equal(m.offset_nm(0.0), [0.0, 0.0])


def test_shapes() -> None:
    m = DriftModel(random_walk_nm_per_sqrt_s=1.0, seed=1)
    assert m.offset_nm(1.0).shape == (2,)
    assert m.offset_nm(np.zeros((3, 4))).shape == (3, 4, 2)
    assert EnergyDriftModel(rate_meV_per_s=1.0).offset_eV(np.zeros((3, 4))).shape == (3, 4)


def test_random_walk_variance_grows_linearly() -> None:
    sigma = 0.5
    times = np.array([1.0, 4.0, 16.0, 40.0])
    samples = np.stack([DriftModel(random_walk_nm_per_sqrt_s=sigma, seed=s).offset_nm(times) for s in range(400)])
    # samples: (seed, time, axis); 800 samples per time (two axes) -> relative std error of the variance ~5 %
    var = samples.reshape(400, len(times), 2).transpose(1, 0, 2).reshape(len(times), -1).var(axis=1)
    np.testing.assert_allclose(var, sigma ** 2 * times, rtol=0.2)
    # increments over disjoint intervals are uncorrelated
    inc1 = samples[:, 1, 0] - samples[:, 0, 0]
    inc2 = samples[:, 3, 0] - samples[:, 2, 0]
    assert abs(np.corrcoef(inc1, inc2)[0, 1]) < 0.2


def test_reproducible_and_seed_dependent() -> None:
    kwargs = dict(random_walk_nm_per_sqrt_s=1.0, jump_rate_per_s=0.5, jump_size_nm=3.0)
    t = np.linspace(0, 50, 101)
    a = DriftModel(seed=11, **kwargs).offset_nm(t)  # type: ignore[arg-type]
    b = DriftModel(seed=11, **kwargs).offset_nm(t)  # type: ignore[arg-type]
    c = DriftModel(seed=12, **kwargs).offset_nm(t)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_order_independence() -> None:
    kwargs = dict(rate_nm_per_s=(0.1, 0.0), random_walk_nm_per_sqrt_s=1.0, jump_rate_per_s=0.2, jump_size_nm=1.0,
                  seed=5)
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 200, 500)
    forward = DriftModel(**kwargs).offset_nm(np.sort(t))  # type: ignore[arg-type]
    m = DriftModel(**kwargs)  # type: ignore[arg-type]
    # evaluate late times first, one by one, in random order
    order = rng.permutation(len(t))
    one_by_one = np.empty((len(t), 2))
    for i in order:
        one_by_one[i] = m.offset_nm(t[i])
    np.testing.assert_allclose(one_by_one[np.argsort(t)], forward, rtol=0, atol=1e-12)


def test_continuous_without_jumps() -> None:
    m = DriftModel(random_walk_nm_per_sqrt_s=1.0, seed=2)
    t = np.arange(0, 20, WALK_GRID_S / 4)
    d = np.abs(np.diff(m.offset_nm(t), axis=0)).max()
    # a grid step has std sigma*sqrt(dt) = 0.045 nm; a quarter step never exceeds a few of those
    assert d < 0.1


def test_jumps_are_discrete_and_have_the_set_size() -> None:
    m = DriftModel(jump_rate_per_s=0.5, jump_size_nm=2.0, seed=3)
    jumps = m.jump_times_s(100.0)
    assert 25 <= len(jumps) <= 80
    before = m.offset_nm(jumps - 1e-9)
    after = m.offset_nm(jumps)
    np.testing.assert_allclose(np.hypot(*(after - before).T), 2.0, rtol=1e-9)
    # piecewise constant in between
    mid = (jumps[:-1] + jumps[1:]) / 2
    np.testing.assert_allclose(m.offset_nm(mid), m.offset_nm(jumps[:-1]), atol=1e-12)


def test_vectorised_one_million_times_matches_scalar_calls() -> None:
    m = DriftModel(rate_nm_per_s=(0.1, 0.1), sine_amplitude_nm=(1, 1), random_walk_nm_per_sqrt_s=0.3,
                   jump_rate_per_s=0.1, jump_size_nm=1.0, seed=0)
    t = 30.0 + np.arange(1_000_000) * 1e-5  # 10 s of per-pixel times, crossing walk chunks
    out = m.offset_nm(t)
    assert out.shape == (1_000_000, 2)
    pick = np.random.default_rng(1).integers(0, len(t), 50)
    fresh = DriftModel(rate_nm_per_s=(0.1, 0.1), sine_amplitude_nm=(1, 1), random_walk_nm_per_sqrt_s=0.3,
                       jump_rate_per_s=0.1, jump_size_nm=1.0, seed=0)
    np.testing.assert_allclose(out[pick], np.array([fresh.offset_nm(float(t[i])) for i in pick]), atol=1e-12)


def test_times_spread_over_many_walk_chunks_match_scalar_calls() -> None:
    kwargs = dict(random_walk_nm_per_sqrt_s=0.3, seed=4)
    t = np.random.default_rng(2).uniform(0.0, 2000.0, 20_000)  # ~250 chunks of 8 s: the sorted path
    out = DriftModel(**kwargs).offset_nm(t)  # type: ignore[arg-type]
    fresh = DriftModel(**kwargs)  # type: ignore[arg-type]
    for i in np.random.default_rng(3).integers(0, len(t), 30):
        np.testing.assert_allclose(out[i], fresh.offset_nm(float(t[i])), atol=1e-12)


def test_energy_drift_linear_and_jumps() -> None:
    m = EnergyDriftModel(rate_meV_per_s=2.0)
    np.testing.assert_allclose(m.offset_eV([0.0, 10.0]), [0.0, 0.02], atol=1e-15)
    j = EnergyDriftModel(jump_rate_per_s=1.0, jump_size_meV=50.0, seed=9)
    times = j.jump_times_s(20.0)
    assert len(times) > 5
    steps = j.offset_eV(times) - j.offset_eV(times - 1e-9)
    np.testing.assert_allclose(np.abs(steps), 0.05, rtol=1e-9)
    assert j.offset_eV(0.0) == 0.0


def test_bad_parameters_raise_clear_errors() -> None:
    with pytest.raises(SimulatorParameterError, match="sine_period_s"):
        DriftModel(sine_period_s=0.0)
    with pytest.raises(SimulatorParameterError, match="random_walk"):
        DriftModel(random_walk_nm_per_sqrt_s=-1.0)
    with pytest.raises(SimulatorParameterError, match="rate_nm_per_s"):
        DriftModel(rate_nm_per_s=(1.0,))  # type: ignore[arg-type]
    with pytest.raises(SimulatorParameterError, match=">= 0"):
        DriftModel().offset_nm(-1.0)
    with pytest.raises(SimulatorParameterError, match="seed"):
        DriftModel(seed=-3)
    assert issubclass(SimulatorParameterError, ValueError)


def test_replace_and_equality() -> None:
    m = DriftModel(rate_nm_per_s=(1.0, 0.0), seed=1)
    assert m.replace(seed=1) == m
    assert m.replace(seed=2) != m
    assert DriftModel().is_static and not m.is_static
