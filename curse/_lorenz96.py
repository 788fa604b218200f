"""Two-scale Lorenz-96 system with input forcing (Li et al., eq. 124; Fig. 1(c)).

Slow (resolved) variables x_k, k = 1..K, and fast (unresolved) y_{j,k}, j = 1..J, cyclic indices
(y_{J+1,k} = y_{1,k+1}: the fast ring runs through all K·J variables):

    dx_k/dt     = −x_{k−1}(x_{k−2} − x_{k+1}) − x_k + F − (hc/b) Σ_j y_{j,k} + u(t)
    dy_{j,k}/dt = −cb y_{j+1,k}(y_{j+2,k} − y_{j−1,k}) − c y_{j,k} + (hc/b) x_k

with a scalar external forcing u(t), piecewise constant on a grid of step Δ with i.i.d. values
u_k ~ N(0, σ²) (the stochastic forcing of eq. 124). The learning task is the map u ↦ x_1: the
resolved variable sees the unresolved ones only through memory effects.

Solver choice. The fast subsystem is damped at rate c = 10 and advected at rate ~ cb|y| ≈ 10–50,
while the time scale the solution itself varies on (chaotic, fast oscillations of period ~ 1/c)
is just as short: the problem is *not* stiff in the sense that matters (the step is limited by
accuracy, not stability), so an implicit solver only pays for Newton solves. Measured on the
system K = 8, J = 8 (horizon 5 from a spun-up state, rtol 1e-6, atol 1e-8, jumps every
Δ = 0.05, N(0, 1) forcing): Tsit5 took 1,596 accepted and 210 rejected steps (0.02 s); Kvaerno5
(implicit, L-stable) took 10,178 accepted and 11,239 rejected steps (6.3 s), its error estimate
and Newton iterations struggling with the chaotic fast ring. Hence explicit `Tsit5` with a PID
controller and `jump_ts` at the switching times of u, so no step straddles a discontinuity.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import diffrax
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from memdyn.internal import AtLeast, Positive, check_fields, check_positive, check_shape


@dataclasses.dataclass(frozen=True)
class Lorenz96:
    """Parameters of eq. 124: K slow and J fast variables per slow one, forcing F, coupling h,
    time-scale ratio c and amplitude ratio b (defaults: the common two-scale choice K = 8,
    J = 32, h = 1, c = b = 10 of Wilks 2005, with F = 10; Lorenz 1996 used K = 36, J = 10)."""

    slow: Annotated[int, AtLeast(4)] = 8
    fast: Annotated[int, AtLeast(4)] = 32
    forcing: float = 10.0
    coupling: Annotated[float, Positive] = 1.0
    time_scale: Annotated[float, Positive] = 10.0
    amplitude: Annotated[float, Positive] = 10.0

    def __post_init__(self):
        check_fields(self)


def vector_field(
    system: Lorenz96, state: tuple[Float[Array, " K"], Float[Array, "K J"]], u: Float[Array, ""]
) -> tuple[Float[Array, " K"], Float[Array, "K J"]]:
    """Right-hand side of eq. 124 at state (x, y) with forcing value u."""
    x, y = state
    h, c, b = system.coupling, system.time_scale, system.amplitude
    advection = -jnp.roll(x, 1) * (jnp.roll(x, 2) - jnp.roll(x, -1))
    dx = advection - x + system.forcing - (h * c / b) * jnp.sum(y, axis=1) + u
    ring = y.reshape(-1)
    dring = -c * b * jnp.roll(ring, -1) * (jnp.roll(ring, -2) - jnp.roll(ring, 1)) - c * ring
    dy = dring.reshape(y.shape) + (h * c / b) * x[:, None]
    return dx, dy


def initial_state(system: Lorenz96) -> tuple[Float[Array, " K"], Float[Array, "K J"]]:
    """A fixed asymmetric start: x = F with x_1 perturbed by 0.01·F, small alternating y."""
    dtype = jnp.result_type(float)
    x = jnp.full(system.slow, system.forcing, dtype).at[0].add(0.01 * system.forcing)
    pattern = jnp.where(jnp.arange(system.slow * system.fast) % 2 == 0, 0.1, -0.1)
    return x, pattern.reshape(system.slow, system.fast).astype(dtype)


def integrate(
    system: Lorenz96,
    state0: tuple[Float[Array, " K"], Float[Array, "K J"]],
    forcing: Float[Array, " time"],
    dt: float,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    max_steps: int = 200_000,
) -> tuple[Float[Array, "time K"], Float[Array, "time K J"]]:
    """States at t = Δ, 2Δ, ..., TΔ under the forcing u(t) = u_k on [kΔ, (k + 1)Δ) (Tsit5)."""
    n = forcing.shape[0]
    dtype = jnp.result_type(float)
    jumps = dt * jnp.arange(1, n, dtype=dtype)
    ts = dt * jnp.arange(1, n + 1, dtype=dtype)
    # Locate the step by comparison, not ⌊t/Δ⌋: at the float just before a jump the old value holds.
    field = lambda t, state, args: vector_field(
        system, state, forcing[jnp.searchsorted(jumps, t, side="right")]
    )
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        t0=jnp.zeros((), dtype),
        t1=ts[-1],
        dt0=None,
        y0=state0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.ClipStepSizeController(controller, jump_ts=jumps),
        max_steps=max_steps,
    )
    return solution.ys


def spun_up_state(
    system: Lorenz96, spin_up: float, dt: float
) -> tuple[Float[Array, " K"], Float[Array, "K J"]]:
    """The state after integrating from `initial_state` for time `spin_up` without forcing
    (onto the attractor)."""
    steps = max(int(round(spin_up / dt)), 1)
    xs, ys = integrate(system, initial_state(system), jnp.zeros(steps), dt)
    return xs[-1], ys[-1]


def training_pairs(
    key: PRNGKeyArray,
    system: Lorenz96,
    num_paths: int,
    num_steps: int,
    dt: float,
    *,
    forcing_scale: float = 1.0,
    spin_up: float = 5.0,
) -> tuple[Float[Array, "paths time 1"], Float[Array, "paths time"]]:
    """(forcing u, resolved variable x_1) pairs for sequence-to-sequence learning (Fig. 1(c)).

    Every path starts from the same spun-up state, so x_1 is a (non-linear, causal) functional of
    the forcing alone; u_k ~ N(0, `forcing_scale`²) i.i.d. per step; x_1 is saved at (k + 1)Δ,
    aligned with the RNN outputs ŷ_k. All paths are solved in one `vmap`-ed compiled solve.
    """
    if not isinstance(num_paths, int) or num_paths < 1:
        raise ValueError(f"num_paths must be a positive int; got {num_paths!r}")
    if not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an int >= 2; got {num_steps!r}")
    check_positive("dt", dt)
    check_positive("forcing_scale", forcing_scale)
    check_positive("spin_up", spin_up, strict=False)
    state0 = spun_up_state(system, spin_up, dt) if spin_up > 0 else initial_state(system)
    forcing = forcing_scale * jax.random.normal(key, (num_paths, num_steps), jnp.result_type(float))
    solve = jax.jit(jax.vmap(lambda u: integrate(system, state0, u, dt)[0][:, 0]))
    resolved = solve(forcing)
    check_shape("resolved", resolved, (num_paths, num_steps))
    return forcing[..., None], resolved
