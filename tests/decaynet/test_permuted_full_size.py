"""Permuted pixel MNIST at full size (784 steps, 100 hidden units, float32): one training step of
each of the four models of §6.1 through the real trainer (RMSProp, global-norm clipping at 1).

At §6.1's U(−1, 1) initialisation the plain LSTM's float32 gradient overflows in the backward
pass itself (its float64 norm is about 1e67), so no clipping applied after it can save the step:
the trainer stops and says so. The other three models train at that initialisation, and all four
at PyTorch's (the one that reproduces Table 2)."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decaynet import AbstractInit, PaperInit, PyTorchInit
from decaynet import _data as data
from decaynet._model import SequenceClassifier
from decaynet._normalisation import RecurrentBatchNorm
from decaynet._registry import resolve_cell
from decaynet._train import classifier_loss
from decaynet.experiments.permuted import PermutedConfig
from memdyn import TrainingStopped, init_run, train_epochs

HIDDEN, STEPS, BATCH = 100, 784, 100  # the run's batch: RBN at batch 4 overflows at paper init


@pytest.fixture(scope="module")
def batch(mnist_files):
    train, _ = data.load("mnist")
    xs = data.as_sequences(train.images[:BATCH], view="permuted", perm=data.permutation(0))
    assert xs.shape == (BATCH, STEPS, 1)
    return jnp.asarray(xs), jnp.asarray(train.labels[:BATCH])


def _one_step(cell: str, batch_norm: bool, init: AbstractInit, batch):
    tcfg = dataclasses.replace(
        PermutedConfig().train, batch_size=BATCH, epochs=1, chunk_steps=1, checkpoint_every=1
    )

    def make(key):
        normalisation = RecurrentBatchNorm(HIDDEN, STEPS) if batch_norm else None
        return eqx.nn.make_with_state(SequenceClassifier)(
            cell=resolve_cell(cell, "cell"), input_size=1, hidden_size=HIDDEN, num_classes=10,
            sequence_length=STEPS, normalisation=normalisation, init=init, key=key,
        )  # fmt: skip

    optimizer = tcfg.make_optimizer()
    run, static = init_run(make, [0], optimizer)
    before = jax.tree.leaves(run.params)
    run, losses, _ = train_epochs(run, static, classifier_loss, *batch, tcfg, optimizer, desc=cell)
    return before, jax.tree.leaves(run.params), losses


@pytest.mark.parametrize(
    "cell, batch_norm, init",
    [
        ("decay", False, PaperInit()),
        ("lstm", True, PaperInit()),
        ("decay", True, PaperInit()),
        ("lstm", False, PyTorchInit()),
    ],
)
def test_one_full_size_step_is_finite_and_moves_the_weights(cell, batch_norm, init, batch):
    before, after, losses = _one_step(cell, batch_norm, init, batch)
    assert int(np.asarray(losses).size) == 1 and np.isfinite(losses).all()
    assert before[0].dtype == jnp.float32
    pairs = list(zip(before, after, strict=True))
    assert all(np.all(np.isfinite(new)) for _, new in pairs)
    moved = [float(np.max(np.abs(np.asarray(new) - np.asarray(old)))) for old, new in pairs]
    # The first RMSProp step (squared average 0.01 g²) moves an entry by 10·lr = 0.01 unless its
    # clipped gradient is below eps: where Optax's clipping overflows, every update is exactly 0.
    # (At the paper's initialisation the global norm is ~1e27, so after clipping most entries
    # fall below eps and only the largest move.)
    assert max(moved) > 1e-3


def test_paper_init_lstm_overflows_in_float32_and_training_stops(batch):
    with pytest.raises(TrainingStopped, match=r"non-finite loss or gradient at step 0 for seed"):
        _one_step("lstm", False, PaperInit(), batch)
