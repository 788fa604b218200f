"""Rate parameterisations: the loss under f, perturbation growth against quadrature, experiment."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from curse._parameterisation import NAMES, from_rates, to_rates
from curse._stability import perturbation_growth, rate_loss, rate_loss_indexed
from curse._targets import ExponentialSum
from curse.experiments.stability import StabilityConfig
from curse.experiments.stability import run as run_stability

TARGET_A, TARGET_W = np.array([0.5, 0.3, 0.2]), np.array([0.05, 0.4, 2.0])


def _quad_loss(a, w):
    """∫_0^∞ (Σ a_i e^{−w_i t} − ρ(t))² dt by adaptive quadrature (independent of eq. 18)."""

    def integrand(t):
        return (a @ np.exp(-w * t) - TARGET_A @ np.exp(-TARGET_W * t)) ** 2

    return quad(integrand, 0, np.inf, epsabs=1e-14, epsrel=1e-11, limit=500)[0]


@pytest.mark.parametrize("name", NAMES)
def test_rate_loss_is_the_loss_at_the_mapped_rates(name):
    target = ExponentialSum(TARGET_A, TARGET_W)
    a, w = np.array([0.4, -0.1]), np.array([0.3, 1.5])
    v = from_rates(name, w)
    np.testing.assert_allclose(np.asarray(to_rates(name, v)), w, rtol=1e-12)
    expected = _quad_loss(a, w)
    np.testing.assert_allclose(float(rate_loss((a, v), target, name)), expected, rtol=1e-8)
    index = jnp.asarray(NAMES.index(name))
    np.testing.assert_allclose(
        float(rate_loss_indexed((jnp.asarray(a), v), target, index)), expected, rtol=1e-8
    )


@pytest.mark.parametrize("name", ["exp", "softplus", "inverse_square"])
def test_rate_gradient_matches_finite_differences(name):
    target = ExponentialSum(TARGET_A, TARGET_W)
    a, v = jnp.array([0.4, -0.1]), from_rates(name, jnp.array([0.3, 1.5]))
    grad = jax.grad(lambda v: rate_loss((a, v), target, name))(v)
    h = 1e-6
    fd = [
        (_quad_loss(np.asarray(a), np.asarray(to_rates(name, v + h * e)))
         - _quad_loss(np.asarray(a), np.asarray(to_rates(name, v - h * e)))) / (2 * h)
        for e in np.eye(2)
    ]  # fmt: skip
    np.testing.assert_allclose(np.asarray(grad), fd, rtol=1e-4, atol=1e-9)


def test_perturbation_growth_against_quadrature():
    target = ExponentialSum(TARGET_A, TARGET_W)
    a, w = jnp.asarray(TARGET_A), jnp.asarray(TARGET_W)  # the exact minimum, J = 0
    key, samples, betas = jax.random.key(3), 4, jnp.array([1e-2, 0.1])
    growth = perturbation_growth(a, jnp.log(w), target, "exp", betas, key=key, samples=samples)
    noise = np.asarray(jax.random.normal(key, (samples, 3), dtype=jnp.float64))
    for beta, mean, worst in zip(
        np.asarray(betas), growth.mean_increase, growth.max_increase, strict=True
    ):
        losses = [_quad_loss(TARGET_A, np.exp(np.log(TARGET_W) + beta * xi)) for xi in noise]
        np.testing.assert_allclose(float(mean), np.mean(losses), rtol=1e-6)
        np.testing.assert_allclose(float(worst), np.max(losses), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(growth.unstable_fraction), 0.0)
    # At a minimum the growth is quadratic in β: a tenfold β gives about a hundredfold loss.
    ratio = float(growth.mean_increase[1] / growth.mean_increase[0])
    assert 60 < ratio < 160, ratio


def test_direct_map_can_leave_the_stable_set_the_others_cannot():
    target = ExponentialSum(TARGET_A, TARGET_W)
    betas = jnp.array([1e-3, 0.5])
    for name in NAMES:
        v = from_rates(name, jnp.asarray(TARGET_W))
        growth = perturbation_growth(
            jnp.asarray(TARGET_A), v, target, name, betas, key=jax.random.key(0), samples=256
        )
        unstable = np.asarray(growth.unstable_fraction)
        assert unstable[0] == 0.0
        if name == "direct":
            assert unstable[1] > 0.1  # β = 0.5 ≫ the smallest rate 0.05
        else:
            assert unstable[1] == 0.0


def test_stability_experiment_smoke():
    config = dataclasses.replace(
        StabilityConfig().quick(), omegas=(1 / 3, 1 / 4, 1 / 5), betas=(1e-3, 1e-2, 1e-1)
    )
    result = run_stability(config)
    assert [row["parameterisation"] for row in result["table"]] == list(NAMES)
    assert result["fit_relative_error"] < 1e-6
    for row in result["table"]:
        times = np.asarray(row["plateau_times"])
        assert np.all(np.isfinite(times)), row["parameterisation"]
        assert row["plateau_slope"] > 0, row["parameterisation"]
        assert np.all(np.diff(np.asarray(row["mean_increase"])) > 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"parameterisations": ("exp", "relu")}, "parameterisations"),
        ({"omegas": (0.25,)}, "omegas"),
        ({"betas": (0.1, -1.0)}, "betas"),
        ({"memory_w": (0.1, 0.0, 1.0)}, "memory_w entries must each be > 0"),
        ({"memory_w": (0.1, 1.0)}, "memory_a and memory_w"),
        ({"tau_max": 0.0}, "tau_max"),
        ({"samples": 0}, "samples"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StabilityConfig(**kwargs)
