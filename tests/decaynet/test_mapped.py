"""decaynet's paths that map over members equal their members run one by one, unbatched, in float32
and float64, at a small odd size (where XLA:CPU's miscompile of `vmap(grad(scan LSTM))` shows,
`tests/mapped.py`) and at a realistic one; their gradients equal central finite differences.

Paths: `scan_cell` vmapped over seeds' cells and normalisations, value and gradient, for each cell
and normalisation (the case test_recurrence.py::test_fused_gradients_vmapped_over_seeds covers,
DecayNet with batch norm in float64, is not repeated); `memdyn.train_epochs` over seeds with these
models, with and without recurrent batch norm (a memdyn path that needs the papers' models); the
learned optimiser's meta-gradient, vmapped over optimisees (`_truncation`, one Adam step of
`meta_train`), and `loss_curves`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import memdyn
from decaynet import (
    DecayCell,
    LayerNormalisation,
    LSTMCell,
    NoNormalisation,
    PyTorchInit,
    RecurrentBatchNorm,
    SequenceClassifier,
    scan_cell,
)
from decaynet import _learned as learned
from decaynet._train import classifier_loss
from tests.mapped import (
    PRECISIONS,
    RTOL,
    SIZES,
    Size,
    assert_gradient_matches_central_differences,
    assert_mapped_equals_members,
    assert_trees_close,
    member,
    precision,
    stack,
)

# The stack's own correctness: `make test-latest` runs these against the newest releases.
pytestmark = pytest.mark.canary


CELLS = {"lstm": LSTMCell, "decay": DecayCell}


def _clone(state):
    """A fresh handle on the same values (`eqx.nn.State` may not be read again once updated)."""
    return None if state is None else jax.tree.unflatten(*jax.tree.flatten(state)[::-1])


def _normalisation(name: str, size: Size):
    return {
        "none": lambda: NoNormalisation(),
        "layer": lambda: LayerNormalisation(size.hidden),
        "batch": lambda: RecurrentBatchNorm(size.hidden, size.time),
    }[name]()


def _moved(norm, name: str, key):
    """`norm` with its scales moved off their initial values, so that each member's differ and
    every one is tested (members share `norm`'s state index, as stacked models do)."""
    if name == "none":
        return norm
    scales = {
        "layer": lambda n: (n.input_norm.weight, n.recurrent_norm.weight, n.input_norm.bias),
        "batch": lambda n: (n.gamma_input, n.gamma_recurrent, n.gamma_cell, n.beta_cell),
    }[name]
    keys = jax.random.split(key, len(scales(norm)))
    new = tuple(
        jax.random.uniform(k, a.shape, minval=0.5, maxval=1.5)
        for k, a in zip(keys, scales(norm), strict=True)
    )
    return eqx.tree_at(scales, norm, new)


def _cast(tree, name: str):
    """`tree` with its floating leaves in precision `name` and its integer leaves (not keys) in
    JAX's default integer there, through NumPy (`jax.device_put` compiles nothing; an eager
    `astype` compiles a program per shape). Values built once in float32 serve both precisions:
    float32 values are exactly representable in float64."""
    wide = name == "float64"

    def cast(x):
        if not eqx.is_array(x) or jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return x
        if jnp.issubdtype(x.dtype, jnp.inexact):
            return jax.device_put(np.asarray(x, name))
        if jnp.issubdtype(x.dtype, jnp.integer):
            return jax.device_put(np.asarray(x, np.int64 if wide else np.int32))
        return x

    return jax.tree.map(cast, tree)


@functools.cache
def _float32_scan_members(size_name: str, cell: str, norm: str):
    """The base normalisation and each seed's cell and normalisation (`base` with its scales
    moved), built once in float32 and shared by both precisions' tests (`_cast`)."""
    config = SIZES[size_name]
    with precision("float32"):
        base = _normalisation(norm, config)
        pairs = list(zip(_scan_cells(config, cell), _moved_norms(base, config, norm), strict=True))
    return base, pairs


def _scan_members(size_name: str, cell: str, norm: str, name: str):
    """`_float32_scan_members` in precision `name`, and the members stacked."""
    base, pairs = _cast(_float32_scan_members(size_name, cell, norm), name)
    return base, pairs, stack(pairs)


@eqx.filter_jit
def _scan_cells(size: Size, cell: str):
    """Each seed's cell, built in one compiled program (built eagerly, their many small
    operations would each compile), shared by the normalisations' tests."""
    keys = jax.random.split(jax.random.key(0), 2 * size.members)
    return [
        CELLS[cell].for_sequences(
            size.inputs, size.hidden, sequence_length=size.time, init=PyTorchInit(),
            key=keys[2 * i],
        )
        for i in range(size.members)
    ]  # fmt: skip


@eqx.filter_jit
def _moved_norms(base, size: Size, norm: str):
    """Each seed's normalisation, in one compiled program shared by the cells' tests."""
    keys = jax.random.split(jax.random.key(0), 2 * size.members)
    return [_moved(base, norm, keys[2 * i + 1]) for i in range(size.members)]


def _scan_loss(params, xs, state):
    """Depends on the final state and every step's `q`, `s` and `f`, nonlinearly; the scan's
    outputs ride along as the auxiliary result."""
    cell, norm = params
    final, trajectory, new_state = scan_cell(cell, norm, xs, _clone(state))
    weights = jnp.linspace(-1.0, 2.0, xs.shape[1])[:, None]
    value = (
        jnp.sum(jnp.sin(final.q) * final.s)
        + jnp.sum(weights * trajectory.q**2)
        + jnp.sum(jnp.cos(trajectory.s))
        + jnp.sum(trajectory.f * weights)
    )
    return value, (final, trajectory, new_state)


_scan_value_and_grad = eqx.filter_value_and_grad(_scan_loss, has_aux=True)


def _scan_cases():
    cases = []
    for cell in CELLS:
        for norm in ("none", "layer", "batch"):
            for name in PRECISIONS:
                if (cell, norm, name) != ("decay", "batch", "float64"):  # test_recurrence.py's
                    cases.append(pytest.param("small", cell, norm, name))
    for name in PRECISIONS:
        cases.append(pytest.param("realistic", "lstm", "batch", name, marks=pytest.mark.slow))
    return cases


@pytest.mark.parametrize(("size", "cell", "norm", "name"), _scan_cases())
def test_scan_cell_vmapped_over_seeds_equals_members(size, cell, norm, name):
    """Values, trajectories, batch-norm statistics and gradients (fused backward) of stacked
    seeds' cells and normalisations in one `eqx.filter_vmap` equal each seed's own; in float64
    each seed's gradient equals central finite differences."""
    config = SIZES[size]
    with precision(name):
        base, members, stacked = _scan_members(size, cell, norm, name)
        xs = np.random.default_rng(1).normal(size=(config.batch, config.time, config.inputs))
        xs = jax.device_put(xs.astype(name))
        state = eqx.nn.State(base) if norm == "batch" else None
        mapped = eqx.filter_jit(eqx.filter_vmap(_scan_value_and_grad, in_axes=(0, None, None)))(
            stacked, xs, state
        )
        single = eqx.filter_jit(_scan_value_and_grad)
        expected = [single(params, xs, state) for params in members]
        assert mapped[0][0].dtype == jnp.dtype(name)
        assert_mapped_equals_members(mapped, expected, rtol=RTOL[name])
        if name == "float64":
            for index, params in enumerate(members):
                gradient = member(mapped[1], index, size=config.members)
                dynamic, static = eqx.partition(params, eqx.is_inexact_array)
                assert_gradient_matches_central_differences(
                    lambda p, static=static: single(eqx.combine(p, static), xs, state)[0][0],
                    dynamic,
                    eqx.filter(gradient, eqx.is_inexact_array),
                    key=jax.random.key(index),
                )


# `train_epochs`: plain gradient descent, one step per chunk, so that the last step's gradient
# is read off as (θ_k − θ_{k+1}) / η and checked against central differences.
EPOCH_RATE = 0.1


def _classifier(size: Size, batch_norm: bool, key):
    return eqx.nn.make_with_state(SequenceClassifier)(
        cell=LSTMCell, input_size=size.inputs, hidden_size=size.hidden, num_classes=3,
        sequence_length=size.time, init=PyTorchInit(), key=key,
        normalisation=RecurrentBatchNorm(size.hidden, size.time) if batch_norm else None,
    )  # fmt: skip


@eqx.filter_jit
def _member_step(params, static, opt, opt_state, model_state, xb, yb):
    params, opt_state, (loss, model_state), _ = memdyn.optimizer_step(
        classifier_loss, params, static, opt, opt_state, model_state, xb, yb, has_aux=True
    )
    return params, opt_state, model_state, loss


# `memdyn.epoch_order` in one compiled program (eagerly, each of its operations compiles).
_epoch_order = jax.jit(memdyn.epoch_order, static_argnums=(1, 2))


def _trained_alone(make, seed, xs, ys, config, steps):
    """One seed trained by hand, unbatched: `init_run`'s keys, `epoch_order`'s batches and
    `optimizer_step`, the pieces `train_epochs` maps over seeds."""
    init_key, order_key = jax.random.split(jax.random.PRNGKey(seed))
    model, model_state = make(init_key)
    params, static = memdyn.partition_parameters(model)
    opt = config.make_optimizer()
    opt_state = opt.init(params)
    per_epoch = memdyn.steps_per_epoch(xs.shape[0], config)
    losses = []
    for step in range(steps):
        epoch, within = divmod(step, per_epoch)
        order = _epoch_order(jax.random.fold_in(order_key, epoch), xs.shape[0],
                             config.batch_size)  # fmt: skip
        batch = order[within]
        params, opt_state, model_state, loss = _member_step(
            params, static, opt, opt_state, model_state, xs[batch], ys[batch]
        )
        losses.append(loss)
    run = memdyn.RunState(params, opt_state, model_state, order_key, jnp.asarray(steps, jnp.int32))
    return run, np.stack([np.asarray(loss) for loss in losses])


def _epoch_cases():
    cases = [
        pytest.param("small", batch_norm, name, mesh)
        for batch_norm in (False, True)
        for name in PRECISIONS
        for mesh in (False, True)
    ]
    for name in PRECISIONS:
        cases.append(pytest.param("realistic", True, name, False, marks=pytest.mark.slow))
    return cases


@pytest.mark.parametrize(("size", "batch_norm", "name", "mesh"), _epoch_cases())
def test_train_epochs_over_seeds_equals_seeds_trained_alone(size, batch_norm, name, mesh):
    """`memdyn.train_epochs` of stacked seeds (one compiled step over them; with `mesh`, 4 seeds
    split over the 2 devices of `memdyn.sweep_mesh()`) equals each seed trained by hand with
    unbatched steps: parameters, optimiser and batch-norm states, keys, step and losses; in
    float64 the gradient of its last step equals central differences."""
    config = SIZES[size]
    if mesh:
        assert len(jax.devices()) == 2  # tests/conftest.py: MEMDYN_HOST_DEVICES=2
        config = config._replace(members=4)
    on = {"mesh": memdyn.sweep_mesh()} if mesh else {}
    with precision(name):
        n = 3 * config.batch  # three steps in the epoch
        rng = np.random.default_rng(0)
        xs = jnp.asarray(rng.normal(size=(n, config.time, config.inputs)), dtype=jnp.dtype(name))
        ys = jnp.asarray(rng.integers(0, 3, n), dtype=jnp.int32)
        train_config = memdyn.TrainConfig(
            optimizer="gd", learning_rate=EPOCH_RATE, batch_size=config.batch, chunk_steps=1
        )
        make = functools.partial(_classifier, config, batch_norm)
        seeds = [3, 5, 9, 11][: config.members]
        optimizer = train_config.make_optimizer()
        run, static = memdyn.init_run(make, seeds, optimizer)
        before, first, _ = memdyn.train_epochs(
            run, static, classifier_loss, xs, ys, train_config, optimizer, stop_at=2, **on
        )
        after, last, _ = memdyn.train_epochs(
            before, static, classifier_loss, xs, ys, train_config, optimizer, **on
        )
        if mesh:
            assert after.params.cell.weight_input.sharding.spec == P(memdyn.SWEEP_AXIS)
        losses = np.concatenate([first, last])
        assert losses.shape == (3, config.members) and losses.dtype == np.dtype(name)
        alone = [_trained_alone(make, seed, xs, ys, train_config, 3) for seed in seeds]
        assert_mapped_equals_members(
            (after.params, after.opt_state, after.model_state, after.order_keys),
            [(r.params, r.opt_state, r.model_state, r.order_keys) for r, _ in alone],
            rtol=RTOL[name],
            size=config.members,
        )
        assert int(after.step) == 3
        expected_losses = np.stack([np.asarray(step) for _, step in alone])
        assert_trees_close(losses.T, expected_losses, rtol=RTOL[name])
        if name == "float64":
            per_epoch = memdyn.steps_per_epoch(n, train_config)
            opt = train_config.make_optimizer()
            for index, seed in enumerate(seeds):
                params = member(before.params, index, size=config.members)
                gradient = jax.tree.map(
                    lambda a, b: (a - b) / EPOCH_RATE,
                    params,
                    member(after.params, index, size=config.members),
                )
                order_key = jax.random.split(jax.random.PRNGKey(seed))[1]
                order = _epoch_order(jax.random.fold_in(order_key, 0), n, config.batch)
                batch = order[2 % per_epoch]
                state = member(before.model_state, index, size=config.members)
                # The loss before the step, from the members' compiled step.
                loss = lambda p, state=state, batch=batch: _member_step(
                    p, static, opt, opt.init(p), _clone(state), xs[batch], ys[batch]
                )[3]
                assert_gradient_matches_central_differences(
                    loss, params, gradient, key=jax.random.key(index)
                )


class LearnedSize(NamedTuple):
    optimisees: int
    mlp: tuple[int, ...]
    projection: int
    hidden: int
    examples: int
    batch: int
    truncation: int


LEARNED_SIZES = {
    # r_H = 5·3 + 3 + 3·3 + 3 = 30 optimisee parameters.
    "small": LearnedSize(3, (5, 3, 3), projection=3, hidden=5, examples=40, batch=5, truncation=3),
    # The paper's optimiser (28 → 64) on its MLP 784-20-10 (r_H = 15,910), a short truncation.
    "realistic": LearnedSize(
        4, (784, 20, 10), projection=28, hidden=64, examples=256, batch=32, truncation=5
    ),
}


def _learned_problem(config: LearnedSize, cell: str, name: str):
    """Synthetic classification (Gaussian inputs labelled by a linear teacher), the optimiser
    network and `config.optimisees` fresh optimisees with their keys, in precision `name` (built
    once in float32 and cast, `_cast`)."""
    net, state = _cast(_float32_learned(_learned_net, config, cell), name)
    images, labels, params, keys = _cast(_float32_learned(_learned_data, config), name)
    return net, images, labels, params, state, keys


@functools.cache
def _float32_learned(build, *args):
    with precision("float32"):
        return build(*args)


def _learned_keys():
    """The keys of the inputs, the teacher, the network, the optimisees and their data."""
    return jax.random.split(jax.random.key(11), 5)


@eqx.filter_jit
def _learned_net(config: LearnedSize, cell: str):
    """The optimiser network and the optimisees' initial states, built in one compiled program
    (built eagerly, their many small operations would each compile)."""
    options = {"internal_steps": 2, "clip_decrement": True} if cell == "decay" else {}
    net = learned.LearnedOptimizer(
        CELLS[cell], learned.mlp_parameter_count(config.mlp), projection=config.projection,
        hidden=config.hidden, key=_learned_keys()[2], **options,
    )  # fmt: skip
    state = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (config.optimisees, *x.shape)), net.initial_state()
    )
    return net, state


@eqx.filter_jit
def _learned_data(config: LearnedSize):
    """The task, the optimisees and their data keys, in one compiled program shared by both
    cells' tests."""
    x_key, w_key, _, init_key, data_key = _learned_keys()
    images = jax.random.normal(x_key, (config.examples, config.mlp[0]))
    teacher = jax.random.normal(w_key, (config.mlp[0], config.mlp[-1]))
    labels = jnp.argmax(images @ teacher, axis=1)
    params = jax.vmap(lambda k: learned.init_mlp(k, config.mlp))(
        jax.random.split(init_key, config.optimisees)
    )
    keys = jax.random.split(data_key, config.optimisees)
    return images, labels, params, keys


def _improvement(net, params, state, key, images, labels, *, length, batch_size):
    """One optimisee's meta-loss term (`meta_train`'s, before the mean over optimisees)."""
    carry, (before, after) = learned.rollout(
        learned.learned_optimizer(net), params, state, images, labels,
        key=key, updates=length, batch_size=batch_size,
    )  # fmt: skip
    return jnp.sum(after - before), carry


def _learned_cases():
    cases = [pytest.param("small", cell, name) for cell in CELLS for name in PRECISIONS]
    for name in PRECISIONS:
        cases.append(pytest.param("realistic", "lstm", name, marks=pytest.mark.slow))
    return cases


ADAM_RATE, ADAM_B1, ADAM_B2, ADAM_EPS = 1e-2, 0.9, 0.999, 1e-8  # optax.adam(1e-2)'s


def _mean_and_adam_step(values, gradients, net, adam_state):
    """The mean of the optimisees' meta-losses and meta-gradients, and Adam's first step on the
    network with that gradient, in NumPy (a compiled program costs a second per case): from
    zero moments, `μ = (1 − β₁) g`, `ν = (1 − β₂) g²`, and the step `−η μ̂ / (√ν̂ + ε)` with the
    bias corrections `μ̂ = μ / (1 − β₁)`, `ν̂ = ν / (1 − β₂)`."""
    loss = np.mean(np.stack([np.asarray(v) for v in values]))
    gradient = jax.tree.map(lambda *g: sum(np.asarray(x) for x in g) / len(g), *gradients)
    mu = jax.tree.map(lambda g: ((1 - ADAM_B1) * g).astype(g.dtype), gradient)
    nu = jax.tree.map(lambda g: ((1 - ADAM_B2) * g**2).astype(g.dtype), gradient)
    step = jax.tree.map(
        lambda m, v: (
            -ADAM_RATE * (m / (1 - ADAM_B1)) / (np.sqrt(v / (1 - ADAM_B2)) + ADAM_EPS)
        ).astype(m.dtype),
        mu,
        nu,
    )
    params, static = eqx.partition(net, eqx.is_array)
    moved = jax.tree.map(
        lambda p, u: p if p is None or u is None else (np.asarray(p) + u).astype(p.dtype),
        params,
        step,
        is_leaf=lambda x: x is None,
    )
    adam, rest = adam_state
    count = np.asarray(1, np.asarray(adam.count).dtype)
    return loss, eqx.combine(moved, static), (adam._replace(count=count, mu=mu, nu=nu), rest)


@pytest.mark.parametrize(("size", "cell", "name"), _learned_cases())
def test_meta_gradient_over_optimisees_equals_optimisees_alone(size, cell, name):
    """One truncation of `meta_train` (`_truncation`: the meta-loss vmapped over optimisees, its
    gradient, one Adam step) equals the mean of each optimisee's own meta-loss and
    meta-gradient, unbatched (Adam's state holds the meta-gradient: its first moment is
    (1 − β₁)·g; the reference Adam step is NumPy's). In float64, over a truncation of one
    update, where the first-order meta-gradient is the exact gradient (θ_0 and its gradient do
    not depend on the network), the vmapped meta-gradient equals central differences of the
    meta-loss."""
    config = LEARNED_SIZES[size]
    with precision(name):
        net, images, labels, params, state, keys = _learned_problem(config, cell, name)
        adam = optax.adam(ADAM_RATE, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS)
        adam_state = adam.init(eqx.filter(net, eqx.is_array))
        options = {"batch_size": config.batch, "loss_fn": learned.mlp_loss}
        mapped = learned._truncation(
            net, adam_state, params, state, keys, images, labels,
            meta_optimizer=adam, length=config.truncation, **options,
        )  # fmt: skip
        improvement = eqx.filter_jit(
            eqx.filter_value_and_grad(
                functools.partial(_improvement, length=config.truncation, batch_size=config.batch),
                has_aux=True,
            )
        )
        alone = [
            improvement(net, member(params, i), member(state, i), keys[i], images, labels)
            for i in range(config.optimisees)
        ]
        loss, expected_net, expected_adam = _mean_and_adam_step(
            [value for (value, _), _ in alone], [g for _, g in alone], net, adam_state
        )
        rtol = RTOL[name]
        assert_trees_close(mapped[1], expected_adam, rtol=rtol, what="Adam state")
        assert_trees_close(mapped[0], expected_net, rtol=rtol, what="network")
        assert_mapped_equals_members(
            mapped[2], [carry for (_, carry), _ in alone], rtol=rtol, size=config.optimisees
        )
        assert_trees_close(mapped[3], loss, rtol=rtol, what="meta-loss")
        assert bool(mapped[4])
        if name == "float64":
            dynamic, static = eqx.partition(net, eqx.is_inexact_array)
            one_update = lambda dynamic: learned._truncation(
                eqx.combine(dynamic, static), adam.init(dynamic), params, state, keys, images,
                labels, meta_optimizer=adam, length=1, **options,
            )  # fmt: skip
            first_moment = one_update(dynamic)[1][0].mu
            meta_gradient = jax.tree.map(lambda mu: mu / (1 - 0.9), first_moment)
            assert_gradient_matches_central_differences(
                lambda dynamic: one_update(dynamic)[3], dynamic, meta_gradient,
                key=jax.random.key(13),
            )  # fmt: skip


@pytest.mark.parametrize("name", PRECISIONS)
def test_loss_curves_over_optimisees_equal_rollouts_alone(name):
    """`loss_curves` (rollouts of the learned optimiser vmapped over fresh optimisees) equals
    each optimisee's rollout, unbatched."""
    config = LEARNED_SIZES["small"]
    with precision(name):
        net, images, labels, *_ = _learned_problem(config, "lstm", name)
        optimizer = learned.learned_optimizer(net)
        updates = config.truncation
        curves = learned.loss_curves(
            optimizer, images, labels, key=jax.random.key(12), optimisees=config.optimisees,
            updates=updates, batch_size=config.batch, sizes=config.mlp,
        )  # fmt: skip
        # `loss_curves` splits its key into the optimisees' initialisation and data keys.
        init_key, data_key = jax.random.split(jax.random.key(12))
        init_keys = jax.random.split(init_key, config.optimisees)
        data_keys = jax.random.split(data_key, config.optimisees)

        @eqx.filter_jit
        def alone(optimizer, init_key, data_key):
            params = learned.init_mlp(init_key, config.mlp)
            _, (before, _) = learned.rollout(
                optimizer, params, optimizer.init(params), images, labels, key=data_key,
                updates=updates + 1, batch_size=config.batch,
            )  # fmt: skip
            return before

        expected = [alone(optimizer, i, d) for i, d in zip(init_keys, data_keys, strict=True)]
        assert_mapped_equals_members(curves, expected, rtol=RTOL[name])
