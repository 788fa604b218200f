"""The Hessian of the white-noise loss in closed form (eq. 19 differentiated by hand) against
memdyn's `hvp` and `hessian`, and the spectral-density record of `curse spectrum`."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from curse import ExponentialSum, white_noise_loss
from curse.experiments import spectrum
from memdyn import hessian, hvp

TARGET_B = np.array([1.0, -0.4, 0.7])
TARGET_V = np.array([0.5, 1.3, 2.2])


def laplace_derivatives(s):
    """L[ρ], L[ρ]', L[ρ]'' of ρ(t) = Σ_j b_j e^{−v_j t}: Σ_j b_j/(s + v_j), its derivatives
    −Σ_j b_j/(s + v_j)² and 2 Σ_j b_j/(s + v_j)³."""
    shifted = s[:, None] + TARGET_V[None, :]
    return (
        np.sum(TARGET_B / shifted, axis=1),
        -np.sum(TARGET_B / shifted**2, axis=1),
        2 * np.sum(TARGET_B / shifted**3, axis=1),
    )


def closed_form_hessian(a, w):
    """∇²J of J(a, w) = Σ_ij a_i a_j/(w_i + w_j) − 2 Σ_i a_i L[ρ](w_i) + ‖ρ‖² (eq. 18), from
    eq. 19 by hand, with p_ij = w_i + w_j:

    ∂²J/∂a_i∂a_j = 2/p_ij,
    ∂²J/∂a_i∂w_k = −2 a_k/p_ik² − 2 δ_ik [Σ_j a_j/p_ij² + L'(w_i)],
    ∂²J/∂w_k∂w_l = 4 a_k a_l/p_kl³ + δ_kl [4 a_k Σ_j a_j/p_kj³ − 2 a_k L''(w_k)].
    """
    pair = w[:, None] + w[None, :]
    _, first, second = laplace_derivatives(w)
    aa = 2 / pair
    aw = -2 * a[None, :] / pair**2 - 2 * np.diag(np.sum(a[None, :] / pair**2, axis=1) + first)
    ww = 4 * np.outer(a, a) / pair**3 + np.diag(
        4 * a * np.sum(a[None, :] / pair**3, axis=1) - 2 * a * second
    )
    return np.block([[aa, aw], [aw.T, ww]])


def objective(theta, target):
    return white_noise_loss(*theta, target)


def random_point(key, m=4):
    a_key, w_key = jax.random.split(key)
    a = np.asarray(jax.random.normal(a_key, (m,)))
    w = np.asarray(jax.random.uniform(w_key, (m,), minval=0.3, maxval=2.5))
    return a, w


def test_closed_form_laplace_derivatives_match_autodiff():
    target = ExponentialSum(TARGET_B, TARGET_V)
    s = jnp.array([0.2, 0.9, 3.0])
    value, first, second = laplace_derivatives(np.asarray(s))
    np.testing.assert_allclose(target.laplace(s), value, rtol=1e-13)
    scalar = lambda x: target.laplace(x[None])[0]
    np.testing.assert_allclose(jax.vmap(jax.grad(scalar))(s), first, rtol=1e-13)
    np.testing.assert_allclose(jax.vmap(jax.grad(jax.grad(scalar)))(s), second, rtol=1e-13)


def test_hvp_and_hessian_equal_the_closed_form_white_noise_hessian():
    with jax.enable_x64(True):
        loss = Partial(objective, target=ExponentialSum(TARGET_B, TARGET_V))
        for point in range(3):
            key = jax.random.PRNGKey(point)
            a, w = random_point(key)
            expected = closed_form_hessian(a, w)
            theta = (jnp.asarray(a), jnp.asarray(w))
            matrix = np.asarray(hessian(loss, theta))
            assert matrix.dtype == np.float64
            np.testing.assert_allclose(matrix, expected, rtol=1e-10, atol=1e-12)
            for probe in range(3):
                v = np.asarray(jax.random.normal(jax.random.fold_in(key, probe + 1), (8,)))
                product = hvp(loss, theta, (jnp.asarray(v[:4]), jnp.asarray(v[4:])))
                reference = expected @ v
                np.testing.assert_allclose(
                    np.concatenate(product), reference, rtol=1e-10, atol=1e-12
                )
                relative = np.linalg.norm(np.concatenate(product) - reference)
                assert relative <= 1e-10 * np.linalg.norm(reference)


def test_quick_density_record_has_finite_normalised_densities():
    config = spectrum.SpectrumConfig().quick()
    with jax.enable_x64(True):
        record = spectrum.density_study(config, jax.random.PRNGKey(config.seed))
    hidden = config.density.hidden
    assert record["parameters"] == hidden * hidden + 2 * hidden
    points = len(record["density_steps"])
    assert points == config.density.points
    grid = record["grid"]
    assert grid.shape == (config.density.grid_points,) and np.all(np.diff(grid) > 0)
    densities = record["densities"]
    assert densities.shape == (points, grid.size)
    assert np.all(np.isfinite(densities)) and np.all(densities >= 0)
    np.testing.assert_allclose(np.trapezoid(densities, grid, axis=1), 1.0, atol=1e-6)
    for name in (
        "lambda_min",
        "lambda_max",
        "negative_mass",
        "negative_mass_above_threshold",
        "trace",
        "trace_slq",
        "density_losses",
    ):
        assert record[name].shape == (points,), name
        assert np.all(np.isfinite(record[name])), name
    assert np.all(record["lambda_min"] <= record["lambda_max"])
    assert np.all((record["negative_mass"] >= 0) & (record["negative_mass"] <= 1))
    assert np.all(record["negative_mass_above_threshold"] <= record["negative_mass"])
    assert grid[0] < record["lambda_min"].min() and grid[-1] > record["lambda_max"].max()
    assert record["steps"].shape == record["losses"].shape
    assert len(record["plateau"]) == 3
