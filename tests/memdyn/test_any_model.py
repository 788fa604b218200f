"""Any model goes through every public analysis: a user's GRU with an `eqx.nn.MLP` head (its
activation is a non-array leaf), an integer array, a static field and a nested module.

References are independent dense computations: `jax.hessian` of the loss as a function of the
flat vector of inexact arrays (built here by hand with `eqx.partition` and `ravel_pytree`), and
central finite differences of `jax.grad`.
"""

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import memdyn


class GRU(eqx.Module):
    """A user's GRU cell (not from memdyn) with an MLP readout."""

    weight_input: jax.Array
    weight_recurrent: jax.Array
    bias: jax.Array
    head: eqx.nn.MLP
    steps_seen: jax.Array  # an integer array: not a parameter
    hidden: int = eqx.field(static=True)

    def __init__(self, hidden, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.weight_input = 0.5 * jax.random.normal(k1, (3 * hidden, 1))
        self.weight_recurrent = 0.5 * jax.random.normal(k2, (3 * hidden, hidden))
        self.bias = jnp.zeros(3 * hidden)
        self.head = eqx.nn.MLP(hidden, 1, width_size=4, depth=1, activation=jnp.tanh, key=k3)
        self.steps_seen = jnp.array(0)
        self.hidden = hidden

    def __call__(self, xs):
        def step(h, x):
            zx = self.weight_input @ x + self.bias
            zh = self.weight_recurrent @ h
            r = jax.nn.sigmoid(zx[: self.hidden] + zh[: self.hidden])
            u = jax.nn.sigmoid(
                zx[self.hidden : 2 * self.hidden] + zh[self.hidden : 2 * self.hidden]
            )
            n = jnp.tanh(zx[2 * self.hidden :] + r * zh[2 * self.hidden :])
            h = (1 - u) * n + u * h
            return h, None

        h, _ = jax.lax.scan(step, jnp.zeros(self.hidden), xs)
        return self.head(h)[0]


pytestmark = pytest.mark.usefixtures("float64")


@functools.cache
def problem():
    """The model and its loss, the same objects in every test: memdyn's compiled programs, keyed
    on the loss function, then serve every test that runs them."""
    xs = jax.random.normal(jax.random.key(1), (8, 5, 1))
    ys = xs[:, 2, 0]  # recall the input from 3 steps before the end

    def loss(model):
        return jnp.mean((jax.vmap(model)(xs) - ys) ** 2)

    return GRU(3, key=jax.random.key(0)), loss


def dense_reference(loss, model):
    parameters, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(parameters)
    flat_loss = lambda x: loss(eqx.combine(unravel(x), static))
    # One compiled program: eagerly, each operation of the Hessian would compile on its own.
    return flat, flat_loss, jax.jit(jax.hessian(flat_loss))(flat)


def test_plain_ravel_fails_on_such_a_model():
    model, _ = problem()
    with pytest.raises(TypeError):
        ravel_pytree(model)


def test_hessian_and_eigenvalues_equal_a_dense_reference():
    model, loss = problem()
    flat, flat_loss, reference = dense_reference(loss, model)
    matrix = memdyn.hessian(loss, model)
    assert matrix.shape == (flat.size, flat.size)
    np.testing.assert_allclose(matrix, reference, rtol=1e-10, atol=1e-12)
    eigenvalues = memdyn.hessian_eigenvalues(loss, model)
    np.testing.assert_allclose(
        eigenvalues, np.linalg.eigvalsh(0.5 * (reference + reference.T)), rtol=1e-10, atol=1e-10
    )
    # and the reference itself against finite differences of the gradient
    grad = jax.jit(jax.grad(flat_loss))
    h = 1e-6
    columns = [(grad(flat + h * e) - grad(flat - h * e)) / (2 * h) for e in np.eye(flat.size)[:5]]
    np.testing.assert_allclose(np.stack(columns, 1), reference[:, :5], rtol=1e-5, atol=1e-7)


def test_hvp_and_spectra_along_keep_the_model_structure():
    model, loss = problem()
    flat, _, reference = dense_reference(loss, model)
    tangent_flat = jax.random.normal(jax.random.key(3), flat.shape)
    tangent = memdyn.parameter_vector(model)[1](tangent_flat)
    product = memdyn.hvp(loss, model, tangent)
    assert isinstance(product, GRU)
    np.testing.assert_allclose(
        memdyn.parameter_vector(product)[0], reference @ tangent_flat, rtol=1e-9, atol=1e-11
    )
    trajectory = memdyn.train(loss, model, memdyn.make_optimizer("adam", 0.01), 20, save_every=10)
    assert isinstance(trajectory.thetas, GRU)
    assert trajectory.thetas.head.activation is jnp.tanh
    spectra = memdyn.hessian_eigenvalues_along(loss, trajectory.thetas)
    last = trajectory.model_at(-1)
    np.testing.assert_allclose(
        spectra[-1], memdyn.hessian_eigenvalues(loss, last), rtol=1e-10, atol=1e-12
    )


def test_lanczos_extremes_match_the_dense_spectrum():
    model, loss = problem()
    _, _, reference = dense_reference(loss, model)
    exact = np.linalg.eigvalsh(reference)
    ritz = memdyn.hessian_extremes(loss, model, reference.shape[0], key=jax.random.key(0))
    np.testing.assert_allclose([ritz[0], ritz[-1]], [exact[0], exact[-1]], rtol=1e-6, atol=1e-8)


def test_train_leaves_non_parameters_alone_and_matches_optax_by_hand():
    model, loss = problem()
    optimizer = memdyn.make_optimizer("gd", 0.05)
    trajectory = memdyn.train(loss, model, optimizer, 4, save_every=2)
    np.testing.assert_array_equal(trajectory.thetas.steps_seen, 0)
    assert trajectory.thetas.hidden == 3
    # by hand with plain optax on the partitioned parameters
    parameters, static = eqx.partition(model, eqx.is_inexact_array)
    sgd = optax.sgd(0.05)
    state = sgd.init(parameters)

    @jax.jit  # one program: eagerly, each operation of the step would compile on its own
    def step(parameters, state):
        grads = jax.grad(lambda p: loss(eqx.combine(p, static)))(parameters)
        updates, state = sgd.update(grads, state)
        return optax.apply_updates(parameters, updates), state

    for _ in range(4):
        parameters, state = step(parameters, state)
    final = eqx.filter(trajectory.model_at(-1), eqx.is_inexact_array)
    np.testing.assert_allclose(ravel_pytree(final)[0], ravel_pytree(parameters)[0], rtol=1e-12)
    np.testing.assert_allclose(trajectory.losses[-1], loss(eqx.combine(parameters, static)))


def test_gradient_flow_and_hitting_time_on_the_model():
    model, loss = problem()
    taus = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-2, 10.0, 30)])
    flow = memdyn.gradient_flow(loss, model, taus, rtol=1e-6, atol=1e-8, solver=diffrax.Tsit5())
    assert bool(flow.finished)
    assert isinstance(flow.thetas, GRU)
    assert np.all(np.diff(np.asarray(flow.losses)) <= 1e-10)  # a gradient flow never goes up
    hit = memdyn.hitting_time(flow.times, flow.thetas, None, delta=0.05)
    distance = np.linalg.norm(
        np.stack([memdyn.parameter_vector(flow.model_at(i))[0]
                  for i in range(taus.size)]) - memdyn.parameter_vector(model)[0], axis=1
    )  # fmt: skip
    first = int(np.argmax(distance >= 0.05))
    assert bool(hit.hit) and taus[first - 1] <= hit.time <= taus[first]
    # a budget too small to finish is reported, not hidden
    short = memdyn.gradient_flow(
        loss, model, taus, max_steps=3, throw=False, solver=diffrax.Tsit5()
    )
    assert not bool(short.finished)
    assert short.result == diffrax.RESULTS.max_steps_reached


def test_learning_rate_sweep_equals_single_runs_and_traces_once():
    model, loss = problem()
    traces = []

    @eqx.filter_jit
    def sweep(rates):
        traces.append(1)
        return eqx.filter_vmap(
            lambda rate: memdyn.train(
                loss, model, memdyn.make_optimizer("adam", 0.01), 6, save_every=3,
                learning_rate=rate,
            )
        )(rates)  # fmt: skip

    rates = jnp.array([0.003, 0.01, 0.03])
    swept = sweep(rates)
    sweep(rates * 2)
    assert len(traces) == 1
    for i, rate in enumerate([0.003, 0.03]):
        single = memdyn.train(loss, model, memdyn.make_optimizer("adam", rate), 6, save_every=3)
        np.testing.assert_allclose(swept.losses[2 * i], single.losses, rtol=1e-12)


def test_value_checks_fire_under_jit_and_vmap():
    model, loss = problem()
    bad = eqx.tree_at(lambda m: m.bias, model, model.bias.at[0].set(jnp.nan))
    with pytest.raises(ValueError, match="model parameters contains"):  # concrete: eagerly
        memdyn.hessian_eigenvalues(loss, bad)
    with pytest.raises(RuntimeError, match="model parameters contains non-finite"):
        eqx.filter_jit(lambda m: memdyn.hessian(loss, m))(bad)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    bad_params = eqx.filter(bad, eqx.is_inexact_array)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, bad_params)
    with pytest.raises(RuntimeError, match="non-finite"):
        jax.vmap(lambda p: memdyn.hessian_eigenvalues(loss, eqx.combine(p, static)))(stacked)
    with pytest.raises(RuntimeError, match="learning_rate must be > 0"):
        jax.vmap(
            lambda r: memdyn.train(loss, model, memdyn.make_optimizer("gd", 0.1), 2,
                                   save_every=1, learning_rate=r).losses
        )(jnp.array([0.1, -0.1]))  # fmt: skip


def test_non_scalar_loss_is_refused():
    model, loss = problem()
    with pytest.raises(ValueError, match="scalar"):
        memdyn.hessian(lambda m: jnp.stack([loss(m), loss(m)]), model)
    with pytest.raises(ValueError, match="scalar"):
        memdyn.train(lambda m: m.bias, model, memdyn.make_optimizer("gd", 0.1), 2, save_every=1)


def test_a_failed_flow_reports_nan_losses_and_never_calls_a_checking_loss_on_inf_states():
    """With `throw=False` the saves after a failure are inf: a loss that checks its input (as
    every curse loss does) is not evaluated there. Before the failure the losses are the closed
    form of the quadratic flow x(τ) = x0 e^{−2sτ}: J = Σ s x0² e^{−4sτ}."""
    scales = jnp.array([1.0, 3.0])

    def loss(p):
        x = memdyn.check_finite("x", p["x"])
        return jnp.sum(scales * x**2)

    x0 = jnp.array([1.0, -2.0])
    taus = jnp.geomspace(1e-3, 50.0, 40)
    flow = memdyn.gradient_flow(
        loss, {"x": x0}, taus, max_steps=8, throw=False, solver=diffrax.Tsit5()
    )
    assert flow.result == diffrax.RESULTS.max_steps_reached
    finite = np.all(np.isfinite(np.asarray(flow.thetas["x"])), axis=1)
    losses = np.asarray(flow.losses)
    assert finite.any() and not finite.all()
    assert np.all(np.isnan(losses[~finite]))
    closed = (np.asarray(scales) * np.asarray(x0) ** 2 * np.exp(
        -4 * np.asarray(scales) * np.asarray(taus)[:, None])).sum(axis=1)  # fmt: skip
    np.testing.assert_allclose(losses[finite], closed[finite], rtol=1e-3)
