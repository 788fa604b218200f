"""The LSTM cell against torch.nn.LSTM; the DecayNet cell's claimed properties (System 2)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decaynet import (
    DecayCell,
    LSTMCell,
    NoNormalisation,
    PaperInit,
    PyTorchInit,
    forget_polar_activation,
    scan_cell,
)

INPUT, HIDDEN, TIME = 3, 5, 7


def _sequence(seed, time=TIME, scale=1.0):
    return scale * jax.random.normal(jax.random.key(seed), (time, INPUT))


def test_lstm_matches_torch_outputs_and_gradients():
    torch = pytest.importorskip("torch")
    with jax.enable_x64(True):
        cell = LSTMCell(INPUT, HIDDEN, init=PyTorchInit(), key=jax.random.key(0))
        xs = _sequence(1)
        reference = torch.nn.LSTM(INPUT, HIDDEN, batch_first=True).double()
        with torch.no_grad():
            reference.weight_ih_l0.copy_(torch.tensor(np.asarray(cell.weight_input)))
            reference.weight_hh_l0.copy_(torch.tensor(np.asarray(cell.weight_recurrent)))
            reference.bias_ih_l0.copy_(torch.tensor(np.asarray(cell.bias)))
            reference.bias_hh_l0.zero_()
        x_torch = torch.tensor(np.asarray(xs))[None].requires_grad_(True)
        out_torch, (q_torch, s_torch) = reference(x_torch)
        # A scalar that depends on every output step and on the final cell state.
        weights = torch.linspace(-1.0, 1.0, TIME * HIDDEN, dtype=torch.float64).reshape(
            TIME, HIDDEN
        )
        cell_weights = torch.linspace(2.0, -1.0, HIDDEN, dtype=torch.float64)
        ((out_torch[0] * weights).sum() + (s_torch[0, 0] * cell_weights).sum()).backward()

        def loss(cell, xs):
            final, trajectory = cell.scan(xs)
            value = jnp.sum(trajectory.q * weights.numpy()) + jnp.sum(
                final.s * cell_weights.numpy()
            )
            return value, (final, trajectory)

        (_, (final, trajectory)), (grad_cell, grad_x) = jax.value_and_grad(
            loss, argnums=(0, 1), has_aux=True
        )(cell, xs)

        np.testing.assert_allclose(trajectory.q, out_torch[0].detach().numpy(), atol=1e-10)
        np.testing.assert_allclose(final.q, q_torch[0, 0].detach().numpy(), atol=1e-10)
        np.testing.assert_allclose(final.s, s_torch[0, 0].detach().numpy(), atol=1e-10)
        np.testing.assert_allclose(grad_x, x_torch.grad[0].numpy(), atol=1e-10)
        np.testing.assert_allclose(
            grad_cell.weight_input, reference.weight_ih_l0.grad.numpy(), atol=1e-10
        )
        np.testing.assert_allclose(
            grad_cell.weight_recurrent, reference.weight_hh_l0.grad.numpy(), atol=1e-10
        )
        # One bias vector stands for torch's two; both receive the same gradient.
        np.testing.assert_allclose(grad_cell.bias, reference.bias_ih_l0.grad.numpy(), atol=1e-10)
        np.testing.assert_allclose(grad_cell.bias, reference.bias_hh_l0.grad.numpy(), atol=1e-10)


@pytest.mark.parametrize("cell_class", [LSTMCell, DecayCell])
def test_scan_equals_the_step_looped_in_python(cell_class):
    cell = cell_class.for_sequences(INPUT, HIDDEN, sequence_length=TIME, key=jax.random.key(2))
    xs = _sequence(3)
    state, states = cell.initial_carry(), []
    for x in xs:
        state, q = cell(state, x)
        assert q is state.q
        states.append(state)
    final, trajectory, model_state = scan_cell(cell, NoNormalisation(), xs[None])
    final, trajectory = jax.tree.map(lambda a: a[0], (final, trajectory))  # the one sequence
    assert model_state is None
    for name in ("q", "s", "p"):
        looped = [getattr(s, name) for s in states]
        if looped[0] is None:
            assert getattr(trajectory, name) is None and getattr(final, name) is None
            continue
        np.testing.assert_allclose(getattr(trajectory, name), np.stack(looped), atol=1e-6)
        np.testing.assert_allclose(getattr(final, name), looped[-1], atol=1e-6)
    scanned, scanned_trajectory = cell.scan(xs)
    np.testing.assert_array_equal(scanned.q, final.q)
    np.testing.assert_array_equal(scanned_trajectory.f, trajectory.f)


def _decay_trajectory(cell, xs):
    return jax.jit(lambda c, x: c.scan(x))(cell, xs)


@pytest.mark.parametrize("init", [PaperInit(), PyTorchInit()], ids=["paper", "pytorch"])
def test_clipped_decrement_forget_gate_never_increases(init):
    # Large inputs push pre-activations far outside [-3, 3], both signs.
    cell = DecayCell(
        INPUT, HIDDEN, sequence_length=TIME, clip_decrement=True, init=init, key=jax.random.key(4)
    )
    for seed in range(3):
        final, trajectory = _decay_trajectory(cell, _sequence(seed, scale=10.0))
        f = np.concatenate([np.ones((1, HIDDEN)), np.asarray(trajectory.f)])
        assert np.all(np.diff(f, axis=0) <= 0.0)
        p = np.asarray(trajectory.p)
        assert np.all(p >= -1e-6) and np.all(p <= math.pi / 2 + 1e-6)


def test_paper_decrement_can_increase_outside_the_assumed_range():
    """Without clipping, `f` is monotone only while the pre-activation stays in [-3, 3]."""
    cell = DecayCell(INPUT, HIDDEN, sequence_length=TIME, key=jax.random.key(4))
    _, trajectory = _decay_trajectory(cell, _sequence(0, scale=10.0))
    assert np.any(np.diff(np.asarray(trajectory.f), axis=0) > 0.0)


def _bounded_preactivation_cell(key):
    """Paper init, then scaled so that |W_F x + W_RF q + b_F| ≤ 3 for |x_i| ≤ 1 and |q_i| ≤ 1."""
    cell = DecayCell(INPUT, HIDDEN, sequence_length=TIME, key=key)
    rows = slice(HIDDEN, 2 * HIDDEN)
    bound = np.max(
        np.abs(np.asarray(cell.weight_input[rows])).sum(1)
        + np.abs(np.asarray(cell.weight_recurrent[rows])).sum(1)
    )
    scale = 3.0 / bound
    return eqx.tree_at(
        lambda c: (c.weight_input, c.weight_recurrent),
        cell,
        (cell.weight_input * scale, cell.weight_recurrent * scale),
    )


def test_paper_decrement_monotone_for_preactivations_in_range():
    cell = _bounded_preactivation_cell(jax.random.key(5))
    for seed in range(3):
        xs = jax.random.uniform(jax.random.key(seed), (TIME, INPUT), minval=-1.0, maxval=1.0)
        _, trajectory = _decay_trajectory(cell, xs)
        f = np.concatenate([np.ones((1, HIDDEN)), np.asarray(trajectory.f)])
        assert np.all(np.diff(f, axis=0) <= 1e-7)
        p = np.asarray(trajectory.p)
        assert np.all(p[-1] >= -1e-6)
        assert np.all(np.diff(np.concatenate([np.full((1, HIDDEN), math.pi / 2), p]), axis=0) <= 0)


def test_forget_gate_starts_at_one_and_decrements_exactly():
    """f_0 = Φ(p_0) = sin(π/2) = 1; with z_F = -3 nothing decays; with z_F = +3 all π/2 is lost."""
    cell = DecayCell(INPUT, HIDDEN, sequence_length=TIME, key=jax.random.key(6))
    assert np.allclose(forget_polar_activation(cell.initial_carry().p), 1.0)
    zero_weights = eqx.tree_at(
        lambda c: (c.weight_input, c.weight_recurrent),
        cell,
        (cell.weight_input * 0, cell.weight_recurrent * 0),
    )
    for bias, final_p in [(-3.0, math.pi / 2), (3.0, 0.0), (0.0, math.pi / 4)]:
        biased = eqx.tree_at(lambda c: c.bias, zero_weights, jnp.full(4 * HIDDEN, bias))
        _, trajectory = biased.scan(_sequence(7))
        expected_p = math.pi / 2 - np.arange(1, TIME + 1) * (math.pi / (2 * TIME)) * (bias + 3) / 6
        np.testing.assert_allclose(trajectory.p[:, 0], expected_p, atol=1e-6)
        np.testing.assert_allclose(trajectory.f[:, 0], np.sin(expected_p), atol=1e-6)
        np.testing.assert_allclose(trajectory.p[-1], final_p, atol=1e-6)


def test_forget_polar_activation_piecewise():
    p = jnp.array([-1.0, 0.0, 0.3, math.pi / 2, 2.0])
    np.testing.assert_allclose(forget_polar_activation(p), [0.0, 0.0, math.sin(0.3), 1.0, 1.0])


def test_decay_cell_has_exactly_the_lstm_parameters():
    key = jax.random.key(8)
    lstm = LSTMCell(INPUT, HIDDEN, key=key)
    decay = DecayCell(INPUT, HIDDEN, sequence_length=TIME, key=key)

    def count(m):
        return sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array)))

    assert count(lstm) == count(decay) == 4 * HIDDEN * (INPUT + HIDDEN) + 4 * HIDDEN


def test_bad_arguments_raise_named_errors():
    with pytest.raises(TypeError, match="init must be an AbstractInit"):
        LSTMCell(INPUT, HIDDEN, init="paper", key=jax.random.key(0))
    with pytest.raises(ValueError, match="sequence_length"):
        DecayCell(INPUT, HIDDEN, sequence_length=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="hidden_size"):
        LSTMCell(INPUT, 0, key=jax.random.key(0))
    cell = LSTMCell(INPUT, HIDDEN, key=jax.random.key(0))
    with pytest.raises(ValueError, match="xs"):
        scan_cell(cell, NoNormalisation(), jnp.zeros((1, TIME, INPUT + 1)))
    with pytest.raises(ValueError, match="xs"):
        scan_cell(cell, NoNormalisation(), jnp.zeros((TIME, INPUT)))  # no batch axis
