"""Figure 2 of Li et al. (App. C.3.2): gradient flow on the memory target of eq. 125.

Target ρ_ω = ρ̄ + ρ_0(· − 1/ω): a two-term exponential sum ρ̄(t) = e^{−t} + 0.5 e^{−2t} plus a
unit Gaussian bump centred at 1/ω (`curse._targets.memory_target`). Model (eq. 126): the diagonal
linear RNN ρ̂(t) = Σ_i a_i e^{−w_i t}, trained by the gradient flow of eq. 21 on J(a, w)
(eq. 18/77), for every ω in one `vmap`-ed, compiled Diffrax solve.

Start: the exact minimiser of the short-memory part, extended by spare units. θ(0) puts
(a, w) = (ā, w̄) of ρ̄ on the first k units, which makes ρ̂ = ρ̄ and the gradient of the ρ̄ part
zero, and gives the `extra_units` spare units a = 0 at the rate `extra_rate` (0.5 by default,
slower than ρ̄'s rates and distinct from them, so no direction is exactly flat). The only force at
τ = 0 is then the bump's, of size |L[ρ_0(· − 1/ω)](w)| ~ e^{−w/ω}: the plateau of Theorem 5.1.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from jaxtyping import Array, Float

from curse._losses import white_noise_loss_core
from curse._targets import (
    BUMP_AMPLITUDE,
    BUMP_WIDTH,
    SHORT_MEMORY_A,
    SHORT_MEMORY_W,
    Target,
    memory_target,
)
from curse.plots import plot_fig2
from memdyn._experiment import Experiment
from memdyn._flow import Trajectory, gradient_flow_core
from memdyn._plateau import hitting_time
from memdyn._validate import check_fields


@dataclasses.dataclass(frozen=True)
class MemoryFlowConfig:
    """Gradient flow on eq. 125 for a grid of ω.

    Attributes:
        omegas: memory parameters ω > 0 (the bump sits at t = 1/ω).
        short_a, short_w: the short-memory exponential sum ρ̄ (weights, rates > 0).
        amplitude, width: the Gaussian template ρ_0.
        extra_units: spare units (a = 0 at `extra_rate`) beyond the k units that fit ρ̄.
        extra_rate: their initial rate w > 0.
        tau_max: end of the flow; saves on a log grid from `tau_min` (plus τ = 0).
        num_saves: number of log-spaced save times.
        rtol, atol, max_steps: Diffrax controller tolerances and step budget per ω.
        separation_delta: δ of eq. 22 (parameter distance) for the escape time.
    """

    omegas: tuple[float, ...] = (0.25, 0.125, 1 / 12, 0.0625, 0.05)
    short_a: tuple[float, ...] = SHORT_MEMORY_A
    short_w: tuple[float, ...] = SHORT_MEMORY_W
    amplitude: float = BUMP_AMPLITUDE
    width: float = BUMP_WIDTH
    extra_units: int = 1
    extra_rate: float = 0.5
    tau_min: float = 1e-3
    tau_max: float = 1e6
    num_saves: int = 181
    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 100_000
    separation_delta: float = 0.1

    def __post_init__(self):
        check_fields(self)
        if not self.omegas or any(not np.isfinite(o) or o <= 0 for o in self.omegas):
            raise ValueError(f"omegas must be non-empty and > 0; got {self.omegas}")
        if len(self.short_a) != len(self.short_w) or not self.short_a:
            raise ValueError("short_a and short_w must be non-empty and of equal length")
        if any(w <= 0 for w in self.short_w):
            raise ValueError(f"short_w must be > 0; got {self.short_w}")
        for name in ("width", "extra_rate", "tau_min", "rtol", "atol", "separation_delta"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be > 0; got {value}")
        if self.extra_units < 0:
            raise ValueError(f"extra_units must be >= 0; got {self.extra_units}")
        if self.tau_max <= self.tau_min:
            raise ValueError(f"tau_max must exceed tau_min; got {self.tau_max}")
        for name in ("num_saves", "max_steps"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2; got {getattr(self, name)}")

    def quick(self) -> MemoryFlowConfig:
        return dataclasses.replace(
            self, omegas=(0.25, 0.125, 1 / 12), tau_max=1e4, num_saves=71, max_steps=20_000
        )


def objective(theta: tuple[Array, Array], target: Target) -> Float[Array, ""]:
    """J(a, w) of eq. 18/77 as a function of θ = (a, w)."""
    return white_noise_loss_core(theta[0], theta[1], target)


def initial_parameters(config: MemoryFlowConfig) -> tuple[Array, Array]:
    """θ(0): ρ̄'s own (a, w) plus `extra_units` spare units at a = 0, w = `extra_rate`."""
    a = jnp.concatenate([jnp.asarray(config.short_a), jnp.zeros(config.extra_units)])
    w = jnp.concatenate(
        [jnp.asarray(config.short_w), jnp.full(config.extra_units, config.extra_rate)]
    )
    return a, w


def save_times(config: MemoryFlowConfig) -> Float[Array, " save"]:
    """τ = 0 followed by `num_saves` log-spaced times from `tau_min` to `tau_max`."""
    grid = jnp.geomspace(config.tau_min, config.tau_max, config.num_saves)
    return jnp.concatenate([jnp.zeros(1), grid])


def targets(config: MemoryFlowConfig, omegas: Float[Array, " k"]) -> Target:
    """The batch of eq. 125 targets, one per ω (a pytree with a leading axis)."""
    build = lambda omega: memory_target(
        omega,
        short_a=config.short_a,
        short_w=config.short_w,
        amplitude=config.amplitude,
        width=config.width,
    )
    return jax.vmap(build)(omegas)


@eqx.filter_jit
def _solve_batch(batch, theta0, taus, rtol, atol, max_steps):
    def one(target):
        loss = Partial(objective, target=target)
        return gradient_flow_core(
            loss, theta0, taus, rtol=rtol, atol=atol, max_steps=max_steps, throw=False
        )

    return jax.vmap(one)(batch)


def solve_flows(config: MemoryFlowConfig) -> tuple[Trajectory, Array]:
    """Gradient flows for all ω in one vmapped, compiled solve; also per-ω "finished" flags.

    A vmapped adaptive solve runs until its slowest member is done. One measurement on the
    default Fig. 3 grid (13 ω, τ to 1e6, shared 2-core CPU, after compilation): 3.6 s vmapped
    against 2.8 s for a loop of single solves, so on CPU the batch costs ~30 % more than a
    loop; we keep the single compiled `vmap` (one compilation; the form accelerators favour).
    """
    trajectory = _solve_batch(
        targets(config, jnp.asarray(config.omegas)),
        initial_parameters(config),
        save_times(config),
        config.rtol,
        config.atol,
        config.max_steps,
    )
    finished = jnp.all(jnp.isfinite(trajectory.losses), axis=1)
    return trajectory, finished


def parameter_distance(thetas: tuple[Array, Array]) -> Float[Array, "k save"]:
    """‖θ(τ) − θ(0)‖₂ for each ω and save time."""
    flat = jnp.concatenate(thetas, axis=-1)
    return jnp.linalg.norm(flat - flat[:, :1], axis=-1)


def run(config: MemoryFlowConfig, out_dir=None) -> dict:
    """Loss curves J(θ(τ)) and parameter distances for every ω (Figure 2)."""
    with jax.enable_x64(True):
        trajectory, finished = solve_flows(config)
        times = trajectory.times[0]  # identical rows: one per ω
        separation = jax.vmap(
            lambda thetas: hitting_time(times, thetas, None, delta=config.separation_delta)
        )(trajectory.thetas)
        return {
            "omegas": np.asarray(config.omegas),
            "taus": np.asarray(times),
            "losses": np.asarray(trajectory.losses),
            "parameter_distance": np.asarray(parameter_distance(trajectory.thetas)),
            "separation_times": np.asarray(separation.time),
            "final_a": np.asarray(trajectory.thetas[0][:, -1]),
            "final_w": np.asarray(trajectory.thetas[1][:, -1]),
            "solve_finished": np.asarray(finished),
        }


EXPERIMENT = Experiment(
    name="fig2",
    help="Figure 2: gradient-flow loss curves on the memory target (eq. 125) for several ω",
    config=MemoryFlowConfig,
    run=run,
    plot=plot_fig2,
)
