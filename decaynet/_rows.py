"""Table 2's rows: row-by-row sequences of a dataset, and one row's classifiers trained at once.

A row is one cell at one hidden size: `seeds` classifiers (`row_classifier`) trained together
(`memdyn.init_run`, one compiled step over the seeds, split over the cores by
`memdyn.sweep_mesh_for`) by `memdyn.train_epochs` on the training sequences, then tested on the test
sequences. Table 2 (`decaynet table2`) reports the row's accuracies; other experiments (`decaynet
memory`) analyse the trained classifiers, which `train_row` returns with them, so that every
experiment trains a row the same way. `mean_sd` and `welch` summarise and compare two rows' per-seed
values (`decaynet memory`, `decaynet spectrum`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax
import numpy as np
import scipy.stats

from decaynet import _data as data
from decaynet import _train
from decaynet._cells import AbstractGatedCell
from decaynet._initialisation import AbstractInit
from decaynet._model import count_parameters, row_classifier
from memdyn import AbstractCell, RunState, TrainConfig, init_run, sweep_mesh_for, train_epochs

TABLE2_TRAIN = TrainConfig(
    optimizer="adam",
    learning_rate=0.01,
    batch_size=64,
    epochs=1,
    chunk_steps=100,
    checkpoint_every=100,
)
"""Table 2's training (App. C): Adam, lr 0.01, one epoch, batch 64 (937 steps: the paper does not
state its batch size), in chunks of 100 steps with a checkpoint after each."""

Splits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""`(xs, ys, xt, yt)`: training sequences `(n, 28, 28)` and labels, test sequences and labels."""


def subset(split: data.Split, size: int) -> data.Split:
    """The first `size` examples of `split`; 0 means all of them."""
    return split if size == 0 else data.Split(split.images[:size], split.labels[:size])


def load_rows(
    dataset: str, data_dir: str | None = None, *, train_subset: int = 0, test_subset: int = 0
) -> Splits:
    """`dataset`'s training and test images as row-by-row sequences (28 steps of 28 pixels) in
    its default normalisation (`decaynet.DEFAULT_NORMALISATION`), with their labels; the first
    `train_subset` / `test_subset` of each (0: all). `data_dir` as `decaynet.load`'s."""
    train, test = data.load(dataset, data_dir)
    train, test = subset(train, train_subset), subset(test, test_subset)
    norm = data.DEFAULT_NORMALISATION[dataset]
    return (
        data.as_sequences(train.images, normalisation=norm),
        train.labels,
        data.as_sequences(test.images, normalisation=norm),
        test.labels,
    )


def mean_sd(values) -> dict[str, float]:
    """Mean and sample standard deviation (ddof 1) over seeds, as floats for a record."""
    values = np.asarray(values, dtype=float)
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1))}


def welch(a, b) -> dict[str, float | None]:
    """Welch's two-sample t-test (`scipy.stats.ttest_ind`, `equal_var=False`) of two cells'
    per-seed values: t and p, `None` where both samples are constant (no variance to test)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return {"welch_t": None, "p_value": None}
    test = scipy.stats.ttest_ind(a, b, equal_var=False)
    return {"welch_t": float(test.statistic), "p_value": float(test.pvalue)}


def accuracy_summary(accuracies) -> dict[str, float]:
    """A row's summary of its per-seed test accuracies: mean, sample standard deviation (ddof 1)
    and best, as Table 2 reports them (and `decaynet table2`'s merge of a job array's chunks)."""
    accuracies = np.asarray(accuracies)
    return {
        "mean": float(accuracies.mean()),
        "std": float(accuracies.std(ddof=1)),
        "best": float(accuracies.max()),
    }


class TrainedRow(NamedTuple):
    """What `train_row` returns: the row's `record` (accuracies in %, their summary, the
    parameter count, the cell's label), and the trained classifiers, `run` (stacked over the
    seeds) with the `static` part they combine with (`eqx.combine`)."""

    record: dict[str, Any]
    run: RunState
    static: Any


def train_row(
    cell: type[AbstractGatedCell] | type[AbstractCell],
    hidden: int,
    splits: Splits,
    train: TrainConfig,
    *,
    seeds: np.ndarray,
    init: AbstractInit,
    checkpoint: Path | None = None,
    desc: str = "",
) -> TrainedRow:
    """One row: a classifier per PRNG seed in `seeds` (each sets the initial weights and the
    batch order), built by `row_classifier(cell, hidden, init)`, all trained at once on
    `(xs, ys)` of `splits` with the optimiser and schedule `train` (checkpoints in `checkpoint`:
    a rerun resumes from it), then tested on `(xt, yt)`."""
    xs, ys, xt, yt = splits
    make = row_classifier(cell, hidden, init)
    optimizer = train.make_optimizer()
    start = time.perf_counter()
    state, static = init_run(make, seeds, optimizer)
    state, losses, _ = train_epochs(
        state,
        static,
        _train.classifier_loss,
        xs,
        ys,
        train,
        optimizer,
        checkpoint=checkpoint,
        desc=desc,
        mesh=sweep_mesh_for(len(seeds)),  # the seeds over every core
    )
    # Through the module, so that a test can record the call (tests/decaynet/accuracy_reference).
    acc = 100 * _train.evaluate(state, static, xt, yt)
    single, _ = eqx.filter_eval_shape(make, jax.random.PRNGKey(0))  # its label and size
    record = {
        "model": single.label,
        "hidden": hidden,
        "params": count_parameters(single),
        "seeds": seeds,
        "accuracies": acc,
        **accuracy_summary(acc),
        "steps": int(state.step),
        "final_loss": losses[-1] if len(losses) else None,
        "seconds": time.perf_counter() - start,
    }
    return TrainedRow(record, state, static)
