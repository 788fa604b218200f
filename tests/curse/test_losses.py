"""White-noise losses against quadrature, expm and finite differences; input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

from curse._losses import lyapunov_loss, white_noise_grad, white_noise_loss
from curse._targets import ExponentialSum, GaussianBump, PolynomialDecay, TargetSum, memory_target

A = np.array([0.8, -0.3, 0.5])
W = np.array([0.7, 1.9, 3.1])


def target_kernel(t):
    """ρ of `memory_target(0.2)`: e^{−t} + 0.5 e^{−2t} + exp(−(t − 5)²/2)."""
    return np.exp(-t) + 0.5 * np.exp(-2 * t) + np.exp(-((t - 5.0) ** 2) / 2)


def quad(f, a, b, points=None):
    value, _ = scipy.integrate.quad(f, a, b, epsabs=0, epsrel=1e-13, limit=500, points=points)
    return value


def test_white_noise_loss_equals_quadrature():
    model = lambda t: np.sum(A * np.exp(-W * t))
    expected = quad(lambda t: (model(t) - target_kernel(t)) ** 2, 0, 80, [5.0])
    actual = white_noise_loss(A, W, memory_target(0.2))
    np.testing.assert_allclose(actual, expected, rtol=1e-10)


def test_gradient_eq19_matches_autodiff_and_finite_differences():
    target = memory_target(0.2)
    da, dw = white_noise_grad(A, W, target)
    auto_a, auto_w = jax.grad(white_noise_loss, argnums=(0, 1))(
        jnp.asarray(A), jnp.asarray(W), target
    )
    np.testing.assert_allclose(da, auto_a, rtol=1e-12)
    np.testing.assert_allclose(dw, auto_w, rtol=1e-12)
    h = 1e-6
    for i in range(3):
        e = np.eye(3)[i] * h
        fd_a = (white_noise_loss(A + e, W, target) - white_noise_loss(A - e, W, target)) / (2 * h)
        fd_w = (white_noise_loss(A, W + e, target) - white_noise_loss(A, W - e, target)) / (2 * h)
        np.testing.assert_allclose(da[i], fd_a, rtol=1e-7)
        np.testing.assert_allclose(dw[i], fd_w, rtol=1e-7)


def test_loss_vanishes_at_exact_exponential_fit():
    target = ExponentialSum(A, W)
    assert abs(float(white_noise_loss(A, W, target))) < 1e-14
    da, dw = white_noise_grad(A, W, target)
    np.testing.assert_allclose(np.concatenate([da, dw]), 0.0, atol=1e-14)


def _random_stable(n, seed):
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(n, n)) / np.sqrt(n)
    return (
        M - (np.max(np.linalg.eigvals(M).real) + 0.5) * np.eye(n),
        rng.normal(size=n),
        rng.normal(size=n),
    )


def test_lyapunov_model_norm_equals_expm_quadrature():
    Wm, u, c = _random_stable(4, 0)
    zero = ExponentialSum([0.0], [1.0])
    model = lambda t: c @ scipy.linalg.expm(Wm * t) @ u
    expected = quad(lambda t: model(t) ** 2, 0, 80)
    np.testing.assert_allclose(lyapunov_loss(Wm, u, c, zero), expected, rtol=1e-9)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ExponentialSum([1.0, -0.5], [0.8, 2.5]),
        lambda: TargetSum((ExponentialSum([0.4], [1.2]), GaussianBump(0.7, 3.0, 0.6))),
        lambda: PolynomialDecay(0.3),
    ],
)
def test_lyapunov_loss_equals_expm_quadrature(build):
    target = build()  # built under the float64 fixture, not at import time
    Wm, u, c = _random_stable(3, 1)
    model = lambda t: c @ scipy.linalg.expm(Wm * t) @ u
    rho = lambda t: float(target.kernel(t))
    expected = quad(lambda t: (model(t) - rho(t)) ** 2, 0, 80, [3.0])
    expected += quad(lambda t: rho(t) ** 2, 80, np.inf)  # the model is ~e^{-40} there
    np.testing.assert_allclose(lyapunov_loss(Wm, u, c, target), expected, rtol=1e-9)


def test_lyapunov_loss_reduces_to_diagonal_loss():
    target = memory_target(0.25)
    u = np.array([1.0, 2.0, -1.0])
    c = A / u
    np.testing.assert_allclose(
        lyapunov_loss(-np.diag(W), u, c, target), white_noise_loss(A, W, target), rtol=1e-10
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: white_noise_loss(A, np.array([0.7, 0.0, 1.0]), t), "w"),
        (lambda t: white_noise_loss(A, np.array([0.7, -1.0, 1.0]), t), "w"),
        (lambda t: white_noise_loss(A, np.array([0.7, np.nan, 1.0]), t), "w"),
        (lambda t: white_noise_loss(np.array([np.nan, 0.0, 1.0]), W, t), "a contains"),
        (lambda t: white_noise_grad(A, W[:2], t), "w must have shape"),
        (lambda t: white_noise_loss(A, W, "memory"), "target must be"),
        (lambda t: lyapunov_loss(np.eye(2), np.ones(2), np.ones(2), t), "W must be stable"),
        (lambda t: lyapunov_loss(-np.eye(2), np.ones(3), np.ones(2), t), "u must have shape"),
        (lambda t: lyapunov_loss(-np.eye(2), np.ones(2), np.array([1.0, np.nan]), t), "c contains"),
    ],
)
def test_bad_input_raises_a_clear_error(call, message):
    """ValueError/TypeError at trace time; RuntimeError (eqx.error_if) for traced values."""
    with pytest.raises((ValueError, TypeError, RuntimeError), match=message):
        call(memory_target(0.2))


def test_lyapunov_loss_gradient_matches_finite_differences():
    Wm, u, c = _random_stable(3, 2)
    target = memory_target(0.25)
    grad_W = jax.grad(lyapunov_loss)(jnp.asarray(Wm), jnp.asarray(u), jnp.asarray(c), target)
    h = 1e-6
    for i, j in [(0, 0), (1, 2), (2, 0)]:
        step = np.zeros((3, 3))
        step[i, j] = h
        plus = lyapunov_loss(Wm + step, u, c, target)
        minus = lyapunov_loss(Wm - step, u, c, target)
        np.testing.assert_allclose(grad_W[i, j], (plus - minus) / (2 * h), rtol=1e-6)


def test_value_checks_fire_under_jit_vmap_and_grad():
    """Non-positive rates and NaN weights are caught inside compiled and vmapped code too."""
    target = memory_target(0.2)
    loss = lambda a, w: white_noise_loss(a, w, target)
    with pytest.raises(RuntimeError, match="w \\(decay rates\\) must be > 0"):
        jax.jit(loss)(jnp.asarray(A), jnp.array([0.7, -1.0, 1.0]))
    rates = jnp.stack([jnp.asarray(W), jnp.array([0.7, 0.0, 1.0])])
    with pytest.raises(RuntimeError, match="must be > 0"):
        jax.vmap(loss, in_axes=(None, 0))(jnp.asarray(A), rates)
    with pytest.raises(RuntimeError, match="a contains non-finite"):
        jax.jit(jax.grad(loss))(jnp.array([np.nan, 0.0, 1.0]), jnp.asarray(W))
    # a valid batch passes and equals the unbatched values
    good = jnp.stack([jnp.asarray(W), 2 * jnp.asarray(W)])
    batched = jax.vmap(loss, in_axes=(None, 0))(jnp.asarray(A), good)
    np.testing.assert_allclose(batched[1], loss(A, 2 * W), rtol=1e-14)


@pytest.mark.parametrize("bad", [np.ones(3, np.float16), np.ones(3, bool), np.ones(3) + 1j])
def test_dtype_rule_rejects_half_boolean_and_complex(bad):
    with pytest.raises(TypeError, match="w must be"):
        white_noise_loss(A, bad, memory_target(0.2))
