"""Gradient flow dθ/dτ = −∇J(θ) (Li et al., eq. 21) of any loss of any model, integrated by Diffrax.

On a memory target (eq. 20/125) the flow sits on a plateau for τ ~ e^{c/ω}, escapes on τ-scales of
order one and then drifts slowly (two rates w_i merge while their a_i diverge: the closure of the
exponential sums, not a minimiser). Saves go on the caller's (log-spaced) τ grid via `SaveAt(ts=)`.

Solver choice. The flow's Jacobian is −∇²J, so an explicit solver's step is capped by its
stability interval over λ_max(∇²J) (about 3.5/λ_max for Tsit5): to a horizon T it takes at least
~λ_max·T/3.5 steps of 6 gradients each. An implicit step is not capped but builds the n × n
Jacobian (n Hessian-vector products) and factorises it, so it pays off only where λ_max·T is large
against n. Measured (float64, rtol 1e-8, atol 1e-10; process CPU time of a compiled call on one
core of a Xeon; max |Δθ| between the two solutions over the saves):

| flow | n | λ_max(θ(0))·T | Tsit5 | Kvaerno3 | max abs Δθ |
| --- | --- | --- | --- | --- | --- |
| LRU-like model (36 complex units), T = 10 | 217 | 122 | 0.32 s | 54 s | 2e-9 |
| the same, T = 1e3 | 217 | 1.2e4 | 12.9 s | 95 s | 4e-9 |
| eq. 125, ω = 1/4, T = 10 | 6 | 46 | 0.004 s | 0.031 s | 2e-8 |
| eq. 125, ω = 1/4, T = 100 | 6 | 455 | 0.023 s | 0.045 s | 2e-8 |
| eq. 125, ω = 1/4, T = 1e3 | 6 | 4.6e3 | 0.53 s | 0.055 s | 5e-8 |
| eq. 125, ω = 1/4, T = 1e4 | 6 | 4.6e4 | unfinished after 1e6 steps (6.8 s) | 0.066 s | |

Tsit5's cost grows about linearly in T, Kvaerno3's by ~1.3× per decade: the two cross near
λ_max·T/n ≈ 130 on eq. 125 and ≈ 500 on the LRU (extrapolated). On eq. 125 the flow turns stiff
after the escape (λ_max grows with the diverging a_i); among Diffrax's implicit solvers `Kvaerno3`
in τ finished every case (m = 3, ω ∈ {0.5, 0.2, 0.1}, τ to 1e7) in 3–5k steps with < 5 %
rejected steps; `Kvaerno5` (in τ or in s = log(1 + τ)) and `Kvaerno3` in s exhausted 20k steps
with > 50 % of steps rejected in the drift phase. (The paper used an Adams–Bashforth–Moulton
method.)

Hence `solver=None` chooses by a stiffness estimate (`choose_solver`): Kvaerno3 (L-stable ESDIRK,
in τ, with a PID controller whose steps grow geometrically on a plateau) where
max(λ_max(∇²J(θ(0))), 0)·T exceeds `STIFFNESS_PER_PARAMETER`·n = 250·n, between the two
crossovers, Tsit5 otherwise. Near the threshold either choice costs at most a few times the
better one; far from it the wrong one cost 170× (LRU) or never finished (eq. 125). The estimate
is 10 Hessian-vector products (on the LRU 5 ms a call, after a 3 s compilation per model
structure). It reads λ_max at θ(0) only: a flow that stiffens later but runs to a short horizon
(eq. 125 to τ ≲ 300) is left to Tsit5, which then takes more steps than needed but stays stable
and accurate.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

from memdyn._lanczos import hessian_extremes
from memdyn._parameters import (
    check_model,
    check_scalar_loss,
    parameter_vector,
    partition_parameters,
)
from memdyn._trajectory import Trajectory
from memdyn._tree import tree_all_finite
from memdyn._validate import check_finite, check_positive

STIFFNESS_PER_PARAMETER = 250.0
"""`choose_solver` picks the implicit solver where max(λ_max, 0)·T exceeds this times n."""

LANCZOS_STEPS = 10
"""Lanczos steps (Hessian-vector products) of `choose_solver`'s λ_max estimate, at most n."""


def choose_solver(
    loss_fn: Callable[[PyTree], Float[Array, ""]],
    model: PyTree,
    taus: Float[ArrayLike, " save"],
) -> diffrax.AbstractSolver:
    """The solver of `gradient_flow(..., solver=None)`: implicit `diffrax.Kvaerno3` for a stiff
    flow, explicit `diffrax.Tsit5` otherwise (module docstring: the cost model and measurements).

    Stiff means max(λ_max, 0)·T > `STIFFNESS_PER_PARAMETER`·n, with λ_max the largest eigenvalue
    of ∇²J at θ(0) = `model` (`LANCZOS_STEPS` Lanczos steps, `memdyn.hessian_extremes`, from a
    fixed start vector: the choice is deterministic), T = `taus[-1]` and n the number of
    parameters. Inside `jit` or `vmap` (a traced model, horizon or loss data) no value can pick
    the compiled program, and the choice is Kvaerno3, which is right for every flow and slow on
    large non-stiff ones: pass `solver=` there.
    """
    taus = _save_times(taus)
    size = parameter_vector(model)[0].size
    ritz = hessian_extremes(loss_fn, model, min(size, LANCZOS_STEPS), key=jax.random.key(0))
    stiffness = jnp.maximum(ritz[-1], 0) * taus[-1]
    if isinstance(stiffness, jax.core.Tracer):
        return diffrax.Kvaerno3()
    return diffrax.Kvaerno3() if stiffness > STIFFNESS_PER_PARAMETER * size else diffrax.Tsit5()


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
    stay fixed. Compiled once per shape and solver, and `vmap`-able (sweeps over targets,
    starts, ω).

    Args:
        loss_fn: J, a scalar function of the model. Pass a pytree callable (an `eqx.Module` or
            `jax.tree_util.Partial(f, target=...)`) so that its arrays are traced rather than
            baked in: a new target then reuses the compiled solve.
        model: θ(0), any `eqx.Module` or pytree.
        taus: non-decreasing save times ≥ 0 (typically `np.geomspace`, optionally with 0 first).
        rtol: relative tolerance of the PID step-size controller (> 0).
        atol: absolute tolerance of the PID step-size controller (> 0).
        max_steps: solver step budget.
        solver: any Diffrax solver. `None` (the default) chooses by a stiffness estimate at
            θ(0) (`memdyn.choose_solver`, a few Hessian-vector products): explicit
            `Tsit5` for a flow that is not stiff (most models over moderate horizons: on a
            217-parameter LRU 0.32 s where implicit `Kvaerno3` took 54 s, for the same answer
            to 2e-9), `Kvaerno3` for a stiff one (the eq. 125 family over long horizons, where
            Tsit5 does not finish). Inside `jit`/`vmap` the estimate cannot choose a compiled
            program and `None` means `Kvaerno3`: in a sweep, pass `diffrax.Tsit5()` unless the
            flow is stiff (an explicit solve that stalls on `max_steps` says it is).
        throw: raise if the solve fails; with `throw=False` (inside a `vmap` sweep) a failed
            member returns non-finite states after the failure, NaN losses there (`loss_fn` is
            not called on them), and its `result` says why.

    Returns:
        `Trajectory(times=taus, thetas=θ(taus), losses=J(θ(taus)), result=Diffrax's code)`;
        `trajectory.finished` is True where the solve reached `taus[-1]`.
    """
    taus = _save_times(taus)
    if solver is None:
        solver = choose_solver(loss_fn, model, taus)
    return _solve(
        loss_fn, model, taus, rtol=rtol, atol=atol, max_steps=max_steps, solver=solver, throw=throw
    )


def _save_times(taus: Float[ArrayLike, " save"]) -> Float[Array, " save"]:
    """`taus` as a floating-point array after the structural checks (trace time)."""
    taus = jnp.asarray(taus)
    if taus.ndim != 1 or taus.size == 0:
        raise ValueError(f"taus must be a non-empty 1-d array; got shape {taus.shape}")
    if not jnp.issubdtype(taus.dtype, jnp.floating):
        taus = taus.astype(jnp.result_type(float))
    return taus


@eqx.filter_jit
def _solve(loss_fn, model, taus, *, rtol, atol, max_steps, solver, throw) -> Trajectory:
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
        solver,
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
    finite = jax.vmap(tree_all_finite)(solution.ys)  # one verdict per saved time
    safe = jax.tree.map(
        lambda y, y0: jnp.where(finite.reshape((-1,) + (1,) * y0.ndim), y, y0),
        solution.ys,
        parameters,
    )
    losses = jax.vmap(lambda p: loss_fn(eqx.combine(p, static)))(safe)
    losses = jnp.where(finite, losses, jnp.nan)
    thetas = eqx.combine(solution.ys, static)
    return Trajectory(times=taus, thetas=thetas, losses=losses, result=solution.result)
