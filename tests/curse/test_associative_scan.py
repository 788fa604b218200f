"""`scan=AssociativeScan()` (S5's parallel scan) against the sequential scan and a NumPy loop, for
the diagonal linear continuous-time RNN stepped by exact ZOH and by Euler."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curse._models import ContinuousRNN, Euler, ZeroOrderHold
from curse._scans import AssociativeScan, SequentialScan

DT = 0.1
# Rates from very slow (memory ~ 10⁴ steps, so long sequences keep every step in play) to fast;
# Euler's decay 1 − Δw stays in (0, 1).
RATES = np.geomspace(1e-3, 5.0, 8)
METHODS = (ZeroOrderHold(), Euler())


@pytest.fixture(scope="module")
def model():
    with jax.enable_x64(True):
        return ContinuousRNN(8, 2, rates=RATES, key=jax.random.PRNGKey(0))


def sequence(steps, seed=1, batch=()):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(*batch, steps, 2)))


def numpy_outputs(model, xs, dt, method):
    """ŷ_k = cᵀ h_{k+1}, one step at a time in NumPy from the rates w, U and c."""
    w, U, c = (np.asarray(a) for a in (model.rates(), model.input_weights, model.readout))
    h, outputs = np.zeros_like(w), []
    for x in np.asarray(xs):
        if isinstance(method, ZeroOrderHold):
            h = np.exp(-w * dt) * h + (-np.expm1(-w * dt) / w) * (U @ x)
        else:
            h = h + dt * (-w * h + U @ x)
        outputs.append(c @ h)
    return np.asarray(outputs)


def outputs(model, xs, method, scan):
    return model(xs, DT, method=method, scan=scan)


compiled = eqx.filter_jit(outputs)


def assert_close(actual, expected, rtol):
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def numpy_loss(model, xs, method):
    return float(np.mean(np.sin(numpy_outputs(model, xs, DT, method)) ** 2))


def loss(model, xs, method, scan):
    return jnp.mean(jnp.sin(model(xs, DT, method=method, scan=scan)) ** 2)


# Every compiled program of the associative scan costs seconds of XLA time on a CPU (its backward
# pass most, and more levels for longer T): the long-sequence equality runs at T = 12_345 (odd);
# jit, vmap and gradients, which do not depend on the length, at T = 2_000.
@pytest.mark.parametrize("method", METHODS)
def test_associative_equals_sequential_and_numpy_loop(model, method):
    xs = sequence(12_345)
    sequential = compiled(model, xs, method, SequentialScan())
    associative = compiled(model, xs, method, AssociativeScan())
    assert sequential.shape == associative.shape == (12_345,)
    # The slowest mode remembers the whole sequence: outputs reach well above their early size.
    assert np.max(np.abs(sequential[-1000:])) > 3 * np.max(np.abs(sequential[:10]))
    assert_close(associative, sequential, 1e-11)
    expected = numpy_outputs(model, xs, DT, method)
    assert_close(sequential, expected, 1e-11)
    assert_close(associative, expected, 1e-11)


@pytest.mark.parametrize("method", METHODS)
def test_under_jit_and_vmap(model, method):
    xs = sequence(2_000, seed=3, batch=(3,))
    batched = eqx.filter_jit(
        lambda model, xs, scan: jax.vmap(lambda x: model(x, DT, method=method, scan=scan))(xs)
    )
    associative = batched(model, xs, AssociativeScan())
    assert associative.shape == (3, 2_000)
    assert_close(associative, batched(model, xs, SequentialScan()), 1e-11)
    for row in (0, 2):
        assert_close(associative[row], numpy_outputs(model, xs[row], DT, method), 1e-11)


# Both methods differentiate the same `linear_recurrence`; Euler's compile (~10 s) runs in slow.
@pytest.mark.parametrize("method", [ZeroOrderHold(), pytest.param(Euler(), marks=pytest.mark.slow)])
def test_gradients_equal_and_match_finite_difference(model, method):
    xs = sequence(2_000, seed=2)
    gradient = eqx.filter_jit(eqx.filter_grad(loss))
    sequential = gradient(model, xs, method, SequentialScan())
    associative = gradient(model, xs, method, AssociativeScan())
    for name in ("recurrent", "input_weights", "readout"):
        expected = np.asarray(getattr(sequential, name))
        assert np.all(np.isfinite(expected)) and np.max(np.abs(expected)) > 1e-6
        assert_close(getattr(associative, name), expected, 1e-10)

    # Central difference of the NumPy loss in the log-rate v₀ of the slowest unit (w = e^v).
    step, index = 1e-5, 0

    def shifted(sign):
        recurrent = model.recurrent.at[index].add(sign * step)
        return numpy_loss(eqx.tree_at(lambda m: m.recurrent, model, recurrent), xs, method)

    finite_difference = (shifted(1) - shifted(-1)) / (2 * step)
    derivative = float(associative.recurrent[index])
    assert abs(derivative) > 1e-6
    np.testing.assert_allclose(derivative, finite_difference, rtol=1e-6)


def test_associative_scan_needs_diagonal_linear_model():
    xs = jnp.ones((5, 2))
    key = jax.random.PRNGKey(0)
    full = ContinuousRNN(3, 2, structure="full", key=key)
    diagonal_tanh = ContinuousRNN(3, 2, activation="tanh", key=key)
    for method in METHODS:
        with pytest.raises(ValueError, match=r"scan=AssociativeScan\(\).*m³"):
            full(xs, DT, method=method, scan=AssociativeScan())
        with pytest.raises(ValueError, match=r"scan=AssociativeScan\(\).*tanh"):
            diagonal_tanh(xs, DT, method=method, scan=AssociativeScan())
    with pytest.raises(ValueError, match="activation='linear' only"):
        diagonal_tanh(xs, DT, method=ZeroOrderHold())


def test_a_scan_name_raises_type_error_naming_scan():
    model = ContinuousRNN(3, 2, key=jax.random.PRNGKey(0))
    for name in ("sequential", "associative"):
        for method in METHODS:
            with pytest.raises(TypeError, match=r"scan must be an AbstractScan.*SequentialScan"):
                model(jnp.ones((5, 2)), DT, method=method, scan=name)
