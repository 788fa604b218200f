"""Continuous-time RNN against independent references: scipy expm stepping, Diffrax, Euler order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from curse._models import ContinuousRNN, Euler, ZeroOrderHold, jump_times, piecewise_constant
from curse._parameterisation import NAMES, from_rates, to_rates

KEY = jax.random.PRNGKey(0)


def make(structure, activation="linear", m=4, d=2):
    return ContinuousRNN(m, d, structure=structure, activation=activation, key=KEY)


def expm_stepping(W, U, c, xs, dt):
    """Reference ZOH: h_{k+1} = expm(WΔ) h_k + W⁻¹(expm(WΔ) − I) U x_k with scipy."""
    A = scipy.linalg.expm(W * dt)
    B = np.linalg.solve(W, (A - np.eye(len(W))) @ U)
    h = np.zeros(len(W))
    out = []
    for x in xs:
        h = A @ h + B @ x
        out.append(c @ h)
    return np.asarray(out)


@pytest.fixture(scope="module")
def inputs():
    return np.random.default_rng(1).normal(size=(48, 2))


@pytest.mark.parametrize("structure", ["diagonal", "full"])
def test_zoh_equals_scipy_expm_stepping(structure, inputs):
    model = make(structure)
    W = np.asarray(model.matrix())
    expected = expm_stepping(
        W, np.asarray(model.input_weights), np.asarray(model.readout), inputs, 0.1
    )
    np.testing.assert_allclose(
        model(jnp.asarray(inputs), 0.1, method=ZeroOrderHold()), expected, rtol=1e-11, atol=1e-13
    )


@pytest.mark.parametrize("structure", ["diagonal", "full"])
def test_zoh_matches_diffrax_on_piecewise_input_and_converges_on_smooth_input(structure, inputs):
    model = make(structure)
    dt = 1 / 16  # binary grid: jump times are exact floats
    xs = jnp.asarray(inputs)
    ts = dt * jnp.arange(1, len(xs) + 1)
    solved = model.solve(ts, piecewise_constant(xs, dt), jump_ts=jump_times(len(xs), dt))
    np.testing.assert_allclose(model(xs, dt, method=ZeroOrderHold()), solved, rtol=1e-8, atol=1e-10)

    # Smooth input x(t) = (sin 3t, cos t): ZOH with x_k = x(kΔ + Δ/2) converges to the solution.
    path = lambda t: jnp.stack([jnp.sin(3 * t), jnp.cos(t)])
    reference = model.solve(jnp.asarray([3.0]), path)[-1]
    errors = []
    for steps in (30, 60, 120):
        h = 3.0 / steps
        midpoints = h * (jnp.arange(steps) + 0.5)
        errors.append(
            abs(float(model(jax.vmap(path)(midpoints), h, method=ZeroOrderHold())[-1] - reference))
        )
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 1e-4


@pytest.mark.parametrize(("structure", "activation"), [("diagonal", "linear"), ("full", "tanh")])
def test_euler_converges_at_order_one(structure, activation):
    model = make(structure, activation)
    coarse = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (8, 2), jnp.float64))
    T = 2.0
    reference = model.solve(
        jnp.asarray([T]),
        piecewise_constant(jnp.asarray(coarse), T / 8),
        jump_ts=jump_times(8, T / 8),
    )[-1]
    errors = []
    for refine in (8, 16, 32, 64):
        xs = jnp.asarray(np.repeat(coarse, refine, axis=0))
        errors.append(abs(float(model(xs, T / (8 * refine), method=Euler())[-1] - reference)))
    ratios = np.asarray(errors[:-1]) / np.asarray(errors[1:])
    np.testing.assert_allclose(ratios, 2.0, rtol=0.1)


@pytest.mark.parametrize("structure", ["diagonal", "full"])
def test_kernel_equals_scipy_expm(structure):
    model = make(structure)
    t = np.asarray([0.0, 0.3, 1.7, 5.0])
    W, U, c = (np.asarray(a) for a in (model.matrix(), model.input_weights, model.readout))
    expected = np.stack([c @ scipy.linalg.expm(W * s) @ U for s in t])
    np.testing.assert_allclose(model.kernel(t), expected, rtol=1e-12, atol=1e-14)


def test_parameterisations_against_formulas_and_inverse():
    v = np.asarray([-2.0, -0.3, 0.4, 3.0])
    expected = {
        "exp": np.exp(v),
        "softplus": np.log1p(np.exp(v)),
        "inverse_square": 1.0 / (v**2 + 0.01),
    }
    for name, rates in expected.items():
        np.testing.assert_allclose(to_rates(name, v), rates, rtol=1e-13)
    w = np.asarray([1e-3, 0.5, 2.0, 40.0])
    for name in NAMES:
        np.testing.assert_allclose(to_rates(name, from_rates(name, w)), w, rtol=1e-12)
    model = ContinuousRNN(4, rates=w, parameterisation="softplus", key=KEY)
    np.testing.assert_allclose(model.rates(), w, rtol=1e-12)


def test_bad_input_raises_value_error():
    model = make("diagonal")
    with pytest.raises(ValueError, match="parameterisation"):
        to_rates("sigmoid", np.ones(2))
    with pytest.raises(ValueError, match="direct"):
        to_rates("direct", np.asarray([1.0, -1.0]))
    with pytest.raises(ValueError, match="w < 1/c"):
        from_rates("inverse_square", np.asarray([200.0]))
    with pytest.raises(ValueError, match="structure"):
        ContinuousRNN(3, structure="banded", key=KEY)
    with pytest.raises(ValueError, match="activation"):
        ContinuousRNN(3, activation="relu", key=KEY)
    with pytest.raises(ValueError, match="rates"):
        ContinuousRNN(3, rates=np.asarray([1.0, np.nan, 1.0]), key=KEY)
    with pytest.raises(ValueError, match="recurrent"):
        ContinuousRNN(3, structure="full", recurrent=np.ones((3, 2)), key=KEY)
    with pytest.raises(ValueError, match="xs"):
        model(jnp.ones((5, 3)), 0.1)
    with pytest.raises(ValueError, match="xs"):
        model(jnp.full((5, 2), jnp.nan), 0.1)
    with pytest.raises(ValueError, match="dt"):
        model(jnp.ones((5, 2)), -0.1)
    for name in ("rk4", "zoh", "euler"):
        with pytest.raises(TypeError, match="method must be an AbstractDiscretisation"):
            model(jnp.ones((5, 2)), 0.1, method=name)
    with pytest.raises(ValueError, match="linear"):
        make("full", "tanh")(jnp.ones((5, 2)), 0.1, method=ZeroOrderHold())
