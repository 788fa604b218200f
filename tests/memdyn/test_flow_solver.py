"""`gradient_flow(solver=None)` chooses its solver from a stiffness estimate at θ(0): explicit
Tsit5 on a user's small non-stiff model, implicit Kvaerno3 on a stiff flow and inside `jit`.
Both choices are checked against independent references (SciPy's `solve_ivp`, `expm`)."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from jax.tree_util import Partial

import memdyn
from memdyn._flow import STIFFNESS_PER_PARAMETER, choose_solver

pytestmark = pytest.mark.usefixtures("float64")


class LinearRecurrence(eqx.Module):
    """A user's diagonal linear RNN (LRU-like: complex decays as real and imaginary parts) read
    out by `c`; its impulse response is Re Σ_n c_n b_n λ_n^k."""

    log_decay: jax.Array
    frequency: jax.Array
    b: jax.Array
    c: jax.Array

    def __init__(self, hidden, *, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.log_decay = jnp.log(jax.random.uniform(k1, (hidden,), minval=0.1, maxval=0.7))
        self.frequency = jax.random.uniform(k2, (hidden,), minval=0.0, maxval=0.8)
        self.b = jax.random.normal(k3, (2, hidden)) / np.sqrt(2 * hidden)
        self.c = jax.random.normal(k4, (2, hidden)) / np.sqrt(hidden)

    def kernel(self, length):
        decay = jnp.exp(-jnp.exp(self.log_decay) + 1j * self.frequency)
        weights = (self.c[0] + 1j * self.c[1]) * (self.b[0] + 1j * self.b[1])
        return jnp.real(decay[None, :] ** jnp.arange(length)[:, None] @ weights)


def fit_loss(model, target):
    return jnp.mean((model.kernel(target.shape[0]) - target) ** 2)


def problem():
    model = LinearRecurrence(6, key=jax.random.key(0))  # 24 parameters
    lags = jnp.arange(16)
    target = jnp.exp(-lags / 4.0) * jnp.cos(lags / 2.0)
    return model, Partial(fit_loss, target=target)


def quadratic(x, curvature):
    return 0.5 * x @ curvature @ x


# Eigenvalues 1e3, 1, 1e-3: the fast direction caps an explicit step, the slow one sets T.
STIFF = np.diag([1e3, 1.0, 1e-3])


def test_non_stiff_model_gets_tsit5_and_matches_scipy():
    model, loss = problem()
    taus = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-2, 20.0, 15)])
    assert isinstance(choose_solver(loss, model, taus), diffrax.Tsit5)
    flow = memdyn.gradient_flow(loss, model, taus)
    explicit = memdyn.gradient_flow(loss, model, taus, solver=diffrax.Tsit5())
    np.testing.assert_array_equal(flow.losses, explicit.losses)

    start, rebuild = memdyn.parameter_vector(model)
    gradient = jax.jit(lambda v: memdyn.parameter_vector(jax.grad(loss)(rebuild(v)))[0])
    reference = scipy.integrate.solve_ivp(
        lambda tau, v: -np.asarray(gradient(v)), (0.0, float(taus[-1])), np.asarray(start),
        method="DOP853", t_eval=np.asarray(taus), rtol=1e-12, atol=1e-14,
    )  # fmt: skip
    actual = np.stack([memdyn.parameter_vector(flow.model_at(i))[0] for i in range(taus.size)])
    np.testing.assert_allclose(actual, reference.y.T, rtol=1e-6, atol=1e-7)
    assert float(flow.losses[-1]) < 0.5 * float(flow.losses[0])  # the flow did move


def test_stiff_flow_gets_kvaerno3_and_matches_expm():
    taus = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 13)])
    loss = Partial(quadratic, curvature=jnp.asarray(STIFF))
    x0 = jnp.array([1.0, -2.0, 3.0])
    assert 1e3 * taus[-1] > STIFFNESS_PER_PARAMETER * x0.size
    assert isinstance(choose_solver(loss, x0, taus), diffrax.Kvaerno3)
    flow = memdyn.gradient_flow(loss, x0, taus)
    exact = np.stack([scipy.linalg.expm(-STIFF * tau) @ np.asarray(x0) for tau in taus])
    np.testing.assert_allclose(flow.thetas, exact, rtol=1e-6, atol=1e-8)
    # the same problem to a short horizon is not stiff
    assert isinstance(choose_solver(loss, x0, taus[:4]), diffrax.Tsit5)


def test_inside_jit_and_vmap_the_choice_is_kvaerno3():
    model, loss = problem()
    taus = jnp.geomspace(1e-2, 1.0, 5)
    chosen = []
    jax.jit(lambda m: chosen.append(choose_solver(loss, m, taus)) or 0.0)(model)
    jax.vmap(lambda t: chosen.append(choose_solver(loss, model, t)) or 0.0)(jnp.stack([taus] * 2))
    target = jnp.ones(16)  # traced loss data behind a closure
    jax.jit(lambda y: chosen.append(choose_solver(lambda m: fit_loss(m, y), model, taus)) or y)(
        target
    )
    assert [type(solver) for solver in chosen] == [diffrax.Kvaerno3] * 3


def test_automatic_choice_does_not_retrace_for_new_data():
    model, _ = problem()
    taus = jnp.geomspace(1e-2, 5.0, 6)
    traces = []

    def counted_loss(model, target):
        traces.append(1)
        return fit_loss(model, target)

    for scale in (1.0, 0.5):
        loss = Partial(counted_loss, target=scale * jnp.exp(-jnp.arange(16) / 4.0))
        memdyn.gradient_flow(loss, model, taus)
        if scale == 1.0:
            first = len(traces)
    assert first > 0 and len(traces) == first


def test_bad_taus_are_refused_before_the_estimate():
    model, loss = problem()
    with pytest.raises(ValueError, match="1-d"):
        memdyn.gradient_flow(loss, model, [[0.0, 1.0]])
    bad = eqx.tree_at(lambda m: m.b, model, model.b.at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="model parameters contains 1 non-finite"):
        memdyn.gradient_flow(loss, bad, [0.0, 1.0])  # now, before anything compiles
