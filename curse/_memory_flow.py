"""The memory-flow problem of Li et al. (eq. 125, App. C.3): a diagonal linear RNN learning a
short-memory exponential sum plus a Gaussian bump at t = 1/ω, by gradient flow on J(a, w).

Target ρ_ω = ρ̄ + ρ_0(· − 1/ω): ρ̄(t) = e^{−t} + 0.5 e^{−2t} and a unit Gaussian bump centred at
1/ω (`curse.memory_target`). Model (eq. 126): ρ̂(t) = Σ_i a_i e^{−w_i t}, trained by the gradient
flow of eq. 21 on J(a, w) (eq. 18/77), every ω in one `vmap`-ed, compiled Diffrax solve.

Start: the exact minimiser of the short-memory part, extended by spare units. θ(0) puts
(a, w) = (ā, w̄) of ρ̄ on the first k units, which makes ρ̂ = ρ̄ and the gradient of the ρ̄ part
zero, and gives the `extra_units` spare units a = 0 at the rate `extra_rate` (0.5 by default,
slower than ρ̄'s rates and distinct from them, so no direction is exactly flat). The only force at
τ = 0 is then the bump's, of size |`L[ρ_0(· − 1/ω)](w)`| ~ e^{−w/ω}: the plateau of Theorem 5.1.

The functions take explicit arguments; `MemoryFlowConfig` gathers the paper's defaults for the
experiments that share the problem (Figs. 2–4, momentum, spectrum, stability).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from jaxtyping import Array, ArrayLike, Float

from curse._losses import white_noise_loss
from curse._targets import (
    BUMP_AMPLITUDE,
    BUMP_WIDTH,
    SHORT_MEMORY_A,
    SHORT_MEMORY_W,
    Target,
    memory_target,
)
from memdyn import ConfigError, Trajectory, gradient_flow
from memdyn.internal import AtLeast, MinLength, NonNegative, Positive, check_fields

FLOW_SOLVER = diffrax.Kvaerno3()
"""The solver of the eq. 125 flows (Figs. 2–4, stability): implicit, because they turn stiff after
their escape (`memdyn._flow` has the measurements). Named here rather than left to
`memdyn.gradient_flow`'s stiffness estimate, which cannot choose inside a sweep's `vmap`."""


@dataclasses.dataclass(frozen=True)
class MemoryFlowConfig:
    """Gradient flow on eq. 125 for a grid of ω.

    Attributes:
        omegas: memory parameters ω > 0 of eq. 125, one flow each (one `vmap`); the Gaussian
            bump sits at t = 1/ω (time units), so small ω means long memory.
        short_a: weights ā_j of the short-memory part ρ̄(t) = Σ_j ā_j e^{−w̄_j t} (eq. 125:
            ρ̄ = e^{−t} + 0.5 e^{−2t}); as many as `short_w`.
        short_w: decay rates w̄_j > 0 of ρ̄ (per unit time); as many as `short_a`.
        amplitude: scale A of the bump: its peak height, ρ_0(t) = A exp(−(t − 1/ω)²/(2σ²)),
            or, with `bump_density`, its mass, ρ_0 = A × the N(1/ω, σ²) density.
        width: standard deviation σ > 0 of the bump, in time units.
        bump_density: whether the bump is a normalised density. Off (the default):
            `amplitude` is the bump's peak height (peak 1, mass √(2π)σ ≈ 2.51 by default). On:
            the bump is `amplitude` times the Gaussian density that §5 names, peak
            A/(σ√(2π)) ≈ 0.399 by default, so ∫ρ_0 = A (up to the negligible part at t < 0)
            and J(θ(0)) = ‖ρ_0‖² shrinks by 2πσ² (to ≈ 0.28).
        extra_units: spare units added to the k = len(`short_a`) units that carry ρ̄ (a = 0,
            rate `extra_rate`); the model width is m = k + extra_units; 0 means no spare unit.
        extra_rate: initial rate w > 0 of the spare units (per unit time); the bump's force on
            them is ~ e^{−w/ω}, the saddle's negative curvature ~ e^{−2w/ω} (`curse.experiments
            .fig3` derives the plateau-time slope from it).
        tau_min: first non-zero save time, in gradient-flow time τ of eq. 21.
        tau_max: end of the flow, in flow time τ (> `tau_min`).
        num_saves: log-spaced save times from `tau_min` to `tau_max` (τ = 0 is saved too).
        rtol: relative tolerance of Diffrax's PID step-size controller.
        atol: absolute tolerance of Diffrax's PID step-size controller.
        max_steps: solver step budget per ω; a flow that exhausts it is reported
            unfinished (`solve_finished` false) and its later saves are non-finite.
        separation_delta: δ of eq. 22: the parameter distance ‖θ(τ) − θ(0)‖₂ whose first
            crossing is the separation (escape) time.
    """

    omegas: Annotated[tuple[float, ...], Positive, MinLength(1)] = (
        0.25,
        0.125,
        1 / 12,
        0.0625,
        0.05,
    )
    short_a: Annotated[tuple[float, ...], MinLength(1)] = SHORT_MEMORY_A
    short_w: Annotated[tuple[float, ...], Positive, MinLength(1)] = SHORT_MEMORY_W
    amplitude: float = BUMP_AMPLITUDE
    width: Annotated[float, Positive] = BUMP_WIDTH
    bump_density: bool = False
    extra_units: Annotated[int, NonNegative] = 1
    extra_rate: Annotated[float, Positive] = 0.5
    tau_min: Annotated[float, Positive] = 1e-3
    tau_max: float = 1e6
    num_saves: Annotated[int, AtLeast(2)] = 181
    rtol: Annotated[float, Positive] = 1e-8
    atol: Annotated[float, Positive] = 1e-10
    max_steps: Annotated[int, AtLeast(2)] = 100_000
    separation_delta: Annotated[float, Positive] = 0.1

    def __post_init__(self):
        check_fields(self)
        if len(self.short_a) != len(self.short_w):
            raise ConfigError("short_a and short_w must be of equal length")
        if self.tau_max <= self.tau_min:
            raise ConfigError(f"tau_max must exceed tau_min; got {self.tau_max}")

    def quick(self) -> MemoryFlowConfig:
        return dataclasses.replace(
            self, omegas=(0.25, 0.125, 1 / 12), tau_max=1e4, num_saves=71, max_steps=20_000
        )

    def start(self) -> tuple[Array, Array]:
        """θ(0) of `short_memory_start` with this config's settings."""
        return short_memory_start(
            self.short_a, self.short_w, extra_units=self.extra_units, extra_rate=self.extra_rate
        )

    def targets(self, omegas: Float[ArrayLike, " k"] | None = None) -> Target:
        """`memory_targets` for `omegas` (default: this config's) with this config's ρ̄ and bump."""
        return memory_targets(
            self.omegas if omegas is None else omegas,
            short_a=self.short_a,
            short_w=self.short_w,
            amplitude=self.peak_amplitude(),
            width=self.width,
        )

    def peak_amplitude(self) -> float:
        """The bump's peak height: `amplitude`, or `amplitude`/(σ√(2π)) with `bump_density`."""
        if self.bump_density:
            return self.amplitude / (self.width * float(np.sqrt(2.0 * np.pi)))
        return self.amplitude

    def save_times(self) -> Float[Array, " save"]:
        """`log_save_times` with this config's grid."""
        return log_save_times(self.tau_min, self.tau_max, self.num_saves)


def diagonal_objective(theta: tuple[Array, Array], target: Target) -> Float[Array, ""]:
    """J(a, w) of eq. 18/77 as a function of θ = (a, w)."""
    return white_noise_loss(theta[0], theta[1], target)


def short_memory_start(
    short_a: Float[ArrayLike, " k"],
    short_w: Float[ArrayLike, " k"],
    *,
    extra_units: int,
    extra_rate: float,
) -> tuple[Float[Array, " m"], Float[Array, " m"]]:
    """θ(0): ρ̄'s own (a, w) plus `extra_units` spare units at a = 0, w = `extra_rate`."""
    a = jnp.concatenate([jnp.asarray(short_a, dtype=float), jnp.zeros(extra_units)])
    w = jnp.concatenate(
        [jnp.asarray(short_w, dtype=float), jnp.full(extra_units, extra_rate, dtype=float)]
    )
    return a, w


def log_save_times(tau_min: float, tau_max: float, num_saves: int) -> Float[Array, " save"]:
    """τ = 0 followed by `num_saves` log-spaced times from `tau_min` to `tau_max`."""
    grid = jnp.geomspace(tau_min, tau_max, num_saves)
    return jnp.concatenate([jnp.zeros(1), grid])


def memory_targets(
    omegas: Float[ArrayLike, " k"],
    *,
    short_a: Float[ArrayLike, " j"] = SHORT_MEMORY_A,
    short_w: Float[ArrayLike, " j"] = SHORT_MEMORY_W,
    amplitude: float = BUMP_AMPLITUDE,
    width: float = BUMP_WIDTH,
) -> Target:
    """The batch of eq. 125 targets, one per ω (a pytree with a leading axis)."""
    build = lambda omega: memory_target(
        omega, short_a=short_a, short_w=short_w, amplitude=amplitude, width=width
    )
    return jax.vmap(build)(jnp.asarray(omegas, dtype=float))


@eqx.filter_jit
def solve_memory_flows(
    targets: Target,
    theta0: tuple[Array, Array],
    taus: Float[Array, " save"],
    *,
    rtol: float,
    atol: float,
    max_steps: int,
    solver: diffrax.AbstractSolver = FLOW_SOLVER,
) -> Trajectory:
    """Gradient flows on J for a batch of targets from one start, in one vmapped, compiled solve
    by `solver` (`FLOW_SOLVER`, implicit, unless given).

    Members that exhaust `max_steps` do not stop the others: their `result` says so
    (`Trajectory.finished` is False) and their states after the failure are non-finite.

    A vmapped adaptive solve runs until its slowest member is done. One measurement on the
    default Fig. 3 grid (13 ω, τ to 1e6, shared 2-core CPU, after compilation): 3.6 s vmapped
    against 2.8 s for a loop of single solves, so on CPU the batch costs ~30 % more than a
    loop; we keep the single compiled `vmap` (one compilation; the form accelerators favour).
    """

    def one(target):
        loss = Partial(diagonal_objective, target=target)
        return gradient_flow(
            loss,
            theta0,
            taus,
            rtol=rtol,
            atol=atol,
            max_steps=max_steps,
            solver=solver,
            throw=False,
        )

    return jax.vmap(one)(targets)


def parameter_distance(thetas: tuple[Array, Array]) -> Float[Array, "k save"]:
    """‖θ(τ) − θ(0)‖₂ for each member of a batch of trajectories and each save time."""
    flat = jnp.concatenate(thetas, axis=-1)
    return jnp.linalg.norm(flat - flat[:, :1], axis=-1)


def solve_config(config: MemoryFlowConfig) -> Trajectory:
    """`solve_memory_flows` with the settings of `config` (every ω of `config.omegas`)."""
    return solve_memory_flows(
        config.targets(),
        config.start(),
        config.save_times(),
        rtol=config.rtol,
        atol=config.atol,
        max_steps=config.max_steps,
    )
