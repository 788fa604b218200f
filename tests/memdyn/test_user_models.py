"""Models nobody here wrote (issue 22, item 6): an `eqx.Module` holding a typed PRNG key, a Flax
NNX module with its `Rngs`, a run that diverges, and a Hessian whose spectrum is mostly a
near-zero bulk.

References are independent: a NumPy reimplementation of gradient descent on a quadratic (where
it first overflows), the same model without its key field, central finite differences of
`jax.grad` on a hand-flattened NNX state, and `numpy.linalg.eigvalsh` of a dense matrix.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

import memdyn

pytestmark = pytest.mark.usefixtures("float64")

CURVATURES = np.array([1.0, 0.5, 2.0])
START = np.array([1.0, -2.0, 0.5])


class KeyedQuadratic(eqx.Module):
    """A user's model that keeps a typed PRNG key beside its weights (for dropout, say)."""

    weight: jax.Array
    key: jax.Array


def quadratic(model):
    return 0.5 * jnp.sum(jnp.asarray(CURVATURES) * model.weight**2)


def gradient_descent_reference(learning_rate, num_steps):
    """NumPy gradient descent on `quadratic`, as Optax's `sgd` computes it (w + (−η) g): the
    weights of every step up to the first whose loss or gradient is non-finite, and that step
    (-1 if none within `num_steps` steps, the last model included)."""
    weights = [START.copy()]
    with np.errstate(over="ignore", invalid="ignore"):
        for step in range(num_steps + 1):
            w = weights[-1]
            loss, gradient = 0.5 * np.sum(CURVATURES * w**2), CURVATURES * w
            if not (np.isfinite(loss) and np.all(np.isfinite(gradient))):
                return weights, step
            weights.append(w + (-learning_rate) * gradient)
    return weights, -1


def keyed_start():
    return KeyedQuadratic(jnp.asarray(START), jax.random.key(0))


# 1. A diverging run stops at its first non-finite step, per member of a sweep.


@pytest.mark.parametrize("num_steps, save_every", [(100, 10), (94, 47), (100, 1)])
def test_a_diverging_run_stops_at_the_first_non_finite_step_and_keeps_the_last_good_model(
    num_steps, save_every
):
    """The reference overflows at step 47: inside a chunk of 10 steps, on the first step of a
    chunk of 47 (its last good model is in the chunk before), and with a save at every step."""
    rate = 1000.0
    weights, first_bad = gradient_descent_reference(rate, num_steps)
    assert first_bad == 47
    optimizer = memdyn.make_optimizer("gd", rate)
    trajectory = memdyn.train(quadratic, keyed_start(), optimizer, num_steps, save_every=save_every)
    assert int(trajectory.stopped_at) == first_bad
    assert not bool(trajectory.finished)
    assert trajectory.failures() == [((), first_bad)]
    last_good = weights[first_bad - 1]
    final = np.asarray(trajectory.model_at(-1).weight)
    assert np.all(np.isfinite(final))
    np.testing.assert_allclose(final, last_good, rtol=1e-13)
    times = np.asarray(trajectory.times)
    before = times < first_bad
    np.testing.assert_allclose(
        np.asarray(trajectory.thetas.weight)[before],
        np.stack([weights[t] for t in times[before]]),
        rtol=1e-13,
    )
    after = times > first_bad
    for saved in np.asarray(trajectory.thetas.weight)[after]:
        np.testing.assert_allclose(saved, last_good, rtol=1e-13)
    assert np.all(np.isfinite(np.asarray(trajectory.losses)[after]))


def test_a_run_that_turns_non_finite_on_its_last_step_is_not_finished():
    _, first_bad = gradient_descent_reference(1000.0, 100)
    trajectory = memdyn.train(
        quadratic, keyed_start(), memdyn.make_optimizer("gd", 1000.0), first_bad, save_every=1
    )
    assert int(trajectory.stopped_at) == first_bad
    assert trajectory.failures() == [((), first_bad)]


def test_an_infinite_first_gradient_stops_at_step_zero_on_the_start():
    """The loss Σ ∛w is finite at w = 0 and its gradient is not."""
    model = KeyedQuadratic(jnp.array([0.0, 1.0]), jax.random.key(0))
    trajectory = memdyn.train(
        lambda m: jnp.sum(jnp.cbrt(m.weight)),
        model,
        memdyn.make_optimizer("gd", 0.1),
        4,
        save_every=2,
    )
    assert int(trajectory.stopped_at) == 0
    np.testing.assert_array_equal(trajectory.thetas.weight, np.tile([0.0, 1.0], (3, 1)))


def test_a_learning_rate_sweep_stops_only_its_diverging_members():
    rates = [0.1, 0.9, 30.0, 1000.0]
    num_steps = 200
    references = [gradient_descent_reference(rate, num_steps) for rate in rates]
    expected_stops = [stop for _, stop in references]
    assert expected_stops == [-1, -1, 88, 47]
    optimizer = memdyn.make_optimizer("gd", 0.1)
    # saves every 8 steps: member 2 fails on a chunk's first step (88), member 3 inside one (47)
    swept = memdyn.sweep_learning_rates(
        quadratic, keyed_start(), optimizer, jnp.asarray(rates), num_steps, save_every=8
    )
    np.testing.assert_array_equal(swept.stopped_at, expected_stops)
    np.testing.assert_array_equal(swept.finished, [True, True, False, False])
    assert swept.failures() == [((2,), expected_stops[2]), ((3,), expected_stops[3])]
    for member, rate in enumerate(rates[:2]):
        single = memdyn.train(
            quadratic, keyed_start(), memdyn.make_optimizer("gd", rate), num_steps, save_every=8
        )
        assert int(single.stopped_at) == -1 and bool(single.finished)
        np.testing.assert_allclose(swept.thetas.weight[member], single.thetas.weight, rtol=1e-12)
        np.testing.assert_allclose(swept.losses[member], single.losses, rtol=1e-12)
    for member in (2, 3):
        weights, stop = references[member]
        final = np.asarray(swept.thetas.weight[member, -1])
        assert np.all(np.isfinite(final))
        np.testing.assert_allclose(final, weights[stop - 1], rtol=1e-13)


def test_failures_of_a_gradient_flow_name_the_member_without_a_step():
    flow = memdyn.gradient_flow(
        quadratic,
        keyed_start(),
        jnp.geomspace(1e-2, 10.0, 5),
        max_steps=2,
        throw=False,
        solver=diffrax.Bosh3(),
    )
    assert flow.stopped_at is None
    assert flow.failures() == [((), None)]
    assert (
        memdyn.train(
            quadratic, keyed_start(), memdyn.make_optimizer("gd", 0.1), 2, save_every=1
        ).failures()
        == []
    )


# 2. A typed PRNG key among the leaves rides along: results equal the model without it.


class KeyedNet(eqx.Module):
    weight: jax.Array
    bias: jax.Array
    key: jax.Array

    def __call__(self, x):
        return jnp.tanh(self.weight @ x + self.bias).sum()


class PlainNet(eqx.Module):
    weight: jax.Array
    bias: jax.Array

    def __call__(self, x):
        return jnp.tanh(self.weight @ x + self.bias).sum()


def net_problem():
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    weight, bias = jax.random.normal(k1, (3, 2)), 0.1 * jax.random.normal(k2, (3,))
    xs = jax.random.normal(k3, (6, 2))
    ys = jnp.sin(xs[:, 0])

    def loss(model):
        return jnp.mean((jax.vmap(model)(xs) - ys) ** 2)

    return KeyedNet(weight, bias, jax.random.key(7)), PlainNet(weight, bias), Partial(loss)


def test_hessian_and_hvp_of_a_model_holding_a_key_equal_those_without_it():
    keyed, plain, loss = net_problem()
    np.testing.assert_array_equal(memdyn.hessian(loss, keyed), memdyn.hessian(loss, plain))
    tangent = jax.tree.map(jnp.ones_like, memdyn.partition_parameters(plain)[0])
    keyed_tangent = KeyedNet(tangent.weight, tangent.bias, keyed.key)
    product, reference = memdyn.hvp(loss, keyed, keyed_tangent), memdyn.hvp(loss, plain, tangent)
    np.testing.assert_array_equal(product.weight, reference.weight)
    np.testing.assert_array_equal(product.bias, reference.bias)


def test_training_a_model_holding_a_key_equals_training_it_without_and_keeps_the_key():
    keyed, plain, loss = net_problem()
    optimizer = memdyn.make_optimizer("adam", 0.05)
    trained = memdyn.train(loss, keyed, optimizer, 20, save_every=5)
    reference = memdyn.train(loss, plain, optimizer, 20, save_every=5)
    np.testing.assert_array_equal(trained.thetas.weight, reference.thetas.weight)
    np.testing.assert_array_equal(trained.losses, reference.losses)
    np.testing.assert_array_equal(
        jax.random.key_data(trained.thetas.key), jax.random.key_data(keyed.key)
    )
    swept = memdyn.sweep_learning_rates(
        loss, keyed, optimizer, jnp.array([0.01, 0.05]), 20, save_every=5
    )
    np.testing.assert_allclose(swept.losses[1], reference.losses, rtol=1e-12)


def test_gradient_flow_and_spectral_density_of_a_model_holding_a_key_equal_those_without_it():
    keyed, plain, loss = net_problem()
    taus = jnp.geomspace(1e-2, 5.0, 6)
    flow = memdyn.gradient_flow(loss, keyed, taus, solver=diffrax.Bosh3())
    reference = memdyn.gradient_flow(loss, plain, taus, solver=diffrax.Bosh3())
    assert bool(flow.finished)
    np.testing.assert_array_equal(flow.thetas.weight, reference.thetas.weight)
    np.testing.assert_array_equal(flow.losses, reference.losses)
    key = jax.random.key(2)
    density = memdyn.hessian_spectral_density(loss, keyed, num_iter=5, num_probes=3, key=key)
    expected = memdyn.hessian_spectral_density(loss, plain, num_iter=5, num_probes=3, key=key)
    np.testing.assert_array_equal(density.nodes, expected.nodes)
    np.testing.assert_array_equal(density.weights, expected.weights)


def test_check_finite_ignores_key_leaves_and_still_checks_the_rest_under_jit():
    keyed, _, _ = net_problem()
    assert memdyn.check_finite("model", keyed) is keyed
    bad = eqx.tree_at(lambda m: m.bias, keyed, keyed.bias.at[0].set(jnp.nan))
    with pytest.raises(ValueError, match="model contains 1 non-finite"):
        memdyn.check_finite("model", bad)
    checked = eqx.filter_jit(lambda m: memdyn.check_finite("model", m))
    assert isinstance(checked(keyed).key, jax.Array)
    with pytest.raises(RuntimeError, match="model contains non-finite"):
        checked(bad)


# 2 and 3. A Flax NNX model: its Rngs hold a typed key, and NNX modules compare by identity.


def nnx_problem(nnx):
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(2, 4, param_dtype=jnp.float64, rngs=rngs)
            self.out = nnx.Linear(4, 1, param_dtype=jnp.float64, rngs=rngs)
            self.dropout = nnx.Dropout(0.5, deterministic=True, rngs=rngs)

        def __call__(self, x):
            return self.out(self.dropout(jnp.tanh(self.hidden(x))))[0]

    xs = jax.random.normal(jax.random.key(3), (5, 2))
    ys = jnp.cos(xs[:, 1])

    def loss(model):
        return jnp.mean((jax.vmap(model)(xs) - ys) ** 2)

    return Net(nnx.Rngs(0)), loss


def nnx_flat_reference(nnx, model, loss):
    """The loss as a function of a flat vector of the `nnx.Param`s, by `nnx.split`/`merge`."""
    graph, params, rest = nnx.split(model, nnx.Param, ...)
    flat, unravel = ravel_pytree(params)
    return flat, lambda vector: loss(nnx.merge(graph, unravel(vector), rest))


def test_hvp_of_a_flax_nnx_module_matches_finite_differences_of_the_gradient():
    nnx = pytest.importorskip("flax.nnx")
    model, loss = nnx_problem(nnx)
    flat, flat_loss = nnx_flat_reference(nnx, model, loss)
    assert any(
        jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) for leaf in jax.tree.leaves(model)
    )
    direction = jax.random.normal(jax.random.key(4), flat.shape)
    grad = jax.jit(jax.grad(flat_loss))
    h = 1e-5
    expected = (grad(flat + h * direction) - grad(flat - h * direction)) / (2 * h)
    # The tangent as a user builds it: the module itself mapped to the direction (a new module
    # object, equal to the model only in paths, shapes and dtypes), or its parameter partition.
    parameters, static = memdyn.partition_parameters(model)
    _, unravel = ravel_pytree(parameters)
    for tangent in (eqx.combine(unravel(direction), static), unravel(direction)):
        product = memdyn.hvp(loss, model, tangent)
        vector = ravel_pytree(memdyn.partition_parameters(product)[0])[0]
        np.testing.assert_allclose(vector, expected, rtol=1e-6, atol=1e-8)
    # the split form: the model is the state, the loss merges it
    graph, state = nnx.split(model)
    state_loss = lambda s: loss(nnx.merge(graph, s))
    product = memdyn.hvp(state_loss, state, jax.tree.map(lambda x: x, state))
    assert np.all(np.isfinite(ravel_pytree(memdyn.partition_parameters(product)[0])[0]))
    with pytest.raises(ValueError, match="tangent must have the structure"):
        memdyn.hvp(loss, model, {"kernel": jnp.ones(3)})


def test_a_flax_nnx_module_trains_flows_and_has_a_hessian():
    nnx = pytest.importorskip("flax.nnx")
    model, loss = nnx_problem(nnx)
    flat, flat_loss = nnx_flat_reference(nnx, model, loss)
    np.testing.assert_allclose(
        memdyn.hessian(loss, model), jax.jit(jax.hessian(flat_loss))(flat), rtol=1e-10, atol=1e-12
    )
    trajectory = memdyn.train(loss, model, memdyn.make_optimizer("gd", 0.1), 6, save_every=3)
    assert int(trajectory.stopped_at) == -1
    # by hand: plain gradient descent on the flat vector (the leaf orders agree)
    vector, grad = flat, jax.jit(jax.grad(flat_loss))
    for _ in range(6):
        vector = vector - 0.1 * grad(vector)
    final = ravel_pytree(memdyn.partition_parameters(trajectory.model_at(-1))[0])[0]
    np.testing.assert_allclose(final, vector, rtol=1e-12)
    flow = memdyn.gradient_flow(loss, model, jnp.array([0.0, 0.5]), solver=diffrax.Bosh3())
    assert bool(flow.finished) and float(flow.losses[1]) < float(flow.losses[0])


# 4. Negative mass relative to the largest Ritz value, stable in the number of Lanczos steps.


def bulk_matrix():
    """400 × 400 with 40 eigenvalues in [−2, −0.5], 60 in [1, 10] and a bulk of 300 in
    [−1e-5, 1e-5] (half of them negative), rotated by a random orthogonal matrix."""
    rng = np.random.default_rng(0)
    eigenvalues = np.concatenate(
        [-rng.uniform(0.5, 2, 40), rng.uniform(1, 10, 60), rng.uniform(-1e-5, 1e-5, 300)]
    )
    rotation, _ = np.linalg.qr(rng.normal(size=(400, 400)))
    matrix = rotation @ np.diag(eigenvalues) @ rotation.T
    return 0.5 * (matrix + matrix.T)


def test_default_negative_mass_matches_the_dense_fraction_below_a_relative_threshold():
    """Exact: the fraction of `eigvalsh` eigenvalues below −10⁻³ max|λ|. Each probe's mass is
    a Beta(20, 180) draw (a random unit vector's weight on a 40-dimensional subspace), standard
    deviation √(0.1 · 0.9 · 2 / 402) per probe; asserted within 4 standard errors of the probe
    mean. The same probes give the same mass after 40 and 120 Lanczos steps (the quadrature has
    resolved the spectral gap), where the mass below an absolute 0 depends on the bulk's Ritz
    nodes."""
    matrix = bulk_matrix()
    eigenvalues = np.linalg.eigvalsh(matrix)
    exact = np.mean(eigenvalues < -1e-3 * np.abs(eigenvalues).max())
    assert exact == 0.1
    probes = 10
    masses = {}
    for steps in (40, 120):
        density = memdyn.spectral_density(
            Partial(jnp.matmul, jnp.asarray(matrix)),
            400,
            num_iter=steps,
            num_probes=probes,
            key=jax.random.key(0),
        )
        masses[steps] = float(density.negative_mass())
        assert masses[steps] == float(density.negative_mass(relative_threshold=1e-3))
    error = np.sqrt(exact * (1 - exact) * 2 / 402 / probes)
    assert abs(masses[120] - exact) < 4 * error
    assert abs(masses[40] - masses[120]) < 1e-4


def test_negative_mass_thresholds_absolute_relative_and_per_sweep_member():
    matrix = jnp.asarray(bulk_matrix())

    @eqx.filter_vmap
    def densities(scale):
        return memdyn.spectral_density(
            Partial(jnp.matmul, scale * matrix),
            400,
            num_iter=30,
            num_probes=2,
            key=jax.random.key(1),
        )

    swept = densities(jnp.array([1.0, 100.0]))
    nodes, weights = np.asarray(swept.nodes), np.asarray(swept.weights)
    # relative: the same mass whatever the operator's scale (one threshold per member)
    relative = np.asarray(swept.negative_mass())
    np.testing.assert_allclose(relative[0], relative[1], atol=1e-12)
    by_hand = lambda tau: np.mean(np.sum(np.where(nodes < -tau, weights, 0), -1), -1)
    tau = 0.05 * np.abs(nodes).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(
        swept.negative_mass(relative_threshold=0.05), by_hand(tau), rtol=1e-12
    )
    # absolute: one threshold for all members, or one each with shape (sweep, 1, 1)
    np.testing.assert_allclose(swept.negative_mass(0.0), by_hand(0.0), rtol=1e-12)
    np.testing.assert_allclose(swept.negative_mass(threshold=tau), by_hand(tau), rtol=1e-12)
    with pytest.raises(ValueError, match="not both"):
        swept.negative_mass(0.1, relative_threshold=0.1)
    with pytest.raises(ValueError, match="relative_threshold must be >= 0"):
        swept.negative_mass(relative_threshold=-1.0)
