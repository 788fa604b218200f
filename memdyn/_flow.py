"""Gradient flow dθ/dτ = −∇J(θ) (Li et al., eq. 21), integrated by Diffrax.

On a memory target (eq. 20/125) the flow sits on a plateau for τ ~ e^{c/ω}, escapes on τ-scales of
order one and then drifts slowly (two rates w_i merge while their a_i diverge: the closure of the
exponential sums, not a minimiser). Saves go on the caller's (log-spaced) τ grid via `SaveAt(ts=)`.

Solver choice, measured on the eq. 125 problem (m = 3, ω ∈ {0.5, 0.2, 0.1}, τ up to 1e7, rtol
1e-8): the flow is stiff after the escape (a step of an explicit solver is capped by
1/λ_max(∇²J), and λ_max grows with the diverging a_i: Tsit5 needs > 2e5 steps to reach τ = 1e4).
Among Diffrax's implicit solvers, `Kvaerno3` in τ finished every case in 3–5k steps with < 5 %
rejected steps; `Kvaerno5` (in τ or in s = log(1 + τ)) and `Kvaerno3` in s exhausted 20k steps
with > 50 % of steps rejected in the drift phase. Hence the default: L-stable ESDIRK `Kvaerno3`
in τ with a PID controller, whose steps grow geometrically on the plateau. (The paper used an
Adams–Bashforth–Moulton method.)
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PyTree

from memdyn._validate import check_finite, check_positive


class Trajectory(eqx.Module):
    """Saved states of a training run: `thetas` is θ's pytree with a leading `save` axis."""

    times: Float[Array, " save"]
    thetas: PyTree
    losses: Float[Array, " save"]


@eqx.filter_jit
def gradient_flow_core(
    loss_fn: Callable[[PyTree], Float[Array, ""]],
    theta0: PyTree,
    taus: Float[Array, " save"],
    *,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 100_000,
    solver: diffrax.AbstractSolver | None = None,
    throw: bool = True,
) -> Trajectory:
    """`gradient_flow` without input checks, for use under `vmap` (compiled once per shape)."""
    taus = jnp.asarray(taus)
    grad = jax.grad(loss_fn)

    def field(tau, theta, args):
        return jax.tree.map(jnp.negative, grad(theta))

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Kvaerno3() if solver is None else solver,
        t0=jnp.zeros((), taus.dtype),
        t1=taus[-1],
        dt0=None,
        y0=theta0,
        saveat=diffrax.SaveAt(ts=taus),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=throw,
    )
    losses = jax.vmap(loss_fn)(solution.ys)
    return Trajectory(times=taus, thetas=solution.ys, losses=losses)


def gradient_flow(
    loss_fn: Callable[[PyTree], Float[Array, ""]],
    theta0: PyTree,
    taus: Float[ArrayLike, " save"],
    *,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 100_000,
    solver: diffrax.AbstractSolver | None = None,
    throw: bool = True,
) -> Trajectory:
    """Integrate dθ/dτ = −∇J(θ) from θ(0) = `theta0` and save θ and J at the times `taus`.

    Args:
        loss_fn: J, a scalar function of the pytree θ. Pass a pytree callable (an `eqx.Module`
            or `jax.tree_util.Partial(f, target=...)`) so that its arrays are traced rather than
            baked in: a new target then reuses the compiled solve.
        theta0: initial parameters (any pytree of float arrays).
        taus: non-decreasing save times ≥ 0 (typically `np.geomspace`, optionally with 0 first).
        rtol, atol: PID step-size controller tolerances.
        max_steps: solver step budget; with `throw=False` a solve that exhausts it returns
            non-finite states instead of raising (useful inside a `vmap` sweep).
        solver: any Diffrax solver (default `Kvaerno3`, see the module docstring).

    Returns:
        `Trajectory(times=taus, thetas=θ(taus), losses=J(θ(taus)))`.
    """
    check_finite("theta0", theta0)
    taus_np = np.asarray(taus, dtype=float)
    if taus_np.ndim != 1 or taus_np.size == 0:
        raise ValueError(f"taus must be a non-empty 1-d array; got shape {taus_np.shape}")
    check_positive("taus", taus_np, strict=False)
    if np.any(np.diff(taus_np) < 0):
        raise ValueError("taus must be non-decreasing")
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    return gradient_flow_core(
        loss_fn,
        theta0,
        jnp.asarray(taus_np),
        rtol=rtol,
        atol=atol,
        max_steps=max_steps,
        solver=solver,
        throw=throw,
    )
