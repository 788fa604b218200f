"""Fig. 3's local slopes, the density bump and the saddle prediction against NumPy/SciPy."""

import dataclasses

import jax
import numpy as np
import pytest
import scipy.integrate
from jax.tree_util import Partial

from curse._memory_flow import diagonal_objective
from curse.experiments.fig3 import (
    Fig3Config,
    bump_laplace,
    gauss_newton_start,
    saddle_prediction,
    sliding_slopes,
)
from memdyn import hessian_eigenvalues


def test_long_memories_are_solved_one_at_a_time_to_their_predicted_escape():
    config = Fig3Config()
    groups = config.groups()
    assert groups[0].omegas == config.omegas and groups[0].tau_max == config.tau_max
    assert [g.omegas for g in groups[1:]] == [(omega,) for omega in config.long_omegas]
    for group in groups[1:]:
        escape = saddle_prediction(config, group.omegas)["escape_time"][0]
        assert group.tau_max == pytest.approx(config.long_horizon * escape)
        assert group.max_steps == config.long_max_steps
    assert dataclasses.replace(config, long_omegas=()).groups()[1:] == []


def test_sliding_slopes_rejects_bad_window():
    with pytest.raises(ValueError, match="window"):
        sliding_slopes([1.0, 2.0], [1.0, 2.0], 1)
    centres, slopes = sliding_slopes([1.0, 2.0], [1.0, 2.0], 3)  # no run of 3 in 2 points
    assert centres.shape == slopes.shape == (0,)
    with pytest.raises(ValueError, match="window"):
        Fig3Config(window=1)
    with pytest.raises(ValueError, match="long_horizon"):
        Fig3Config(long_horizon=0.5)
    with pytest.raises(ValueError, match="extra_units"):
        Fig3Config(extra_units=2)


def test_density_bump_integrates_to_one():
    config = Fig3Config(bump_density=True)
    with jax.enable_x64(True):
        target = jax.tree_util.tree_map(lambda leaf: leaf[0], config.targets(omegas=(1 / 8,)))
        kernel = lambda t: float(target.kernel(t)) - np.exp(-t) - 0.5 * np.exp(-2 * t)
        mass, _ = scipy.integrate.quad(kernel, 0, 30, points=[8.0], epsabs=0, epsrel=1e-12)
        peak = kernel(8.0)
    assert mass == pytest.approx(1.0, rel=1e-9)  # the t < 0 tail, Φ(−8), is 6e-16
    assert peak == pytest.approx(1 / np.sqrt(2 * np.pi), rel=1e-12)
    assert Fig3Config().peak_amplitude() == 1.0  # the default bump is unchanged


@pytest.mark.parametrize("s", [0.5, 1.0])
def test_bump_laplace_and_derivative_match_quadrature(s):
    centre, amplitude, width = 20.0, 0.7, 1.3
    value, derivative = bump_laplace(s, centre, amplitude, width)
    rho = lambda t: amplitude * np.exp(-((t - centre) ** 2) / (2 * width**2))
    kw = dict(points=[centre], epsabs=0, epsrel=1e-12, limit=200)
    expected, _ = scipy.integrate.quad(lambda t: np.exp(-s * t) * rho(t), 0, centre + 40, **kw)
    expected_d, _ = scipy.integrate.quad(
        lambda t: -t * np.exp(-s * t) * rho(t), 0, centre + 40, **kw
    )
    np.testing.assert_allclose(value, expected, rtol=1e-9)
    np.testing.assert_allclose(derivative, expected_d, rtol=1e-9)


def test_gauss_newton_matrix_matches_quadrature():
    matrix = gauss_newton_start(Fig3Config())
    # Basis at θ(0) = (a, w) = ((1, 0.5, 0), (1, 2, 0.5)): ∂ρ̂/∂a_i, then ∂ρ̂/∂w_j, j = 1, 2.
    basis = [
        lambda t: np.exp(-t),
        lambda t: np.exp(-2 * t),
        lambda t: np.exp(-0.5 * t),
        lambda t: -t * np.exp(-t),
        lambda t: -0.5 * t * np.exp(-2 * t),
    ]
    for i, j in [(0, 0), (2, 2), (2, 3), (3, 4), (4, 4)]:
        product = lambda t, f=basis[i], g=basis[j]: 2 * f(t) * g(t)
        value, _ = scipy.integrate.quad(product, 0, np.inf, epsabs=0, epsrel=1e-12)
        assert matrix[i, j] == pytest.approx(value, rel=1e-9)
    np.testing.assert_allclose(matrix, matrix.T)


def test_saddle_prediction_matches_exact_hessian_at_long_memory():
    """Where the coupling is far below the Gauss–Newton gap, the leading-order eigenvalue
    agrees with the exact (autodiff) Hessian's smallest eigenvalue."""
    config = Fig3Config()
    omegas = (1 / 36, 1 / 40)
    prediction = saddle_prediction(config, omegas)
    with jax.enable_x64(True):
        for omega, eig in zip(omegas, prediction["eig"], strict=True):
            target = jax.tree_util.tree_map(lambda leaf: leaf[0], config.targets(omegas=(omega,)))
            exact = hessian_eigenvalues(Partial(diagonal_objective, target=target), config.start())
            assert float(exact[0]) == pytest.approx(eig, rel=2e-3)
    assert np.all(np.abs(prediction["eig"]) < 1e-3 * prediction["gap"])
    # Local slope of log(1/|λ|) → 2w − 2/(1/ω − wσ²) (module docstring).
    x = np.array([60.0, 62.0])
    escape = saddle_prediction(config, 1 / x)["escape_time"]
    slope = np.diff(np.log(escape))[0] / 2.0
    assert slope == pytest.approx(1.0 - 2.0 / (61.0 - 0.5), abs=2e-3)
