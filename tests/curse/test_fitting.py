"""Exponential-sum fitting: exact recovery, errors checked by quadrature, the curse in ω."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from curse._fitting import DampedPolynomial, fit_exponential_sum, fit_loss, inserted_log_rates
from curse._targets import ExponentialSum, PolynomialDecay
from curse.experiments.approx import ApproxConfig, minimal_width
from curse.experiments.approx import run as run_approx

FAST = {"starts": 3, "adam_steps": 100, "newton_steps": 60, "pad_to": 3}


def _l2_error_by_quad(a, w, kernel):
    """∫_0^∞ (ρ̂ − ρ)² dt by adaptive quad in y = log(1 + t), which tames the heavy tail."""
    a, w = np.asarray(a), np.asarray(w)

    def integrand(y):
        t = np.expm1(y)
        return (np.sum(a * np.exp(-w * t)) - kernel(t)) ** 2 * np.exp(y)

    return quad(integrand, 0.0, 80.0, limit=500, epsabs=1e-15, epsrel=1e-11)[0]


def test_exponential_sum_recovered_to_machine_precision():
    a_star, w_star = np.array([1.0, -0.5, 0.7]), np.array([0.3, 1.0, 3.0])
    target = ExponentialSum(jnp.asarray(a_star), jnp.asarray(w_star))
    fit = fit_exponential_sum(target, 3, key=jax.random.key(0), **FAST)
    norm = float(target.norm_squared())
    assert abs(float(fit.loss)) <= 1e-14 * norm
    np.testing.assert_allclose(np.asarray(fit.w), w_star, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(fit.a), a_star, rtol=1e-6, atol=1e-7)


def test_a_rate_that_underflows_is_a_rejected_step_not_an_error():
    # `curse approx` stopped with "w (decay rates) must be > 0" at β = 3, m = 3 (issue 22, item 5):
    # an Adam step drove a log-rate below −745, e^v underflowed to 0, and the checked loss raised
    # inside the vmapped fit. The objective is NaN there, so the step is rejected.
    with jax.enable_x64(True):
        target = DampedPolynomial(jnp.asarray(3.0), 1.0)
        a, v = jnp.array([0.5, 0.2]), jnp.array([0.0, -800.0])
        assert np.isnan(float(jax.jit(fit_loss)((a, v), target)))
        finite = fit_loss((a, jnp.array([0.0, 1.0])), target)
        fitted = lambda t: 0.5 * np.exp(-t) + 0.2 * np.exp(-np.e * t)
        expected = quad(lambda t: (fitted(t) - np.exp(-3 * t) / (1 + t) ** 2) ** 2, 0, np.inf)
        np.testing.assert_allclose(float(finite), expected[0], rtol=1e-8)
        gradient = jax.grad(fit_loss)((a, v), target)
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(gradient))


def test_polynomial_error_matches_quadrature_and_grows_as_omega_decreases():
    errors = []
    for omega in (3.0, 1.0, 0.2):
        target = PolynomialDecay(jnp.asarray(omega))
        fit = fit_exponential_sum(target, 3, key=jax.random.key(1), **FAST)
        kernel = lambda t, omega=omega: (1.0 + t) ** (-(1.0 + omega))
        reference = _l2_error_by_quad(fit.a, fit.w, kernel)
        np.testing.assert_allclose(float(fit.loss), reference, rtol=1e-6, atol=1e-13)
        errors.append(float(fit.relative_error))
    assert errors[0] < errors[1] < errors[2], errors


def test_damped_polynomial_laplace_and_norm_against_quad():
    beta, omega = 0.3, 1.0
    target = DampedPolynomial(beta, omega)
    kernel = lambda t: np.exp(-beta * t) * (1.0 + t) ** (-(1.0 + omega))
    norm = quad(lambda t: kernel(t) ** 2, 0, np.inf, epsabs=1e-14)[0]
    np.testing.assert_allclose(float(target.norm_squared()), norm, rtol=1e-9)
    for s in (0.01, 0.5, 5.0):
        reference = quad(lambda t, s=s: np.exp(-s * t) * kernel(t), 0, np.inf, epsabs=1e-14)[0]
        np.testing.assert_allclose(float(target.laplace(jnp.asarray(s))), reference, rtol=1e-9)


def test_inserted_rates_add_one_each_and_minimal_width():
    rows = np.asarray(inserted_log_rates(jnp.log(jnp.array([0.1, 1.0]))))
    assert rows.shape == (3, 3) and np.all(np.diff(rows, axis=1) > 0)
    assert minimal_width(np.array([0.5, 0.05, 0.004]), 0.01) == 3.0
    assert np.isnan(minimal_width(np.array([0.5, 0.05]), 0.01))


def test_approx_experiment_smoke():
    config = ApproxConfig(
        omegas=(0.5, 2.0), betas=(1.0,), max_width=2, epsilons=(0.1,), starts=1,
        adam_steps=5, newton_steps=5,
    )  # fmt: skip
    result = run_approx(config)
    assert result["polynomial_errors"].shape == (2, 2)
    assert np.all(result["polynomial_errors"][:, 1] <= result["polynomial_errors"][:, 0] + 1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"m": 0}, "width m"),
        ({"m": 2, "starts": 0}, "starts"),
        ({"m": 2, "rate_range": (1.0, 0.1)}, "rate_range"),
        ({"m": 2, "warm_rates": jnp.ones(3)}, "warm_rates"),
        ({"m": 3, "pad_to": 2}, "pad_to"),
    ],
)
def test_bad_input(kwargs, message):
    target = ExponentialSum(jnp.ones(1), jnp.ones(1))
    with pytest.raises(ValueError, match=message):
        fit_exponential_sum(target, key=jax.random.key(0), **kwargs)


def test_bad_target_and_config():
    with pytest.raises(ValueError, match="target"):
        fit_exponential_sum("ρ", 2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="beta"):
        DampedPolynomial(-1.0)
    with pytest.raises(ValueError, match="omegas"):
        ApproxConfig(omegas=(0.0,))
    with pytest.raises(ValueError, match="max_width"):
        ApproxConfig(max_width=0)


@pytest.mark.slow
def test_full_approx_polynomial_memory_needs_more_width():
    """`curse approx` in full (~5.5 min): at ε = 1e-3 the minimal width is non-increasing in ω for
    polynomial kernels and larger than every exponentially decaying kernel's."""
    result = run_approx(ApproxConfig())
    eps = list(result["epsilons"]).index(1e-3)
    poly = np.asarray(result["polynomial_min_width"])[:, eps]  # ω ascending
    expo = np.asarray(result["exponential_min_width"])[:, eps]
    assert np.all(np.isfinite(poly)) and np.all(np.isfinite(expo))
    assert np.all(np.diff(poly) <= 0)
    assert poly[:3].min() > expo.max()
