"""Extending DecayNet with a new cell, written here and nowhere in the library: the coupled
input-forget gate LSTM (CIFG, `i_t = 1 - f_t`) as a subclass of `AbstractGatedCell`, checked
against NumPy and trained through Table 2's pipeline (`decaynet._rows.train_row`: memdyn's
trainer and `decaynet.evaluate`)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import decaynet
from decaynet import (
    AbstractGatedCell,
    CellState,
    NoNormalisation,
    PyTorchInit,
    count_parameters,
    parameter_count,
    scan_cell,
)
from decaynet._rows import train_row
from decaynet.experiments import table2
from decaynet.plots import table2_figure
from memdyn.internal import replace_fields
from tests.decaynet.synthetic import synthetic_rows

INPUT, HIDDEN, TIME = 3, 5, 7


class CIFGCell(AbstractGatedCell):
    """The LSTM with coupled gates: `f_t = σ(z_F)`, `i_t = 1 - f_t`."""

    label = "CIFG"

    def initial_carry(self):
        zeros = jnp.zeros(self.hidden_size, dtype=self.bias.dtype)
        return CellState(zeros, zeros)

    def forget_gate(self, preactivation, polar):
        return jax.nn.sigmoid(preactivation), polar

    def input_gate(self, preactivation, forget):
        return 1.0 - forget


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_cifg_against_numpy():
    with jax.enable_x64(True):
        cell = CIFGCell(INPUT, HIDDEN, init=PyTorchInit(), key=jax.random.key(0))
        xs = jax.random.normal(jax.random.key(1), (TIME, INPUT), dtype=float)
        final, trajectory, _ = scan_cell(cell, NoNormalisation(), xs[None])
        final, trajectory = jax.tree.map(lambda a: a[0], (final, trajectory))  # the one sequence
        w, r, b = (np.asarray(a) for a in (cell.weight_input, cell.weight_recurrent, cell.bias))
        q, s = np.zeros(HIDDEN), np.zeros(HIDDEN)
        for t, x in enumerate(np.asarray(xs)):
            _, zf, za, zo = np.split(w @ x + r @ q + b, 4)
            f = _sigmoid(zf)
            s = f * s + (1 - f) * np.tanh(za)
            q = _sigmoid(zo) * np.tanh(s)
            np.testing.assert_allclose(trajectory.q[t], q, atol=1e-12)
            np.testing.assert_allclose(trajectory.f[t], f, atol=1e-12)
        np.testing.assert_allclose(final.s, s, atol=1e-12)
        assert trajectory.p is None and cell.label == "CIFG"


def test_cifg_trains_through_the_table2_pipeline():
    config = replace_fields(
        table2.Config(),
        {
            "seeds": 2,
            "train.batch_size": 32,
            "train.epochs": 3,
            "train.chunk_steps": 10,
            "train.checkpoint_every": 10,
            "init": "pytorch",
        },
    )
    xs, ys = synthetic_rows(jax.random.key(2), 320)
    xt, yt = synthetic_rows(jax.random.key(3), 200)
    seeds = np.arange(config.seeds)
    row = train_row(
        CIFGCell, 8, (xs, ys, xt, yt), config.train, seeds=seeds, init=PyTorchInit()
    ).record
    assert row["model"] == "CIFG"
    assert row["params"] == parameter_count(28, 8)  # the LSTM's parameters, one gate unused
    assert row["steps"] == 3 * 320 // 32
    assert row["accuracies"].shape == (2,)
    assert row["mean"] > 30.0, row["accuracies"]  # chance is 10 %
    # From the shapes alone (`eqx.filter_eval_shape`): building it eagerly compiled each draw.
    make = decaynet.row_classifier(CIFGCell, 8, PyTorchInit())
    model, _ = eqx.filter_eval_shape(make, jax.random.key(4))
    assert isinstance(model.cell, CIFGCell) and count_parameters(model) == row["params"]
    table2_figure({"rows": [{"dataset": "synthetic", **row}]})


def test_subclassing_without_the_abstract_parts_is_refused():
    class NoForgetGate(AbstractGatedCell):
        label = "incomplete"

        def initial_carry(self):
            zeros = jnp.zeros(self.hidden_size)
            return CellState(zeros, zeros)

    class NoLabel(AbstractGatedCell):
        def initial_carry(self):
            zeros = jnp.zeros(self.hidden_size)
            return CellState(zeros, zeros)

        def forget_gate(self, preactivation, polar):
            return jax.nn.sigmoid(preactivation), polar

    for incomplete in (NoForgetGate, NoLabel, AbstractGatedCell):
        with pytest.raises(TypeError, match="abstract"):
            incomplete(INPUT, HIDDEN, key=jax.random.key(0))
