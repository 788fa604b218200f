"""Sampled-path loss: cell integrals vs quad, convolution vs a direct sum, and convergence of the
Monte-Carlo loss to the Itô-isometry loss J (eq. 18) as the number of paths grows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

from curse._losses import white_noise_loss
from curse._models import ContinuousRNN, ZeroOrderHold
from curse._sampled import (
    causal_convolution,
    cell_integrals,
    make_sampled_loss,
    path_mse,
    white_noise_paths,
)
from curse._targets import ExponentialSum, GaussianBump, TargetSum

DT = 0.05
STEPS = 400
BURN_IN = 300


def test_cell_integrals_equal_quad():
    target = TargetSum((ExponentialSum([1.0, -0.5], [1.0, 3.0]), GaussianBump(0.7, 2.0, 0.5)))
    weights = np.asarray(cell_integrals(target.kernel, 80, DT))
    kernel = lambda t: float(target.kernel(t))
    expected = [
        scipy.integrate.quad(kernel, j * DT, (j + 1) * DT, epsabs=0, epsrel=1e-13)[0]
        for j in range(80)
    ]
    np.testing.assert_allclose(weights, expected, rtol=1e-12, atol=1e-15)


def test_causal_convolution_equals_direct_sum():
    rng = np.random.default_rng(0)
    g, x = rng.normal(size=50), rng.normal(size=50)
    expected = [sum(g[j] * x[k - j] for j in range(k + 1)) for k in range(50)]
    np.testing.assert_allclose(
        causal_convolution(jnp.asarray(g), jnp.asarray(x)), expected, atol=1e-12
    )


def test_white_noise_increments_have_variance_dt():
    xs = white_noise_paths(jax.random.PRNGKey(3), 200, 500, DT)
    assert xs.shape == (200, 500, 1)
    # 1e5 samples of x·Δ ~ N(0, Δ): the sample variance is within 2 % (≈ 4.5 standard errors).
    np.testing.assert_allclose(np.var(np.asarray(xs) * DT), DT, rtol=0.02)


@pytest.fixture
def model_and_target():
    target = ExponentialSum([1.0, -0.5], [1.0, 3.0])
    model = ContinuousRNN(
        3,
        rates=np.asarray([0.5, 1.5, 2.5]),
        input_weights=np.ones((3, 1)),
        readout=np.asarray([0.3, 0.2, -0.4]),
        key=jax.random.PRNGKey(0),
    )
    return model, target


def test_sampled_loss_converges_to_ito_loss(model_and_target):
    """Per-path losses are i.i.d. with mean J + O(Δ²) (ZOH model, exact convolution targets).

    Tolerance: |mean − J| ≤ 4 standard errors + 0.5 % of J (the Δ-discretisation bias, measured
    at ~0.1 %); the standard error must shrink like 1/√N (ratio 4 ± 25 % for 16× the paths)."""
    model, target = model_and_target
    with jax.enable_x64(True):
        ito = float(
            white_noise_loss(model.readout * model.input_weights[:, 0], model.rates(), target)
        )
    per_path = jax.jit(
        jax.vmap(
            lambda x, y: path_mse(
                model, x[None], y[None], DT, method=ZeroOrderHold(), burn_in=BURN_IN
            )
        )
    )
    errors, standard_errors = [], []
    for paths in (64, 1024):
        loss = make_sampled_loss(
            target.kernel, key=jax.random.PRNGKey(paths), num_paths=paths, num_steps=STEPS,
            dt=DT, method=ZeroOrderHold(), burn_in=BURN_IN,
        )  # fmt: skip
        values = np.asarray(per_path(loss.xs, loss.ys))
        np.testing.assert_allclose(values.mean(), float(loss(model)), rtol=1e-10)
        standard_errors.append(values.std(ddof=1) / np.sqrt(paths))
        errors.append(abs(values.mean() - ito))
        assert errors[-1] <= 4 * standard_errors[-1] + 0.005 * ito
    assert 3.0 < standard_errors[0] / standard_errors[1] < 5.0


def test_fresh_loss_draws_new_paths(model_and_target):
    model, target = model_and_target
    loss = make_sampled_loss(target.kernel, key=None, num_paths=4, num_steps=100, dt=DT)
    first = float(loss(model, jax.random.PRNGKey(0)))
    assert first == pytest.approx(float(loss(model, jax.random.PRNGKey(0))))
    assert first != pytest.approx(float(loss(model, jax.random.PRNGKey(1))))


def test_bad_input_raises_named_errors(model_and_target):
    model, target = model_and_target
    kwargs = dict(key=None, num_paths=4, num_steps=100, dt=DT)
    for name in ("rk4", "zoh"):
        with pytest.raises(TypeError, match="method must be an AbstractDiscretisation"):
            make_sampled_loss(target.kernel, method=name, **kwargs)
        with pytest.raises(TypeError, match="method must be an AbstractDiscretisation"):
            path_mse(model, jnp.ones((2, 5, 1)), jnp.ones((2, 5)), DT, method=name)
    with pytest.raises(ValueError, match="burn_in"):
        make_sampled_loss(target.kernel, burn_in=100, **kwargs)
    with pytest.raises(ValueError, match="num_paths"):
        make_sampled_loss(target.kernel, **{**kwargs, "num_paths": 0})
    with pytest.raises(ValueError, match="dt"):
        make_sampled_loss(target.kernel, **{**kwargs, "dt": 0.0})
    with pytest.raises(ValueError, match="kernel"):
        make_sampled_loss(lambda t: jnp.nan * t, **kwargs)
