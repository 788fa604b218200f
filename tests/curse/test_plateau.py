"""Hitting times (eq. 22) and plateau detection on synthetic trajectories with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memdyn import hitting_time, plateau_intervals


def test_parameter_hitting_time_interpolates_in_log_time():
    times = np.geomspace(1.0, 1e4, 5)  # 1, 10, ..., 1e4
    # ‖θ − θ0‖ grows linearly in log10 τ: 0, 1, 2, 3, 4 → distance 2.5 at τ = 10^2.5.
    thetas = {"u": jnp.stack([jnp.array([k, 0.0]) for k in range(5)], 0), "v": jnp.zeros((5, 1))}
    result = hitting_time(times, thetas, None, delta=2.5)
    assert bool(result.hit)
    np.testing.assert_allclose(result.time, 10**2.5, rtol=1e-12)


def test_loss_hitting_time_ignores_an_isolated_noisy_dip():
    times = np.arange(0.0, 100.0)
    rng = np.random.default_rng(0)
    losses = np.where(times < 60, 1.0, 0.4) + 0.01 * rng.normal(size=times.size)
    losses[20] = 0.5  # a single outlier on the plateau
    result = hitting_time(times, None, losses, delta=0.3, criterion="loss", smooth=5)
    assert bool(result.hit)
    assert 59.0 <= float(result.time) <= 60.0
    raw = hitting_time(times, None, losses, delta=0.3, criterion="loss")
    assert float(raw.time) < 21  # without smoothing the dip is taken for the escape


def test_never_hit_gives_inf_and_flag():
    result = hitting_time(np.arange(5.0), None, np.ones(5), delta=0.1, criterion="loss")
    assert not bool(result.hit)
    assert np.isinf(result.time)


def test_hitting_time_vmaps_over_trajectories():
    times = jnp.linspace(0.0, 10.0, 11)
    losses = jnp.stack([jnp.where(times < c, 1.0, 0.0) for c in (3.0, 7.0)])
    batched = jax.vmap(
        lambda curve: hitting_time(times, None, curve, delta=0.5, criterion="loss", log_time=False)
    )(losses)
    np.testing.assert_allclose(batched.time, [2.5, 6.5])


def test_plateau_intervals_finds_two_plateaus():
    times = np.geomspace(1e-2, 1e6, 161)
    logt = np.log10(times)
    losses = 1.0 - 0.5 / (1 + np.exp(-8 * (logt - 1))) - 0.4 / (1 + np.exp(-8 * (logt - 4)))
    plateaus = plateau_intervals(times, losses, tolerance=0.05, min_fraction=0.1)
    levels = [p.level for p in plateaus]
    assert len(plateaus) == 3
    np.testing.assert_allclose(levels, [1.0, 0.5, 0.1], atol=0.02)
    assert plateaus[0].end < 10 < plateaus[1].start < plateaus[1].end < 1e4 < plateaus[2].start


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(criterion="gradient", delta=0.1), "unknown criterion"),
        (dict(criterion="loss", delta=0.0), "delta"),
        (dict(criterion="parameter", delta=0.1), "thetas is required"),
    ],
)
def test_bad_input_raises_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hitting_time(np.arange(3.0), None, np.ones(3), **kwargs)
