"""Two-scale Lorenz-96 (eq. 124) against an explicit-loop right-hand side and scipy solve_ivp."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from curse import _lorenz96 as lorenz96

SYSTEM = lorenz96.Lorenz96(slow=4, fast=5)  # small, for the loop reference


def loop_rhs(state, u, system):
    """Eq. 124 written index by index (independent of the vectorised `vector_field`)."""
    K, J = system.slow, system.fast
    F, h, c, b = system.forcing, system.coupling, system.time_scale, system.amplitude
    x, y = state[:K], state[K:].reshape(K, J)
    flat = y.reshape(-1)
    n = K * J
    dx = np.empty(K)
    for k in range(K):
        dx[k] = (
            -x[(k - 1) % K] * (x[(k - 2) % K] - x[(k + 1) % K]) - x[k] + F
            - h * c / b * y[k].sum() + u
        )  # fmt: skip
    dy = np.empty(n)
    for i in range(n):
        k = i // J
        dy[i] = (
            -c * b * flat[(i + 1) % n] * (flat[(i + 2) % n] - flat[(i - 1) % n]) - c * flat[i]
            + h * c / b * x[k]
        )  # fmt: skip
    return np.concatenate([dx, dy])


def test_vector_field_equals_loop():
    rng = np.random.default_rng(0)
    state = rng.normal(size=4 + 20)
    dx, dy = lorenz96.vector_field(
        SYSTEM, (jnp.asarray(state[:4]), jnp.asarray(state[4:].reshape(4, 5))), 0.7
    )
    expected = loop_rhs(state, 0.7, SYSTEM)
    np.testing.assert_allclose(np.concatenate([dx, np.ravel(dy)]), expected, rtol=1e-13)


def scipy_reference(system, state, forcing, dt, method):
    """The forced path by SciPy, one `solve_ivp` per constant-forcing interval of length dt."""
    expected = []
    for k, u in enumerate(forcing):
        solution = scipy.integrate.solve_ivp(
            lambda t, s, u=u: loop_rhs(s, u, system),
            (k * dt, (k + 1) * dt), state, method=method, rtol=1e-12, atol=1e-12,
        )  # fmt: skip
        state = solution.y[:, -1]
        expected.append(state.copy())
    return np.asarray(expected)


def test_integrate_equals_solve_ivp_rk45():
    dt, steps = 0.02, 20  # short: the fast ring is chaotic (roundoff grows ~e^{25t})
    forcing = np.random.default_rng(1).normal(size=steps) * 2.0
    x0, y0 = lorenz96.initial_state(SYSTEM)
    xs, ys = lorenz96.integrate(SYSTEM, (x0, y0), jnp.asarray(forcing), dt, rtol=1e-11, atol=1e-12)
    state = np.concatenate([np.asarray(x0), np.ravel(y0)])
    expected = scipy_reference(SYSTEM, state, forcing, dt, "RK45")
    # Both solvers at ~1e-11: the slow variables agree to 1e-8; the fast ring amplifies the
    # solvers' local errors (observed gaps up to 7e-8 by t = 0.4), hence 1e-6 there.
    np.testing.assert_allclose(xs, expected[:, :4], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.reshape(ys, (steps, -1)), expected[:, 4:], rtol=1e-6, atol=1e-6)


def test_training_pairs_shapes_and_reproducibility():
    key = jax.random.PRNGKey(0)
    forcing, resolved = lorenz96.training_pairs(key, SYSTEM, 3, 30, 0.05, spin_up=0.0)
    assert forcing.shape == (3, 30, 1) and resolved.shape == (3, 30)
    again = lorenz96.training_pairs(key, SYSTEM, 3, 30, 0.05, spin_up=0.0)
    np.testing.assert_array_equal(resolved, again[1])
    # Same start for every path: the first outputs differ only through one step of forcing.
    assert np.ptp(np.asarray(resolved[:, 0])) < np.ptp(np.asarray(resolved[:, -1]))


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="slow"):
        lorenz96.Lorenz96(slow=2)
    with pytest.raises(ValueError, match="time_scale"):
        lorenz96.Lorenz96(time_scale=-1.0)
    with pytest.raises(ValueError, match="forcing"):
        lorenz96.Lorenz96(forcing=float("nan"))
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="num_paths"):
        lorenz96.training_pairs(key, SYSTEM, 0, 30, 0.05)
    with pytest.raises(ValueError, match="dt"):
        lorenz96.training_pairs(key, SYSTEM, 2, 30, -0.05)
    with pytest.raises(ValueError, match="forcing_scale"):
        lorenz96.training_pairs(key, SYSTEM, 2, 30, 0.05, forcing_scale=0.0)


def test_standard_two_scale_system_equals_solve_ivp():
    """The default constants (K = 8, J = 32, F = 10, h = 1, c = b = 10) against an independent
    index-by-index right-hand side in scipy's DOP853, over a short forced horizon."""
    system = lorenz96.Lorenz96()
    assert (system.slow, system.fast, system.forcing) == (8, 32, 10.0)
    assert (system.coupling, system.time_scale, system.amplitude) == (1.0, 10.0, 10.0)
    dt, steps = 0.01, 10
    forcing = np.random.default_rng(2).normal(size=steps) * 5.0
    x0, y0 = lorenz96.initial_state(system)
    xs, ys = lorenz96.integrate(system, (x0, y0), jnp.asarray(forcing), dt, rtol=1e-11, atol=1e-12)
    state = np.concatenate([np.asarray(x0), np.ravel(y0)])
    expected = scipy_reference(system, state, forcing, dt, "DOP853")
    np.testing.assert_allclose(xs, expected[:, :8], rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.reshape(ys, (steps, -1)), expected[:, 8:], rtol=1e-6, atol=1e-6)
