"""Figure 3 of Li et al. (App. C.3.3): the plateau time grows like e^{c/ω} (Theorem 5.1).

Same flows as Figure 2 (`curse._memory_flow` documents the target, the model and the start θ(0)),
on a finer ω grid: `omegas` (1/ω = 4..28) in one solve to `tau_max`, then each of
`long_omegas` (1/ω = 30, 32, 34, 36) alone, to `long_horizon` times its predicted escape time
(the saddle prediction below). Past the escape the flow drifts (units merge) and the solver's
steps shrink: 1/ω = 36 crosses the loss drop at τ ≈ 3.0e8 and then exhausts its
`long_max_steps` (1.5e6) before its horizon; its record says `solve_finished` False, and the
saves after the failure have NaN losses (`memdyn.gradient_flow(throw=False)`). For each ω:

- `plateau_times`: the first τ at which the loss has dropped by `loss_delta` below J(θ(0))
  (running minimum, eq. 22's loss version); `separation_times`: the first τ with
  ‖θ(τ) − θ(0)‖₂ ≥ `separation_delta` (eq. 22). Both interpolate in log τ between saves. A flow
  still on its plateau at its last save (a memory 1/ω too long for the horizon) has
  `plateau_hit` False and an infinite plateau time: its plateau time exceeds that horizon
  (`taus[:, -1]`), the fits leave it out, the figure draws it as a lower bound (▲ at the
  horizon) and the run says so in one line on stderr.
- least-squares fits log τ = c0 + c1/ω over the whole grid (`intercept`, `slope`, `r2`;
  `separation_*`) and local slopes: over each pair of neighbours (`local_slopes`) and over
  sliding windows of `window` points (`window_slopes`), at the windows' mean 1/ω. The global c1
  is an average over a slope that rises along the grid; it is not an asymptotic rate.
- the Hessian of J at θ(0) (exact, `jax.hessian`, float64): `min_hessian_eigs` is the smallest
  eigenvalue (negative: θ(0) is a saddle), with a fit of log|λ_min| against 1/ω.
- the saddle prediction (`saddle_prediction`): what Theorem 5.1's mechanism gives here.

What the theory gives. Theorem 5.1 (C.1) is a lower bound, τ ≳ e^{c/ω} for ω small enough, with
c built from constants the proof leaves unspecified (sub-Gaussian tail constants, bounds on
θ(0)); it states no asymptotic rate and no value of c. Its proof (Props. C.2–C.3, linearisation
eqs. 110–119) ties the escape to the Hessian's exponentially small eigenvalue. For this target
and start that eigenvalue has a closed form to leading order: the Gauss–Newton part M of the
Hessian is positive definite on every direction except the spare unit's rate w (its a is 0), and
the bump couples w to the spare unit's a through H_{a w} = 2∫ρ_0(t) t e^{−wt} dt = −2 L_b'(w)
(L_b = L[ρ_0(· − 1/ω)]), so λ_min ≈ −4 L_b'(w)² [M⁻¹]_{aa} while that is ≪ M's smallest
eigenvalue (≈ 1.8e-5 by default). With L_b(w) ≈ Aσ√(2π) e^{w²σ²/2 − w/ω},
|λ_min| ∝ (1/ω − wσ²)² e^{−2w/ω}: the escape time 1/|λ_min| has log-slope 2w − 2/(1/ω − wσ²)
per unit 1/ω, tending to c1 = 2w = 2·`extra_rate` (1.0 by default), not w. Where the bump's
coupling exceeds M's gap (1/ω ≲ 24 by default) λ_min is set by the coupling itself, ~ e^{−w/ω},
and the slopes are smaller, which is what the default grid's low end shows.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated

import jax
import numpy as np
import scipy.special
from jax.tree_util import Partial

from curse._memory_flow import (
    MemoryFlowConfig,
    diagonal_objective,
    solve_config,
)
from curse.plots import plot_fig3
from memdyn import ConfigError, hessian_eigenvalues, hitting_time, linear_fit
from memdyn.internal import AtLeast, GreaterThan, MinLength, Positive
from memlab import Experiment


@dataclasses.dataclass(frozen=True)
class Fig3Config(MemoryFlowConfig):
    """Figure 3: `MemoryFlowConfig` on 1/ω = 4, 6, ..., 28 to τ_max = 1e6 (plateau times from
    0.1 to 3e5; beyond ~1e7 the post-escape drift exhausts the step budget) and 1/ω = 30, ...,
    36 one at a time to `long_horizon` × their predicted escape time (τ up to 3e8), plus the
    loss-drop threshold and the local-slope window.

    Attributes:
        loss_delta: absolute drop of the loss below J(θ(0)) (≈ 1.77 = ‖ρ_0‖² with the default
            bump) whose first crossing in flow time τ is the plateau time (eq. 22's loss
            version). It is absolute: with `bump_density` J(θ(0)) is 2πσ² times smaller,
            so the same relative drop needs `loss_delta` / (2πσ²).
        long_omegas: further ω (memories 1/ω beyond the `omegas` grid), each solved alone to
            `long_horizon` × its predicted escape time with `long_max_steps`; may be empty;
            needs `extra_units` = 1 (the prediction's).
        long_horizon: end of each `long_omegas` flow as a multiple of its predicted escape
            time 1/|λ| (`saddle_prediction`; measured plateaus lie at 0.9–1.2 of it where
            |λ| ≪ the Gauss–Newton gap, 1/ω ≳ 28; shorter memories need a larger factor); > 1.
        long_max_steps: solver step budget per `long_omegas` flow; the plateau and the
            drift after it need many (≈ 1e6 steps reach τ = 3e8 at 1/ω = 36).
        window: points per sliding window of `window_slopes` (2 gives `local_slopes`).
    """

    omegas: Annotated[tuple[float, ...], Positive, MinLength(1)] = tuple(
        1.0 / k for k in range(4, 29, 2)
    )
    tau_max: float = 1e6
    num_saves: Annotated[int, AtLeast(2)] = 271
    loss_delta: Annotated[float, Positive] = 0.05
    long_omegas: Annotated[tuple[float, ...], Positive] = (1 / 30, 1 / 32, 1 / 34, 1 / 36)
    long_horizon: Annotated[float, GreaterThan(1)] = 1.5
    long_max_steps: Annotated[int, AtLeast(2)] = 1_500_000
    window: Annotated[int, AtLeast(2)] = 3

    def __post_init__(self):
        super().__post_init__()
        if len(self.omegas) + len(self.long_omegas) < 2:
            raise ConfigError(f"omegas needs at least 2 values for a fit; got {self.omegas}")
        if self.long_omegas and self.extra_units != 1:
            raise ConfigError("long_omegas need extra_units = 1 (their horizon's prediction)")

    def quick(self) -> Fig3Config:
        return dataclasses.replace(
            self,
            omegas=(1 / 4, 1 / 6, 1 / 8, 1 / 10, 1 / 12),
            long_omegas=(),
            tau_max=1e3,
            num_saves=61,
            max_steps=20_000,
        )

    def groups(self) -> list[MemoryFlowConfig]:
        """The solves: `omegas` to `tau_max`, then each of `long_omegas` alone to
        `long_horizon` × its predicted escape time (`saddle_prediction`)."""
        base = MemoryFlowConfig(**{f.name: getattr(self, f.name) for f in _BASE_FIELDS})
        groups = [base]
        for omega in self.long_omegas:
            escape = saddle_prediction(self, (omega,))["escape_time"][0]
            horizon = max(float(self.long_horizon * escape), 10 * self.tau_min)
            groups.append(
                dataclasses.replace(
                    base, omegas=(omega,), tau_max=horizon, max_steps=self.long_max_steps
                )
            )
        return groups


_BASE_FIELDS = dataclasses.fields(MemoryFlowConfig)


def sliding_slopes(x, y, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slopes of y against x over every run of `window` consecutive points (x
    sorted), with the runs' mean x; `window = 2` gives the slopes between neighbours. Fewer
    than `window` points have no run: both arrays are then empty."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if window < 2 or x.shape != y.shape or x.ndim != 1:
        raise ValueError("need 1-d x, y of equal length and window >= 2")
    if x.size < window:
        return np.empty(0), np.empty(0)
    runs = np.lib.stride_tricks.sliding_window_view(np.arange(x.size), window)
    centres = np.asarray([x[run].mean() for run in runs])
    slopes = np.asarray([linear_fit(x[run], y[run])["slope"] for run in runs])
    return centres, slopes


def bump_laplace(s, centre, amplitude, width):
    """L_b(s) = ∫_0^∞ e^{−st} A exp(−(t − t0)²/(2σ²)) dt and its derivative L_b'(s), in
    closed form: L_b = Aσ√(2π) exp(s²σ²/2 − s t0) Φ(z), z = (t0 − sσ²)/σ, and
    L_b' = L_b · (sσ² − t0 − σ φ(z)/Φ(z)); NumPy/SciPy, float64."""
    s = np.asarray(s, dtype=float)
    z = (centre - s * width**2) / width
    log_cdf = scipy.special.log_ndtr(z)
    log_value = np.log(amplitude * width * np.sqrt(2 * np.pi)) + 0.5 * (s * width) ** 2
    value = np.exp(log_value - s * centre + log_cdf)
    mills = np.exp(-0.5 * z**2 - 0.5 * np.log(2 * np.pi) - log_cdf)  # φ(z)/Φ(z)
    return value, value * (s * width**2 - centre - width * mills)


def gauss_newton_start(config: MemoryFlowConfig) -> np.ndarray:
    """M = 2∫ ∂ρ̂ ∂ρ̂ᵀ dt at θ(0) over (a_1..a_m, w_1..w_k): every unit's a and the rates of the
    k units that carry ρ̄ (the spare unit's ∂ρ̂/∂w is 0 because its a is 0). Closed form from
    ∫ t^p e^{−st} dt = p!/s^{p+1}; NumPy."""
    a, w = (np.asarray(x, dtype=float) for x in config.start())
    k = len(config.short_a)
    rates = np.concatenate([w, w[:k]])
    power = np.concatenate([np.zeros(w.size), np.ones(k)])  # ∂ρ̂/∂w_j = −a_j t e^{−w_j t}
    scale = np.concatenate([np.ones(w.size), -a[:k]])
    s = rates[:, None] + rates[None, :]
    p = power[:, None] + power[None, :]
    gram = scipy.special.factorial(p) / s ** (p + 1)
    return 2.0 * scale[:, None] * scale[None, :] * gram


def saddle_prediction(config: MemoryFlowConfig, omegas) -> dict:
    """The saddle's leading-order negative eigenvalue at θ(0), λ ≈ −4 L_b'(w)² [M⁻¹]_{aa} (w, a:
    the one spare unit), the escape time 1/|λ| and M's smallest eigenvalue (`gap`; the
    formula holds while |λ| ≪ gap). NumPy/SciPy only (module docstring)."""
    if config.extra_units != 1:
        raise ValueError("saddle_prediction needs exactly one spare unit (extra_units = 1)")
    matrix = gauss_newton_start(config)
    spare = config.extra_units + len(config.short_a) - 1  # index of the spare unit's a
    weight = np.linalg.inv(matrix)[spare, spare]
    centres = 1.0 / np.asarray(omegas, dtype=float)
    _, derivative = bump_laplace(config.extra_rate, centres, config.peak_amplitude(), config.width)
    eig = -4.0 * derivative**2 * weight
    return {
        "eig": eig,
        "escape_time": 1.0 / np.abs(eig),
        "gap": float(np.linalg.eigvalsh(matrix)[0]),
        "asymptotic_slope": 2.0 * config.extra_rate,
    }


def _solve_group(config: MemoryFlowConfig, loss_delta: float) -> dict:
    with jax.enable_x64(True):
        trajectory = solve_config(config)
        times = trajectory.times[0]  # identical rows: one per ω
        plateau = jax.vmap(
            lambda losses: hitting_time(times, None, losses, delta=loss_delta, criterion="loss")
        )(trajectory.losses)
        separation = jax.vmap(
            lambda thetas: hitting_time(times, thetas, None, delta=config.separation_delta)
        )(trajectory.thetas)
        theta0, batch = config.start(), config.targets()
        spectra = jax.vmap(
            lambda target: hessian_eigenvalues(Partial(diagonal_objective, target=target), theta0)
        )(batch)
    return {
        "plateau_times": np.asarray(plateau.time),
        "plateau_hit": np.asarray(plateau.hit),
        "separation_times": np.asarray(separation.time),
        "hessian_eigs_start": np.asarray(spectra),
        "initial_loss": np.asarray(trajectory.losses[:, 0]),
        "solve_finished": np.asarray(trajectory.finished),
        "taus": np.broadcast_to(np.asarray(times), trajectory.losses.shape),
        "losses": np.asarray(trajectory.losses),
    }


# A flow that never escapes has an infinite plateau time, and at long memories λ_min (~ −e^{−2w/ω})
# is 0 in float64: log, 1/|λ| and τ/τ_predicted then give ±inf or NaN, which the fits and the
# figure skip; they are outcomes, not numerical warnings.
@np.errstate(divide="ignore", invalid="ignore")
def run(config: Fig3Config, out_dir=None) -> dict:
    """Plateau and separation times versus 1/ω with global and local fits; Hessian spectra at
    θ(0); the saddle prediction on the same grid."""
    groups = config.groups()
    solved = [_solve_group(group, config.loss_delta) for group in groups]
    rows = {key: np.concatenate([part[key] for part in solved]) for key in solved[0]}
    omegas = np.concatenate([np.asarray(group.omegas) for group in groups])
    order = np.argsort(-omegas)  # increasing memory 1/ω
    rows = {key: value[order] for key, value in rows.items()}
    omegas = omegas[order]
    inverse = 1.0 / omegas
    on_plateau = ~rows["plateau_hit"]
    if on_plateau.any():
        horizons = rows["taus"][on_plateau, -1]
        stuck = zip(omegas[on_plateau], horizons, strict=True)
        print(
            "fig3: no escape from the plateau by the end of the flow for "
            + ", ".join(f"ω = {omega:.4g} (τ = {tau:.3g})" for omega, tau in stuck)
            + ": their plateau times are lower bounds (inf, plateau_hit false in the record, ▲ in "
            "the figure) and no fit uses them",
            file=sys.stderr,
        )
    plateau_times, separation_times = rows["plateau_times"], rows["separation_times"]
    fit = linear_fit(inverse, np.log(plateau_times))
    separation_fit = linear_fit(inverse, np.log(separation_times))
    min_eigs = rows["hessian_eigs_start"][:, 0]
    hessian_fit = linear_fit(inverse, np.log(np.abs(min_eigs)))
    pair_centres, pair_slopes = sliding_slopes(inverse, np.log(plateau_times), 2)
    window_centres, window_slopes = sliding_slopes(inverse, np.log(plateau_times), config.window)
    _, separation_pair_slopes = sliding_slopes(inverse, np.log(separation_times), 2)
    prediction = saddle_prediction(config, omegas) if config.extra_units == 1 else None
    result = {
        "omegas": omegas,
        "inverse_omegas": inverse,
        "plateau_times": plateau_times,
        "plateau_hit": rows["plateau_hit"],
        "slope": fit["slope"],
        "intercept": fit["intercept"],
        "r2": fit["r2"],
        "fit_points": fit["points"],
        "local_slope_centres": pair_centres,
        "local_slopes": pair_slopes,
        "window_slope_centres": window_centres,
        "window_slopes": window_slopes,
        "separation_times": separation_times,
        "separation_slope": separation_fit["slope"],
        "separation_intercept": separation_fit["intercept"],
        "separation_r2": separation_fit["r2"],
        "separation_local_slopes": separation_pair_slopes,
        "min_hessian_eigs": min_eigs,
        "hessian_eigs_start": rows["hessian_eigs_start"],
        "hessian_slope": hessian_fit["slope"],
        "hessian_intercept": hessian_fit["intercept"],
        "hessian_r2": hessian_fit["r2"],
        "hessian_local_slopes": sliding_slopes(inverse, np.log(np.abs(min_eigs)), 2)[1],
        "initial_loss": rows["initial_loss"],
        "solve_finished": rows["solve_finished"],
        "taus": rows["taus"],
        "losses": rows["losses"],
    }
    if prediction is not None:
        escape = prediction["escape_time"]
        result.update(
            predicted_min_eigs=prediction["eig"],
            predicted_escape_times=escape,
            predicted_local_slopes=sliding_slopes(inverse, np.log(escape), 2)[1],
            predicted_asymptotic_slope=prediction["asymptotic_slope"],
            gauss_newton_gap=prediction["gap"],
            plateau_over_predicted=plateau_times / escape,
        )
    return result


EXPERIMENT = Experiment(
    name="fig3",
    help="Figure 3: plateau time vs 1/ω, global and local slopes of log τ, the saddle theory",
    config=Fig3Config,
    run=run,
    plot=plot_fig3,
)
