"""Hessian spectrum along training (Li et al., §5, Prop. C.3; issue 5 item 4).

Part 1 (exact, float64): plain GD with step η on J(a, w) (eq. 18/77) for the eq. 125 memory target
at each ω in `omegas` (one `vmap`), from the start of Fig. 2 (ρ̂ = ρ̄ plus spare units). Every
`exact.save_every` steps the full Hessian ∇²J is formed by `jax.hessian` and diagonalised: on the
plateau the smallest |eigenvalues| are exponentially small in 1/ω, and they grow at the escape.

Part 2 (Lanczos): a linear RNN with full W of width `lanczos.hidden` (m² + 2m > 2,000 parameters)
trained by GD on sampled white-noise paths (exact ZOH) against the same target at the largest ω:
extreme Hessian eigenvalues at each save by `lanczos.iterations` Lanczos steps on
Hessian-vector products (`memdyn.ritz_pairs_along`: all saves in one `vmap`, compiled once, a
random start per save). The Lanczos extremes (`memdyn.hessian_extremes`) are checked
against `eigvalsh` of the exact Hessian on a smaller model (`lanczos.check_hidden`), where both fit.

Part 3 (spectral density, beyond the paper's sizes): a full-W tanh RNN of width `density.hidden`
(m² + 2m ≥ 10⁴ parameters at the default) trained on sampled white-noise paths (Euler) against
eq. 125 at `density.omega`. It starts from the short-memory fit embedded in a full W (units 1–2
carry ρ̄, the spare units sit at rate `extra_rate` with zero readout; W = −diag(rates) plus
N(0, `density.noise`²/m) noise, so the spare units are not exchangeable), as Fig. 4 starts its
tanh case. At `density.points` saves along training through the plateau and the escape, the
Hessian spectral density by stochastic Lanczos quadrature (`memdyn.spectral_density_along`;
all points in one `vmap`, compiled once), λ_min and λ_max (the extreme Ritz values over the
probes), the negative mass and Hutchinson's trace (`memdyn.trace_along`). The plateau is the
first flat stretch of the loss (`memdyn.plateau_intervals`; training starts on it); the escape is
the first step at which the loss has dropped by `density.escape_fraction` of its level
(`memdyn.hitting_time`).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

from curse._memory_flow import MemoryFlowConfig, diagonal_objective
from curse._models import ContinuousRNN, Euler, ZeroOrderHold
from curse._sampled import make_sampled_loss
from curse._targets import BUMP_WIDTH, SHORT_MEMORY_A, SHORT_MEMORY_W
from curse.plots import plot_spectrum
from memdyn import (
    OPTIMIZERS,
    ConfigError,
    HessianOperator,
    hessian_eigenvalues,
    hessian_extremes,
    hitting_time,
    make_optimizer,
    plateau_intervals,
    ritz_pairs_along,
    spectral_density_along,
    trace_along,
    train,
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


@dataclasses.dataclass(frozen=True)
class ExactSpectra:
    """Part 1: plain GD on J(a, w) for each ω, the exact Hessian spectrum at every save.

    Attributes:
        extra_units: spare units of the start (a = 0 at `extra_rate`, as in Fig. 2); 0 means
            none.
        learning_rate: plain-GD step η (τ = η·step); η < 2/λ_max with λ_max ≈ 82 after the
            escape (GD at η = 0.05 oscillates).
        train_steps: GD steps; a multiple of `save_every`.
        save_every: steps between exact Hessians (τ = 0.1 apart at the defaults: the plateaus
            end at τ ≈ 0.7, 2, 5, 13 for 1/ω = 6, 8, 10, 12).
    """

    extra_units: int = 1
    learning_rate: Annotated[float, Positive] = 0.01
    train_steps: int = 20_000
    save_every: Annotated[int, AtLeast(1)] = 10

    def __post_init__(self):
        check_fields(self)
        if self.train_steps % self.save_every:
            raise ConfigError(
                f"train_steps must be a multiple of save_every; got {self.train_steps}"
            )


@dataclasses.dataclass(frozen=True)
class LanczosSpectra:
    """Part 2: a full-W linear RNN trained by GD on sampled paths (exact ZOH) against the
    largest ω, its extreme Hessian eigenvalues by Lanczos at every save.

    Attributes:
        hidden: width m of the full-W linear RNN (m² + 2m parameters).
        check_hidden: width of the smaller model on which Lanczos is checked against
            `eigvalsh` of its exact Hessian.
        iterations: Lanczos steps (Hessian-vector products) per spectrum, at most the check
            model's m² + 2m parameters.
        learning_rate: plain-GD step size.
        train_steps: GD steps; a multiple of `saves`.
        saves: number of Lanczos spectra after the start (evenly spaced in step; the start is
            analysed too).
        dt: grid step Δ of the sampled white-noise paths, in time units.
        num_paths: number of sampled paths (the full batch).
        num_steps: path length, in steps of `dt`.
    """

    hidden: Annotated[int, AtLeast(1)] = 45
    check_hidden: Annotated[int, AtLeast(1)] = 12
    iterations: Annotated[int, AtLeast(2)] = 60
    learning_rate: Annotated[float, Positive] = 0.01
    train_steps: int = 400
    saves: Annotated[int, AtLeast(1)] = 4
    dt: Annotated[float, Positive] = 0.1
    num_paths: Annotated[int, AtLeast(1)] = 8
    num_steps: Annotated[int, AtLeast(1)] = 200

    def __post_init__(self):
        check_fields(self)
        if self.train_steps % self.saves:
            raise ConfigError(f"train_steps must be a multiple of saves; got {self.train_steps}")
        smallest = self.check_hidden * (self.check_hidden + 2)
        if self.iterations > smallest:
            raise ConfigError(
                f"iterations must be in [2, {smallest}] (the parameters of check_hidden = "
                f"{self.check_hidden}); got {self.iterations}"
            )


@dataclasses.dataclass(frozen=True)
class DensityStudy:
    """Part 3: a full-W tanh RNN trained on sampled paths (Euler) from the short-memory fit, its
    Hessian spectral density by SLQ at points along training.

    Attributes:
        hidden: width m of the full-W tanh model (m² + 2m parameters: 10,200 at m = 100); two
            units carry ρ̄.
        omega: ω of its eq. 125 target. At 1/ω = 12 GD shows a plateau from the start and an
            escape within 2,000 steps; at 1/ω ≤ 8 the 98 spare units pull the bump in during
            the initial transient and there is no clean plateau.
        optimizer: the optimiser, a name of `memdyn.OPTIMIZERS`.
        learning_rate: its step size. λ_max ≈ 150 at the start (measured), so GD needs
            η < 2/150; at η = 0.02 it ran at the edge of stability (loss spikes).
        train_steps: optimiser steps; a multiple of `save_every`.
        save_every: steps between saved models and losses.
        dt: Euler step Δ of the sampled paths, in time units; the path length is
            2 (1/ω + 4 bump widths)/Δ steps and the loss uses the second half.
        num_paths: number of sampled paths (the full batch).
        input_scale: U = scale·1 and readout ā/scale on the short-memory units (as Fig. 4's
            tanh case).
        noise: std·√m of the Gaussian noise added to W = −diag(rates) at the start (0 leaves
            the spare units exchangeable).
        points: saves (evenly spaced in step, first and last included) at which the density is
            computed; at most the number of saves.
        iterations: Lanczos steps per probe of the SLQ density.
        probes: random probe vectors of the SLQ density.
        trace_probes: Rademacher probes of Hutchinson's trace estimate.
        grid_points: points of the eigenvalue grid shared by all densities.
        sigma_fraction: Gaussian broadening σ of the densities, as a fraction of the range of
            all Ritz values.
        negative_threshold: negative mass below −threshold·λ_max(point) is also recorded,
            which separates negative curvature from Ritz values at ≈ 0 of either sign.
        escape_fraction: relative drop below the plateau level that marks the escape step.
    """

    hidden: Annotated[int, AtLeast(len(SHORT_MEMORY_A) + 1)] = 100
    omega: Annotated[float, Positive] = 1 / 12
    optimizer: Annotated[str, OneOf(OPTIMIZERS)] = "gd"
    learning_rate: Annotated[float, Positive] = 0.01
    train_steps: int = 2000
    save_every: Annotated[int, AtLeast(1)] = 10
    dt: Annotated[float, Positive] = 0.2
    num_paths: Annotated[int, AtLeast(1)] = 8
    input_scale: Annotated[float, Positive] = 0.3
    noise: Annotated[float, NonNegative] = 0.1
    points: Annotated[int, AtLeast(2)] = 12
    iterations: Annotated[int, AtLeast(2)] = 80
    probes: Annotated[int, AtLeast(1)] = 3
    trace_probes: Annotated[int, AtLeast(1)] = 8
    grid_points: Annotated[int, AtLeast(2)] = 400
    sigma_fraction: Annotated[float, Positive] = 0.005
    negative_threshold: Annotated[float, Positive] = 1e-3
    escape_fraction: Annotated[float, InRange(0, 1, closed="neither")] = 0.2

    def __post_init__(self):
        check_fields(self)
        if self.train_steps % self.save_every:
            raise ConfigError(
                f"train_steps must be a multiple of save_every; got {self.train_steps}"
            )
        saves = self.train_steps // self.save_every + 1
        if self.points > saves:
            raise ConfigError(
                f"points must be in [2, {saves}], the saves of train_steps every save_every; "
                f"got {self.points}"
            )
        parameters = self.hidden * (self.hidden + 2)
        if self.iterations > parameters:
            raise ConfigError(
                f"iterations must be in [2, {parameters}] (the parameters of hidden = "
                f"{self.hidden}); got {self.iterations}"
            )

    def path_steps(self) -> int:
        """Path length: twice the memory (bump centre plus 4 widths), in steps."""
        return int(np.ceil(2 * (1 / self.omega + 4 * BUMP_WIDTH) / self.dt))


@dataclasses.dataclass(frozen=True)
class SpectrumConfig:
    """Hessian spectra along training, one part per part of the study.

    Attributes:
        omegas: memory parameters ω of eq. 125 for part 1, one GD trajectory each; the largest
            is also part 2's target.
        extra_rate: initial rate w of the spare units (parts 1 and 3), per unit time.
        exact: part 1, exact Hessian spectra along GD (6 parameters).
        lanczos: part 2, Lanczos extremes along GD (m² + 2m > 2,000 parameters).
        density: part 3, SLQ spectral densities along training (≥ 10⁴ parameters).
        seed: PRNG seed of part 2's and part 3's models, paths and probes.
    """

    omegas: Annotated[tuple[float, ...], Positive, MinLength(1)] = (1 / 6, 1 / 8, 1 / 10, 1 / 12)
    extra_rate: Annotated[float, Positive] = 0.5
    exact: ExactSpectra = ExactSpectra()
    lanczos: LanczosSpectra = LanczosSpectra()
    density: DensityStudy = DensityStudy()
    seed: int = 0

    def __post_init__(self):
        check_fields(self)

    def quick(self) -> SpectrumConfig:
        return replace_fields(
            self,
            {
                "omegas": (1 / 6, 1 / 8, 1 / 10),
                "exact.train_steps": 4000,
                "exact.save_every": 20,
                "lanczos.hidden": 20,
                "lanczos.check_hidden": 8,
                "lanczos.iterations": 40,
                "lanczos.train_steps": 40,
                "lanczos.saves": 2,
                "lanczos.num_steps": 100,
                "density.hidden": 6,
                "density.omega": 1 / 4,
                "density.train_steps": 200,
                "density.points": 10,
                "density.iterations": 16,
                "density.probes": 2,
                "density.trace_probes": 2,
            },
        )


def exact_spectra(config: SpectrumConfig):
    """GD on J for each ω and the exact Hessian spectrum at every save (part 1)."""
    flow_config = MemoryFlowConfig(
        omegas=config.omegas, extra_units=config.exact.extra_units, extra_rate=config.extra_rate
    )
    theta0 = flow_config.start()
    targets = flow_config.targets()
    gd = make_optimizer("gd", config.exact.learning_rate)

    @jax.jit
    def one(target):
        loss = Partial(diagonal_objective, target=target)
        trajectory = train(
            loss, theta0, gd, config.exact.train_steps, save_every=config.exact.save_every
        )
        spectra = jax.vmap(lambda theta: hessian_eigenvalues(loss, theta))(trajectory.thetas)
        return trajectory.times, trajectory.losses, spectra

    steps, losses, spectra = jax.vmap(one)(targets)
    return np.asarray(steps[0]), np.asarray(losses), np.asarray(spectra)


def memory_path_loss(omega: float, *, key, num_paths: int, num_steps: int, dt: float, **kwargs):
    """The sampled-path loss (`curse.make_sampled_loss`, one fixed batch) against eq. 125 at ω."""
    target = jax.tree.map(lambda x: x[0], MemoryFlowConfig(omegas=(omega,)).targets())
    return make_sampled_loss(
        target.kernel, key=key, num_paths=num_paths, num_steps=num_steps, dt=dt, **kwargs
    )


def sampled_rnn_loss(config: SpectrumConfig, hidden: int, key):
    """A full-W linear RNN of width `hidden` and its sampled-path loss (ZOH) at the largest ω."""
    model_key, path_key = jax.random.split(key)
    model = ContinuousRNN(hidden, structure="full", key=model_key)
    loss = memory_path_loss(
        max(config.omegas),
        key=path_key,
        num_paths=config.lanczos.num_paths,
        num_steps=config.lanczos.num_steps,
        dt=config.lanczos.dt,
        method=ZeroOrderHold(),
    )
    return model, loss


def lanczos_check(config: SpectrumConfig, key) -> dict:
    """Lanczos extremes against `eigvalsh` of the exact Hessian on the small model."""
    model, loss = sampled_rnn_loss(config, config.lanczos.check_hidden, key)
    exact = np.asarray(hessian_eigenvalues(loss, model))
    ritz = np.asarray(hessian_extremes(loss, model, config.lanczos.iterations, key=key))
    return {
        "parameters": int(ravel_pytree(model)[0].size),
        "exact_min": exact[0],
        "exact_max": exact[-1],
        "lanczos_min": ritz[0],
        "lanczos_max": ritz[-1],
        "max_relative_error": float(
            max(abs(ritz[-1] - exact[-1]), abs(ritz[0] - exact[0])) / abs(exact[-1])
        ),
    }


def lanczos_along(config: SpectrumConfig, key) -> dict:
    """GD on the large model; Lanczos extremes at each save (part 2)."""
    model, loss = sampled_rnn_loss(config, config.lanczos.hidden, key)
    gd = make_optimizer("gd", config.lanczos.learning_rate)
    save_every = config.lanczos.train_steps // config.lanczos.saves
    trajectory = train(loss, model, gd, config.lanczos.train_steps, save_every=save_every)
    keys = jax.random.split(key, len(trajectory.times))  # one random start per save
    pairs = ritz_pairs_along(
        Partial(HessianOperator, loss), trajectory.thetas, config.lanczos.iterations, key=keys
    )
    ritz = np.asarray(pairs.values)
    return {
        "parameters": int(ravel_pytree(model)[0].size),
        "steps": np.asarray(trajectory.times),
        "losses": np.asarray(trajectory.losses),
        "ritz_values": ritz,
        "lambda_min": ritz[:, 0],
        "lambda_max": ritz[:, -1],
    }


def short_memory_full_model(config: SpectrumConfig, key) -> ContinuousRNN:
    """The start of part 3: a full-W tanh RNN whose first units carry ρ̄ (rates w̄, readout
    ā/scale, inputs scale·1), the others at `extra_rate` with zero readout, W = −diag(rates) plus
    N(0, `density.noise`²/m) noise (Fig. 4's tanh start, made full and wide)."""
    m, k = config.density.hidden, len(SHORT_MEMORY_A)
    rates = jnp.concatenate([jnp.asarray(SHORT_MEMORY_W), jnp.full(m - k, config.extra_rate)])
    noise = config.density.noise / np.sqrt(m) * jax.random.normal(key, (m, m))
    scale = config.density.input_scale
    readout = jnp.concatenate([jnp.asarray(SHORT_MEMORY_A), jnp.zeros(m - k)]) / scale
    return ContinuousRNN(
        m,
        structure="full",
        activation="tanh",
        recurrent=-jnp.diag(rates) + noise,
        input_weights=jnp.full((m, 1), scale),
        readout=readout,
        key=key,
    )


def density_along(loss, models, keys, *, num_iter: int, num_probes: int, trace_probes: int):
    """SLQ densities and Hutchinson traces of the Hessian at every model of `models` (a leading
    axis on its arrays), one key per model split into the density's and the trace's:
    `memdyn.spectral_density_along` and `memdyn.trace_along`, each compiled once for all
    points."""
    density_keys, trace_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
    build = Partial(HessianOperator, loss)
    density = spectral_density_along(build, models, num_iter, num_probes, key=density_keys)
    return density, trace_along(build, models, trace_probes, key=trace_keys)


def plateau_and_escape(steps, losses, escape_fraction: float) -> tuple[tuple, float]:
    """The first flat stretch of the loss (start, end, level) and the first step after its
    start at which the loss is `escape_fraction` below its level (inf if never)."""
    plateaus = plateau_intervals(steps, losses, scale="linear", tolerance=0.05, min_fraction=0.03)
    if not plateaus:
        return (np.nan, np.nan, np.nan), np.inf
    plateau = plateaus[0]
    after = steps >= plateau.start
    escape = hitting_time(
        steps[after],
        None,
        losses[after],
        delta=escape_fraction * plateau.level,
        criterion="loss",
        log_time=False,
    )
    return tuple(plateau), float(escape.time)


def density_study(config: SpectrumConfig, key) -> dict:
    """Part 3: train the ≥ 10⁴-parameter tanh model; SLQ densities along its trajectory."""
    model_key, path_key, probe_key = jax.random.split(key, 3)
    model = short_memory_full_model(config, model_key)
    num_steps = config.density.path_steps()
    loss = memory_path_loss(
        config.density.omega,
        key=path_key,
        num_paths=config.density.num_paths,
        num_steps=num_steps,
        dt=config.density.dt,
        method=Euler(),
        burn_in=num_steps // 2,
    )
    optimizer = make_optimizer(config.density.optimizer, config.density.learning_rate)
    trajectory = train(
        loss, model, optimizer, config.density.train_steps, save_every=config.density.save_every
    )
    steps, losses = np.asarray(trajectory.times), np.asarray(trajectory.losses)
    index = np.unique(np.round(np.linspace(0, len(steps) - 1, config.density.points)).astype(int))
    models = jax.tree.map(
        lambda leaf: leaf[index] if eqx.is_inexact_array(leaf) else leaf, trajectory.thetas
    )
    densities, traces = density_along(
        loss,
        models,
        jax.random.split(probe_key, len(index)),
        num_iter=config.density.iterations,
        num_probes=config.density.probes,
        trace_probes=config.density.trace_probes,
    )
    nodes = np.asarray(densities.nodes)
    lambda_min, lambda_max = nodes.min(axis=(1, 2)), nodes.max(axis=(1, 2))
    sigma = config.density.sigma_fraction * float(lambda_max.max() - lambda_min.min())
    grid = jnp.linspace(
        lambda_min.min() - 5 * sigma, lambda_max.max() + 5 * sigma, config.density.grid_points
    )
    threshold = jnp.asarray(config.density.negative_threshold * lambda_max)[:, None, None]
    plateau, escape = plateau_and_escape(steps, losses, config.density.escape_fraction)
    parameters = int(ravel_pytree(model)[0].size)
    return {
        "parameters": parameters,
        "omega": config.density.omega,
        "optimizer": config.density.optimizer,
        "learning_rate": config.density.learning_rate,
        "path_steps": num_steps,
        "steps": steps,
        "losses": losses,
        "density_steps": steps[index],
        "density_losses": losses[index],
        "grid": np.asarray(grid),
        "sigma": sigma,
        "densities": np.asarray(densities.density(grid, sigma)),
        "lambda_min": lambda_min,
        "lambda_max": lambda_max,
        "negative_mass": np.asarray(densities.negative_mass(0.0)),
        "negative_threshold": config.density.negative_threshold,
        "negative_mass_above_threshold": np.asarray(densities.negative_mass(threshold)),
        "trace": np.asarray(traces),
        "trace_slq": parameters * np.asarray(densities.moment(1)),
        "plateau": plateau,
        "escape_step": escape,
    }


def run(config: SpectrumConfig, out_dir=None) -> dict:
    """Exact spectra along GD per ω (part 1); Lanczos check and Lanczos extremes (part 2); SLQ
    densities along training of the ≥ 10⁴-parameter tanh model (part 3)."""
    with jax.enable_x64(True):
        steps, losses, spectra = exact_spectra(config)
        key = jax.random.PRNGKey(config.seed)
        check = lanczos_check(config, key)
        large = lanczos_along(config, jax.random.fold_in(key, 1))
        density = density_study(config, jax.random.fold_in(key, 2))
    smallest = np.min(np.abs(spectra), axis=-1)
    return {
        "omegas": np.asarray(config.omegas),
        "steps": steps,
        "taus": config.exact.learning_rate * steps,
        "losses": losses,
        "eigenvalues": spectra,
        "min_abs_eigenvalue": smallest,
        "min_abs_eigenvalue_start": smallest[:, 0],
        "min_abs_eigenvalue_end": smallest[:, -1],
        "lanczos_check": check,
        "lanczos": large,
        "density": density,
    }


EXPERIMENT = Experiment(
    name="spectrum",
    help="Hessian spectrum along training on eq. 125: exact (6 params), Lanczos (>2k), SLQ (>10k)",
    config=SpectrumConfig,
    run=run,
    plot=plot_spectrum,
)
