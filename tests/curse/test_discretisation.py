"""The strategy objects that step `ContinuousRNN` (`method`: `Euler()`, `ZeroOrderHold()`) and
evaluate its linear recurrence (`scan`: `SequentialScan()`, `AssociativeScan()`) against NumPy
recurrences written from the equations, and names in their place rejected with a `TypeError`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import curse
from curse import AssociativeScan, ContinuousRNN, Euler, SequentialScan, ZeroOrderHold

DT = 0.1
RATES = np.asarray([0.05, 0.7, 3.0])
SCANS = (SequentialScan(), AssociativeScan())
# Eager, the associative scan dispatches each of its levels' operations: compiled it is faster.
outputs = eqx.filter_jit(lambda model, xs, method, scan: model(xs, DT, method=method, scan=scan))


def _model(activation="linear"):
    return ContinuousRNN(3, 2, activation=activation, rates=RATES, key=jax.random.PRNGKey(0))


def _inputs(steps=25):
    return np.random.default_rng(0).normal(size=(steps, 2))


def _zoh_step(h, u):
    decay = np.exp(-DT * RATES)
    return decay * h + (1 - decay) / RATES * u


def _euler_step(h, u):
    return h + DT * (-RATES * h + u)


def _numpy_outputs(model, xs, step):
    """ŷ_k = cᵀ h_{k+1} from h_0 = 0, `h = step(h, U x_k)` one step at a time."""
    U, c = np.asarray(model.input_weights), np.asarray(model.readout)
    h, outputs = np.zeros(len(c)), []
    for x in xs:
        h = step(h, U @ x)
        outputs.append(c @ h)
    return np.asarray(outputs)


@pytest.mark.parametrize("scan", SCANS, ids=type)
def test_zero_order_hold_is_the_closed_form_decay_recurrence(scan):
    """Exact ZOH for h' = −w ⊙ h + U x: h_{k+1} = e^{−wΔ} h_k + (1 − e^{−wΔ})/w ⊙ U x_k."""
    model, xs = _model(), _inputs()
    expected = _numpy_outputs(model, xs, _zoh_step)
    actual = outputs(model, jnp.asarray(xs), ZeroOrderHold(), scan)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("scan", SCANS, ids=type)
def test_euler_is_the_residual_recurrence_and_the_default(scan):
    model, xs = _model(), _inputs()
    expected = _numpy_outputs(model, xs, _euler_step)
    actual = outputs(model, jnp.asarray(xs), Euler(), scan)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-14)
    # The defaults are Euler() and SequentialScan(), bit for bit.
    default = model(jnp.asarray(xs), DT)
    np.testing.assert_array_equal(default, model(jnp.asarray(xs), DT, method=Euler()))


def test_euler_steps_a_tanh_model():
    model, xs = _model("tanh"), _inputs()
    expected = _numpy_outputs(model, xs, lambda h, u: h + DT * np.tanh(-RATES * h + u))
    np.testing.assert_allclose(model(jnp.asarray(xs), DT), expected, rtol=1e-12, atol=1e-14)


def test_sampled_loss_takes_the_strategy_and_compiles_once_per_kind():
    """`SampledLoss` holds `method` as a static field: equal strategies (two `Euler()`s) reuse one
    compiled program, and the loss is the mean squared error of the NumPy recurrences' outputs
    after the burn-in."""
    model = _model()
    xs = np.random.default_rng(1).normal(size=(2, 20, 2))
    ys = np.random.default_rng(2).normal(size=(2, 20))
    traces = []

    @eqx.filter_jit
    def value(loss, model):
        traces.append(None)
        return loss(model)

    for method, step in ((ZeroOrderHold(), _zoh_step), (Euler(), _euler_step)):
        paths = np.stack([_numpy_outputs(model, x, step) for x in xs])
        expected = np.mean((paths[:, 5:] - ys[:, 5:]) ** 2)
        loss = curse.SampledLoss(jnp.asarray(xs), jnp.asarray(ys), DT, method, 5)
        np.testing.assert_allclose(value(loss, model), expected, rtol=1e-12)
    value(curse.SampledLoss(jnp.asarray(xs + 1.0), jnp.asarray(ys), DT, Euler(), 5), model)
    assert len(traces) == 2


def test_names_raise_type_errors_naming_the_argument():
    model, xs = _model(), jnp.asarray(_inputs(5))
    for name in ("zoh", "euler"):
        with pytest.raises(TypeError, match=r"method must be an AbstractDiscretisation.*Euler\(\)"):
            model(xs, DT, method=name)
        with pytest.raises(TypeError, match="method must be an AbstractDiscretisation"):
            curse.path_mse(model, xs[None], jnp.ones((1, 5)), DT, method=name)
    for name in ("sequential", "associative"):
        with pytest.raises(TypeError, match=r"scan must be an AbstractScan.*AssociativeScan\(\)"):
            model(xs, DT, scan=name)
    with pytest.raises(TypeError, match="Can't instantiate abstract class"):
        curse.AbstractDiscretisation()
