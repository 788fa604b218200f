"""`decaynet spectrum`: the Hessian spectral density along Table 2's training, LSTM vs DecayNet.

New science bridging the two papers: the curse-of-memory paper reads memory off the Hessian's
spectrum; DecayNet claims its monotone forget gate makes training better behaved. Does the gate
change the curvature the optimiser sees? Each cell trains `seeds` row-by-row MNIST classifiers at
once (`memdyn.init_run`, `memdyn.train_epochs`: Table 2's recipe, Adam lr 0.01, batch 64, one
epoch of 937 steps, PyTorch's U(±1/√H) init), and at every analysis step the Hessian of the mean
cross-entropy on a fixed analysis batch (the first `analysis_examples` training images, the same
for every step, seed and cell) is analysed for all seeds at once under one `jax.vmap` over the
stacked parameters; the two cells are different classes, so each cell is one program.

Per seed and step: stochastic Lanczos quadrature (`memdyn.hessian_spectral_density`; Ghorbani et
al. 2019) gives the density φ̂, its top Ritz value (λ_max; the extreme Ritz values converge
first) and bottom Ritz value, the mass of negative eigenvalues φ̂((−∞, 0)) and
φ̂((−∞, −ε λ_max)), and n ∫ t dφ̂ (a trace estimate); Hutchinson's estimator
(`memdyn.hutchinson_trace`) gives tr ∇²J. The densities are broadened on one grid common to all
cells, steps and seeds. Welch's t-tests compare the cells' per-seed λ_max, trace and negative mass
at the end of training and averaged over the analysis steps.

Precision: the models and the analysis are float32. `precision_check` measures what that costs:
at the last step, for the first seed of each cell, one Lanczos run from the same start vector in
float32 and in float64 (parameters and images cast up) and the differences of λ_max, the
quadrature's trace and its negative mass.

Cost: one Hessian-vector product costs about three gradients through the 28-step scan; a point
of one cell costs `slq_probes × lanczos_steps + hutchinson_probes + 1` of them for all seeds at
once. The defaults (256 analysis images, 40 Lanczos steps × 2 probes, 16 Hutchinson probes, 10
steps) keep the full run to minutes on a shared 2-core CPU; on a GPU use e.g.
`--analysis-examples 2000 --lanczos-steps 80 --slq-probes 4`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from decaynet import _data as data
from decaynet import _train as train
from decaynet._initialisation import INITIALISATIONS
from decaynet._model import SequenceClassifier, count_parameters, row_classifier
from decaynet._registry import CELLS, PAPER_CELLS, resolve_cell
from decaynet._rows import load_rows, mean_sd, welch
from decaynet._train import classifier_loss
from decaynet.plots import spectrum_figure
from memdyn import (
    ConfigError,
    SpectralDensity,
    TrainConfig,
    hessian_matvec,
    hessian_spectral_density,
    hutchinson_trace,
    init_run,
    lanczos_tridiagonal,
    parameter_vector,
    ritz_values_and_first_components,
    total_steps,
    train_epochs,
)
from memdyn.internal import (
    AtLeast,
    InRange,
    MinLength,
    NonNegative,
    OneOf,
    Positive,
    check_fields,
    replace_fields,
)
from memlab import Experiment

# Per-seed quantities compared between the cells by Welch's t-test.
COMPARED = ("top_eigenvalue", "trace_hutchinson", "negative_mass")


@dataclasses.dataclass(frozen=True)
class Config:
    """Hessian spectral densities along Table 2's training, one cell against another.

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
            first_seed + seeds − 1 (initial weights and batch order).
        train: the optimiser and the schedule, Table 2's by default: Adam, lr 0.01, one epoch,
            batch 64 (937 steps), chunks of 25 steps, no checkpoints.
        train.optimizer: the optimiser (Table 2's Adam).
        train.learning_rate: Adam step size (Table 2's 0.01).
        train.batch_size: images per Adam step (Table 2's 64: 937 steps per epoch).
        train.epochs: passes over the training set (Table 2's 1).
        train.chunk_steps: optimiser steps per compiled training chunk; every analysis step
            must be a multiple of it.
        train_subset: train on the first N training images; 0 means the whole training set.
        test_subset: test on the first N test images; 0 means the whole test set.
        analysis_steps: optimiser steps at which the Hessian is analysed (distinct,
            ascending, multiples of `train.chunk_steps`, within training); the end of training
            is always added.
        analysis_examples: size of the fixed analysis batch, the first training images (the
            same for every step, seed and cell).
        lanczos_steps: Lanczos steps (Hessian-vector products) per SLQ probe.
        slq_probes: SLQ probe vectors per seed and step.
        hutchinson_probes: Rademacher probes of Hutchinson's trace estimate per seed and step.
        negative_threshold: ε of the second negative mass φ̂((−∞, −ε λ_max)).
        density_sigma: Gaussian broadening σ of the densities, as a fraction of the range of
            all Ritz values (all cells, steps, seeds).
        grid_points: points of the eigenvalue grid shared by all densities.
        analysis_seed: seed of the probes (the same probes at every step, fixed per seed
            index).
        precision_check: at the last step, for each cell's first seed, compare one float32
            Lanczos run with float64 from the same start vector.
        data_dir: folder holding `mnist/` and `fashion_mnist/` with the idx files; empty
            means look in $MEMDYN_DATA, then a `shared/data` beside the repository, then
            download into the cache (~/.cache/memdyn or $MEMDYN_CACHE).
    """

    dataset: Annotated[str, OneOf(data.DATASETS)] = "mnist"
    cells: Annotated[tuple[str, ...], OneOf(CELLS)] = PAPER_CELLS
    hidden_size: Annotated[int, AtLeast(1)] = 32
    init: Annotated[str, OneOf(INITIALISATIONS)] = "pytorch"
    seeds: Annotated[int, AtLeast(2)] = 4
    first_seed: Annotated[int, NonNegative] = 0
    train: TrainConfig = TrainConfig(
        optimizer="adam", learning_rate=0.01, batch_size=64, epochs=1, chunk_steps=25
    )
    train_subset: Annotated[int, NonNegative] = 0
    test_subset: Annotated[int, NonNegative] = 0
    analysis_steps: Annotated[tuple[int, ...], NonNegative, MinLength(1)] = (
        0,
        25,
        50,
        100,
        200,
        300,
        450,
        600,
        750,
    )
    analysis_examples: Annotated[int, AtLeast(1)] = 256
    lanczos_steps: Annotated[int, AtLeast(1)] = 40
    slq_probes: Annotated[int, AtLeast(1)] = 2
    hutchinson_probes: Annotated[int, AtLeast(1)] = 16
    negative_threshold: Annotated[float, InRange(0, 1, closed="left")] = 0.01
    density_sigma: Annotated[float, Positive] = 0.005
    grid_points: Annotated[int, AtLeast(2)] = 400
    analysis_seed: Annotated[int, NonNegative] = 0
    precision_check: bool = True
    data_dir: str = ""

    def __post_init__(self):
        check_fields(self)
        if len(self.cells) != 2 or len(set(self.cells)) != 2:
            raise ConfigError(f"cells must name two different cells (compared); got {self.cells}")
        if list(self.analysis_steps) != sorted(set(self.analysis_steps)):
            raise ConfigError(
                f"analysis_steps must be distinct and ascending; got {self.analysis_steps}"
            )
        if any(s % self.train.chunk_steps for s in self.analysis_steps):
            raise ConfigError(
                f"analysis_steps must be multiples of train.chunk_steps "
                f"({self.train.chunk_steps}), the boundaries training can stop at; got "
                f"{self.analysis_steps}"
            )
        if self.train_subset and self.analysis_examples > self.train_subset:
            raise ConfigError(
                f"analysis_examples ({self.analysis_examples}) exceeds train_subset "
                f"({self.train_subset})"
            )

    def quick(self) -> Config:
        """2 seeds, 10 steps on the first 640 images, 3 analysis steps of a 64-image batch, no
        precision check."""
        return replace_fields(
            self,
            {
                "seeds": 2,
                "train_subset": 640,
                "test_subset": 500,
                "train.chunk_steps": 5,
                "analysis_steps": (0, 5),
                "analysis_examples": 64,
                "lanczos_steps": 12,
                "slq_probes": 1,
                "hutchinson_probes": 4,
                "grid_points": 100,
                "precision_check": False,
            },
        )


def analyse_model(
    model: SequenceClassifier,
    model_state: eqx.nn.State,
    xs: Float[Array, "batch time features"],
    ys: Int[Array, " batch"],
    *,
    key: PRNGKeyArray,
    lanczos_steps: int,
    slq_probes: int,
    hutchinson_probes: int,
    negative_threshold: float,
) -> dict[str, Array]:
    """The Hessian spectrum of one classifier's mean cross-entropy J on `(xs, ys)`.

    Returns the SLQ `nodes` and `weights` (probes × Lanczos steps), `top_eigenvalue` and
    `bottom_eigenvalue` (the extreme Ritz values), `negative_mass` φ̂((−∞, 0)),
    `negative_mass_relative` φ̂((−∞, −ε λ_max)), `trace_slq` = n ∫ t dφ̂, `trace_hutchinson`,
    the `loss` J and the gradient norm `gradient_norm`."""

    def loss_fn(m):
        return classifier_loss(m, model_state, xs, ys)[0]

    slq_key, trace_key = jax.random.split(key)
    spectrum = hessian_spectral_density(
        loss_fn, model, num_iter=lanczos_steps, num_probes=slq_probes, key=slq_key
    )
    top = jnp.max(spectrum.nodes)
    loss, gradient = eqx.filter_value_and_grad(loss_fn)(model)
    gradient_vector, _ = parameter_vector(gradient)
    return {
        "nodes": spectrum.nodes,
        "weights": spectrum.weights,
        "top_eigenvalue": top,
        "bottom_eigenvalue": jnp.min(spectrum.nodes),
        "negative_mass": spectrum.negative_mass(0.0),
        "negative_mass_relative": spectrum.negative_mass(negative_threshold * top),
        "trace_slq": spectrum.moment(1) * gradient_vector.shape[0],
        "trace_hutchinson": hutchinson_trace(loss_fn, model, hutchinson_probes, key=trace_key),
        "loss": loss,
        "gradient_norm": jnp.linalg.norm(gradient_vector),
    }


@eqx.filter_jit
def analyse(
    params: Any,
    static: Any,
    model_state: Any,
    xs: Float[Array, "batch time features"],
    ys: Int[Array, " batch"],
    keys: PRNGKeyArray,
    *,
    lanczos_steps: int,
    slq_probes: int,
    hutchinson_probes: int,
    negative_threshold: float,
) -> dict[str, Array]:
    """`analyse_model` for every seed of a run at once: one `jax.vmap` over the stacked
    parameters (`RunState.params`), model states and probe keys; one compilation per cell class."""

    def one(p, s, key):
        return analyse_model(
            eqx.combine(p, static),
            s,
            xs,
            ys,
            key=key,
            lanczos_steps=lanczos_steps,
            slq_probes=slq_probes,
            hutchinson_probes=hutchinson_probes,
            negative_threshold=negative_threshold,
        )

    return jax.vmap(one)(params, model_state, keys)


@eqx.filter_jit
def _lanczos_measure(model, model_state, xs, ys, start, num_iter):
    def loss_fn(m):
        return classifier_loss(m, model_state, xs, ys)[0]

    alphas, betas, _ = lanczos_tridiagonal(hessian_matvec(loss_fn, model), start, num_iter)
    nodes, first = ritz_values_and_first_components(alphas, betas)
    return SpectralDensity(nodes[None], first[None] ** 2)


def precision_gap(
    model: SequenceClassifier,
    model_state: eqx.nn.State,
    xs: Float[Array, "batch time features"],
    ys: Int[Array, " batch"],
    *,
    key: PRNGKeyArray,
    lanczos_steps: int,
) -> dict[str, float]:
    """One Lanczos quadrature of a float32 model's Hessian from one start vector, in float32 and
    again with parameters, images and start cast to float64: λ_max, n ∫ t dφ̂ and φ̂((−∞, 0))
    in both, and their relative (mass: absolute) differences."""
    flat, _ = parameter_vector(model)
    start = jax.random.normal(key, flat.shape, jnp.float32)
    single = _lanczos_measure(model, model_state, xs, ys, start, lanczos_steps)

    def to64(a):
        return a.astype(jnp.float64) if eqx.is_inexact_array(a) else a

    with jax.enable_x64(True):
        double = _lanczos_measure(
            jax.tree.map(to64, model), model_state, to64(xs), ys, to64(start), lanczos_steps
        )
        n = flat.shape[0]
        values = {
            "float32": {
                "top_eigenvalue": float(single.nodes.max()),
                "trace": float(single.moment(1)[()]) * n,
                "negative_mass": float(single.negative_mass(0.0)[()]),
            },
            "float64": {
                "top_eigenvalue": float(double.nodes.max()),
                "trace": float(double.moment(1)[()]) * n,
                "negative_mass": float(double.negative_mass(0.0)[()]),
            },
        }
    a, b = values["float32"], values["float64"]
    return {
        **values,
        "top_eigenvalue_relative_difference": abs(a["top_eigenvalue"] / b["top_eigenvalue"] - 1),
        "trace_relative_difference": abs(a["trace"] / b["trace"] - 1),
        "negative_mass_difference": abs(a["negative_mass"] - b["negative_mass"]),
    }


def _train_and_analyse(cell, config, xs, ys, xt, yt, xa, ya, points, keys) -> dict:
    tcfg = config.train
    seeds = np.arange(config.first_seed, config.first_seed + config.seeds)
    make = row_classifier(cell, config.hidden_size, INITIALISATIONS[config.init])
    optimizer = tcfg.make_optimizer()
    run_state, static = init_run(make, seeds, optimizer)
    options = {
        "lanczos_steps": config.lanczos_steps,
        "slq_probes": config.slq_probes,
        "hutchinson_probes": config.hutchinson_probes,
        "negative_threshold": config.negative_threshold,
    }
    analysed, losses = [], []
    for step in points:
        if step > int(run_state.step):
            run_state, chunk_losses, _ = train_epochs(
                run_state, static, classifier_loss, xs, ys, tcfg, optimizer, stop_at=step,
                desc=f"{cell.label} to step {step}",
            )  # fmt: skip
            losses.append(chunk_losses)
        out = analyse(run_state.params, static, run_state.model_state, xa, ya, keys, **options)
        analysed.append(jax.tree.map(np.asarray, out))
    per_point = {name: np.stack([a[name] for a in analysed]) for name in analysed[0]}
    single, _ = eqx.filter_eval_shape(make, jax.random.PRNGKey(0))  # its label and size
    result = {
        "model": cell.label,
        "params": count_parameters(single),
        "seeds": seeds,
        **per_point,  # (points, seeds, ...)
        "train_loss": np.concatenate(losses) if losses else np.zeros((0, config.seeds)),
        "test_accuracy": 100 * train.evaluate(run_state, static, xt, yt),
    }
    if config.precision_check:
        first = jax.tree.map(lambda a: a[0], (run_state.params, run_state.model_state))
        result["precision"] = precision_gap(
            eqx.combine(first[0], static), first[1], xa, ya, key=keys[0],
            lanczos_steps=config.lanczos_steps,
        )  # fmt: skip
    return result


def _compare(a: dict, b: dict) -> dict:
    tests = {}
    for name in COMPARED:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        for when, u, v in (("final", x[-1], y[-1]), ("mean_over_training", x.mean(0), y.mean(0))):
            tests[f"{name}_{when}"] = {a["model"]: mean_sd(u), b["model"]: mean_sd(v)}
            tests[f"{name}_{when}"] |= welch(u, v)
    return tests


def run(config: Config, out_dir: Path) -> dict:
    xs, ys, xt, yt = load_rows(
        config.dataset,
        config.data_dir or None,
        train_subset=config.train_subset,
        test_subset=config.test_subset,
    )
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    if config.analysis_examples > xs.shape[0]:
        raise ConfigError(
            f"analysis_examples ({config.analysis_examples}) exceeds the {xs.shape[0]} images"
        )
    xa, ya = xs[: config.analysis_examples], ys[: config.analysis_examples]
    end = total_steps(xs.shape[0], config.train)
    if config.analysis_steps[-1] > end:
        raise ConfigError(
            f"analysis_steps {config.analysis_steps} go beyond the end of training (step {end})"
        )
    points = sorted({*config.analysis_steps, end})
    seed_indices = jnp.arange(config.seeds)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(
        jax.random.PRNGKey(config.analysis_seed), seed_indices
    )
    cells = [
        _train_and_analyse(resolve_cell(name, "cells"), config, xs, ys, xt, yt, xa, ya, points,
                           keys)
        for name in config.cells
    ]  # fmt: skip
    # One grid for every cell, step and seed, so that the heat maps share their axes.
    low = min(float(c["nodes"].min()) for c in cells)
    high = max(float(c["nodes"].max()) for c in cells)
    sigma = config.density_sigma * (high - low)
    grid = np.linspace(low - 5 * sigma, high + 5 * sigma, config.grid_points)
    for c in cells:
        spectrum = SpectralDensity(jnp.asarray(c["nodes"]), jnp.asarray(c["weights"]))
        shape = (*c["nodes"].shape[:2], grid.size)
        c["density"] = np.asarray(spectrum.density(jnp.broadcast_to(grid, shape), sigma))
        middle = len(points) // 2
        c["summary"] = {
            when: {name: mean_sd(c[name][i]) for name in (*COMPARED, "trace_slq")}
            | {"step": points[i]}
            for when, i in (("start", 0), ("middle", middle), ("end", -1))
        }
        c["summary"]["test_accuracy"] = mean_sd(c["test_accuracy"])
    return {
        "quick": config == Config().quick(),
        "dataset": config.dataset,
        "hidden_size": config.hidden_size,
        "steps": points,
        "analysis_examples": config.analysis_examples,
        "negative_threshold": config.negative_threshold,
        "grid": grid,
        "sigma": sigma,
        "cells": cells,
        "tests": _compare(cells[0], cells[1]),
    }


EXPERIMENT = Experiment(
    name="spectrum",
    help="New: Hessian spectral density (SLQ) along Table 2's MNIST training, LSTM vs DecayNet",
    config=Config,
    run=run,
    plot=spectrum_figure,
)
