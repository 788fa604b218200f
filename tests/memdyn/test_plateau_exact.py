"""Exact values of the plateau and hitting-time detectors against independent NumPy loops, at the
boundaries a weakened comparison or an off-by-one would move (added for surviving mutants; see
docs/mutation.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memdyn import hitting_time, plateau_intervals, running_median

pytestmark = pytest.mark.usefixtures("float64")


def _median_loop(values, window):
    """Centred median over the available points, NaNs skipped; an even window acts as odd+1."""
    half = window // 2
    n = len(values)
    out = []
    for i in range(n):
        chunk = values[max(0, i - half) : min(n, i + half + 1)]
        kept = chunk[~np.isnan(chunk)]
        out.append(np.median(kept) if kept.size else np.nan)
    return np.asarray(out)


def _crossing_loop(times, progress, delta, log_time):
    """First saved point with progress ≥ δ, interpolated from the point before it."""
    progress = np.maximum.accumulate(progress)
    for k in range(len(times)):
        if progress[k] >= delta:
            if k == 0:
                return times[0]
            t0, t1, p0, p1 = times[k - 1], times[k], progress[k - 1], progress[k]
            fraction = (delta - p0) / (p1 - p0) if p1 > p0 else 1.0
            if log_time and t0 > 0 and t1 > 0:
                return math.exp(math.log(t0) + fraction * (math.log(t1) - math.log(t0)))
            return t0 + fraction * (t1 - t0)
    return math.inf


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5])
def test_running_median_equals_a_loop_at_the_edges(window):
    values = np.array([3.0, -1.0, 4.0, 1.0, np.nan, 9.0, 2.0, 6.0, 5.0])
    np.testing.assert_allclose(
        running_median(values, window), _median_loop(values, window), rtol=1e-12
    )


def test_reaching_delta_exactly_counts_as_hitting_it():
    times = np.array([1.0, 2.0, 4.0, 8.0])
    thetas = np.array([[0.0], [1.0], [1.0], [1.0]])  # distance 1 = δ from save 1 on
    result = hitting_time(times, thetas, None, delta=1.0)
    assert bool(result.hit) and float(result.time) == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("log_time", [True, False])
def test_crossing_between_saves_interpolates(log_time):
    times = np.array([1.0, 10.0, 100.0, 1000.0])
    thetas = np.array([[0.0], [0.5], [1.0], [2.0]])
    result = hitting_time(times, thetas, None, delta=0.75, log_time=log_time)
    expected = 10**1.5 if log_time else 55.0
    assert float(result.time) == pytest.approx(expected, rel=1e-12)
    first = hitting_time(times, thetas, None, delta=0.25, log_time=log_time)  # saves 0 and 1
    assert float(first.time) == pytest.approx(10**0.5 if log_time else 5.5, rel=1e-12)


def test_a_zero_time_falls_back_to_linear_interpolation():
    times = np.array([0.0, 1.0, 2.0])
    thetas = np.array([[0.0], [1.0], [2.0]])
    assert float(hitting_time(times, thetas, None, delta=0.5).time) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(4))
def test_parameter_and_loss_criteria_equal_loops(seed):
    rng = np.random.default_rng(seed)
    n = 12
    times = np.cumsum(rng.uniform(0.5, 2.0, n))
    thetas = {"w": np.cumsum(rng.normal(size=(n, 2)), axis=0), "b": rng.normal(size=n)}
    flat = np.concatenate([thetas["w"], thetas["b"][:, None]], axis=1)
    distance = np.linalg.norm(flat - flat[0], axis=1)
    delta = 0.6 * distance.max()
    for log_time in (True, False):
        result = hitting_time(times, thetas, None, delta=delta, log_time=log_time)
        expected = _crossing_loop(times, distance, delta, log_time)
        assert float(result.time) == pytest.approx(expected, rel=1e-9)
    losses = 2.0 - np.cumsum(rng.uniform(0, 0.2, n)) + rng.normal(0, 0.05, n)
    smoothed = _median_loop(losses, 3)
    drop = smoothed[0] - np.minimum.accumulate(smoothed)
    delta = 0.5 * drop.max()
    result = hitting_time(times, None, losses, delta=delta, criterion="loss", smooth=3)
    assert float(result.time) == pytest.approx(_crossing_loop(times, drop, delta, True), rel=1e-9)
    never = hitting_time(times, None, losses, delta=10.0, criterion="loss")
    assert not bool(never.hit) and math.isinf(float(never.time))


def test_plateau_band_and_length_boundaries_are_inclusive():
    times = np.arange(9.0)  # range 8: min_fraction 0.25 is a length of exactly 2
    values = np.array([4.0, 4.0, 6.0, 9.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # 6 = (1 + 0.5) · 4
    found = plateau_intervals(times, values, tolerance=0.5, min_fraction=0.25, scale="linear")
    assert [tuple(p) for p in found] == [(0.0, 2.0, 4.0), (4.0, 8.0, 1.0)]
    shorter = plateau_intervals(times, values, tolerance=0.5, min_fraction=0.26, scale="linear")
    assert [tuple(p) for p in shorter] == [(4.0, 8.0, 1.0)]


def test_plateau_on_the_log_scale_drops_time_zero_and_uses_log_lengths():
    times = np.concatenate([[0.0], 2.0 ** np.arange(9)])  # 0 is left out on the log scale
    values = np.array([7.0, 3.0, 3.0, 3.0, 3.0, 3.0, 1.0, 0.5, 0.25, 0.125])
    found = plateau_intervals(times, values, tolerance=0.05, min_fraction=0.4)
    assert [tuple(p) for p in found] == [(1.0, 16.0, 3.0)]  # log 16 − log 1 = 4/8 of the range
    assert plateau_intervals(times, values, tolerance=0.05, min_fraction=0.6) == []
    linear = plateau_intervals(times, values, tolerance=0.05, min_fraction=0.05, scale="linear")
    assert [tuple(p) for p in linear] == [(1.0, 16.0, 3.0)]  # 15/256 of the linear range


def test_fewer_than_two_usable_points_give_no_plateau():
    assert plateau_intervals(np.array([1.0]), np.array([2.0])) == []
    assert plateau_intervals(np.array([0.0, 1.0]), np.array([2.0, 2.0])) == []  # 0 dropped (log)
