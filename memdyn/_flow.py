"""Gradient flow dθ/dτ = −∇J(θ) (Li et al., eq. 21) of any loss of any model, integrated by Diffrax.

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
from jaxtyping import Array, ArrayLike, Float, PyTree

from memdyn._parameters import check_model, check_scalar_loss, partition_parameters
from memdyn._trajectory import Trajectory
from memdyn._validate import check_finite, check_positive


@eqx.filter_jit
def gradient_flow(
    loss_fn: Callable[[PyTree], Float[Array, ""]],
    model: PyTree,
    taus: Float[ArrayLike, " save"],
    *,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 100_000,
    solver: diffrax.AbstractSolver | None = None,
    throw: bool = True,
) -> Trajectory:
    """Integrate dθ/dτ = −∇J(θ) from θ(0) = `model` and save θ and J at the times `taus`.

    θ is the model's floating-point arrays (`memdyn.partition_parameters`); its other leaves
    stay fixed. Compiled once per shape and `vmap`-able (sweeps over targets, starts, ω).

    Args:
        loss_fn: J, a scalar function of the model. Pass a pytree callable (an `eqx.Module` or
            `jax.tree_util.Partial(f, target=...)`) so that its arrays are traced rather than
            baked in: a new target then reuses the compiled solve.
        model: θ(0), any `eqx.Module` or pytree.
        taus: non-decreasing save times ≥ 0 (typically `np.geomspace`, optionally with 0 first).
        rtol: relative tolerance of the PID step-size controller (> 0).
        atol: absolute tolerance of the PID step-size controller (> 0).
        max_steps: solver step budget.
        solver: any Diffrax solver (default `Kvaerno3`, see the module docstring).
        throw: raise if the solve fails; with `throw=False` (inside a `vmap` sweep) a failed
            member returns non-finite states after the failure, NaN losses there (`loss_fn` is
            not called on them), and its `result` says why.

    Returns:
        `Trajectory(times=taus, thetas=θ(taus), losses=J(θ(taus)), result=Diffrax's code)`;
        `trajectory.finished` is True where the solve reached `taus[-1]`.
    """
    taus = jnp.asarray(taus)
    if taus.ndim != 1 or taus.size == 0:
        raise ValueError(f"taus must be a non-empty 1-d array; got shape {taus.shape}")
    if not jnp.issubdtype(taus.dtype, jnp.floating):
        taus = taus.astype(jnp.result_type(float))
    taus = check_positive("taus", taus, strict=False)
    taus = eqx.error_if(taus, jnp.any(jnp.diff(taus) < 0), "taus must be non-decreasing")
    rtol = check_positive("rtol", rtol)
    atol = check_positive("atol", atol)
    check_scalar_loss(loss_fn, model)
    parameters, static = partition_parameters(check_finite("model parameters", check_model(model)))
    grad = jax.grad(lambda p: loss_fn(eqx.combine(p, static)))

    def field(tau, theta, args):
        return jax.tree.map(jnp.negative, grad(theta))

    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Kvaerno3() if solver is None else solver,
        t0=jnp.zeros((), taus.dtype),
        t1=taus[-1],
        dt0=None,
        y0=parameters,
        saveat=diffrax.SaveAt(ts=taus),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=throw,
    )
    # A failed solve (`throw=False`) fills the saves after the failure with inf: J is evaluated
    # only on finite states (θ(0) stands in for the others, whose loss is NaN), so a loss that
    # checks its inputs does not turn the failure into an error.
    finite = jnp.stack(
        [
            jnp.all(jnp.isfinite(y.reshape(y.shape[0], -1)), axis=1)
            for y in jax.tree.leaves(solution.ys)
        ]
    ).all(axis=0)
    safe = jax.tree.map(
        lambda y, y0: jnp.where(finite.reshape((-1,) + (1,) * y0.ndim), y, y0),
        solution.ys,
        parameters,
    )
    losses = jax.vmap(lambda p: loss_fn(eqx.combine(p, static)))(safe)
    losses = jnp.where(finite, losses, jnp.nan)
    thetas = eqx.combine(solution.ys, static)
    return Trajectory(times=taus, thetas=thetas, losses=losses, result=solution.result)
