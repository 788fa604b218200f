"""Initialisations are strategy objects (`init=PaperInit()`, `PyTorchInit()`): each gives the
documented draws, written out here with `jax.random` from the documented keys and bounds (§6.1's
U(−1, 1) weights and zero biases; PyTorch's U(±1/√N)), in float32 and float64; a name is refused
with a `TypeError` everywhere the library takes `init`; a user's scheme plugs in."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decaynet
from decaynet import (
    AbstractInit,
    Adder,
    DecayCell,
    LSTMCell,
    PaperInit,
    PyTorchInit,
    SequenceClassifier,
    row_classifier,
)

INPUT, HIDDEN, CLASSES, TIME = 3, 5, 4, 6


def _uniform(key, shape, bound):
    return jax.random.uniform(key, shape, dtype=float, minval=-bound, maxval=bound)


def _expected_cell(key, init_name):
    """The cell's arrays: keys (input, recurrent, bias) from one three-way split."""
    input_key, recurrent_key, bias_key = jax.random.split(key, 3)
    gates = 4 * HIDDEN
    if init_name == "paper":
        return (
            _uniform(input_key, (gates, INPUT), 1.0),
            _uniform(recurrent_key, (gates, HIDDEN), 1.0),
            jnp.zeros(gates),
        )
    bound = 1 / math.sqrt(HIDDEN)
    return (
        _uniform(input_key, (gates, INPUT), bound),
        _uniform(recurrent_key, (gates, HIDDEN), bound),
        _uniform(bias_key, (gates,), bound),
    )


def _assert_equal(actual, expected):
    for a, e in zip(actual, expected, strict=True):
        assert a.dtype == e.dtype == jnp.result_type(float)
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("init_name", ["paper", "pytorch"])
def test_each_init_gives_the_documented_draws(init_name, x64):
    init = {"paper": PaperInit(), "pytorch": PyTorchInit()}[init_name]
    assert decaynet.INITIALISATIONS[init_name] == init
    key = jax.random.key(3)
    with jax.enable_x64(x64):
        for cell in (
            LSTMCell(INPUT, HIDDEN, init=init, key=key),
            DecayCell(INPUT, HIDDEN, sequence_length=TIME, init=init, key=key),
        ):
            arrays = (cell.weight_input, cell.weight_recurrent, cell.bias)
            _assert_equal(arrays, _expected_cell(key, init_name))
        # The classifier: (cell key, head key) from a two-way split; the paper's head draws
        # its weight from the whole head key, PyTorch's is Equinox's `Linear` (weight and bias
        # keys from a two-way split of it, U(±1/√in_features)).
        model, _ = eqx.nn.make_with_state(SequenceClassifier)(
            LSTMCell, INPUT, HIDDEN, CLASSES, TIME, init=init, key=key
        )
        cell_key, head_key = jax.random.split(key)
        cell_arrays = (model.cell.weight_input, model.cell.weight_recurrent, model.cell.bias)
        _assert_equal(cell_arrays, _expected_cell(cell_key, init_name))
        if init_name == "paper":
            head = (_uniform(head_key, (CLASSES, HIDDEN), 1.0), jnp.zeros(CLASSES))
        else:
            weight_key, bias_key = jax.random.split(head_key)
            bound = 1 / math.sqrt(HIDDEN)
            head = (
                _uniform(weight_key, (CLASSES, HIDDEN), bound),
                _uniform(bias_key, (CLASSES,), bound),
            )
        _assert_equal((model.head.weight, model.head.bias), head)
        # The adder's readout V is a weight of the hidden layer.
        adder = Adder(LSTMCell, HIDDEN, TIME, init=init, key=key)
        readout_key = jax.random.split(key)[1]
        bound = 1.0 if init_name == "paper" else 1 / math.sqrt(HIDDEN)
        _assert_equal((adder.readout,), (_uniform(readout_key, (HIDDEN,), bound),))


def test_a_name_is_refused_where_the_library_takes_init():
    key = jax.random.key(0)
    calls = {  # every entry point, each a name's TypeError
        "LSTMCell": lambda: LSTMCell(INPUT, HIDDEN, init="paper", key=key),
        "DecayCell": lambda: DecayCell(INPUT, HIDDEN, sequence_length=2, init="paper", key=key),
        "for_sequences": lambda: LSTMCell.for_sequences(
            INPUT, HIDDEN, sequence_length=2, init="pytorch", key=key
        ),
        "SequenceClassifier": lambda: SequenceClassifier(
            LSTMCell, INPUT, HIDDEN, CLASSES, TIME, init="paper", key=key
        ),
        "row_classifier": lambda: row_classifier(LSTMCell, HIDDEN, "pytorch"),
        "Adder": lambda: Adder(LSTMCell, HIDDEN, TIME, init="paper", key=key),
    }
    for call in calls.values():
        with pytest.raises(TypeError, match=r"init must be an AbstractInit.*INITIALISATIONS"):
            call()
    with pytest.raises(TypeError, match="init must be an AbstractInit"):
        LSTMCell(INPUT, HIDDEN, init=None, key=key)


def test_a_users_initialisation_plugs_in():
    class ConstantInit(AbstractInit):
        """Every weight 0.1, every bias -0.2; the head Equinox's, its weight set to 0.1 too."""

        def weight(self, key, shape, hidden_size):
            return jnp.full(shape, 0.1)

        def bias(self, key, shape, hidden_size):
            return jnp.full(shape, -0.2)

        def linear(self, in_features, out_features, *, key):
            layer = eqx.nn.Linear(in_features, out_features, key=key)
            return eqx.tree_at(lambda layer: layer.weight, layer, jnp.full_like(layer.weight, 0.1))

    model, _ = row_classifier(DecayCell, HIDDEN, ConstantInit())(jax.random.key(1))
    assert np.all(model.cell.weight_recurrent == 0.1) and np.all(model.cell.bias == -0.2)
    assert np.all(model.head.weight == 0.1)

    class Incomplete(AbstractInit):
        def weight(self, key, shape, hidden_size):
            return jnp.zeros(shape)

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()
