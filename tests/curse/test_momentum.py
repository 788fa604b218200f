"""App. E escape times: flows against closed forms, Optax steps against the recursion, exponents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curse._momentum import discrete_escape_steps, escape_exponent, flow_escape_time
from curse.experiments.momentum import MomentumConfig
from curse.experiments.momentum import run as run_momentum

CURVATURES = tuple(np.geomspace(1e-4, 1e-2, 4).tolist())  # float64 once x64 is on
X0, X_ESCAPE = 1e-3, 1.0


def test_flow_escape_times_match_closed_forms():
    gf = jax.vmap(lambda lam: flow_escape_time(lam, heavy_ball=False))(jnp.asarray(CURVATURES))
    hb = jax.vmap(lambda lam: flow_escape_time(lam, heavy_ball=True))(jnp.asarray(CURVATURES))
    lam = np.asarray(jnp.asarray(CURVATURES))
    np.testing.assert_allclose(np.asarray(gf), np.log(X_ESCAPE / X0) / lam, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(hb), np.arccosh(X_ESCAPE / X0) / np.sqrt(lam), rtol=1e-6)
    assert abs(escape_exponent(CURVATURES, gf)[0] + 1.0) <= 0.1
    assert abs(escape_exponent(CURVATURES, hb)[0] + 0.5) <= 0.1


def _steps_by_recursion(lam, lr, beta):
    """Plain NumPy heavy ball x_{n+1} = x_n + ηλ x_n + β (x_n − x_{n−1}) on the flat coordinate."""
    previous = x = X0
    n = 0
    while abs(x) < X_ESCAPE:
        previous, x = x, x + lr * lam * x + beta * (x - previous)
        n += 1
    return n - 1 + (np.log(X_ESCAPE) - np.log(previous)) / (np.log(x) - np.log(previous))


def test_discrete_escape_steps_and_exponents():
    lams = jnp.asarray(CURVATURES)
    gd = jax.vmap(lambda lam: discrete_escape_steps(lam, learning_rate=1.0, momentum=None))(lams)
    heavy = jax.vmap(lambda lam: discrete_escape_steps(lam, learning_rate=1.0, momentum=0.999))(
        lams
    )
    for lam, g, h in zip(np.asarray(lams), np.asarray(gd), np.asarray(heavy), strict=True):
        np.testing.assert_allclose(g, _steps_by_recursion(lam, 1.0, 0.0), rtol=1e-9)
        np.testing.assert_allclose(h, _steps_by_recursion(lam, 1.0, 0.999), rtol=1e-9)
    assert abs(escape_exponent(CURVATURES, gd)[0] + 1.0) <= 0.1
    assert abs(escape_exponent(CURVATURES, heavy)[0] + 0.5) <= 0.1


def test_momentum_experiment_smoke():
    config = MomentumConfig(
        flow_curvatures=CURVATURES, discrete_curvatures=CURVATURES,
        omegas=(1 / 3, 1 / 4), plateau_steps=2000,
    )  # fmt: skip
    result = run_momentum(config)
    assert abs(result["exponents"]["heavy_ball_flow"] + 0.5) <= 0.1
    # Momentum shortens the eq. 125 plateau (App. E, Fig. 4's Adam case).
    assert np.all(result["plateau_speedup"] > 1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"flow_curvatures": (1e-3,)}, "flow_curvatures"),
        ({"discrete_curvatures": (1e-3, -1.0)}, "discrete_curvatures"),
        ({"x0": 2.0}, "x_escape"),
        ({"discrete_momentum": 1.0}, "discrete_momentum"),
        ({"friction": -1.0}, "friction"),
        ({"plateau_steps": 15}, "plateau_steps"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MomentumConfig(**kwargs)
