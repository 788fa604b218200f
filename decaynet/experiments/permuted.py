"""`decaynet permuted`: §6.1, Fig. 3 and Table 1 — permuted sequential MNIST, resumable.

Each cell (LSTM, DecayNet; optionally with recurrent batch normalisation) trains `seeds` networks at
once (one compiled step, the seeds split over the cores: `memdyn.sweep_mesh_for`) on the 784-step
permuted-pixel view with the paper's recipe: one layer of 100 units, RMSProp (lr 0.001, momentum
0.9; PyTorch's convention, see `decaynet._train`), gradient clipping at global norm 1 (computed so
that it cannot overflow, `memdyn.clip_by_safe_global_norm`), no input normalisation, 150 epochs. The
batch size is not stated; we use 100. The permutation is `decaynet.permutation(seed)` and is saved
with the results.

Initialisation: §6.1 states U(−1, 1) weights and zero biases (`--init paper`). With it the plain
LSTM cannot take one float32 step on 784-step sequences: its gradient overflows inside the
backward pass (40,800 of its 41,810 entries are inf or NaN; the float64 norm is 1.9e67), before
any clipping can act, so training stops at step 1 with `TrainingStopped`. DecayNet (float64 norm
2e27: finite entries, clipped to norm 1) and both RBN models do train at it. The default is
PyTorch's initialisation (`--init pytorch`, U(±1/√N)), at which all four train, as `decaynet
table2` defaults to it (it reproduces Table 2 within 0.4 points).

Test accuracy is measured after every epoch (Fig. 3's curves). The run is resumable: a
checkpoint is written atomically every `train.checkpoint_every` steps and at each epoch end, the
per-epoch accuracies travel inside it (`memdyn.train_epochs`'s `evaluate`: one file, one SHA-256,
no second copy to lose), and re-running the same command with the same `--out` continues where an
interrupted run stopped, ending with the same parameters and the same curves as an uninterrupted
run; `--fresh` starts over. Full scale is a GPU job (on one core of this project's Xeon one step of
100 sequences of one seed takes 0.53 s, 1.0-1.1 s with RBN); `--quick` trains a small network on a
subset in seconds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from decaynet import _data as data
from decaynet import _train as train
from decaynet._initialisation import INITIALISATIONS
from decaynet._model import SequenceClassifier, count_parameters
from decaynet._normalisation import RecurrentBatchNorm
from decaynet._registry import CELLS, PAPER_CELLS, resolve_cell
from decaynet._train import classifier_loss
from decaynet.plots import permuted_figure
from memdyn import (
    ConfigError,
    TrainConfig,
    init_run,
    steps_per_epoch,
    sweep_mesh_for,
    train_epochs,
)
from memdyn.internal import (
    AtLeast,
    MinLength,
    NonNegative,
    OneOf,
    check_fields,
    config_fingerprint,
    replace_fields,
)
from memlab import Experiment, SeedSweep


@dataclasses.dataclass(frozen=True)
class PermutedConfig:
    """Permuted pixel MNIST (§6.1, Fig. 3, Table 1): the paper's recipe by default.

    Attributes:
        cells: the cells trained, each once, names of `decaynet._registry.CELLS`: `lstm`,
            `decay` (paper: both); no repeats.
        hidden_size: hidden units of the one recurrent layer (paper: 100).
        batch_norm: recurrent batch normalisation (Cooijmans et al. 2016) on the input and
            recurrent pre-activations and the cell state; the paper reports runs without and
            with it (off by default).
        init: weight initialisation, `pytorch` (everything U(±1/√N); the default, at which
            all four models train) or `paper` (§6.1: U(−1, 1) weights, zero biases, at which the
            plain LSTM's float32 gradient overflows at step 1; see the module docstring).
        seeds: networks trained at once (one compiled step, split over the cores) per cell.
        first_seed: PRNG seed of the first network; the cell uses seeds first_seed, ...,
            first_seed + seeds − 1 (each sets the initial weights and the batch order).
        train: the optimiser and the schedule, the paper's by default: RMSProp (PyTorch's
            convention), lr 0.001, momentum 0.9, clipping at global norm 1, 150 epochs, batch
            100; checkpoints in `<out>/checkpoints/` every 100 steps.
        train.optimizer: the optimiser (paper: RMSProp).
        train.learning_rate: RMSProp step size (paper: 0.001).
        train.momentum: RMSProp momentum, PyTorch's convention (paper: 0.9); 0 means none.
        train.clip_norm: clip the gradient's global norm to this value (paper: 1); 0 means no
            clipping.
        train.epochs: passes over the training set, test accuracy after each (paper: 150).
        train.batch_size: images per RMSProp step (not stated in the paper; ours: 100).
        train.checkpoint_every: steps between checkpoints in `<out>/checkpoints/`, at least 1
            here (a multiple of `chunk_steps`; also at each epoch end). Rerunning with the
            same `--out` resumes from them.
        permutation_seed: seed of the fixed pixel permutation
            (`numpy.random.default_rng(seed).permutation(784)`), saved with the results.
        train_subset: train on the first N training images; 0 means the whole training set
            (60,000).
        test_subset: test on the first N test images; 0 means the whole test set (10,000).
        data_dir: folder holding `mnist/` with the idx files; empty means look in
            $MEMDYN_DATA, then a `shared/data` beside the repository, then download into the
            cache (~/.cache/memdyn or $MEMDYN_CACHE).
    """

    cells: Annotated[tuple[str, ...], OneOf(CELLS), MinLength(1)] = PAPER_CELLS
    hidden_size: Annotated[int, AtLeast(1)] = 100
    batch_norm: bool = False
    init: Annotated[str, OneOf(INITIALISATIONS)] = "pytorch"
    seeds: Annotated[int, AtLeast(1)] = 1
    first_seed: Annotated[int, NonNegative] = 0
    train: TrainConfig = TrainConfig(
        optimizer="rmsprop",
        learning_rate=0.001,
        momentum=0.9,
        clip_norm=1.0,
        batch_size=100,
        epochs=150,
        chunk_steps=100,
        checkpoint_every=100,
    )
    permutation_seed: Annotated[int, NonNegative] = 0
    train_subset: Annotated[int, NonNegative] = 0
    test_subset: Annotated[int, NonNegative] = 0
    data_dir: str = ""

    def __post_init__(self):
        check_fields(self)
        if len(set(self.cells)) != len(self.cells):
            raise ConfigError(f"cells must not repeat; got {self.cells}")
        if self.train.checkpoint_every < 1:  # the run is resumable: it always checkpoints
            raise ConfigError(
                "PermutedConfig.train.checkpoint_every must be >= 1 (permuted always keeps "
                f"checkpoints); got {self.train.checkpoint_every}"
            )
        if self.train_subset:  # a batch must fit, checked now rather than after loading MNIST
            steps_per_epoch(
                self.train_subset, self.train, examples="training images kept by train_subset"
            )

    def quick(self) -> PermutedConfig:
        """16 units, 2 epochs on the first 1,000 images (20 steps each), 500 test images."""
        return replace_fields(
            self,
            {
                "hidden_size": 16,
                "train.epochs": 2,
                "train.batch_size": 50,
                "train_subset": 1000,
                "test_subset": 500,
                "train.chunk_steps": 20,
                "train.checkpoint_every": 20,
            },
        )


def run(config: PermutedConfig, out_dir: Path) -> dict:
    """Train every cell for `train.epochs`, evaluating after each; resume from
    `out_dir/checkpoints`."""
    tcfg = config.train
    seeds = np.arange(config.first_seed, config.first_seed + config.seeds)
    perm = data.permutation(config.permutation_seed)
    tr, te = data.load("mnist", config.data_dir or None)
    n_train = config.train_subset or len(tr.labels)
    n_test = config.test_subset or len(te.labels)
    # On the device once: every epoch's `train_epochs` and `evaluate` then reuse the same arrays.
    xs = jnp.asarray(data.as_sequences(tr.images[:n_train], view="permuted", perm=perm))
    xt = jnp.asarray(data.as_sequences(te.images[:n_test], view="permuted", perm=perm))
    ys, yt = jnp.asarray(tr.labels[:n_train]), jnp.asarray(te.labels[:n_test])
    per_epoch = steps_per_epoch(len(ys), tcfg, examples="training images")
    chunks_per_epoch = -(-per_epoch // tcfg.chunk_steps)
    folder = Path(out_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    tag = config_fingerprint(config, exclude=("data_dir", "cells"))
    models = []
    for cell in config.cells:
        cell_class = resolve_cell(cell, "cells")

        def make(key, cell_class=cell_class):
            normalisation = (
                RecurrentBatchNorm(config.hidden_size, 784) if config.batch_norm else None
            )
            return eqx.nn.make_with_state(SequenceClassifier)(
                cell=cell_class,
                input_size=1,
                hidden_size=config.hidden_size,
                num_classes=10,
                sequence_length=784,
                normalisation=normalisation,
                init=INITIALISATIONS[config.init],
                key=key,
            )

        optimizer = tcfg.make_optimizer()
        state, static = init_run(make, seeds, optimizer)

        def test_accuracy(state, static=static):
            return 100 * train.evaluate(state, static, xt, yt)

        state, losses, accuracies = train_epochs(
            state,
            static,
            classifier_loss,
            xs,
            ys,
            tcfg,
            optimizer,
            checkpoint=folder / f"permuted_{cell}_{tag}.eqx",
            evaluate=test_accuracy,
            desc=f"{cell} ({tcfg.epochs} epochs)",
            mesh=sweep_mesh_for(len(seeds)),  # the seeds over every core
        )
        curves = np.asarray(accuracies, dtype=np.float32)  # (epochs, seeds), as evaluated
        # Chunks are cut from each epoch's start, so every epoch has the same number of chunks.
        train_loss = losses.reshape(tcfg.epochs, chunks_per_epoch, -1).mean(axis=1)
        single, _ = eqx.filter_eval_shape(make, jax.random.PRNGKey(0))  # its label and size
        models.append(
            {
                "cell": cell,
                "model": single.cell.label,
                "params": count_parameters(single),
                "seeds": seeds,
                "test_accuracy": curves,
                "train_loss": train_loss,
                **curve_summary(curves),
                "steps": int(state.step),
            }
        )
    return {
        "epochs": np.arange(1, tcfg.epochs + 1),
        "permutation": perm,
        "train_examples": len(ys),
        "test_examples": len(yt),
        "models": models,
    }


def curve_summary(curves) -> dict[str, float]:
    """A cell's summary of its test-accuracy curves `(epochs, seeds)`: the best accuracy of any
    seed at any epoch and the mean over seeds after the last epoch."""
    curves = np.asarray(curves)
    return {"best": float(curves.max()), "final_mean": float(curves[-1].mean())}


class SeedChunks(SeedSweep):
    """pMNIST as a job array: chunks of consecutive seeds; each cell's seeds and curves (seeds
    on their last axis) joined in seed order and summarised again as `run` does."""

    def merge(self, config: PermutedConfig, results: Sequence[dict]) -> dict:
        first = results[0]
        for result in results[1:]:
            for key in ("epochs", "permutation", "train_examples", "test_examples"):
                if not np.array_equal(result[key], first[key]):
                    raise ConfigError(f"the chunks differ in {key!r}")
        models = []
        for parts in zip(*(r["models"] for r in results), strict=True):
            for part in parts[1:]:
                for key in ("cell", "model", "params", "steps"):
                    if part[key] != parts[0][key]:
                        raise ConfigError(f"the chunks' {parts[0]['cell']} differ in {key!r}")
            curves = np.concatenate([np.asarray(p["test_accuracy"]) for p in parts], axis=1)
            models.append(
                {
                    "cell": parts[0]["cell"],
                    "model": parts[0]["model"],
                    "params": parts[0]["params"],
                    "seeds": np.concatenate([p["seeds"] for p in parts]),
                    "test_accuracy": curves,
                    "train_loss": np.concatenate([p["train_loss"] for p in parts], axis=1),
                    **curve_summary(curves),
                    "steps": parts[0]["steps"],
                }
            )
        return {**first, "models": models}


EXPERIMENT = Experiment(
    name="permuted",
    help="§6.1 / Fig. 3: permuted sequential MNIST (784 steps, RMSProp, RBN option), resumable",
    config=PermutedConfig,
    run=run,
    plot=permuted_figure,
    sweep=SeedChunks(),
)
