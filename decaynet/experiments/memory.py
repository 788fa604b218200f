"""`decaynet memory`: what LSTM and DecayNet remember after Table 2's training.

New science across the two papers (issue 23): the curse of memory is about how a model's memory
kernel decays; DecayNet replaces the forget gate by a monotonically decaying one. Does that change
what the trained cell remembers? Each cell trains `seeds` row-by-row MNIST classifiers exactly as a
Table 2 row does (`decaynet._rows.train_row`: one compiled step over the seeds, split over the
cores, 1 epoch, Adam lr 0.01, batch 64, PyTorch's U(±1/√H) init), then every trained seed is
analysed at once under one `jax.vmap` over the stacked parameters (one compilation per cell):

- the memory kernel `ρ̂(k) = E_x[∂y_T/∂x_{T−k}]`, k = 0, …, 27 (`memdyn.jacobian_memory`), of the
  classifier's logits `y_T = W_out q_T + b_out` at the last row T with respect to the image row
  `x_{T−k}` (28 pixels), averaged over the first `analysis_examples` test images (normalised as
  in training, pixels / 255 for MNIST; the kernel of a nonlinear model depends on the inputs);
  and its magnitude per lag `m(k) = E_x ‖∂y_T/∂x_{T−k}‖_F`, which does not cancel between images;
- the horizon (`memdyn.memory_horizon` of m at each ε of `epsilons`: the smallest lag whose rows
  0, …, k hold 1 − ε of the L1 mass, in rows, on the 28-row window), which saturates at the
  window's last lag (27) for a kernel that does not decay, and its mean lag
  `Σ_k k m(k) / Σ_k m(k)`, which does not;
- the decay fit of m (`memdyn.fit_decay`: exponential `c e^{−λ t}` against power law
  `c t^{−α}` at t = k + 1, R², and which is preferred, or neither);
- the forget gate over the same images: its mean, its mean per step, and the fraction of steps
  (over images, units and t = 2..28) at which it rises (`f_t > f_{t−1}`); DecayNet's is
  monotone by construction while its pre-activations stay in [−3, 3].

Why the logits and not the hidden state: the classifier reads the cell only through its head, so
`∂y_T/∂x` is what the trained model uses of each past row; a direction of `q_T` the head ignores
is not remembered by the classifier. It is the hidden state's kernel `∂q_T/∂x` read through
`W_out` (10 outputs instead of 32: fewer reverse passes). The per-step logits come from running
the cell with `memdyn.unroll` and the head on each step's output `q_t` (Table 2's classifiers
have no normalisation, so this is the classifier's own computation; a test checks it against the
fused `scan_cell` by finite differences).

The cells are compared over seeds: mean ± sd of accuracy, horizons, rates and exponents, the
fraction of seeds preferring each decay type, and Welch's t-tests (`scipy.stats.ttest_ind`,
`equal_var=False`) on each; a p-value is `None` where both cells' values are constant (e.g. the
same horizon for every seed). Precision: float32, as the training. Checkpoints per cell go to
`out_dir/checkpoints/memory_*` (a rerun with the same `--out` resumes).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from decaynet import _data as data
from decaynet._cells import scan_cell
from decaynet._initialisation import INITIALISATIONS
from decaynet._model import SequenceClassifier
from decaynet._normalisation import NoNormalisation
from decaynet._registry import CELLS, PAPER_CELLS, resolve_cell
from decaynet._rows import TABLE2_TRAIN, load_rows, mean_sd, train_row, welch
from decaynet.plots import memory_figure
from memdyn import (
    DECAY_TYPES,
    ConfigError,
    TrainConfig,
    fit_decay,
    jacobian_memory,
    memory_horizon,
    steps_per_epoch,
    unroll,
)
from memdyn.internal import (
    AtLeast,
    InRange,
    MinLength,
    NonNegative,
    OneOf,
    check_fields,
    config_fingerprint,
    replace_fields,
)
from memlab import Experiment

# Fields of `fit_decay`'s result kept per seed.
FIT_FIELDS = (
    "exponential_rate",
    "exponential_r2",
    "power_exponent",
    "power_r2",
    "points",
    "tail_mass",
    "preferred",
)
# Per-seed quantities compared between the cells by Welch's t-test (horizons added per ε).
COMPARED = ("accuracies", "mean_lag", "exponential_rate", "power_exponent", "forget_mean")


@dataclasses.dataclass(frozen=True)
class Config:
    """Memory kernels of Table 2's classifiers, one cell against another, many seeds each.

    Attributes:
        dataset: `mnist` or `fashion_mnist` (row-by-row, Table 2's normalisation).
        cells: the two different cells compared, names of `decaynet._registry.CELLS`:
            `lstm`, `decay`.
        hidden_size: hidden units of both classifiers (Table 2's MNIST-32: 32).
        init: weight initialisation, `pytorch` (U(±1/√H), Table 2's default) or `paper`
            (§6.1's U(−1, 1) weights, zero biases).
        seeds: networks trained and analysed at once (one compiled step) per cell (the t-tests need
            two).
        first_seed: PRNG seed of the first network; a cell uses seeds first_seed, ...,
            first_seed + seeds − 1 (initial weights and batch order), as a Table 2 row does.
        train: the optimiser and the schedule, Table 2's by default: Adam, lr 0.01, one epoch,
            batch 64 (937 steps); checkpoints in `<out>/checkpoints/` every 100 steps.
        train.optimizer: the optimiser (Table 2's Adam).
        train.learning_rate: Adam step size (Table 2's 0.01).
        train.batch_size: images per Adam step (Table 2's 64: 937 steps per epoch).
        train.epochs: passes over the training set (Table 2's 1).
        train.chunk_steps: optimiser steps per compiled training chunk.
        train.checkpoint_every: steps between checkpoints in `<out>/checkpoints/` (a multiple
            of `chunk_steps`; also at each epoch end); 0 means never. Rerunning with the same
            `--out` resumes from them.
        train_subset: train on the first N training images; 0 means the whole training set.
        test_subset: test accuracy on the first N test images; 0 means the whole test set.
        analysis_examples: the memory kernels and forget-gate statistics are averaged over the
            first N test images (the same for every seed and cell).
        analysis_chunk: images per compiled Jacobian pass, a divisor of `analysis_examples`;
            memory grows with seeds × chunk × 28 × 10 × 28 floats.
        epsilons: the horizons' ε: the smallest lag holding 1 − ε of the kernel magnitude's L1
            mass, one horizon per ε, each t-tested.
        data_dir: folder holding `mnist/` and `fashion_mnist/` with the idx files; empty
            means look in $MEMDYN_DATA, then a `shared/data` beside the repository, then
            download into the cache (~/.cache/memdyn or $MEMDYN_CACHE).
    """

    dataset: Annotated[str, OneOf(data.DATASETS)] = "mnist"
    cells: Annotated[tuple[str, ...], OneOf(CELLS)] = PAPER_CELLS
    hidden_size: Annotated[int, AtLeast(1)] = 32
    init: Annotated[str, OneOf(INITIALISATIONS)] = "pytorch"
    seeds: Annotated[int, AtLeast(2)] = 20
    first_seed: Annotated[int, NonNegative] = 0
    train: TrainConfig = TABLE2_TRAIN
    train_subset: Annotated[int, NonNegative] = 0
    test_subset: Annotated[int, NonNegative] = 0
    analysis_examples: Annotated[int, AtLeast(1)] = 1000
    analysis_chunk: Annotated[int, AtLeast(1)] = 100
    epsilons: Annotated[tuple[float, ...], InRange(0, 1, closed="neither"), MinLength(1)] = (
        0.05,
        0.01,
    )
    data_dir: str = ""

    def __post_init__(self):
        check_fields(self)
        if len(self.cells) != 2 or len(set(self.cells)) != 2:
            raise ConfigError(f"cells must name two different cells (compared); got {self.cells}")
        if self.analysis_examples % self.analysis_chunk:
            raise ConfigError(
                f"analysis_chunk ({self.analysis_chunk}) must divide analysis_examples "
                f"({self.analysis_examples})"
            )
        if self.test_subset and self.analysis_examples > self.test_subset:
            raise ConfigError(
                f"analysis_examples ({self.analysis_examples}) exceeds test_subset "
                f"({self.test_subset})"
            )
        if self.train_subset:  # a batch must fit, checked now rather than after loading MNIST
            steps_per_epoch(
                self.train_subset, self.train, examples="training images kept by train_subset"
            )

    def quick(self) -> Config:
        """2 seeds, 10 Adam steps on the first 640 training images, accuracy on the first 200
        test images, memory over the first 40."""
        return replace_fields(
            self,
            {
                "seeds": 2,
                "train_subset": 640,
                "test_subset": 200,
                "train.chunk_steps": 5,
                "train.checkpoint_every": 5,
                "analysis_examples": 40,
                "analysis_chunk": 20,
            },
        )


def logits_per_step(
    model: SequenceClassifier, xs: Float[Array, "time input"]
) -> Float[Array, "time classes"]:
    """The classifier's logits `W_out q_t + b_out` after every row t of one sequence: the cell
    run by `memdyn.unroll` (its unnormalised step), the head on each step's output. The last
    row's are the classifier's logits (Table 2's classifiers have no normalisation)."""
    _, outputs = unroll(model.cell, xs)
    return jax.vmap(model.head)(outputs)


def memory_of_classifier(
    model: SequenceClassifier,
    xs: Float[Array, "batch time input"],
    *,
    epsilons: tuple[float, ...],
    chunk: int,
) -> dict[str, Array]:
    """What one classifier remembers along the sequences `xs` (module docstring): the mean
    Jacobian kernel `kernel` (lag, classes, input) and its magnitude `magnitude` (lag) of the
    last logits (`memdyn.jacobian_memory` of `logits_per_step`), the norm `kernel_norm` of the
    mean kernel per lag, the `horizon` at each ε (`memdyn.memory_horizon` of the magnitude), the
    decay fit's `FIT_FIELDS` (`memdyn.fit_decay` of the magnitude), and the forget gate's mean
    `forget_mean`, mean per step `forget_by_step` and rising fraction `forget_increase`.

    The images are taken `chunk` at a time (`jax.lax.map`, to bound memory; `chunk` must divide
    the batch): every chunk has as many images, so the mean of the chunks' means is the mean."""
    if xs.shape[0] % chunk:
        raise ValueError(f"chunk ({chunk}) must divide the batch of xs ({xs.shape[0]})")

    def part(images):
        memory = jacobian_memory(logits_per_step, model, images)
        _, trajectory, _ = scan_cell(model.cell, NoNormalisation(), images)
        f = trajectory.f  # (batch, time, hidden)
        rises = jnp.mean(f[:, 1:] > f[:, :-1])
        return memory.kernel, memory.magnitude, jnp.mean(f, axis=(0, 2)), rises

    chunks = xs.reshape(-1, chunk, *xs.shape[1:])
    kernel, magnitude, forget_by_step, rises = jax.tree.map(
        lambda a: jnp.mean(a, axis=0), jax.lax.map(part, chunks)
    )
    fit = fit_decay(magnitude)
    return {
        "kernel": kernel,
        "kernel_norm": jnp.sqrt(jnp.sum(kernel**2, axis=(1, 2))),
        "magnitude": magnitude,
        "horizon": jnp.stack([memory_horizon(magnitude, epsilon) for epsilon in epsilons]),
        "mean_lag": jnp.sum(jnp.arange(magnitude.shape[0]) * magnitude) / jnp.sum(magnitude),
        **{name: getattr(fit, name) for name in FIT_FIELDS},
        "forget_mean": jnp.mean(forget_by_step),
        "forget_by_step": forget_by_step,
        "forget_increase": rises,
    }


@eqx.filter_jit
def analyse(
    params: Any,
    static: Any,
    xs: Float[Array, "batch time input"],
    *,
    epsilons: tuple[float, ...],
    chunk: int,
) -> dict[str, Array]:
    """`memory_of_classifier` for every seed of a run at once: one `jax.vmap` over the stacked
    parameters (`RunState.params`); one compilation per cell class."""

    def one(p):
        return memory_of_classifier(eqx.combine(p, static), xs, epsilons=epsilons, chunk=chunk)

    return jax.vmap(one)(params)


def _summary(cell: dict, epsilons: tuple[float, ...]) -> dict:
    preferred = np.asarray(cell["preferred"])
    horizon = np.asarray(cell["horizon"])
    return {
        "accuracy": mean_sd(cell["accuracies"]),
        "horizon": {f"{eps:g}": mean_sd(horizon[:, i]) for i, eps in enumerate(epsilons)},
        "mean_lag": mean_sd(cell["mean_lag"]),
        **{name: mean_sd(cell[name]) for name in FIT_FIELDS if name != "preferred"},
        "preferred_counts": {
            name: int(np.sum(preferred == code)) for code, name in enumerate(DECAY_TYPES)
        },
        "forget_mean": mean_sd(cell["forget_mean"]),
        "forget_increase": mean_sd(cell["forget_increase"]),
    }


def _compare(a: dict, b: dict, epsilons: tuple[float, ...]) -> dict:
    pairs = {name: (a[name], b[name]) for name in COMPARED}
    for i, eps in enumerate(epsilons):
        pairs[f"horizon_{eps:g}"] = (np.asarray(a["horizon"])[:, i], np.asarray(b["horizon"])[:, i])
    return {
        name: {a["model"]: mean_sd(u), b["model"]: mean_sd(v), **welch(u, v)}
        for name, (u, v) in pairs.items()
    }


def run(config: Config, out_dir: Path) -> dict:
    splits = load_rows(
        config.dataset,
        config.data_dir or None,
        train_subset=config.train_subset,
        test_subset=config.test_subset,
    )
    xt = splits[2]
    if config.analysis_examples > xt.shape[0]:
        raise ConfigError(
            f"analysis_examples ({config.analysis_examples}) exceeds the {xt.shape[0]} test images"
        )
    xa = jnp.asarray(xt[: config.analysis_examples])
    # What shapes a cell's training only: a rerun with other analysis settings resumes from it.
    analysis = ("test_subset", "analysis_examples", "analysis_chunk", "epsilons")
    tag = config_fingerprint(config, exclude=("data_dir", "cells", *analysis))
    seeds = np.arange(config.first_seed, config.first_seed + config.seeds)
    cells = []
    for name in config.cells:
        ckpt = Path(out_dir) / "checkpoints" / f"memory_{config.dataset}_{name}_{tag}.eqx"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        row = train_row(
            resolve_cell(name, "cells"),
            config.hidden_size,
            splits,
            config.train,
            seeds=seeds,
            init=INITIALISATIONS[config.init],
            checkpoint=ckpt,
            desc=f"{config.dataset}/{name}/{config.hidden_size}",
        )
        start = time.perf_counter()
        memory = analyse(
            row.run.params, row.static, xa, epsilons=config.epsilons, chunk=config.analysis_chunk
        )
        memory = jax.tree.map(np.asarray, memory)
        del memory["kernel"]  # (seeds, 28, 10, 28): too large for the record; its norm is kept
        cell = {"cell": name, **row.record, **memory}
        cell["analysis_seconds"] = time.perf_counter() - start
        cell["summary"] = _summary(cell, config.epsilons)
        cells.append(cell)
    return {
        "dataset": config.dataset,
        "hidden_size": config.hidden_size,
        "lags": np.arange(xa.shape[1]),
        "epsilons": config.epsilons,
        "analysis_examples": config.analysis_examples,
        "analysis_inputs": f"the first {config.analysis_examples} test images, "
        f"normalisation {data.DEFAULT_NORMALISATION[config.dataset]}",
        "decay_types": DECAY_TYPES,
        "cells": cells,
        "tests": _compare(cells[0], cells[1], config.epsilons),
    }


EXPERIMENT = Experiment(
    name="memory",
    help="New: memory kernels (∂y_T/∂x_{T−k}) of Table 2's LSTM vs DecayNet, horizon and decay "
    "type over seeds",
    config=Config,
    run=run,
    plot=memory_figure,
)
