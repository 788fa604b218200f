"""The normalisation plug-in of `scan_cell`: layer norm against NumPy, the identity against the
plain cell, and a normalisation that misses a site is not instantiable."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decaynet import (
    AbstractNormalisation,
    DecayCell,
    LayerNormalisation,
    LSTMCell,
    NoNormalisation,
    PyTorchInit,
    RecurrentBatchNorm,
    scan_cell,
)

INPUT, HIDDEN, TIME, BATCH, EPS = 3, 4, 6, 5, 1e-5


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _layer_norm(v, weight, bias):
    return (v - v.mean()) / np.sqrt(v.var() + EPS) * weight + bias


def _perturbed_layer_norm(key):
    """Layer norm with scales and shifts away from 1 and 0, so that each is tested."""
    norm = LayerNormalisation(HIDDEN, eps=EPS)
    keys = jax.random.split(key, 4)
    leaves = (
        norm.input_norm.weight,
        norm.input_norm.bias,
        norm.recurrent_norm.weight,
        norm.recurrent_norm.bias,
    )
    new = [
        1.0 + 0.5 * jax.random.normal(k, a.shape, dtype=float)
        for k, a in zip(keys, leaves, strict=True)
    ]
    return eqx.tree_at(
        lambda n: (
            n.input_norm.weight,
            n.input_norm.bias,
            n.recurrent_norm.weight,
            n.recurrent_norm.bias,
        ),
        norm,
        tuple(new),
    )


@pytest.mark.parametrize("cell_class", [LSTMCell, DecayCell])
def test_layer_norm_against_numpy(cell_class):
    """`z_t = LN_x(W x_t) + LN_R(W_R q_{t-1}) + b`, `q_t = o_t tanh(s_t)` (App. D)."""
    with jax.enable_x64(True):
        cell = cell_class.for_sequences(
            INPUT, HIDDEN, sequence_length=TIME, init=PyTorchInit(), key=jax.random.key(0)
        )
        norm = _perturbed_layer_norm(jax.random.key(1))
        xs = jax.random.normal(jax.random.key(2), (TIME, INPUT), dtype=float)
        final, trajectory, state = scan_cell(cell, norm, xs[None])
        final, trajectory = jax.tree.map(lambda a: a[0], (final, trajectory))  # the one sequence
        assert state is None
        w, r, b = (np.asarray(a) for a in (cell.weight_input, cell.weight_recurrent, cell.bias))
        ln_x = [np.asarray(a) for a in (norm.input_norm.weight, norm.input_norm.bias)]
        ln_r = [np.asarray(a) for a in (norm.recurrent_norm.weight, norm.recurrent_norm.bias)]
        state = cell.initial_carry()
        q, s = np.zeros(HIDDEN), np.zeros(HIDDEN)
        p = None if state.p is None else np.asarray(state.p)
        for t, x in enumerate(np.asarray(xs)):
            z = _layer_norm(w @ x, *ln_x) + _layer_norm(r @ q, *ln_r) + b
            zi, zf, za, zo = np.split(z, 4)
            if p is None:
                f = _sigmoid(zf)
            else:
                p = p - np.pi / (2 * TIME) * (zf + 3) / 6
                f = np.sin(np.clip(p, 0, np.pi / 2))
            s = f * s + _sigmoid(zi) * np.tanh(za)
            q = _sigmoid(zo) * np.tanh(s)
            np.testing.assert_allclose(trajectory.q[t], q, atol=1e-12)
            np.testing.assert_allclose(trajectory.f[t], f, atol=1e-12)
        np.testing.assert_allclose(final.s, s, atol=1e-12)


def test_no_normalisation_is_the_plain_cell_and_batch_independent():
    """The identity normalisation gives the cell's own steps, in training under a named batch
    axis as in inference: nothing couples the examples of a batch."""
    cell = DecayCell(INPUT, HIDDEN, sequence_length=TIME, key=jax.random.key(3))
    xs = jax.random.normal(jax.random.key(4), (BATCH, TIME, INPUT))

    def run(inference):
        return scan_cell(cell, NoNormalisation(), xs, inference=inference)[1].q

    training, inference = run(False), run(True)
    np.testing.assert_array_equal(training, inference)
    for b in range(BATCH):
        state = cell.initial_carry()
        for t in range(TIME):
            state, q = cell(state, xs[b, t])
            np.testing.assert_allclose(training[b, t], q, atol=1e-6)


def test_a_normalisation_must_implement_every_site():
    class InputOnly(AbstractNormalisation):
        def normalise_input(self, projected, time, statistics):
            return projected, None

    with pytest.raises(TypeError, match="abstract"):
        InputOnly()


def test_bad_arguments():
    with pytest.raises(ValueError, match="hidden_size"):
        LayerNormalisation(0)
    cell = LSTMCell(INPUT, HIDDEN, key=jax.random.key(5))
    with pytest.raises(ValueError, match="state"):
        scan_cell(
            cell, RecurrentBatchNorm(HIDDEN, TIME), jnp.zeros((1, TIME, INPUT)), inference=True
        )
