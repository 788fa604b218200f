"""Property-based bad-input tests of the DecayNet cells and classifier: every drawn input either
gives a finite result or raises `ValueError`/`TypeError` naming the argument. Tiny, fixed sizes
(2 inputs, 3 hidden units, sequences of 3 or 4 steps) keep the compilations few."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from decaynet import DecayCell, LSTMCell, SequenceClassifier, scan_cell
from decaynet._normalisation import LayerNormalisation, NoNormalisation
from tests.memdyn.test_properties import arrays, outcome

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
KEY = jax.random.key(0)
CELLS = {
    "lstm": LSTMCell(2, 3, key=KEY),
    "decay": DecayCell(2, 3, sequence_length=3, key=KEY),
    "decay_clipped": DecayCell(2, 3, sequence_length=3, clip_decrement=True, key=KEY),
}
SHAPES = [(1, 3, 2), (2, 3, 2), (3, 2), (1, 3, 3), (1, 3, 2, 1), (1, 0, 2)]


@SETTINGS
@given(xs=arrays(SHAPES))
def test_scan_cell_gives_finite_trajectories_or_named_errors(xs):
    for cell in CELLS.values():
        for normalisation in (NoNormalisation(), LayerNormalisation(3)):
            outcome(lambda c=cell, n=normalisation: scan_cell(c, n, xs)[:2], "xs")


@SETTINGS
@given(xs=arrays([(1, 3, 2), (2, 4, 2), (3, 2)]))
def test_classifier_gives_finite_logits_or_named_errors(xs):
    model, state = eqx.nn.make_with_state(SequenceClassifier)(
        cell=DecayCell, input_size=2, hidden_size=3, num_classes=2, sequence_length=3, key=KEY
    )
    outcome(lambda: model(xs, state)[0], "xs")


def test_decay_cell_refuses_more_steps_than_its_sequence_length_under_jit_too():
    cell = CELLS["decay"]
    ok, _ = cell.scan(jnp.ones((3, 2)))
    assert np.all(np.isfinite(ok.q))
    shorter, _ = cell.scan(jnp.ones((2, 2)))  # a prefix is fine: p stays in [0, π/2]
    assert np.all(np.isfinite(shorter.q))
    with pytest.raises(ValueError, match="xs has 4 steps but this DecayCell"):
        cell.scan(jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="sequence_length = 3"):
        jax.jit(lambda xs: cell.scan(xs)[0].q)(jnp.ones((4, 2)))
    LSTMCell(2, 3, key=KEY).scan(jnp.ones((40, 2)))  # the LSTM has no length


def test_cells_check_nan_input_under_jit_and_one_step_shapes():
    cell = CELLS["lstm"]
    with pytest.raises(ValueError, match="xs contains 1 non-finite"):
        cell.scan(jnp.ones((3, 2)).at[1, 0].set(jnp.nan))
    with pytest.raises(Exception, match="xs contains non-finite"):
        eqx.filter_jit(lambda xs: cell.scan(xs)[0].q)(jnp.ones((3, 2)).at[1, 0].set(jnp.inf))
    with pytest.raises(ValueError, match="x must have shape \\(2\\)"):
        cell(cell.initial_carry(), jnp.ones(3))
    with pytest.raises(TypeError, match="xs must be float32 or float64"):
        cell.scan(jnp.ones((3, 2), jnp.float16))
    with pytest.raises(ValueError, match="initial must be a CellState"):
        cell.scan(jnp.ones((3, 2)), CELLS["decay"].initial_carry())


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_sizes_must_be_positive_integers(bad):
    for name, build in (
        ("input_size", lambda v: LSTMCell(v, 3, key=KEY)),
        ("hidden_size", lambda v: LSTMCell(2, v, key=KEY)),
        ("sequence_length", lambda v: DecayCell(2, 3, sequence_length=v, key=KEY)),
    ):
        with pytest.raises(ValueError, match=name):
            build(bad)
