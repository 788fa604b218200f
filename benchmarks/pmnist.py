"""Permuted pixel MNIST at scale: a vmapped step of 10 seeds per model, projected to §6.1.

The paper's protocol (§6.1, Table 1) trains four models (LSTM and DecayNet, each with and without
recurrent batch normalisation) on 784-step sequences, hidden 100, batch 100, RMSProp, for 150
epochs; the issue asks it of 10 seeds each. This times the package's own training step
(`memdyn.train_chunk`, the step `decaynet permuted` runs) for all seeds of one model in one
`vmap`, on random data of the real shape, and projects the whole protocol: seconds per step ×
600 steps per epoch (60,000 images / 100) × 150 epochs, summed over the four models. It has no
peer: it answers whether the full protocol fits a device (the target: under one hour on one
H200). Run with `python -m benchmarks --only pmnist`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.timing import compare, measure
from decaynet import PyTorchInit
from decaynet._model import SequenceClassifier
from decaynet._normalisation import RecurrentBatchNorm
from decaynet._registry import CELLS, resolve_cell
from decaynet._train import classifier_loss
from decaynet.experiments.permuted import PermutedConfig
from memdyn import init_run, train_chunk
from memdyn.internal import check_fields, check_in, check_positive

TARGET_HOURS = 1.0


@dataclasses.dataclass(frozen=True)
class Config:
    """The four models of §6.1 at the paper's sizes, `seeds` each, and the projection.

    Attributes:
        cells: the cells (`decaynet`'s registry names); each runs plain and with batch norm.
        seeds: networks per model, trained as one `vmap`.
        hidden_size: the cell's width (§6.1: 100).
        batch_size: images per seed and step (§6.1: 100).
        sequence_length: steps per sequence (784 pixels; smaller only to test the benchmark).
        steps: training steps in each timed call (one compiled chunk).
        repeats: steady-state repeats of the timed call.
        epochs: epochs of the projected protocol (§6.1: 150).
        train_size: training images per epoch (MNIST: 60,000).
    """

    cells: tuple[str, ...] = ("lstm", "decay")
    seeds: int = 10
    hidden_size: int = 100
    batch_size: int = 100
    sequence_length: int = 784
    steps: int = 1
    repeats: int = 2
    epochs: int = 150
    train_size: int = 60_000

    def __post_init__(self):
        check_fields(self)
        if not self.cells:
            raise ValueError("cells must name at least one cell")
        for cell in self.cells:
            check_in("cells", cell, CELLS)
        for field in ("seeds", "hidden_size", "batch_size", "sequence_length", "steps"):
            check_positive(field, getattr(self, field))
        for field in ("repeats", "epochs", "train_size"):
            check_positive(field, getattr(self, field))

    def quick(self) -> Config:
        return dataclasses.replace(self, seeds=2, repeats=1)


def measure_model(cell: str, batch_norm: bool, config: Config) -> dict[str, Any]:
    """One case: the vmapped step of every seed of one model, and its projection."""
    # The optimiser `decaynet permuted` trains with (RMSProp, momentum, clipping), one chunk.
    train_config = dataclasses.replace(
        PermutedConfig().train,
        batch_size=config.batch_size,
        chunk_steps=config.steps,
        checkpoint_every=config.steps,
    )

    def make(key):
        normalisation = (
            RecurrentBatchNorm(config.hidden_size, config.sequence_length) if batch_norm else None
        )
        return eqx.nn.make_with_state(SequenceClassifier)(
            cell=resolve_cell(cell),
            input_size=1,
            hidden_size=config.hidden_size,
            num_classes=10,
            sequence_length=config.sequence_length,
            normalisation=normalisation,
            init=PyTorchInit(),
            key=key,
        )

    optimizer = train_config.make_optimizer()
    run_state, static = init_run(make, np.arange(config.seeds), optimizer)
    n = config.steps * config.seeds * config.batch_size
    data_key, label_key = jax.random.split(jax.random.key(0))
    xs = jax.random.uniform(data_key, (n, config.sequence_length, 1), jnp.float32)
    ys = jax.random.randint(label_key, (n,), 0, 10)
    index = jnp.arange(n).reshape(config.steps, config.seeds, config.batch_size)

    def step():
        return train_chunk(
            run_state.params,
            run_state.opt_state,
            run_state.model_state,
            static,
            classifier_loss,
            optimizer,
            xs,
            ys,
            index,
        )[3]

    timing = measure(step, repeats=config.repeats)
    step_s = timing.median_s / config.steps
    epoch_s = step_s * config.train_size / config.batch_size
    name = f"{'rbn-' if batch_norm else ''}{cell}"
    return {
        "case": f"{name}-{config.seeds}-seeds",
        "shape": {
            "cell": cell,
            "batch_norm": batch_norm,
            "seeds": config.seeds,
            "hidden_size": config.hidden_size,
            "batch": config.batch_size,
            "time": config.sequence_length,
        },
        **compare({"jax": timing}),
        "seconds_per_step_all_seeds": step_s,
        "projected_epoch_s": epoch_s,
        "projected_protocol_h": epoch_s * config.epochs / 3600,
        "summary": f"{step_s:.3f} s per step of {config.seeds} seeds; projected "
        f"{epoch_s / 60:.1f} min per epoch, {epoch_s * config.epochs / 3600:.1f} h for "
        f"{config.epochs} epochs",
    }


def run(config: Config) -> dict[str, Any]:
    """The four models (each cell plain and with batch norm) and the whole protocol's hours."""
    cases = [
        measure_model(cell, batch_norm, config)
        for cell in config.cells
        for batch_norm in (False, True)
    ]
    total = sum(case["projected_protocol_h"] for case in cases)
    return {
        "cases": cases,
        "projected_protocol_h": total,
        "target": {"hours": TARGET_HOURS, "met": total <= TARGET_HOURS},
    }


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("pmnist",)))
