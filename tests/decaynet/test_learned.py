"""Learned optimisers (§6.2): the Optax contract, preprocessing, the update, the forget polar,
meta-training on a tiny task, and a tiny real `decaynet learned` run."""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from decaynet import DecayCell, LSTMCell
from decaynet import _learned as learned
from decaynet.experiments.learned import RATES, Config, run
from decaynet.plots import learned_figure
from memdyn import TrainingStopped

SIZES = (6, 4, 3)


def _tiny_params():
    return learned.init_mlp(jax.random.PRNGKey(0), SIZES)


def _count(params):
    return sum(x.size for x in jax.tree.leaves(params))


# The paper's optimiser cells: the LSTM takes one step per update, DecayNet two (clipped).
PAPER_OPTIONS = {LSTMCell: {}, DecayCell: {"internal_steps": 2, "clip_decrement": True}}


def _net(cell=LSTMCell, num_parameters=None, **kwargs):
    num_parameters = num_parameters or _count(_tiny_params())
    kwargs = {"projection": 4, "hidden": 8, **PAPER_OPTIONS[cell], **kwargs}
    return learned.LearnedOptimizer(cell, num_parameters, key=jax.random.PRNGKey(1), **kwargs)


def _task(n=256):
    """Synthetic classification: Gaussian inputs labelled by a fixed linear teacher."""
    x_key, w_key = jax.random.split(jax.random.PRNGKey(2))
    x = jax.random.normal(x_key, (n, SIZES[0]))
    labels = jnp.argmax(x @ jax.random.normal(w_key, (SIZES[0], SIZES[-1])), axis=1)
    return x, labels


@pytest.mark.parametrize("cell", [LSTMCell, DecayCell])
def test_gradient_transformation_contract(cell):
    params = _tiny_params()
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.01), params)
    optimizer = learned.learned_optimizer(_net(cell))
    state = optimizer.init(params)
    updates, new_state = jax.jit(lambda g, s, p: optimizer.update(g, s, p))(grads, state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    eager, _ = optimizer.update(grads, state, params)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(eager), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    new_params = optax.apply_updates(params, updates)
    assert jax.tree.structure(new_params) == jax.tree.structure(params)

    chained = optax.chain(optax.clip_by_global_norm(1.0), optimizer)
    chained_state = chained.init(params)
    chained_updates, _ = jax.jit(chained.update)(grads, chained_state, params)
    assert jax.tree.structure(chained_updates) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(chained_updates), jax.tree.leaves(updates), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)  # norm < 1: clip is a no-op

    with pytest.raises(ValueError, match="params"):
        optimizer.update(grads, state)
    with pytest.raises(ValueError, match="num_parameters"):
        optimizer.update(grads[:1], state, params[:1])


def test_preprocessing_against_numpy():
    g = np.array([1.0, -0.3, 1e-3, -2e-4, 1e-6, -3e-5, 0.0, 5.0], dtype=np.float32)
    p = 10.0
    large = np.abs(g) >= np.exp(-p)
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 on the unused branch
        reference = np.where(large, np.log(np.abs(g)) / p * np.sign(g), -np.exp(p) * g)
    assert large.any() and (~large).any()
    np.testing.assert_allclose(learned.preprocess_gradient(jnp.asarray(g)), reference, rtol=1e-5)


@pytest.mark.parametrize("rates", [learned.LinearRates(), learned.SoftplusRates()], ids=type)
def test_update_equals_hand_computation(rates):
    """α from NumPy (fresh LSTM state, layer norm with unit scale and zero shift), update −α ⊙ g;
    `linear` rates are the up-projection itself, `softplus` rates log(1 + e^u)."""
    params = {"a": jnp.array([0.3, -0.2]), "b": jnp.array([0.5])}
    grads = {"a": jnp.array([0.1, 1e-6]), "b": jnp.array([-0.4])}
    net = learned.LearnedOptimizer(
        LSTMCell, 3, projection=2, hidden=3, rates=rates, key=jax.random.PRNGKey(3)
    )
    theta, g = np.array([0.3, -0.2, 0.5]), np.array([0.1, 1e-6, -0.4])
    big = np.abs(g) >= np.exp(-10)
    pre = np.where(big, np.log(np.abs(g)) / 10 * np.sign(g), -np.exp(10) * g)
    x = np.asarray(net.down.weight) @ (theta * pre)
    u = np.asarray(net.cell.weight_input) @ x
    z = (u - u.mean()) / np.sqrt(u.var() + 1e-5) + np.asarray(net.cell.bias)  # W_R q_0 = 0
    i, _, a, o = np.split(z, 4)
    s = 1 / (1 + np.exp(-i)) * np.tanh(a)
    q = 1 / (1 + np.exp(-o)) * np.tanh(s)
    alpha = np.asarray(net.up.weight) @ q
    if isinstance(rates, learned.SoftplusRates):
        alpha = np.log1p(np.exp(alpha))
    optimizer = learned.learned_optimizer(net)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    np.testing.assert_allclose(updates["a"], -alpha[:2] * g[:2], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(updates["b"], -alpha[2:] * g[2:], rtol=1e-4, atol=1e-9)


def test_rates_strategies_against_numpy_and_the_names_the_config_resolves():
    """`LinearRates()` is `α = u`, `SoftplusRates()` is `α = log(1 + e^u)`; the experiment's
    `rates` names resolve once, to these objects."""
    u = np.linspace(-30.0, 30.0, 13)
    np.testing.assert_array_equal(learned.LinearRates()(jnp.asarray(u)), u.astype(np.float32))
    softplus = np.asarray(learned.SoftplusRates()(jnp.asarray(u)))
    np.testing.assert_allclose(softplus, np.log1p(np.exp(u)), rtol=1e-6)
    assert set(RATES) == {"linear", "softplus"}
    assert isinstance(RATES[Config().rates], learned.LinearRates)
    assert isinstance(RATES[Config().quick().rates], learned.SoftplusRates)


def test_linear_rates_take_both_signs_softplus_rates_never_negative():
    """The divergence of the paper's linear rates: at initialisation about half of α is negative
    (gradient ascent on those weights); softplus rates are all > 0, so −α ⊙ g is a descent step."""
    n = learned.mlp_parameter_count((20, 8, 4))
    x, g = jax.random.normal(jax.random.PRNGKey(4), (2, n))
    for rates in (learned.LinearRates(), learned.SoftplusRates()):
        net = learned.LearnedOptimizer(DecayCell, n, internal_steps=2, clip_decrement=True,
                                       rates=rates, key=jax.random.PRNGKey(5))  # fmt: skip
        alpha, _, _ = net(x, g, net.initial_state())
        negative = float(np.mean(np.asarray(alpha) < 0))
        if isinstance(rates, learned.LinearRates):
            assert 0.3 < negative < 0.7
        else:
            assert negative == 0.0
            # a descent direction: the first-order change of the loss, −Σ α g², is negative
            assert float(-(alpha * g**2).sum()) < 0


def test_decay_forget_gate_decays_within_and_resets_each_update():
    net = _net(DecayCell, internal_steps=4)
    theta = jax.random.normal(jax.random.PRNGKey(4), (net.num_parameters,))
    grad = jax.random.normal(jax.random.PRNGKey(5), (net.num_parameters,))
    state = net.initial_state()
    _, state, first = net(theta, grad, state)
    assert first.shape == (4, 8)
    assert np.all(np.diff(np.asarray(first), axis=0) <= 1e-7)
    assert np.all(np.asarray(state.p) >= -1e-6)  # at most π/2 lost over D = 4 steps
    alpha, _, second = net(theta, grad, state)
    assert np.all(np.diff(np.asarray(second), axis=0) <= 1e-7)
    assert np.all(np.asarray(second[0]) >= np.asarray(first[-1]) - 1e-7)  # reset to π/2
    # the incoming polar is ignored: any p gives the result of p = π/2
    other, _, forget = net(theta, grad, state._replace(p=jnp.zeros_like(state.p)))
    np.testing.assert_allclose(other, alpha, rtol=1e-6)
    np.testing.assert_allclose(forget, second, rtol=1e-6)
    assert np.all(np.asarray(forget[0]) <= 1.0) and math.isclose(net.internal_steps, 4)


def _improvement(net, images, labels):
    """Mean summed loss change of 20 updates on 8 fixed optimisees (negative is better)."""
    return float(_mean_improvement(net, images, labels))


@eqx.filter_jit
def _mean_improvement(net, images, labels):
    """`_improvement` in one compiled program (an eager `vmap` compiles each operation)."""
    optimizer = learned.learned_optimizer(net)

    def one(key):
        init_key, data_key = jax.random.split(key)
        params = learned.init_mlp(init_key, SIZES)
        _, (before, after) = learned.rollout(
            optimizer, params, optimizer.init(params), images, labels, key=data_key, updates=20
        )
        return jnp.sum(after - before)

    return jax.vmap(one)(jax.random.split(jax.random.PRNGKey(9), 8)).mean()


def test_meta_training_improves_the_optimiser():
    images, labels = _task()
    net = _net(LSTMCell)
    trained, history = learned.meta_train(
        net,
        images,
        labels,
        key=jax.random.PRNGKey(7),
        meta_iterations=12,
        optimisees=4,
        updates=20,
        truncation=10,
        optimizer=optax.adam(1e-2),
        init_fn=lambda key: learned.init_mlp(key, SIZES),
    )
    assert history.shape == (12, 2) and np.all(np.isfinite(history))
    before, after = _improvement(net, images, labels), _improvement(trained, images, labels)
    assert after < before - 0.05, (before, after)


def test_a_non_finite_meta_loss_stops_meta_training():
    images, labels = _task()

    def exploding(params, x, y):  # finite at θ(0), inf once the optimisee has moved
        loss = learned.mlp_loss(params, x, y)
        moved = jnp.abs(params[0]["bias"]).sum() > 0
        return jnp.where(moved, jnp.inf, loss)

    with pytest.raises(TrainingStopped, match=r"meta-iteration 1 of 2, truncation 1") as error:
        learned.meta_train(
            _net(LSTMCell), images, labels, key=jax.random.PRNGKey(0), meta_iterations=2,
            optimisees=2, updates=20, truncation=10, loss_fn=exploding,
            init_fn=lambda key: learned.init_mlp(key, SIZES),
        )  # fmt: skip
    assert (error.value.step, error.value.member) == (0, None)


def test_bad_inputs_name_the_field():
    with pytest.raises(ValueError, match="rates"):
        Config(rates="relu")
    for name in ("exp", "softplus"):
        with pytest.raises(TypeError, match="rates must be an AbstractRates.*SoftplusRates"):
            learned.LearnedOptimizer(LSTMCell, 10, rates=name, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="truncation"):
        Config(updates=100, truncation=30)
    with pytest.raises(ValueError, match="internal_steps"):
        Config(internal_steps=0)
    with pytest.raises(ValueError, match="eval_optimisees"):
        Config(eval_optimisees=1)
    with pytest.raises(ValueError, match="sgd_learning_rate"):
        Config(sgd_learning_rate=0.0)
    with pytest.raises(ValueError, match="meta_iterations"):
        Config(meta_iterations=2.5)
    with pytest.raises(ValueError, match="cell"):
        learned.LearnedOptimizer("lstm", 10, key=jax.random.PRNGKey(0))
    images, labels = _task(8)
    for optimizer in (1e-3, "adam"):
        with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
            learned.meta_train(
                _net(), images, labels, key=jax.random.PRNGKey(0), meta_iterations=1,
                optimizer=optimizer,
            )  # fmt: skip


def test_quick_experiment_runs_and_writes_keys(tmp_path, mnist_files):
    config = dataclasses.replace(
        Config(), meta_iterations=1, eval_optimisees=3, train_subset=512, updates=40,
        rates="softplus",
    )  # fmt: skip
    result = run(config, tmp_path)
    final = {name: entry["final"] for name, entry in result["optimizers"].items()}
    # What the full run shows holds already here: both learned optimisers end below Adam.
    assert max(final["LSTM"], final["DecayNet"]) < final["Adam"], final
    assert set(result["optimizers"]) == {"LSTM", "DecayNet", "SGD", "Adam", "RMSProp"}
    for entry in result["optimizers"].values():
        assert entry["mean"].shape == (41,) and np.all(np.isfinite(entry["mean"]))
        assert entry["block_means"].shape == (3, 2)
    late = {name: result["optimizers"][name]["late_means"] for name in ("DecayNet", "LSTM")}
    block = result["block"]
    for name, means in late.items():  # each optimisee's mean over the last `block` + 1 losses
        curve = result["optimizers"][name]["mean"]  # the mean over optimisees, per update
        assert means.shape == (3,)
        assert np.mean(means) == pytest.approx(np.mean(curve[-(block + 1) :]), rel=1e-6)
    welch = scipy.stats.ttest_ind(late["DecayNet"], late["LSTM"], equal_var=False)
    assert result["late_test"]["p_value"] == pytest.approx(float(welch.pvalue), rel=1e-12)
    assert result["late_test"]["welch_t"] == pytest.approx(float(welch.statistic), rel=1e-12)
    assert result["late_test"]["decaynet_minus_lstm"] == pytest.approx(
        float(np.mean(late["DecayNet"]) - np.mean(late["LSTM"]))
    )
    assert result["num_parameters"] == 784 * 20 + 20 + 20 * 10 + 10
    assert result["meta_losses"]["DecayNet"].shape == (1, 1, 2)
    assert {"meta_train", "evaluate"} <= set(result["seconds"])
    learned_figure(result)
