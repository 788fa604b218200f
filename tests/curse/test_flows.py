"""Gradient flow against exact solutions and SciPy's stiff integrator."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from jax.tree_util import Partial

from curse._losses import white_noise_grad, white_noise_loss
from curse._memory_flow import FLOW_SOLVER, MemoryFlowConfig, log_save_times
from curse._targets import memory_target
from memdyn import choose_solver, gradient_flow

# Positive definite, eigenvalues ≈ 2.2, 0.80, 0.0085: a slow direction like a plateau's.
CURVATURE = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.1], [0.0, 0.1, 0.02]])


def quadratic(theta, curvature):
    x = jnp.concatenate([theta["x"], theta["y"]])
    return 0.5 * x @ curvature @ x


def memory_objective(theta, target):
    return white_noise_loss(theta[0], theta[1], target)


def test_quadratic_flow_is_exact_exponential_decay():
    theta0 = {"x": jnp.array([1.0, -2.0]), "y": jnp.array([3.0])}
    taus = np.concatenate([[0.0], np.geomspace(1e-2, 1e4, 25)])
    trajectory = gradient_flow(Partial(quadratic, curvature=jnp.asarray(CURVATURE)), theta0, taus)
    x0 = np.array([1.0, -2.0, 3.0])
    exact = np.stack([scipy.linalg.expm(-CURVATURE * tau) @ x0 for tau in taus])
    actual = np.concatenate([trajectory.thetas["x"], trajectory.thetas["y"]], axis=1)
    np.testing.assert_allclose(actual, exact, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(
        trajectory.losses, [0.5 * x @ CURVATURE @ x for x in exact], rtol=1e-6, atol=1e-12
    )
    np.testing.assert_array_equal(trajectory.times, taus)


@pytest.mark.parametrize("solver", [diffrax.Tsit5(), diffrax.Kvaerno3()], ids=type)
def test_memory_target_flow_matches_scipy_radau(solver):
    target = memory_target(0.3)
    theta0 = (jnp.array([1.0, 0.5, 0.0]), jnp.array([1.0, 2.0, 1.0]))
    taus = np.concatenate([[0.0], np.geomspace(1e-2, 300.0, 12)])
    loss = Partial(memory_objective, target=target)
    trajectory = gradient_flow(loss, theta0, taus, solver=solver)

    gradient = jax.jit(lambda y: jnp.concatenate(white_noise_grad(y[:3], y[3:], target)))
    field = lambda tau, y: -np.asarray(gradient(y))

    reference = scipy.integrate.solve_ivp(
        field, (0, taus[-1]), np.concatenate(theta0), method="Radau", t_eval=taus,
        rtol=1e-10, atol=1e-12,
    )  # fmt: skip
    actual = np.concatenate(trajectory.thetas, axis=1)
    np.testing.assert_allclose(actual, reference.y.T, rtol=1e-5, atol=1e-6)


def test_eq125_is_stiff_at_the_figures_horizons_and_solved_implicitly():
    """`gradient_flow(solver=None)` picks Kvaerno3 on eq. 125 to the quick figures' τ = 1e4 (where
    Tsit5 does not finish in 1e6 steps) and Tsit5 to τ = 10; the figures' sweeps name Kvaerno3
    themselves (`FLOW_SOLVER`), since the estimate cannot choose inside their `vmap`."""
    config = MemoryFlowConfig().quick()
    loss = Partial(memory_objective, target=memory_target(0.25))
    theta0 = config.start()
    assert isinstance(choose_solver(loss, theta0, config.save_times()), diffrax.Kvaerno3)
    assert isinstance(choose_solver(loss, theta0, log_save_times(1e-3, 10.0, 20)), diffrax.Tsit5)
    assert isinstance(FLOW_SOLVER, diffrax.Kvaerno3)


@pytest.mark.parametrize(
    ("taus", "theta0", "message"),
    [
        ([0.0, 2.0, 1.0], jnp.ones(2), "non-decreasing"),
        ([-1.0, 1.0], jnp.ones(2), "taus"),
        ([[0.0, 1.0]], jnp.ones(2), "1-d"),
        ([0.0, 1.0], jnp.array([1.0, jnp.nan]), "model parameters contains 1 non-finite"),
    ],
)
def test_bad_input_raises_a_clear_error(taus, theta0, message):
    """Structural errors raise ValueError at trace time; value errors an EquinoxRuntimeError
    (a RuntimeError) from `eqx.error_if`, which also fires under `jit` and `vmap`."""
    loss = lambda theta: jnp.sum(theta**2)
    with pytest.raises((ValueError, RuntimeError), match=message):
        gradient_flow(loss, theta0, taus)
