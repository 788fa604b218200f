"""The sequence classifier: the paper's parameter counts, shapes, retracing and bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decaynet import (
    DecayCell,
    LSTMCell,
    PaperInit,
    PyTorchInit,
    RecurrentBatchNorm,
    SequenceClassifier,
    count_parameters,
    parameter_count,
)


def _make(cell=LSTMCell, hidden=32, **kwargs):
    options = dict(
        cell=cell,
        input_size=28,
        hidden_size=hidden,
        num_classes=10,
        sequence_length=28,
        init=PaperInit(),
        key=jax.random.key(0),
    )
    return eqx.nn.make_with_state(SequenceClassifier)(**(options | kwargs))


@pytest.mark.parametrize(
    "cell, hidden, expected",
    [(LSTMCell, 32, 8138), (DecayCell, 32, 8138), (LSTMCell, 64, 24458), (DecayCell, 48, 15274)],
)
def test_parameter_counts_match_the_paper(cell, hidden, expected):
    model, _ = _make(cell, hidden)
    assert count_parameters(model) == parameter_count(28, hidden) == expected


def test_parameters_are_ordered_cell_then_head():
    """The flat parameter order is the cell's weights, then the head's: what random probes,
    clipped norms and checkpoints see. A field declared in a base class would come first."""
    model, _ = _make()
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_leaves_with_path(
        eqx.filter(model, eqx.is_inexact_array))]  # fmt: skip
    assert paths == [".cell.weight_input", ".cell.weight_recurrent", ".cell.bias",
                     ".head.weight", ".head.bias"]  # fmt: skip


def test_batch_norm_adds_only_its_scales_and_shift():
    model, _ = _make(DecayCell, 48, normalisation=RecurrentBatchNorm(48, 28))
    assert count_parameters(model) == 15274 + 4 * 48 + 4 * 48 + 48 + 48


def test_paper_init_of_the_head():
    model, _ = _make(init=PaperInit())
    assert np.all(model.head.bias == 0) and np.max(np.abs(model.head.weight)) > 0.9
    model, _ = _make(init=PyTorchInit())
    assert np.max(np.abs(model.head.weight)) <= 1 / np.sqrt(32)


def test_logits_are_the_head_of_the_final_hidden_state():
    model, state = _make(DecayCell, clip_decrement=True)
    assert model.cell.clip_decrement  # cell-specific keywords reach the cell
    xs = jax.random.uniform(jax.random.key(1), (28, 28))
    (logits,), _ = model(xs[None], state, inference=True)
    carry = model.cell.initial_carry()
    for x in xs:
        carry, q = model.cell(carry, x)
    np.testing.assert_allclose(logits, model.head.weight @ q + model.head.bias, atol=1e-5)


def test_batched_call_compiles_once():
    model, state = _make()
    traces = []

    @eqx.filter_jit
    def predict(model, state, xs):
        traces.append(None)
        return model(xs, state, inference=True)[0]

    for seed in range(3):
        xs = jax.random.uniform(jax.random.key(seed), (4, 28, 28))
        assert predict(model, state, xs).shape == (4, 10)
    assert len(traces) == 1


def test_bad_input_raises_named_errors():
    model, state = _make()
    with pytest.raises(ValueError, match="xs"):
        model(jnp.zeros((1, 27, 28)), state)
    with pytest.raises(ValueError, match="xs"):
        model(jnp.full((1, 28, 28), jnp.nan), state)
    with pytest.raises(ValueError, match="xs"):
        model(jnp.zeros((28, 28)), state)  # one example needs its batch axis
    with pytest.raises(ValueError, match="cell"):
        _make("lstm")  # a cell class, not a name
    with pytest.raises(ValueError, match="normalisation"):
        _make(normalisation="batch")
    with pytest.raises(TypeError, match="init must be an AbstractInit"):
        _make(init="paper")
    with pytest.raises(ValueError, match="num_classes"):
        _make(num_classes=0)
