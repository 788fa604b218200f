"""Figure 3 of Li et al. (App. C.3.3): the plateau time grows like e^{c/ω} (Theorem 5.1).

Same flows as Figure 2 (`curse._memory_flow` documents the target, the model and the start θ(0)),
on a finer ω grid. For each ω:

- `plateau_times`: the first τ at which the loss has dropped by `loss_delta` below J(θ(0))
  (running minimum, eq. 22's loss version); `separation_times`: the first τ with
  ‖θ(τ) − θ(0)‖₂ ≥ `separation_delta` (eq. 22). Both interpolate in log τ between saves.
- least-squares fits log τ = c0 + c1/ω (`intercept`, `slope`, `r2`; `separation_*` for the
  parameter criterion); Theorem 5.1 predicts c1 > 0. With a spare unit at rate w the escape
  force is L[ρ_0(· − 1/ω)](w) ~ e^{−w/ω}, so c1 ≈ w (`extra_rate`) is expected.
- the Hessian of J at θ(0) (exact, `jax.hessian`, float64): `min_hessian_eigs` is the smallest
  eigenvalue (negative: θ(0) is a saddle whose descent direction is exponentially weak; it tends
  to 0 as ω → 0, Prop. C.3), with a fit of log|λ_min| against 1/ω (`hessian_slope`).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.tree_util import Partial

from curse._memory_flow import (
    MemoryFlowConfig,
    diagonal_objective,
    solve_config,
)
from curse.plots import plot_fig3
from memdyn import Experiment, check_fields, hessian_eigenvalues, hitting_time, linear_fit


@dataclasses.dataclass(frozen=True)
class Fig3Config(MemoryFlowConfig):
    """Figure 3: `MemoryFlowConfig` on 1/ω = 4, 6, ..., 28 (plateau times from 0.1 to 3e5, all
    solves reach τ_max = 1e6; beyond ~1e7 the post-escape drift exhausts the step budget),
    plus the loss-drop threshold.

    Attributes:
        loss_delta: absolute drop of the loss below J(θ(0)) (≈ 1.77 = ‖ρ_0‖² with the default
            bump) whose first crossing in flow time τ is the plateau time (eq. 22's loss
            version); > 0.
    """

    omegas: tuple[float, ...] = tuple(1.0 / k for k in range(4, 29, 2))
    tau_max: float = 1e6
    num_saves: int = 271
    loss_delta: float = 0.05

    def __post_init__(self):
        check_fields(self)
        super().__post_init__()
        if not np.isfinite(self.loss_delta) or self.loss_delta <= 0:
            raise ValueError(f"loss_delta must be > 0; got {self.loss_delta}")
        if len(self.omegas) < 2:
            raise ValueError(f"omegas needs at least 2 values for a fit; got {self.omegas}")

    def quick(self) -> Fig3Config:
        return dataclasses.replace(
            self,
            omegas=(1 / 4, 1 / 6, 1 / 8, 1 / 10, 1 / 12),
            tau_max=1e3,
            num_saves=61,
            max_steps=20_000,
        )


def run(config: Fig3Config, out_dir=None) -> dict:
    """Plateau and separation times versus 1/ω with their fits; Hessian spectra at θ(0)."""
    with jax.enable_x64(True):
        trajectory = solve_config(config)
        times = trajectory.times[0]  # identical rows: one per ω
        plateau = jax.vmap(
            lambda losses: hitting_time(
                times, None, losses, delta=config.loss_delta, criterion="loss"
            )
        )(trajectory.losses)
        separation = jax.vmap(
            lambda thetas: hitting_time(times, thetas, None, delta=config.separation_delta)
        )(trajectory.thetas)
        theta0, batch = config.start(), config.targets()
        spectra = jax.vmap(
            lambda target: hessian_eigenvalues(Partial(diagonal_objective, target=target), theta0)
        )(batch)
        spectra = np.asarray(spectra)

    inverse = 1.0 / np.asarray(config.omegas)
    plateau_times = np.asarray(plateau.time)
    separation_times = np.asarray(separation.time)
    fit = linear_fit(inverse, np.log(plateau_times))
    separation_fit = linear_fit(inverse, np.log(separation_times))
    min_eigs = spectra[:, 0]
    hessian_fit = linear_fit(inverse, np.log(np.abs(min_eigs)))
    return {
        "omegas": np.asarray(config.omegas),
        "inverse_omegas": inverse,
        "plateau_times": plateau_times,
        "plateau_hit": np.asarray(plateau.hit),
        "slope": fit["slope"],
        "intercept": fit["intercept"],
        "r2": fit["r2"],
        "fit_points": fit["points"],
        "separation_times": separation_times,
        "separation_slope": separation_fit["slope"],
        "separation_intercept": separation_fit["intercept"],
        "separation_r2": separation_fit["r2"],
        "min_hessian_eigs": min_eigs,
        "hessian_eigs_start": spectra,
        "hessian_slope": hessian_fit["slope"],
        "hessian_intercept": hessian_fit["intercept"],
        "hessian_r2": hessian_fit["r2"],
        "initial_loss": np.asarray(trajectory.losses[:, 0]),
        "solve_finished": np.asarray(trajectory.finished),
        "taus": np.asarray(times),
        "losses": np.asarray(trajectory.losses),
    }


EXPERIMENT = Experiment(
    name="fig3",
    help="Figure 3: plateau time vs 1/ω with a fit of log τ = c0 + c1/ω; Hessian at the start",
    config=Fig3Config,
    run=run,
    plot=plot_fig3,
)
