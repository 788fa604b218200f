"""Curvature operators against dense matrices built independently (`jax.hessian` and
`jax.jacobian` of flat functions assembled here with `ravel_pytree`), per-block operators against
slices of the dense ones, streamed (batched) operators against the whole dataset at once, Ritz
pairs against their own residuals and `eigvalsh`, Hutch++ against Hutchinson at equal products,
and every operator mapped over stacked models against the members alone, in both precisions."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import memdyn


class Net(eqx.Module):
    """A small recurrent net: input and recurrent weights, a readout, an integer leaf."""

    weight_input: jax.Array
    weight_recurrent: jax.Array
    readout: jax.Array
    calls: jax.Array  # an integer array: never a parameter

    def __init__(self, hidden, outputs, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.weight_input = jax.random.normal(k1, (hidden, 2))
        self.weight_recurrent = 0.5 * jax.random.normal(k2, (hidden, hidden)) / hidden**0.5
        self.readout = jax.random.normal(k3, (outputs, hidden))
        self.calls = jnp.array(0)

    def __call__(self, xs):
        step = lambda h, x: (jnp.tanh(self.weight_input @ x + self.weight_recurrent @ h), None)
        h, _ = jax.lax.scan(step, jnp.zeros(self.weight_recurrent.shape[0]), xs)
        return self.readout @ h


HIDDEN, OUTPUTS, EXAMPLES, TIME = 3, 2, 12, 4
PRECISIONS = {"float64": 1e-10, "float32": 2e-4}


def _data(key):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (EXAMPLES, TIME, 2)), jax.random.normal(ky, (EXAMPLES, OUTPUTS))


def _setup(precision="float64"):
    model = Net(HIDDEN, OUTPUTS, key=jax.random.key(0))
    xs, ys = _data(jax.random.key(1))
    if precision == "float32":
        model = jax.tree.map(
            lambda x: x.astype(jnp.float32) if eqx.is_inexact_array(x) else x, model
        )
        xs, ys = xs.astype(jnp.float32), ys.astype(jnp.float32)
    return model, xs, ys


def predict(model, xs):
    return jax.vmap(model)(xs)


def output_loss(predictions, ys):  # mean squared error: convex in the predictions
    return 0.5 * jnp.mean(jnp.sum((predictions - ys) ** 2, axis=-1))


@functools.cache
def _problem(precision="float64"):
    """`_setup`'s model and data, the loss of the model (`loss(model)`), its predictions
    (`outputs(model)`) and the loss of those (`output(predictions)`): the same function objects
    in every test of a precision, so memdyn's compiled programs (keyed on them) and
    `_dense_hessian`'s serve every test that runs them."""
    model, xs, ys = _setup(precision)
    return (
        model,
        xs,
        ys,
        lambda m: output_loss(predict(m, xs), ys),
        lambda m: predict(m, xs),
        lambda y: output_loss(y, ys),
    )


def example_loss(model, example):
    x, y = example
    return 0.5 * jnp.sum((model(x) - y) ** 2)


def _flat(model):
    """Independent of memdyn: the model's inexact arrays as one vector, and back."""
    parameters, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(parameters)
    return flat, lambda v: eqx.combine(unravel(v), static)


@functools.cache
def _dense_hessian(loss):
    """A function of a flat vector: the dense Hessian of `loss` at the model it unravels to (the
    structure of `_setup`'s model, which every model given `loss` here shares), by
    `jax.hessian`, compiled as one program (eagerly, each of its operations would compile on its
    own), once per loss."""
    rebuild = _flat(_setup()[0])[1]
    return jax.jit(jax.hessian(lambda v: loss(rebuild(v))))


def _recurrent_slice(model):
    """Indices of `weight_recurrent` in the flat vector (leaf order of `jax.tree.leaves`)."""
    sizes = [leaf.size for leaf in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]
    start = sizes[0]  # weight_input comes first
    return slice(start, start + sizes[1])


@pytest.fixture(scope="module", autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def test_hessian_operator_equals_the_dense_hessian_whole_and_per_block():
    model, _, _, loss, _, _ = _problem()
    flat = _flat(model)[0]
    dense = np.asarray(_dense_hessian(loss)(flat))
    operator = memdyn.HessianOperator(loss, model)
    assert operator.size == flat.size == dense.shape[0]
    np.testing.assert_allclose(operator.as_matrix(), dense, rtol=1e-10, atol=1e-12)
    recurrent = memdyn.HessianOperator(
        loss, model, block=memdyn.block(model, lambda m: m.weight_recurrent)
    )
    part = _recurrent_slice(model)
    assert recurrent.size == HIDDEN * HIDDEN
    np.testing.assert_allclose(recurrent.as_matrix(), dense[part, part], rtol=1e-10, atol=1e-12)
    # The block operator's model is the whole model: the other arrays ride along unchanged.
    assert recurrent.model().calls is model.calls
    np.testing.assert_array_equal(recurrent.model().readout, model.readout)
    with pytest.raises(ValueError, match="block chooses no floating-point array"):
        memdyn.HessianOperator(loss, model, block=memdyn.block(model, lambda m: m.calls))


def test_gauss_newton_operator_equals_jacobian_transpose_hessian_jacobian():
    model, xs, ys, _, outputs, output = _problem()
    flat, rebuild = _flat(model)
    jacobian = np.asarray(jax.jit(jax.jacobian(lambda v: predict(rebuild(v), xs).ravel()))(flat))
    predictions = predict(model, xs)
    output_hessian = np.asarray(
        jax.jit(jax.hessian(lambda y: output_loss(y.reshape(predictions.shape), ys)))(
            predictions.ravel()
        )
    )
    dense = jacobian.T @ output_hessian @ jacobian
    operator = memdyn.GaussNewtonOperator(outputs, output, model)
    np.testing.assert_allclose(operator.as_matrix(), dense, rtol=1e-10, atol=1e-12)
    assert np.linalg.eigvalsh(np.asarray(operator.as_matrix())).min() > -1e-12  # PSD
    part = _recurrent_slice(model)
    recurrent = memdyn.GaussNewtonOperator(
        outputs, output, model, block=memdyn.block(model, lambda m: m.weight_recurrent)
    )
    np.testing.assert_allclose(recurrent.as_matrix(), dense[part, part], rtol=1e-10, atol=1e-12)


def test_empirical_fisher_equals_the_mean_outer_product_of_per_example_gradients():
    model, xs, ys = _setup()
    flat, rebuild = _flat(model)
    losses = lambda v: jax.vmap(lambda x, y: example_loss(rebuild(v), (x, y)))(xs, ys)
    gradients = np.asarray(jax.jit(jax.jacobian(losses))(flat))  # examples × parameters
    dense = gradients.T @ gradients / EXAMPLES
    operator = memdyn.EmpiricalFisherOperator(example_loss, model, (xs, ys))
    np.testing.assert_allclose(operator.as_matrix(), dense, rtol=1e-10, atol=1e-12)
    batched = memdyn.EmpiricalFisherOperator(
        example_loss, model, (xs.reshape(3, 4, TIME, 2), ys.reshape(3, 4, OUTPUTS)), batched=True
    )
    np.testing.assert_allclose(batched.as_matrix(), dense, rtol=1e-10, atol=1e-12)


def test_streamed_operators_equal_the_whole_dataset_at_once():
    """A loss that is a mean over data, given as 3 batches of 4: the streamed product is the
    dense product of the loss over all 12 examples."""
    model, xs, ys, loss, outputs, output = _problem()
    dense = np.asarray(_dense_hessian(loss)(_flat(model)[0]))
    batches = (xs.reshape(3, 4, TIME, 2), ys.reshape(3, 4, OUTPUTS))
    hessian = memdyn.HessianOperator(
        lambda m, batch: output_loss(predict(m, batch[0]), batch[1]), model, data=batches
    )
    np.testing.assert_allclose(hessian.as_matrix(), dense, rtol=1e-10, atol=1e-12)
    gauss_newton = memdyn.GaussNewtonOperator(
        lambda m, batch: predict(m, batch[0]),
        lambda y, batch: output_loss(y, batch[1]),
        model,
        data=batches,
    )
    whole_gn = memdyn.GaussNewtonOperator(outputs, output, model)
    np.testing.assert_allclose(
        gauss_newton.as_matrix(), whole_gn.as_matrix(), rtol=1e-10, atol=1e-12
    )
    with pytest.raises(ValueError, match="data must be arrays with one leading axis"):
        memdyn.HessianOperator(lambda m, b: 0.0 * jnp.sum(m.readout), model, data=(xs, ys[:3]))


def test_ritz_pairs_have_the_residuals_they_report_and_all_eigenvalues_at_full_size():
    model, _, _, loss, _, _ = _problem()
    operator = memdyn.HessianOperator(loss, model)
    dense = np.asarray(operator.as_matrix())
    pairs = memdyn.ritz_pairs(operator, 8, key=jax.random.key(3))
    vectors, values = np.asarray(pairs.vectors), np.asarray(pairs.values)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-10)
    actual = np.linalg.norm(vectors @ dense - values[:, None] * vectors, axis=1)
    np.testing.assert_allclose(pairs.residuals, actual, rtol=1e-6, atol=1e-9)
    full = memdyn.ritz_pairs(operator, operator.size, key=jax.random.key(3))
    np.testing.assert_allclose(full.values, np.linalg.eigvalsh(dense), rtol=1e-8, atol=1e-10)
    assert np.max(np.asarray(full.residuals)) < 1e-8


def test_hutchpp_has_lower_variance_than_hutchinson_at_equal_products():
    """On a Hessian with a decaying spectrum (λ_i = 1/i², n = 60; a quadratic loss, so the
    operator is exactly A), 30 products each, over 200 keys: both unbiased within 4 standard
    errors, Hutch++'s variance well below Hutchinson's (theory: O(1/m²) against O(1/m))."""
    n = 60
    basis, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(n, n)))
    matrix = jnp.asarray(basis @ np.diag(1.0 / np.arange(1, n + 1) ** 2) @ basis.T)
    operator = memdyn.HessianOperator(lambda theta: 0.5 * theta @ matrix @ theta, jnp.zeros(n))
    keys = jax.random.split(jax.random.key(4), 200)
    plain = np.asarray(jax.vmap(lambda k: memdyn.trace_hutchinson(operator, 30, key=k))(keys))
    plus = np.asarray(jax.vmap(lambda k: memdyn.trace_hutchpp(operator, 30, key=k))(keys))
    exact = float(np.trace(np.asarray(matrix)))
    for estimates in (plain, plus):
        assert abs(estimates.mean() - exact) < 4 * estimates.std() / np.sqrt(len(estimates))
    assert plus.var() < 0.1 * plain.var(), (plus.var(), plain.var())
    with pytest.raises(ValueError, match="multiple of 3"):
        memdyn.trace_hutchpp(operator, 31, key=keys[0])


@pytest.mark.canary
@pytest.mark.parametrize("name", sorted(PRECISIONS))
def test_operators_mapped_over_stacked_models_equal_members_alone(name):
    """`vmap` over three models' stacked arrays, for each operator's product and for Ritz values
    and Hutch++ of one operator: equal to each model alone, in float32 and float64."""
    model, xs, ys = _setup(name)
    members = [
        eqx.tree_at(lambda m: m.readout, model, model.readout * scale) for scale in (0.5, 1.0, 2.0)
    ]
    parameters, static = eqx.partition(members[0], eqx.is_inexact_array)
    stacked = jax.tree.map(
        lambda *xs: jnp.stack(xs), *[eqx.filter(m, eqx.is_inexact_array) for m in members]
    )
    vector = jax.random.normal(jax.random.key(5), (ravel_pytree(parameters)[0].size,), name)
    build = {
        "hessian": lambda m: memdyn.HessianOperator(lambda m: output_loss(predict(m, xs), ys), m),
        "gauss_newton": lambda m: memdyn.GaussNewtonOperator(
            lambda m: predict(m, xs), lambda y: output_loss(y, ys), m
        ),
        "fisher": lambda m: memdyn.EmpiricalFisherOperator(example_loss, m, (xs, ys)),
    }
    key = jax.random.key(6)

    def analyses(p):
        """Every operator's product; the estimators (which only call `mv`) on one operator."""
        operators = {kind: make(eqx.combine(p, static)) for kind, make in build.items()}
        gauss_newton = operators["gauss_newton"]
        return {
            **{kind: operator.mv(vector) for kind, operator in operators.items()},
            "ritz_values": memdyn.ritz_pairs(gauss_newton, 5, key=key).values,
            "hutchpp": memdyn.trace_hutchpp(gauss_newton, 9, key=key),
        }

    # NumPy: indexing JAX arrays eagerly compiles a program per shape.
    mapped = jax.device_get(jax.jit(jax.vmap(analyses))(stacked))
    one = jax.jit(analyses)  # compiled once, run for each member
    for i, member in enumerate(members):
        alone = one(eqx.filter(member, eqx.is_inexact_array))
        for kind, want in alone.items():
            assert mapped[kind].dtype == jnp.dtype(name), kind
            np.testing.assert_allclose(
                mapped[kind][i], want, rtol=PRECISIONS[name], atol=1e-6, err_msg=kind
            )


def test_ritz_pairs_along_a_trajectory_equal_dense_spectra_at_each_save():
    """Lanczos at every saved model (vmapped, one compilation), at full size, against
    `eigvalsh` of the dense Hessian built independently at each save; the mapped pairs equal
    each save's pairs alone."""
    model, _, _, loss, _, _ = _problem()
    saves = [eqx.tree_at(lambda m: m.readout, model, model.readout * s) for s in (0.3, 1.0, 1.7)]
    models = jax.tree.map(lambda *leaves: jnp.stack(leaves), *saves)
    n = ravel_pytree(eqx.filter(model, eqx.is_inexact_array))[0].size
    key = jax.random.key(7)
    along = memdyn.ritz_pairs_along(lambda m: memdyn.HessianOperator(loss, m), models, n, key=key)
    assert along.values.shape == (3, n) and along.vectors.shape == (3, n, n)
    values = np.asarray(along.values)  # NumPy: indexing JAX arrays compiles per shape
    dense_hessian = _dense_hessian(loss)
    for i, save in enumerate(saves):
        dense = np.asarray(dense_hessian(_flat(save)[0]))
        np.testing.assert_allclose(values[i], np.linalg.eigvalsh(dense), atol=1e-8)
        alone = memdyn.ritz_pairs(memdyn.HessianOperator(loss, save), n, key=key)
        np.testing.assert_allclose(values[i], alone.values, rtol=1e-10, atol=1e-12)
    # One key per save: each save's own random start (which fixes the Ritz vectors' signs), as
    # ritz_pairs with that key alone.
    keys = jax.random.split(key, 3)
    per_save = memdyn.ritz_pairs_along(
        lambda m: memdyn.HessianOperator(loss, m), models, n, key=keys
    )
    for i, save in enumerate(saves):
        alone = memdyn.ritz_pairs(memdyn.HessianOperator(loss, save), n, key=keys[i])
        np.testing.assert_allclose(np.asarray(per_save.vectors)[i], alone.vectors, atol=1e-9)
    with pytest.raises(ValueError, match="one leading save axis"):
        memdyn.ritz_pairs_along(lambda m: memdyn.HessianOperator(loss, m), model, 3, key=key)
    with pytest.raises(ValueError, match="one per save .a leading axis of 3 saves.; got a key"):
        memdyn.ritz_pairs_along(lambda m: memdyn.HessianOperator(loss, m), models, 3, key=keys[:2])


def test_ritz_pairs_by_block_give_each_blocks_dense_spectrum_in_one_call():
    model, _, _, loss, _, _ = _problem()
    dense = np.asarray(_dense_hessian(loss)(_flat(model)[0]))
    sizes = np.cumsum(
        [0] + [x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array))]
    )
    blocks = {
        "input": memdyn.block(model, lambda m: m.weight_input),
        "recurrent": memdyn.block(model, lambda m: m.weight_recurrent),
        "readout": memdyn.block(model, lambda m: m.readout),
    }
    pairs = memdyn.ritz_pairs_by_block(
        lambda b: memdyn.HessianOperator(loss, model, block=b), blocks, 100, key=jax.random.key(8)
    )
    densities = memdyn.spectral_density_by_block(
        lambda b: memdyn.HessianOperator(loss, model, block=b),
        blocks,
        100,
        2,
        key=jax.random.key(9),
    )
    for index, name in enumerate(blocks):
        part = slice(sizes[index], sizes[index + 1])
        expected = np.linalg.eigvalsh(dense[part, part])
        np.testing.assert_allclose(pairs[name].values, expected, atol=1e-8, err_msg=name)
        # SLQ at the block's full size: every probe's nodes are the block's eigenvalues.
        nodes = np.asarray(densities[name].nodes)
        assert nodes.shape == (2, expected.size), name
        np.testing.assert_allclose(nodes, np.broadcast_to(expected, nodes.shape), atol=1e-8)


def _saves_and_loss(precision):
    """Three saved models (the readout scaled) stacked on a leading save axis, and the loss."""
    model, _, _, loss, _, _ = _problem(precision)
    saves = [eqx.tree_at(lambda m: m.readout, model, model.readout * s) for s in (0.3, 1.0, 1.7)]
    return saves, jax.tree.map(lambda *leaves: jnp.stack(leaves), *saves), loss


@pytest.mark.parametrize("name", ["float64", "float32"])
def test_spectral_density_and_trace_along_equal_each_save_alone(name):
    """SLQ densities and Hutchinson traces along a trajectory (one vmap each), with one key
    per save, equal `spectral_density` and `trace_hutchinson` at each save alone with its key
    (a key shared by every save goes the same way, tested on `ritz_pairs_along`)."""
    saves, models, loss = _saves_and_loss(name)
    build = lambda m: memdyn.HessianOperator(loss, m)
    keys = jax.random.split(jax.random.key(3), 3)
    along = memdyn.spectral_density_along(build, models, 6, 2, key=keys)
    traces = memdyn.trace_along(build, models, 4, key=keys)
    assert along.nodes.shape == along.weights.shape == (3, 2, 6)
    assert along.nodes.dtype == traces.dtype == jnp.dtype(name) and traces.shape == (3,)
    along, traces = jax.device_get((along, traces))  # NumPy: JAX indexing compiles per shape
    for i, save in enumerate(saves):
        operator = memdyn.HessianOperator(loss, save)
        alone = memdyn.spectral_density(operator, num_iter=6, num_probes=2, key=keys[i])
        for field in ("nodes", "weights"):
            np.testing.assert_allclose(
                getattr(along, field)[i],
                getattr(alone, field),
                rtol=PRECISIONS[name],
                atol=1e-6,
                err_msg=field,
            )
        trace = memdyn.trace_hutchinson(operator, 4, key=keys[i])
        np.testing.assert_allclose(traces[i], trace, rtol=PRECISIONS[name])


def test_spectral_density_and_trace_along_match_the_dense_spectrum_at_each_save():
    """At full size (num_iter = n) every probe's SLQ nodes are the eigenvalues of the dense
    Hessian built independently at each save, and the moments (1/n) tr Hᵐ, m = 1, 2, lie
    within 4 standard errors √(2 Var(λᵐ) / ((n + 2) P)) of uniform unit probes; Hutch++ with
    3n products is exact. Each is traced once for all saves, and not again for other saves of
    the same shapes."""
    saves, models, loss = _saves_and_loss("float64")
    n, probes = _flat(saves[0])[0].size, 20
    traced = []

    def build(model):
        traced.append(model)
        return memdyn.HessianOperator(loss, model)

    key = jax.random.key(5)
    along = memdyn.spectral_density_along(build, models, n, probes, key=key)
    traces = memdyn.trace_along(build, models, 3 * n, key=key, estimator=memdyn.trace_hutchpp)
    memdyn.spectral_density_along(build, jax.tree.map(jnp.flip, models), n, probes, key=key)
    assert len(traced) == 2
    dense_hessian = _dense_hessian(loss)
    for i, save in enumerate(saves):
        dense = np.asarray(dense_hessian(_flat(save)[0]))
        exact = np.linalg.eigvalsh(dense)
        nodes = np.asarray(along.nodes)[i]
        np.testing.assert_allclose(nodes, np.broadcast_to(exact, nodes.shape), atol=1e-8)
        np.testing.assert_allclose(traces[i], np.trace(dense), rtol=1e-10)
        for order in (1, 2):
            error = np.sqrt(2 * np.var(exact**order) / ((n + 2) * probes))
            assert abs(along.moment(order)[i] - np.mean(exact**order)) < 4 * error, (i, order)
