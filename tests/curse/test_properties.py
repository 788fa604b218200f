"""Property-based bad-input tests of the curse losses, models and sampled paths: every drawn
input either gives a finite result or raises `ValueError`/`TypeError` naming the argument."""

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given, settings

import curse
from tests.memdyn.test_properties import SPECIAL, outcome
from tests.memdyn.test_properties import arrays as any_arrays

pytestmark = pytest.mark.usefixtures("float64")

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
TARGET = curse.ExponentialSum([1.0, 0.5], [1.0, 2.0])
# Finite values so large that the closed forms overflow to inf (|a| ≳ 1e154 squares past 1e308)
# are not checked by the losses (an output check would run at every training step): left out.
MODERATE = tuple(v for v in SPECIAL if not 1e10 < abs(v) < float("inf"))


def arrays(shapes):
    return any_arrays(shapes, special=MODERATE)


@SETTINGS
@given(a=arrays([(2,), (3,), (2, 1)]), w=arrays([(2,), (3,)]))
def test_white_noise_loss_and_gradient_are_finite_or_named_errors(a, w):
    outcome(lambda: curse.white_noise_loss(a, w, TARGET), "a", "w")
    outcome(lambda: curse.white_noise_grad(a, w, TARGET), "a", "w")


@SETTINGS
@given(W=arrays([(2, 2), (2, 3), (2,)]), u=arrays([(2,), (3,)]))
def test_lyapunov_loss_is_finite_or_named_errors(W, u):
    c = jnp.ones(2)
    outcome(lambda: curse.lyapunov_loss(W, u, c, TARGET), "W", "u", "c")
    if W.shape == (2, 2) and u.shape == (2,) and W.dtype.kind == "f" and W.itemsize >= 4:
        outcome(lambda: curse.lyapunov_gramian(W - 10 * jnp.eye(2), u), "W", "u")


@SETTINGS
@given(xs=arrays([(4, 1), (4,), (4, 2)]))
def test_continuous_rnn_outputs_are_finite_or_named_errors(xs):
    model = curse.ContinuousRNN(2, key=jax.random.key(0))
    for method in (curse.Euler(), curse.ZeroOrderHold()):
        outcome(lambda m=method: model(xs, 0.1, method=m), "xs")


@SETTINGS
@given(xs=arrays([(2, 4, 1), (4, 1)]), ys=arrays([(2, 4), (2, 3)]))
def test_path_mse_is_finite_or_named_errors(xs, ys):
    model = curse.ContinuousRNN(2, key=jax.random.key(0))
    outcome(lambda: curse.path_mse(model, xs, ys, 0.1), "xs", "ys", "burn_in")


@SETTINGS
@given(weights=arrays([(4,), (3,)]), xs=arrays([(4,), (4, 1)]))
def test_causal_convolution_is_finite_or_named_errors(weights, xs):
    outcome(lambda: curse.causal_convolution(weights, xs), "weights", "xs")


def test_model_refuses_bad_rates_and_dt_under_jit_too():
    with pytest.raises(ValueError, match="rates must be > 0"):
        curse.ContinuousRNN(2, rates=[1.0, -1.0], key=jax.random.key(0))
    with pytest.raises(TypeError, match="readout must be real"):
        curse.ContinuousRNN(2, readout=[1j, 1.0], key=jax.random.key(0))
    model = curse.ContinuousRNN(2, key=jax.random.key(0))
    with pytest.raises(Exception, match="xs contains non-finite"):
        jax.jit(lambda xs: model(xs, 0.1))(jnp.ones((4, 1)).at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="dt must be > 0"):
        model(jnp.ones((4, 1)), -0.1)
