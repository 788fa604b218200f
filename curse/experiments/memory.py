"""`curse memory`: the curse theory's predictions from memory kernels, known and estimated from
data, beside what is measured (issue 23, item 3; Li et al., §4, Thm 4.2, §5, Thm 5.1).

Three tasks. For each, the kernel ρ̂ is estimated from input–output paths by
`memdyn.estimate_memory_kernel` (cross-validated ridge, bootstrap, held-out R²) after Gaussian
noise of `output_noise` × the outputs' standard deviation is added to the outputs, and made a
`curse.SampledKernel` so that the best exponential-sum fits (`curse.fit_widths`) give the width
m(ε) a linear RNN needs (Thm 4.2: the smallest m whose best fit has relative L² error ≤ ε):

1. eq. 125, ρ_ω = ρ̄ + ρ_0(· − 1/ω), for the ω of Fig. 2 (`flow`, `curse.MemoryFlowConfig`'s
   defaults), from white-noise paths (`curse.white_noise_paths`, targets by exact convolution,
   `curse.convolve_paths`). Predictions from the known ρ_ω and from ρ̂: m(ε), the bump centre
   (`curse.bump_centre` beyond `bump_after`: 1/ω and 1/ω̂), horizon and decay type (recorded,
   not tabulated: the decay type of a bump depends on where the noise floor cuts the window);
   measured: the plateau time τ of the gradient flow on J as Fig. 4's case (i) measures it
   (`curse.solve_memory_flows`, the first τ at which the loss has dropped by `drop_fraction` of
   J(θ(0)), `memdyn.hitting_time` in log τ), and the fit log τ = c0 + c1/ω. Thm 5.1
   (τ ≳ e^{c/ω}) predicts c1 > 0 and that log τ is linear in the memory 1/ω, which data give
   as 1/ω̂: the fit of log τ on 1/ω̂ must give the slope c1 of the fit on 1/ω. Memory along
   training: the horizon of the model's own kernel Σ a_i e^{−w_i t} at every saved θ(τ)
   (`memdyn.memory_horizon` at `horizon_epsilon`, on the estimates' grid); the curse predicts
   that the plateau is the time the model takes to acquire the long memory, so the horizon
   should jump (pass halfway from its start to its end value) at the plateau time τ.
2. Lorenz-96 (eq. 124, `curse.Lorenz96()`: Fig. 1(c)'s "standard" system; input the forcing,
   output x_1, paths built as Fig. 1 builds them, `curse.lorenz96_training_pairs`). Every path
   starts from one spun-up state, so a share s of the outputs' variance is the across-path mean
   trajectory m(t), which no time-homogeneous functional of the zero-mean forcing can produce:
   the held-out R² must stay below 1 − s. The kernel, horizon, decay type and m(ε) are reported
   for the path-dependent part (outputs minus m(t)).
3. A delay, y_k = x_{k−d}, on eq. 125's paths and lags: ρ a delta at lag d. ρ̂ must recover it
   (its horizon is d) and its m(ε) is large: exponential sums approximate a delta worst (the
   reference is the exact delta's `SampledKernel`). No linear RNN is trained on it: the best
   width-m fit of the white-noise loss J is what a trained width-m linear RNN can at best reach.

The record's `table` puts each prediction beside its measurement, one row
{task, quantity, predicted, measured, agrees, tolerance, criterion}; a width m(ε) that no
m ≤ `max_width` reaches is entered as `max_width` + 1. Tolerances, and why:

- held-out R² of a linear target with output noise f: 1/(1 + f²), within
  f²/(1 + f²) · (2K/N + 3√(2/N)) for K lags and N rows (the out-of-sample cost of K fitted
  weights, and three standard deviations of a mean of N squared Gaussian residuals);
- m(ε): the best-fit error is 1-Lipschitz in the kernel, so relative errors move by at most
  δ = 2‖ρ̂ − ρ‖/‖ρ̂‖; ‖ρ̂ − ρ‖ is bounded by three bootstrap standard errors
  (√Σ_k se_k²) plus, for eq. 125, the interpolation error of the sampled kernel against ρ_ω
  (by quadrature; the delay's reference is sampled too). Agreement: m(ε + δ) ≤ m̂(ε) ≤
  m(ε − δ) for the reference kernel's m;
- bump centre: half a grid step (the grid's resolution, which the parabola refinement does not
  beat once noise dominates) plus three standard deviations of `bump_centre` over `draws`
  perturbations ρ̂ + se·z (lags taken as independent: white-noise inputs make the Gram matrix
  nearly diagonal);
- slope c1 on 1/ω̂: the linearised change of a least-squares slope when each x_i moves by at
  most its bump-centre tolerance t_i, Σ_i |(y_i − ȳ) − 2c1(x_i − x̄)| t_i / Σ_i (x_i − x̄)²;
- log τ from 1/ω̂ on the measured fit: its own residual at that ω plus c1 t_i;
- delay horizon: exact (the mass is at one lag);
- memory along training: the jump's τ within a factor 2 of the plateau time τ (saves are
  log-spaced; the plateau times span four decades, so a factor 2 separates one event from two).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Annotated

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from curse._lorenz96 import Lorenz96
from curse._lorenz96 import training_pairs as lorenz96_training_pairs
from curse._memory_flow import MemoryFlowConfig, solve_config
from curse._sampled import cell_integrals, convolve_paths, white_noise_paths
from curse._targets import Target
from curse._widths import SampledKernel, bump_centre, fit_widths, minimal_width
from curse.plots import plot_memory
from memdyn import (
    ConfigError,
    estimate_memory_kernel,
    fit_decay,
    hitting_time,
    linear_fit,
    memory_horizon,
)
from memdyn.internal import (
    AtLeast,
    InRange,
    MinLength,
    NonNegative,
    Positive,
    check_fields,
    replace_fields,
)
from memlab import Experiment

# Memory along training: the horizon's jump and the loss's drop are one event if they lie within
# a factor 2 of each other, while the plateau times span four decades over the ω of Fig. 2.
JUMP_TOLERANCE = float(np.log(2.0))


@dataclasses.dataclass(frozen=True)
class DelayTask:
    """The delay task y_k = x_{k−d} on the white-noise paths, grid and lags of eq. 125.

    Attributes:
        delay: d, in steps of `dt`; the kernel is a delta at lag d (below the eq. 125 lags).
    """

    delay: Annotated[int, AtLeast(1)] = 10

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class Lorenz96Task:
    """Lorenz-96 paths as Fig. 1(c) builds them (the "standard" system, K = 8, J = 32, F = 10).

    Attributes:
        dt: step Δ of the forcing and of the saved x_1, in time units (Fig. 1's 0.05).
        num_steps: path length, in steps of `dt` (Fig. 1's 200).
        num_paths: paths, all from one spun-up state, each with its own forcing.
        forcing_scale: standard deviation of the i.i.d. forcing u_k (Fig. 1's 5).
        num_lags: lags K of the estimate.
    """

    dt: Annotated[float, Positive] = 0.05
    num_steps: Annotated[int, AtLeast(2)] = 200
    num_paths: Annotated[int, AtLeast(5)] = 100
    forcing_scale: Annotated[float, Positive] = 5.0
    num_lags: Annotated[int, AtLeast(2)] = 40

    def __post_init__(self):
        check_fields(self)
        if self.num_lags > self.num_steps:
            raise ConfigError(f"num_lags ({self.num_lags}) exceeds num_steps ({self.num_steps})")


@dataclasses.dataclass(frozen=True)
class Config:
    """Predictions of the curse theory from known and estimated kernels, against measurements.

    Attributes:
        flow: the eq. 125 targets and their gradient flows (Fig. 2's defaults: 1/ω = 4, 8, 12,
            16, 20, τ up to 1e6).
        drop_fraction: relative loss drop (a fraction of J(θ(0))) that ends the plateau, as in
            Fig. 4 (its headline 0.03).
        dt: step Δ of the white-noise paths of eq. 125 and the delay, in time units.
        num_paths: white-noise paths of eq. 125 and the delay (sequences of the estimate).
        window: the eq. 125 estimate's lags reach `window` time units beyond the longest
            memory 1/min ω (6: six bump widths); its paths are twice as long.
        output_noise: Gaussian noise added to every task's outputs, as a fraction of their
            standard deviation; 0 means noise-free.
        resamples: bootstrap replicates of each estimate.
        bump_after: the bump centre is sought among lags beyond this time (past ρ̄'s short
            memory); below every 1/ω.
        draws: perturbations ρ̂ + se·z giving the bump centre's standard deviation.
        epsilons: relative L² errors ε at which m(ε) is tabulated.
        horizon_epsilon: ε of the horizons: the smallest lag holding 1 − ε of the L1 mass
            (entries under twice their bootstrap standard error count as zero).
        max_width: widths m = 1..max_width are fitted for every kernel.
        starts: multi-starts per fit (`curse.fit_widths`).
        adam_steps: Adam steps per start.
        newton_steps: damped Newton steps per start.
        delay: the delay task.
        lorenz96: the Lorenz-96 task.
        seed: PRNG seed of the paths, the noise, the bootstraps and the fits' starts.
    """

    flow: MemoryFlowConfig = MemoryFlowConfig()
    drop_fraction: Annotated[float, InRange(0, 1, closed="neither")] = 0.03
    dt: Annotated[float, Positive] = 0.1
    num_paths: Annotated[int, AtLeast(5)] = 64
    window: Annotated[float, Positive] = 6.0
    output_noise: Annotated[float, NonNegative] = 0.1
    resamples: Annotated[int, AtLeast(2)] = 100
    bump_after: Annotated[float, NonNegative] = 2.0
    draws: Annotated[int, AtLeast(2)] = 200
    epsilons: Annotated[tuple[float, ...], InRange(0, 1, closed="neither"), MinLength(1)] = (
        0.7,
        0.5,
        0.3,
    )
    horizon_epsilon: Annotated[float, InRange(0, 1, closed="neither")] = 0.05
    max_width: Annotated[int, AtLeast(1)] = 8
    starts: Annotated[int, AtLeast(1)] = 6
    adam_steps: Annotated[int, AtLeast(1)] = 150
    newton_steps: Annotated[int, AtLeast(1)] = 80
    delay: DelayTask = DelayTask()
    lorenz96: Lorenz96Task = Lorenz96Task()
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        shortest = 1 / max(self.flow.omegas)
        if self.bump_after >= shortest - self.dt:
            raise ConfigError(
                f"bump_after ({self.bump_after}) must lie at least dt ({self.dt}) below the "
                f"shortest memory 1/max(flow.omegas) = {shortest:g}"
            )
        if self.delay.delay >= self.num_lags():
            raise ConfigError(
                f"delay.delay ({self.delay.delay}) must be below the eq. 125 lags "
                f"⌈(1/min(flow.omegas) + window)/dt⌉ = {self.num_lags()}"
            )

    def quick(self) -> Config:
        """Three ω to τ = 1e4 (`MemoryFlowConfig.quick`), Δ = 0.2, 16 paths, widths up to 4 by
        short fits; the Lorenz-96 data have the eq. 125 data's shapes (16 paths of 180 steps,
        90 lags), so the two share their compiled estimator and fits."""
        return replace_fields(
            self,
            {
                "flow": self.flow.quick(),
                "dt": 0.2,
                "num_paths": 16,
                "resamples": 20,
                "draws": 50,
                "max_width": 4,
                "starts": 3,
                "adam_steps": 40,
                "newton_steps": 20,
                "delay.delay": 5,
                "lorenz96.num_steps": 180,
                "lorenz96.num_paths": 16,
                "lorenz96.num_lags": 90,
            },
        )

    def num_lags(self) -> int:
        """Lags K of the eq. 125 estimates: the longest memory plus `window`, in steps."""
        return int(np.ceil((1 / min(self.flow.omegas) + self.window) / self.dt))


def _estimate(xs, ys, config: Config, key, num_lags: int):
    """`estimate_memory_kernel` of (xs, ys + noise), noise `output_noise` × std(ys)."""
    noise_key, boot_key = jax.random.split(key)
    noise = config.output_noise * jnp.std(ys) * jax.random.normal(noise_key, ys.shape, ys.dtype)
    return estimate_memory_kernel(
        xs, ys + noise, num_lags, key=boot_key, resamples=config.resamples
    )


def _fits(targets: list[Target], config: Config, key, desc: str) -> np.ndarray:
    errors, _ = fit_widths(
        targets,
        config.max_width,
        key=key,
        starts=config.starts,
        adam_steps=config.adam_steps,
        newton_steps=config.newton_steps,
        desc=desc,
    )
    return errors


@eqx.filter_jit
def _interpolation_error(target: Target, sampled: SampledKernel):
    nodes, weights = sampled.quadrature()
    rho = target.kernel(nodes)
    inside = jnp.sum(weights * (sampled.kernel(nodes) - rho) ** 2)
    tail = target.norm_squared() - jnp.sum(weights * rho**2)
    return jnp.sqrt(jnp.maximum(inside + tail, 0.0) / target.norm_squared())


def interpolation_error(target: Target, sampled: SampledKernel) -> float:
    """‖S − ρ‖/‖ρ‖ of a sampled kernel S against the kernel ρ it samples: the pieces by S's
    quadrature, the tail beyond S's window as ‖ρ‖² minus ρ's square inside it."""
    return float(_interpolation_error(target, sampled))


def bootstrap_error(estimate) -> float:
    """√Σ se_k² / √Σ ρ̂_k²: the estimate's relative error from its bootstrap standard errors."""
    kernel, se = np.asarray(estimate.kernel), np.asarray(estimate.standard_error)
    return float(np.sqrt(np.sum(se**2) / np.sum(kernel**2)))


def bump_spread(estimate, dt: float, after: float, draws: int, seed: int) -> float:
    """Standard deviation of `bump_centre` over `draws` perturbations ρ̂ + se·z, z ~ N(0, I)."""
    kernel, se = np.asarray(estimate.kernel), np.asarray(estimate.standard_error)
    rng = np.random.default_rng(seed)
    centres = [
        bump_centre(kernel + se * rng.standard_normal(kernel.shape), dt, after)
        for _ in range(draws)
    ]
    return float(np.std(centres, ddof=1))


def r2_prediction(noise: float, num_lags: int, rows: int) -> tuple[float, float]:
    """The held-out R² of a linear target with output noise f = `noise`, 1/(1 + f²), and its
    tolerance f²/(1 + f²) · (2K/N + 3√(2/N)) (module docstring), at least 1e-6."""
    share = noise**2 / (1 + noise**2)
    return 1 / (1 + noise**2), share * (2 * num_lags / rows + 3 * np.sqrt(2 / rows)) + 1e-6


def _row(task, quantity, predicted, measured, agrees, tolerance, criterion) -> dict:
    return {
        "task": task,
        "quantity": quantity,
        "predicted": float(predicted),
        "measured": float(measured),
        "agrees": bool(agrees),
        "tolerance": float(tolerance),
        "criterion": criterion,
    }


def _r2_row(task: str, measured: float, config: Config, num_lags: int, rows: int) -> dict:
    predicted, tolerance = r2_prediction(config.output_noise, num_lags, rows)
    return _row(
        task,
        "held-out R²",
        predicted,
        measured,
        abs(measured - predicted) <= tolerance,
        tolerance,
        "|R² − 1/(1 + f²)| ≤ tolerance (a linear target with output noise f)",
    )


def _width_rows(task, predicted, reference, delta, config: Config) -> list[dict]:
    """One row per ε: m̂(ε) from the `predicted` error curve against m(ε) from `reference`."""

    def width(errors, epsilon):  # inf: no width up to max_width reaches ε
        found = minimal_width(errors, epsilon) if epsilon > 0 else np.nan
        return np.inf if np.isnan(found) else found

    censor = lambda m: min(m, config.max_width + 1)
    rows = []
    for epsilon in config.epsilons:
        estimate = width(predicted, epsilon)
        low, high = width(reference, epsilon + delta), width(reference, epsilon - delta)
        rows.append(
            _row(
                task,
                f"m(ε = {epsilon:g})",
                censor(estimate),
                censor(width(reference, epsilon)),
                low <= estimate <= high,
                delta,
                "m(ε + δ) ≤ m̂(ε) ≤ m(ε − δ), δ = tolerance; max_width + 1: no width up to "
                "max_width reaches ε",
            )
        )
    return rows


@functools.partial(jax.jit, static_argnames="epsilon")
def _decay_and_horizon(kernel, floor, epsilon: float):
    return fit_decay(kernel, noise_floor=floor), memory_horizon(kernel, epsilon, noise_floor=floor)


def kernel_summary(estimate, config: Config) -> dict:
    """An estimate's kernel, standard errors, held-out R², chosen penalty, its horizon and decay
    fit (entries under twice their standard error count as zero), and `bootstrap_error`."""
    fit, horizon = _decay_and_horizon(
        estimate.kernel, 2 * estimate.standard_error, config.horizon_epsilon
    )
    return {
        "kernel": np.asarray(estimate.kernel),
        "standard_error": np.asarray(estimate.standard_error),
        "explained_variance": float(estimate.explained_variance),
        "penalty": float(estimate.penalty),
        "horizon": int(horizon),
        "decay_type": fit.preferred_name(),
        "exponential_rate": float(fit.exponential_rate),
        "power_exponent": float(fit.power_exponent),
        "bootstrap_error": bootstrap_error(estimate),
    }


def plateau_times(config: Config) -> tuple[np.ndarray, dict]:
    """The gradient flows on J for every ω of `config.flow` (`curse.solve_memory_flows`) and
    their plateau times, as Fig. 4's case (i): the first τ at which the loss has dropped by
    `drop_fraction` of J(θ(0)) (log-τ interpolation; inf if never)."""
    trajectory = solve_config(config.flow)
    times = trajectory.times[0]  # identical rows: one per ω
    tau = np.asarray(
        [
            float(
                hitting_time(
                    times,
                    None,
                    losses,
                    delta=config.drop_fraction * float(losses[0]),
                    criterion="loss",
                    log_time=True,
                ).time
            )
            for losses in trajectory.losses
        ]
    )
    curves = {
        "taus": np.asarray(times),
        "losses": np.asarray(trajectory.losses),
        "solve_finished": np.asarray(trajectory.finished),
        "horizons_along": horizons_along(
            trajectory.thetas, config.num_lags(), config.dt, config.horizon_epsilon
        ),
    }
    return tau, curves


@functools.partial(jax.jit, static_argnames=("lags", "epsilon"))
def _horizons_along(thetas, lags: int, dt, epsilon):
    a, w = thetas  # (..., units)
    t = (jnp.arange(lags) + 0.5) * dt
    kernels = jnp.sum(a[..., None] * jnp.exp(-w[..., None] * t), axis=-2)  # (..., lag)
    flat = kernels.reshape(-1, lags)
    horizons = jax.vmap(lambda k: memory_horizon(jnp.abs(k), epsilon))(flat)
    return horizons.reshape(kernels.shape[:-1]) * dt


def horizons_along(thetas, lags: int, dt: float, epsilon: float) -> np.ndarray:
    """The memory horizon (`memdyn.memory_horizon` at `epsilon`, in time units) of the model's
    own kernel ρ̂_θ(t) = Σ_i a_i e^{−w_i t} at every saved θ = (a, w) of the flows (leading axes
    kept: ω, save), on the grid t_k = (k + ½) dt, k < `lags`, of the estimates."""
    return np.asarray(_horizons_along(thetas, lags, dt, epsilon))


def memory_jump_times(taus, horizons) -> np.ndarray:
    """Per flow (rows of `horizons`, saved at `taus`): the first saved τ at which the model's
    horizon has covered half the way from its start to its end value; inf if it never moves."""
    out = []
    for row in np.asarray(horizons):
        halfway = 0.5 * (row[0] + row[-1])
        moved = row[-1] > row[0]
        out.append(float(np.asarray(taus)[np.argmax(row >= halfway)]) if moved else np.inf)
    return np.asarray(out)


def _slope_tolerance(x, y, slope, shifts) -> float:
    """Σ_i |(y_i − ȳ) − 2 slope (x_i − x̄)| shift_i / Σ_i (x_i − x̄)²: the first-order bound on
    a least-squares slope's change when each x_i moves by at most shift_i."""
    dx, dy = x - x.mean(), y - y.mean()
    return float(np.sum(np.abs(dy - 2 * slope * dx) * shifts) / np.sum(dx**2))


def memory_task(config: Config, xs, key) -> tuple[dict, list[dict]]:
    """Task 1, eq. 125 (module docstring), on the white-noise paths `xs` (paths, 2K, 1)."""
    flow, dt, lags = config.flow, config.dt, config.num_lags()
    omegas = np.asarray(flow.omegas, dtype=float)
    inverse = 1 / omegas
    estimate_key, fit_key = jax.random.split(key)
    batch = flow.targets()
    targets = [jax.tree.map(lambda x, i=i: x[i], batch) for i in range(omegas.size)]
    estimates, exact = [], []
    for i, target in enumerate(targets):
        weights = cell_integrals(target.kernel, xs.shape[1], dt)  # the exact target's outputs
        exact.append(np.asarray(weights[:lags]))
        ys = convolve_paths(weights, xs)
        estimates.append(
            _estimate(xs[..., 0], ys, config, jax.random.fold_in(estimate_key, i), lags)
        )
    sampled = [SampledKernel(e.kernel, dt) for e in estimates]
    known_errors = _fits(targets, config, jax.random.fold_in(fit_key, 0), "eq. 125 known")
    estimated_errors = _fits(sampled, config, jax.random.fold_in(fit_key, 1), "eq. 125 estimated")

    tau, curves = plateau_times(config)
    log_tau = np.log(tau)
    measured_fit = linear_fit(inverse, log_tau)
    c0, c1 = measured_fit["intercept"], measured_fit["slope"]
    centre_known = np.asarray([bump_centre(g, dt, config.bump_after) for g in exact])
    centre_hat = np.asarray([bump_centre(e.kernel, dt, config.bump_after) for e in estimates])
    spread = np.asarray(
        [
            bump_spread(e, dt, config.bump_after, config.draws, config.seed + i)
            for i, e in enumerate(estimates)
        ]
    )
    centre_tolerance = dt / 2 + 3 * spread
    estimated_fit = linear_fit(centre_hat, log_tau)

    rows, summaries = [], []
    for i, target in enumerate(targets):
        task = f"eq. 125, 1/ω = {inverse[i]:.4g}"
        summary = kernel_summary(estimates[i], config)
        exact_fit, exact_horizon = _decay_and_horizon(
            jnp.asarray(exact[i]), 0.0, config.horizon_epsilon
        )
        interpolation = interpolation_error(target, sampled[i])
        delta = 2 * (interpolation + 3 * summary["bootstrap_error"])
        summaries.append(
            {
                **summary,
                "exact_kernel": exact[i],
                "exact_horizon": int(exact_horizon),
                "exact_decay_type": exact_fit.preferred_name(),
                "interpolation_error": interpolation,
                "estimation_error": float(
                    np.linalg.norm(summary["kernel"] - exact[i]) / np.linalg.norm(exact[i])
                ),
                "width_tolerance": delta,
            }
        )
        rows.append(
            _r2_row(task, summary["explained_variance"], config, lags, xs.shape[0] * xs.shape[1])
        )
        rows += _width_rows(task, estimated_errors[i], known_errors[i], delta, config)
        rows.append(
            _row(
                task,
                "bump centre 1/ω",
                centre_hat[i],
                inverse[i],
                abs(centre_hat[i] - inverse[i]) <= centre_tolerance[i],
                centre_tolerance[i],
                "|1/ω̂ − 1/ω| ≤ Δ/2 + 3 sd(1/ω̂)",
            )
        )
        if np.isfinite(log_tau[i]):
            residual = log_tau[i] - (c0 + c1 * inverse[i])
            tolerance = abs(residual) + abs(c1) * centre_tolerance[i]
            predicted = c0 + c1 * centre_hat[i]
            rows.append(
                _row(
                    task,
                    "log τ from 1/ω̂ on the measured fit",
                    predicted,
                    log_tau[i],
                    abs(predicted - log_tau[i]) <= tolerance,
                    tolerance,
                    "|c0 + c1/ω̂ − log τ| ≤ |fit residual at 1/ω| + c1 · bump-centre tolerance",
                )
            )

    jumps = memory_jump_times(curves["taus"], curves["horizons_along"])
    for i in range(omegas.size):
        if np.isfinite(tau[i]) and np.isfinite(jumps[i]):
            ratio = abs(np.log(jumps[i] / tau[i])) if jumps[i] > 0 else np.inf
            rows.append(
                _row(
                    f"eq. 125, 1/ω = {inverse[i]:.4g}",
                    "memory along training: τ of the horizon's jump (measured) at the plateau "
                    "time τ (predicted)",
                    tau[i],
                    jumps[i],
                    ratio <= JUMP_TOLERANCE,
                    JUMP_TOLERANCE,
                    "|log(τ_jump / τ_plateau)| ≤ log 2",
                )
            )

    hit = np.isfinite(log_tau)
    if hit.sum() >= 2:
        slope_tolerance = _slope_tolerance(inverse[hit], log_tau[hit], c1, centre_tolerance[hit])
        rows.append(
            _row(
                "eq. 125",
                "log τ slope c1 on 1/ω̂ (predicted) and on 1/ω (measured)",
                estimated_fit["slope"],
                c1,
                abs(estimated_fit["slope"] - c1) <= slope_tolerance,
                slope_tolerance,
                "first-order slope change for 1/ω moved within the bump-centre tolerances",
            )
        )
        rows.append(
            _row(
                "eq. 125",
                "log τ slope c1 (Thm 5.1: > 0, τ ≳ e^{c/ω})",
                0.0,
                c1,
                c1 > 0 and bool(np.all(np.diff(log_tau[hit]) > 0)),
                0.0,
                "c1 > 0 and τ increasing in 1/ω",
            )
        )
    record = {
        "omegas": omegas,
        "inverse_omegas": inverse,
        "dt": dt,
        "num_lags": lags,
        "plateau_times": tau,
        "plateau_hit": hit,
        "memory_jump_times": jumps,
        **curves,
        "fit_on_inverse_omega": measured_fit,
        "fit_on_bump_centre": estimated_fit,
        "bump_centre_known": centre_known,
        "bump_centre_estimated": centre_hat,
        "bump_centre_sd": spread,
        "bump_centre_tolerance": centre_tolerance,
        "known_errors": known_errors,
        "estimated_errors": estimated_errors,
        "kernels": summaries,
    }
    return record, rows


def delay_task(config: Config, xs, key) -> tuple[dict, list[dict]]:
    """Task 3, the delay y_k = x_{k−d} (module docstring), on the paths `xs` (paths, 2K, 1)."""
    d, dt, lags = config.delay.delay, config.dt, config.num_lags()
    estimate_key, fit_key = jax.random.split(key)
    inputs = xs[..., 0]
    ys = jnp.pad(inputs, ((0, 0), (d, 0)))[:, : inputs.shape[1]]
    summary = kernel_summary(_estimate(inputs, ys, config, estimate_key, lags), config)
    delta_cells = np.zeros(lags)
    delta_cells[d] = 1.0
    errors = _fits(
        [SampledKernel(summary["kernel"], dt), SampledKernel(delta_cells, dt)],
        config,
        fit_key,
        "delay",
    )
    width_tolerance = 2 * 3 * summary["bootstrap_error"]
    task = f"delay d = {d}"
    rows = [
        _r2_row(task, summary["explained_variance"], config, lags, inputs.size),
        _row(
            task,
            f"horizon (lags, ε = {config.horizon_epsilon:g})",
            summary["horizon"],
            d,
            summary["horizon"] == d,
            0.0,
            "equal",
        ),
        *_width_rows(task, errors[0], errors[1], width_tolerance, config),
    ]
    record = {
        "delay": d,
        "num_lags": lags,
        "estimated_errors": errors[0],
        "exact_errors": errors[1],
        "width_tolerance": width_tolerance,
        **summary,
    }
    return record, rows


def lorenz96_task(config: Config, key) -> tuple[dict, list[dict]]:
    """Task 2, Lorenz-96 (module docstring)."""
    task_config, lags = config.lorenz96, config.lorenz96.num_lags
    data_key, raw_key, centred_key, fit_key = jax.random.split(key, 4)
    forcing, resolved = lorenz96_training_pairs(
        data_key,
        Lorenz96(),
        task_config.num_paths,
        task_config.num_steps,
        task_config.dt,
        forcing_scale=task_config.forcing_scale,
    )
    forcing = forcing[..., 0]
    centred = resolved - jnp.mean(resolved, axis=0)
    shared = float(1 - jnp.sum(centred**2) / jnp.sum((resolved - jnp.mean(resolved)) ** 2))
    measured = float(_estimate(forcing, resolved, config, raw_key, lags).explained_variance)
    summary = kernel_summary(_estimate(forcing, centred, config, centred_key, lags), config)
    errors = _fits([SampledKernel(summary["kernel"], task_config.dt)], config, fit_key, "L96")[0]
    bound = 1 - shared
    # The mean over P paths carries 1/P of the path-dependent variance into the shared share.
    tolerance = bound / task_config.num_paths
    rows = [
        _row(
            "Lorenz-96",
            "held-out R² (≤ 1 − shared-trajectory share s)",
            bound,
            measured,
            measured <= bound + tolerance,
            tolerance,
            "R² ≤ 1 − s + (1 − s)/P: the shared trajectory is no functional of the forcing",
        )
    ]
    record = {
        "dt": task_config.dt,
        "num_lags": lags,
        "shared_share": shared,
        "explained_variance_raw": measured,
        "errors": errors,
        "min_width": np.asarray([minimal_width(errors, eps) for eps in config.epsilons]),
        **summary,
    }
    return record, rows


def run(config: Config, out_dir=None) -> dict:
    """Every task's predictions and measurements, and the table that pairs them."""
    with jax.enable_x64(True):
        paths_key, memory_key, lorenz_key, delay_key = jax.random.split(
            jax.random.key(config.seed), 4
        )
        xs = white_noise_paths(paths_key, config.num_paths, 2 * config.num_lags(), config.dt)
        memory, memory_rows = memory_task(config, xs, memory_key)
        lorenz, lorenz_rows = lorenz96_task(config, lorenz_key)
        delay, delay_rows = delay_task(config, xs, delay_key)
    table = memory_rows + lorenz_rows + delay_rows
    return {
        "widths": np.arange(1, config.max_width + 1),
        "epsilons": np.asarray(config.epsilons),
        "max_width": config.max_width,
        "output_noise": config.output_noise,
        "memory": memory,
        "lorenz96": lorenz,
        "delay": delay,
        "table": table,
        "agreements": sum(row["agrees"] for row in table),
        "rows": len(table),
    }


EXPERIMENT = Experiment(
    name="memory",
    help="New: the curse's predictions (m(ε), bump centre, plateau growth) from known and "
    "estimated kernels beside measurements: eq. 125, Lorenz-96, a delay",
    config=Config,
    run=run,
    plot=plot_memory,
)
