"""Recurrent batch normalisation against a NumPy loop written from Cooijmans et al. (2016)."""

import functools
import math

import equinox as eqx
import jax
import numpy as np
import pytest

from decaynet import DecayCell, LSTMCell, PyTorchInit, RecurrentBatchNorm, SequenceClassifier

BATCH, TIME, INPUT, HIDDEN, EPS, MOMENTUM = 6, 5, 3, 4, 1e-5, 0.9


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _reference(cell, norm, xs, moments=None):
    """NumPy RBN forward over a batch; `moments=None` uses batch statistics, else the given ones.

    Returns the hidden trajectory (batch, time, hidden) and the per-step statistics used.
    """
    w, r, b = (np.asarray(a) for a in (cell.weight_input, cell.weight_recurrent, cell.bias))
    gx, gr, gc, bc = (
        np.asarray(a)
        for a in (norm.gamma_input, norm.gamma_recurrent, norm.gamma_cell, norm.beta_cell)
    )
    decay = hasattr(cell, "sequence_length")
    u = xs @ w.T
    used = {k: [] for k in ("rm", "rv", "cm", "cv")}
    if moments is None:
        im, iv = u.mean(0), u.var(0)
    else:
        im, iv = moments["im"], moments["iv"]
    uh = gx * (u - im) / np.sqrt(iv + EPS) + b
    q = np.zeros((xs.shape[0], HIDDEN))
    s = np.zeros_like(q)
    p = np.full_like(q, math.pi / 2)
    qs = []
    for t in range(TIME):
        v = q @ r.T
        rm, rv = (v.mean(0), v.var(0)) if moments is None else (moments["rm"][t], moments["rv"][t])
        z = uh[:, t] + gr * (v - rm) / np.sqrt(rv + EPS)
        zi, zf, zg, zo = np.split(z, 4, axis=1)
        if decay:
            p = p - math.pi / (2 * TIME) * (zf + 3) / 6
            f = np.sin(np.clip(p, 0, math.pi / 2))
        else:
            f = _sigmoid(zf)
        s = f * s + _sigmoid(zi) * np.tanh(zg)
        cm, cv = (s.mean(0), s.var(0)) if moments is None else (moments["cm"][t], moments["cv"][t])
        q = _sigmoid(zo) * np.tanh(gc * (s - cm) / np.sqrt(cv + EPS) + bc)
        qs.append(q)
        for k, val in zip(("rm", "rv", "cm", "cv"), (rm, rv, cm, cv), strict=True):
            used[k].append(val)
    stats = {k: np.stack(v) for k, v in used.items()} | {"im": im, "iv": iv}
    return np.stack(qs, 1), stats


@pytest.fixture(scope="module", params=[LSTMCell, DecayCell])
def setup(request):
    with jax.enable_x64(True):
        model, state = eqx.nn.make_with_state(SequenceClassifier)(
            cell=request.param,
            input_size=INPUT,
            hidden_size=HIDDEN,
            num_classes=2,
            sequence_length=TIME,
            normalisation=RecurrentBatchNorm(HIDDEN, TIME),
            init=PyTorchInit(),
            key=jax.random.key(0),
        )
        # Move the learned scales away from their initial 0.1 so that each one is tested.
        norm = model.normalisation
        keys = jax.random.split(jax.random.key(1), 4)
        new = [
            jax.random.uniform(k, a.shape, minval=0.5, maxval=1.5, dtype=float)
            for k, a in zip(
                keys,
                (norm.gamma_input, norm.gamma_recurrent, norm.gamma_cell, norm.beta_cell),
                strict=True,
            )
        ]
        model = eqx.tree_at(
            lambda m: (
                m.normalisation.gamma_input,
                m.normalisation.gamma_recurrent,
                m.normalisation.gamma_cell,
                m.normalisation.beta_cell,
            ),
            model,
            tuple(new),
        )
        yield model, state


def _clone(state):
    """A fresh handle on the same values: the fixture's state is shared by the tests, and a state
    that has been updated may not be read again (`eqx.nn.State`'s rule)."""
    return jax.tree_util.tree_unflatten(*jax.tree_util.tree_flatten(state)[::-1])


def _trajectories(model, xs, state, inference):
    _, trajectory, state = model.encode(xs, _clone(state), inference=inference)
    return trajectory.q, state


def test_initial_scales():
    norm = RecurrentBatchNorm(HIDDEN, TIME)
    assert np.all(np.asarray(norm.gamma_input) == 0.1)
    assert np.all(np.asarray(norm.gamma_recurrent) == 0.1)
    assert np.all(np.asarray(norm.gamma_cell) == 0.1)
    assert np.all(np.asarray(norm.beta_cell) == 0.0)


def test_training_mode_uses_batch_statistics(setup):
    model, state = setup
    with jax.enable_x64(True):
        xs = np.asarray(jax.random.normal(jax.random.key(2), (BATCH, TIME, INPUT)))
        q, new_state = _trajectories(model, xs, state, inference=False)
        q_ref, stats = _reference(model.cell, model.normalisation, xs)
        np.testing.assert_allclose(q, q_ref, atol=1e-10)
        # After one batch the debiased running averages are exactly that batch's statistics.
        population = model.normalisation.population_moments(new_state)
        for name, key in [
            ("input_mean", "im"),
            ("input_var", "iv"),
            ("recurrent_mean", "rm"),
            ("recurrent_var", "rv"),
            ("cell_mean", "cm"),
            ("cell_var", "cv"),
        ]:
            np.testing.assert_allclose(getattr(population, name), stats[key], atol=1e-10)


def test_eval_mode_uses_running_statistics(setup):
    model, state = setup
    with jax.enable_x64(True):
        first = np.asarray(jax.random.normal(jax.random.key(3), (BATCH, TIME, INPUT)))
        second = 2.0 + np.asarray(jax.random.normal(jax.random.key(4), (BATCH, TIME, INPUT)))
        _, state = _trajectories(model, first, state, inference=False)
        _, state = _trajectories(model, second, state, inference=False)
        _, stats_1 = _reference(model.cell, model.normalisation, first)
        _, stats_2 = _reference(model.cell, model.normalisation, second)
        # Debiased exponential moving average of the two batches' statistics.
        weight = MOMENTUM * (1 - MOMENTUM) / (1 - MOMENTUM**2)
        expected = {k: weight * stats_1[k] + (1 - weight) * stats_2[k] for k in stats_1}
        test = np.asarray(jax.random.normal(jax.random.key(5), (BATCH, TIME, INPUT)))
        q, unchanged = _trajectories(model, test, state, inference=True)
        q_ref, _ = _reference(model.cell, model.normalisation, test, moments=expected)
        np.testing.assert_allclose(q, q_ref, atol=1e-10)
        # In evaluation one example's output does not depend on the rest of the batch.
        q_single, _ = _trajectories(model, test[:1], state, inference=True)
        np.testing.assert_allclose(q_single[0], q[0], atol=1e-12)
        for a, b in zip(
            jax.tree_util.tree_leaves(unchanged), jax.tree_util.tree_leaves(state), strict=True
        ):
            np.testing.assert_array_equal(a, b)


def test_classifier_batch_norm_trains_through_partial(setup):
    model, state = setup
    with jax.enable_x64(True):
        xs = np.asarray(jax.random.normal(jax.random.key(6), (BATCH, TIME, INPUT)))
        logits, _ = functools.partial(model, inference=False)(xs, _clone(state))
        assert logits.shape == (BATCH, 2) and np.all(np.isfinite(logits))


def test_bad_momentum():
    with pytest.raises(ValueError, match="momentum"):
        RecurrentBatchNorm(HIDDEN, TIME, momentum=1.0)
