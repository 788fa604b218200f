"""The one training engine (`scan_steps`, `run_chunks`) and its non-finite policies (`Stop`,
`Freeze`), on the driver itself and on its four users: `train`, `train_epochs`, the binary adder
and meta-training. Each failure is injected at a step found independently, by a plain loop of
Optax updates, and the state kept is compared with that loop's."""

import dataclasses
import gc
import weakref

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import memdyn
from decaynet import LSTMCell
from decaynet import _addition as A
from decaynet import _learned as L

LEARNING_RATE = 0.1


def _quadratic(params, step, fail_at):
    """`|θ|²`, NaN from step `fail_at` on (never if negative)."""
    value = jnp.sum(params**2)
    return jnp.where((fail_at >= 0) & (step >= fail_at), jnp.nan, value)


def _plain(params, steps):
    """`steps` updates of plain Optax SGD on `_quadratic`, one Python iteration each."""
    optimizer = optax.sgd(LEARNING_RATE)
    state = optimizer.init(params)
    for _ in range(steps):
        updates, state = optimizer.update(jax.grad(lambda p: jnp.sum(p**2))(params), state)
        params = optax.apply_updates(params, updates)
    return params


@eqx.filter_jit
def _advance(params, steps, fail_at):
    """A chunk of SGD steps of every member (leading axis) on `_quadratic`: `scan_steps` of
    `optimizer_step`, vmapped over members."""
    optimizer = optax.sgd(LEARNING_RATE)

    def one(p, s, step, fail):
        p, s, loss, finite = memdyn.optimizer_step(_quadratic, p, None, optimizer, s, step, fail)
        return p, s, loss, finite

    def step(carry, step):
        p, s, loss, finite = jax.vmap(one, in_axes=(0, 0, None, 0))(*carry, step, fail_at)
        return (p, s), (loss, finite)

    state = jax.vmap(optimizer.init)(params)
    (params, _), losses, finite = memdyn.scan_steps(step, (params, state), steps)
    return params, losses, finite


def _driver(fail_at, policy, chunk=4, chunks=3):
    start = jnp.array([[1.0, -2.0], [0.5, 3.0]])
    inputs = [jnp.arange(c * chunk, (c + 1) * chunk) for c in range(chunks)]
    advance = lambda params, steps: _advance(params, steps, jnp.asarray(fail_at))
    return start, memdyn.run_chunks(advance, start, inputs, policy=policy)


def test_finite_chunks_equal_a_plain_loop():
    start, (params, failure) = _driver([-1, -1], memdyn.Stop())
    assert failure is None
    np.testing.assert_allclose(params, _plain(start, 12), rtol=1e-6)


@pytest.mark.parametrize("fail_at", [[-1, 6], [5, 9], [0, -1], [8, 8]])
def test_stop_raises_naming_step_and_member(fail_at):
    with pytest.raises(memdyn.TrainingStopped, match="at step") as error:
        _driver(fail_at, memdyn.Stop())
    step = min(f for f in fail_at if f >= 0)
    assert (error.value.step, error.value.member) == (step, fail_at.index(step))


@pytest.mark.parametrize("fail_at", [[-1, 6], [5, 9], [0, -1], [8, 8]])
def test_freeze_keeps_the_last_good_state_and_names_step_and_member(fail_at):
    start, (params, failure) = _driver(fail_at, memdyn.Freeze())
    step = min(f for f in fail_at if f >= 0)
    assert failure == memdyn.NonFiniteStep(step, fail_at.index(step))
    # The last good state is the one step `step - 1` was taken at (the start for step 0), as
    # memdyn.train keeps: a failure at a chunk's first step goes back into the chunk before.
    np.testing.assert_allclose(params, _plain(start, max(step - 1, 0)), rtol=1e-6)


def test_after_chunk_sees_every_finite_chunk_and_can_end_training():
    seen = []

    def after_chunk(params, losses, steps):
        seen.append((steps, losses.shape))
        return steps == 8

    start = jnp.ones((1, 2))
    inputs = [jnp.arange(c * 4, (c + 1) * 4) for c in range(3)]
    advance = lambda params, steps: _advance(params, steps, jnp.array([-1]))
    params, failure = memdyn.run_chunks(
        advance, start, inputs, policy=memdyn.Stop(), after_chunk=after_chunk
    )
    assert failure is None and seen == [(4, (4, 1)), (8, (4, 1))]
    np.testing.assert_allclose(params, _plain(start, 8), rtol=1e-6)


class _Box:
    """A chunk's state as a plain object, so that a weak reference says when it is freed."""

    def __init__(self, value):
        self.value = value


def _states_alive_at_each_chunk(policy, chunks=4):
    """For each chunk, which of the states `advance` was given before are still referenced
    (CPython frees an unreferenced object at once; `gc.collect` for certainty)."""
    given, alive = [], []

    def advance(state, xs):
        gc.collect()
        alive.append([ref() is not None for ref in given])
        given.append(weakref.ref(state))
        return _Box(state.value + xs.sum()), np.zeros(xs.shape), np.ones(xs.shape, bool)

    state, failure = memdyn.run_chunks(advance, _Box(0.0), [np.ones(2)] * chunks, policy=policy)
    assert failure is None and state.value == 2 * chunks
    return alive


def test_only_a_policy_that_keeps_the_last_good_state_holds_the_previous_chunk():
    """`Stop` raises, so `run_chunks` holds no copy of the chunk before (its parameters and
    optimiser state); `Freeze` holds exactly that one, to go back across a chunk boundary."""
    assert not memdyn.Stop().keeps_last_good and memdyn.Freeze().keeps_last_good
    assert _states_alive_at_each_chunk(memdyn.Stop()) == [[], [False], [False] * 2, [False] * 3]
    freeze = _states_alive_at_each_chunk(memdyn.Freeze())
    assert freeze == [[], [True], [False, True], [False, False, True]]


def test_run_chunks_rejects_a_policy_that_is_not_one_or_breaks_its_contract():
    advance = lambda params, steps: _advance(params, steps, jnp.array([0]))
    with pytest.raises(TypeError, match="policy must be a memdyn.AbstractNonFinitePolicy"):
        memdyn.run_chunks(advance, jnp.ones((1, 2)), [jnp.arange(2)], policy="stop")

    class Ignore(memdyn.AbstractNonFinitePolicy):  # neither raises nor keeps a good state
        @property
        def keeps_last_good(self):
            return False

        def on_non_finite(self, failure, message):
            pass

    with pytest.raises(TypeError, match="Ignore.on_non_finite returned"):
        memdyn.run_chunks(advance, jnp.ones((1, 2)), [jnp.arange(2)], policy=Ignore())


# memdyn.train applies Freeze in the graph, member by member.


def test_train_freezes_each_member_of_a_sweep_on_its_last_good_model():
    model = jnp.array([1.0, -2.0])
    optimizer = memdyn.make_optimizer("gd", LEARNING_RATE)
    finite = memdyn.train(lambda p: jnp.sum(p**2), model, optimizer, 8, save_every=4)
    assert int(finite.stopped_at) == -1
    np.testing.assert_allclose(finite.thetas[-1], _plain(model, 8), rtol=1e-6)
    # NaN once the model is small enough: only the member with the larger rate gets there.
    small = lambda p: jnp.where(jnp.sum(p**2) < 0.5, jnp.nan, jnp.sum(p**2))
    trajectory = memdyn.sweep_learning_rates(
        small, model, optimizer, jnp.array([1e-3, LEARNING_RATE]), 8, save_every=4
    )
    expected = next(t for t in range(9) if float(jnp.sum(_plain(model, t) ** 2)) < 0.5)
    np.testing.assert_array_equal(trajectory.stopped_at, [-1, expected])
    np.testing.assert_allclose(trajectory.thetas[1, -1], _plain(model, expected - 1), rtol=1e-6)


# train_epochs: Stop, keeping the last good checkpoint.

XS = jnp.asarray(np.random.default_rng(0).normal(size=(32, 3)), jnp.float32)
YS = jnp.asarray(np.random.default_rng(1).normal(size=32), jnp.float32)
CONFIG = memdyn.TrainConfig(
    optimizer="gd", learning_rate=0.05, batch_size=8, epochs=3, chunk_steps=2, checkpoint_every=2
)
OPTIMIZER = CONFIG.make_optimizer()


def _linear(key):
    return eqx.nn.Linear(3, 1, key=key), None


def _mse(model, state, xb, yb):
    return jnp.mean((jax.vmap(model)(xb)[:, 0] - yb) ** 2), state


def _batches(run, seed, steps):
    per_epoch = XS.shape[0] // CONFIG.batch_size
    for step in range(steps):
        epoch, batch = divmod(step, per_epoch)
        key = jax.random.fold_in(run.order_keys[seed], epoch)
        yield memdyn.epoch_order(key, XS.shape[0], CONFIG.batch_size)[batch]


def _plain_epochs(run, static, seed, steps, ys=YS, optimizer=None):
    """`steps` updates of one seed, a plain loop of `optimizer` (default Optax SGD, CONFIG's)."""
    params = jax.tree.map(lambda x: x[seed], run.params)
    optimizer = optax.sgd(CONFIG.learning_rate) if optimizer is None else optimizer
    state = optimizer.init(params)
    loss = lambda p, batch: _mse(eqx.combine(p, static), None, XS[batch], ys[batch])[0]
    for batch in _batches(run, seed, steps):
        updates, state = optimizer.update(jax.grad(loss)(params, batch), state, params)
        params = optax.apply_updates(params, updates)
    return params


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)


def test_train_epochs_finite_run_equals_a_plain_loop():
    run, static = memdyn.init_run(_linear, [0, 1], OPTIMIZER)
    final, _, _ = memdyn.train_epochs(run, static, _mse, XS, YS, CONFIG, OPTIMIZER)
    for seed in (0, 1):
        kept = jax.tree.map(lambda x, seed=seed: x[seed], final.params)
        _close(kept, _plain_epochs(run, static, seed, 12))


def test_train_epochs_takes_any_optax_optimizer_and_reads_only_the_schedule_from_config():
    """A user's Optax optimiser that no config names (clipping then Nesterov momentum) trains
    as a plain loop of it does; the config's optimiser fields ("adam") are not read."""
    optimizer = optax.chain(optax.clip(0.5), optax.sgd(0.05, momentum=0.8, nesterov=True))
    config = dataclasses.replace(CONFIG, optimizer="adam", learning_rate=1.0)
    run, static = memdyn.init_run(_linear, [0, 1], optimizer)
    final, _, _ = memdyn.train_epochs(run, static, _mse, XS, YS, config, optimizer)
    assert int(final.step) == 12
    for seed in (0, 1):
        kept = jax.tree.map(lambda x, seed=seed: x[seed], final.params)
        _close(kept, _plain_epochs(run, static, seed, 12, optimizer=optimizer))


def test_engine_functions_refuse_an_optimizer_name_or_a_config():
    with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
        memdyn.init_run(_linear, [0], CONFIG)  # the config, not its optimiser
    run, static = memdyn.init_run(_linear, [0], OPTIMIZER)
    with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
        memdyn.train_epochs(run, static, _mse, XS, YS, CONFIG, "gd")
    with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
        memdyn.train_chunk(
            run.params, run.opt_state, None, static, _mse, "gd", XS, YS, jnp.zeros((1, 1, 8), int)
        )


def test_train_epochs_stops_naming_step_and_seed_and_keeps_the_last_good_checkpoint(tmp_path):
    run, static = memdyn.init_run(_linear, [0, 1], OPTIMIZER)
    ys = np.asarray(YS).copy()
    ys[13] = np.inf
    # The first (step, seed) whose batch holds example 13.
    hits = [
        (step, seed)
        for seed in (0, 1)
        for step, batch in enumerate(_batches(run, seed, 12))
        if 13 in np.asarray(batch)
    ]
    step, seed = min(hits)
    checkpoint = tmp_path / "run.eqx"
    with pytest.raises(memdyn.TrainingStopped, match=f"at step {step} for seed index {seed}") as e:
        memdyn.train_epochs(
            run, static, _mse, XS, jnp.asarray(ys), CONFIG, OPTIMIZER, checkpoint=checkpoint
        )
    assert (e.value.step, e.value.member) == (step, seed)
    saved_step = step - step % CONFIG.chunk_steps
    if saved_step:
        saved, meta = memdyn.load_checkpoint(checkpoint, run)
        assert int(saved.step) == meta["step"] == saved_step
        for s in (0, 1):
            expected = _plain_epochs(run, static, s, saved_step, ys=jnp.asarray(ys))
            _close(jax.tree.map(lambda x, s=s: x[s], saved.params), expected)
    else:
        assert not checkpoint.exists()


# The binary adder: Freeze by default, per-step flags (loss and gradient). Its `Stop` is
# `run_chunks`'s, tested above.

DIGITS, HIDDEN, CHUNK = 6, 4, 5
ADDER_LOSS = A.loss


def _poisoned_loss(model, batch, weights):
    """The adder's loss, NaN when the batch holds a pair with a = 0 and b < 4."""
    a = A.from_bits(batch.inputs[..., 0].astype(int))
    b = A.from_bits(batch.inputs[..., 1].astype(int))
    poisoned = jnp.any((a == 0) & (b < 4))
    return jnp.where(poisoned, jnp.nan, ADDER_LOSS(model, batch, weights))


def _plain_adder(model, key, batch_size):
    """Plain SGD steps on the adder's batches until the first non-finite loss or gradient:
    that step, and the model the step before it was taken at (the last good one)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimizer = optax.sgd(0.1)
    state = optimizer.init(params)
    previous = params
    grad = jax.jit(jax.value_and_grad(lambda p, *a: _poisoned_loss(eqx.combine(p, static), *a)))
    for step in range(200):
        chunk_key = jax.random.fold_in(key, step // CHUNK)
        a, b = A.sample_operands(
            jax.random.split(chunk_key, CHUNK)[step % CHUNK], batch_size, DIGITS
        )
        weights = 1.0 - A.is_held_out(a, b).astype(float)
        value, grads = grad(params, A.addition_batch(a, b, DIGITS), weights)
        if not (np.isfinite(value) and memdyn.internal.tree_all_finite(grads)):
            return step, eqx.combine(previous, static)
        previous = params
        updates, state = optimizer.update(grads, state)
        params = optax.apply_updates(params, updates)
    raise AssertionError("the poisoned loss never turned non-finite")


@pytest.fixture(scope="module")
def adder():
    model = A.Adder(LSTMCell, HIDDEN, DIGITS, key=jax.random.key(2))
    a, b = A.held_out_operands(jax.random.key(102), 20, DIGITS)
    return model, A.addition_batch(a, b, DIGITS)


def test_adder_freezes_on_the_last_good_step(adder, monkeypatch):
    model, test = adder
    key = jax.random.key(52)
    step, expected = _plain_adder(model, key, 16)
    assert step % CHUNK, "pick a key whose failure falls inside a chunk"
    monkeypatch.setattr(A, "loss", _poisoned_loss)
    options = dict(batch_size=16, chunk_steps=CHUNK, max_steps=200, key=key)
    trained, history = A.train_until_exact(model, test, **options)
    assert history.stopped_at == step
    assert history.steps == list(range(CHUNK, step - step % CHUNK + 1, CHUNK))
    _close(eqx.filter(trained, eqx.is_inexact_array), eqx.filter(expected, eqx.is_inexact_array))


# Meta-training: Freeze on request (its default, Stop, is tested in tests/decaynet).

SIZES = (6, 4, 3)


def _task():
    x_key, w_key = jax.random.split(jax.random.PRNGKey(2))
    x = jax.random.normal(x_key, (64, SIZES[0]))
    return x, jnp.argmax(x @ jax.random.normal(w_key, (SIZES[0], SIZES[-1])), axis=1)


def _meta_net():
    count = L.mlp_parameter_count(SIZES)
    return L.LearnedOptimizer(LSTMCell, count, projection=4, hidden=8, key=jax.random.PRNGKey(1))


def _poisoned_init(poisoned_call):
    """`init_mlp`, with a bias of 1e4 at its `poisoned_call`-th call (one call per
    meta-iteration), which `_poisoned_loss` turns into an infinite meta-loss."""
    calls = []

    def init(key):
        calls.append(None)
        params = L.init_mlp(key, SIZES)
        if len(calls) == poisoned_call:
            params[0]["bias"] = jnp.full_like(params[0]["bias"], 1e4)
        return params

    return init


def _poisoned_mlp_loss(params, images, labels):
    poisoned = jnp.max(jnp.abs(params[0]["bias"])) > 1e3
    return jnp.where(poisoned, jnp.inf, L.mlp_loss(params, images, labels))


def test_meta_training_freeze_keeps_the_last_good_network():
    images, labels = _task()
    net = _meta_net()
    options = dict(key=jax.random.PRNGKey(7), meta_iterations=2, optimisees=2, updates=10,
                   truncation=5, optimizer=optax.adam(1e-2),
                   loss_fn=_poisoned_mlp_loss)  # fmt: skip
    frozen, history = L.meta_train(
        net, images, labels, init_fn=_poisoned_init(2), policy=memdyn.Freeze(), **options
    )
    assert history.shape == (2, 2)
    assert np.all(np.isfinite(history[0])) and np.all(np.isnan(history[1:]))
    # The last good network, independently: the one the last good truncation (the first
    # meta-iteration's second) started from, after that iteration's first truncation.
    adam = optax.adam(1e-2)
    expected, adam_state = net, adam.init(eqx.filter(net, eqx.is_array))
    init_key, data_key = jax.random.split(jax.random.split(options["key"], 2)[0])
    params = jax.vmap(lambda k: L.init_mlp(k, SIZES))(jax.random.split(init_key, 2))
    state = jax.tree.map(lambda x: jnp.broadcast_to(x, (2, *x.shape)), net.initial_state())
    networks = []
    for index, truncation_key in enumerate(jax.random.split(data_key, 2)):
        networks.append(expected)
        expected, adam_state, (params, state), loss, _ = L._truncation(
            expected, adam_state, params, state, jax.random.split(truncation_key, 2), images,
            labels, meta_optimizer=adam, length=5, batch_size=32, loss_fn=L.mlp_loss,
        )  # fmt: skip
        assert float(loss) == float(history[0, index])
    expected = networks[1]
    for x, y in zip(jax.tree.leaves(frozen), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
