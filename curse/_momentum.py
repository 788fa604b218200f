"""Escape from a flat direction: gradient descent versus heavy-ball momentum (Li et al., App. E).

Quadratic saddle f(x, y) = (y² − λ x²)/2 with a weak unstable direction of curvature λ > 0,
started at (x0, y0) with small x0. Escape time: first time |x| reaches `x_escape`.

- Gradient flow ẋ = λx: x = x0 e^{λt}, T = log(x_escape/x0)/λ ∝ λ^{−1}.
- Heavy-ball flow ẍ + γẋ = λx (mass 1, friction γ; App. E takes γ = 0, "the best acceleration"):
  for γ = 0, x = x0 cosh(√λ t), T = arccosh(x_escape/x0)/√λ ∝ λ^{−1/2}.
- Discrete GD x ← x + ηλx and heavy ball (Optax `sgd(momentum=β)`, β close to 1): the same
  exponents while ηλ ≪ 1 and (1 − β)² ≪ ηλ.

Flows are integrated by Diffrax (Tsit5) with an event that stops at |x| = x_escape.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optax
import optimistix as optx
from jaxtyping import Array, Float

from memdyn.internal import check_positive


def saddle_loss(theta: Float[Array, " 2"], curvature: Float[Array, ""]) -> Float[Array, ""]:
    """f(x, y) = (y² − λ x²)/2: a flat unstable direction x of curvature λ, a stiff stable y."""
    return 0.5 * (theta[1] ** 2 - curvature * theta[0] ** 2)


@eqx.filter_jit
def flow_escape_time(
    curvature: Float[Array, ""],
    *,
    heavy_ball: bool,
    friction: float = 0.0,
    x0: float = 1e-3,
    y0: float = 1.0,
    x_escape: float = 1.0,
    t_max: float = 1e9,
) -> Float[Array, ""]:
    """Time for |x| to reach `x_escape` under gradient flow θ' = −∇f, or the heavy-ball flow
    θ'' + γθ' = −∇f (θ'(0) = 0); `inf` if not reached by `t_max`."""
    grad = jax.grad(saddle_loss)
    theta0 = jnp.array([x0, y0])
    if heavy_ball:
        y_init = (theta0, jnp.zeros(2))

        def field(t, state, args):
            theta, velocity = state
            return velocity, -friction * velocity - grad(theta, curvature)

        position = lambda state: state[0][0]
    else:
        y_init = theta0
        field = lambda t, theta, args: -grad(theta, curvature)
        position = lambda state: state[0]

    event = diffrax.Event(
        lambda t, y, args, **kwargs: jnp.abs(position(y)) - x_escape,
        root_finder=optx.Newton(rtol=1e-10, atol=1e-10),
    )
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        t0=0.0,
        t1=t_max,
        dt0=None,
        y0=y_init,
        stepsize_controller=diffrax.PIDController(rtol=1e-9, atol=1e-12),
        event=event,
        max_steps=100_000,
        throw=False,
    )
    reached = solution.event_mask
    return jnp.where(reached, solution.ts[-1], jnp.inf)


def escape_exponent(
    curvatures: Float[Array, " n"], times: Float[Array, " n"]
) -> tuple[float, float]:
    """Least-squares slope and intercept of log T against log λ (finite times only)."""
    lam, times = jnp.asarray(curvatures), jnp.asarray(times)
    ok = jnp.isfinite(times)
    slope, intercept = jnp.polyfit(jnp.log(lam[ok]), jnp.log(times[ok]), 1)
    return float(slope), float(intercept)


def discrete_escape_steps(
    curvature: Float[Array, ""],
    *,
    learning_rate: float,
    momentum: float | None,
    x0: float = 1e-3,
    y0: float = 1.0,
    x_escape: float = 1.0,
    max_steps: int = 10_000_000,
) -> Float[Array, ""]:
    """Optax steps for |x| to reach `x_escape`: `optax.sgd(learning_rate, momentum)` (plain GD
    for `momentum=None`, heavy ball otherwise), interpolated in log|x| between the two steps that
    bracket the crossing; `inf` if not reached within `max_steps`."""
    check_positive("learning_rate", learning_rate)
    check_positive("x0", x0)
    check_positive("x_escape - x0", x_escape - x0)
    check_positive("curvature", curvature)
    if momentum is not None and not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1) or None; got {momentum}")
    optimizer = optax.sgd(learning_rate, momentum=momentum)
    return _discrete_escape(curvature, optimizer, x0, y0, x_escape, max_steps)


@eqx.filter_jit
def _discrete_escape(curvature, optimizer, x0, y0, x_escape, max_steps):
    grad = jax.grad(saddle_loss)
    theta0 = jnp.array([x0, y0], dtype=jnp.result_type(curvature, float))

    def cond(carry):
        step, theta, _, _ = carry
        return (jnp.abs(theta[0]) < x_escape) & (step < max_steps)

    def body(carry):
        step, theta, state, _ = carry
        updates, state = optimizer.update(grad(theta, curvature), state, theta)
        return step + 1, optax.apply_updates(theta, updates), state, theta

    init = (jnp.asarray(0), theta0, optimizer.init(theta0), theta0)
    step, theta, _, previous = jax.lax.while_loop(cond, body, init)
    hi, lo = jnp.log(jnp.abs(theta[0])), jnp.log(jnp.abs(previous[0]))
    fraction = jnp.clip((jnp.log(x_escape) - lo) / jnp.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)
    steps = step - 1 + fraction
    return jnp.where(jnp.abs(theta[0]) >= x_escape, steps, jnp.inf)
