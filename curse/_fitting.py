"""Best exponential-sum approximation of a kernel (Li et al., §4, Theorems 4.1–4.2, App. B).

For a target kernel ρ and width m, minimise the white-noise loss (eq. 18/77)

    J(a, w) = ∫_0^∞ (Σ_i a_i e^{−w_i t} − ρ(t))² dt
            = Σ_ij a_i a_j / (w_i + w_j) − 2 Σ_i a_i `L[ρ](w_i)` + ‖ρ‖²

over a ∈ R^m and rates w = e^v > 0 (log-parameterised, so every iterate is stable). Each start
gets (i) the optimal a for its rates (variable projection: the Cauchy system G a = `L[ρ](w)` with
G_ij = 1/(w_i + w_j), solved by a truncated eigendecomposition), (ii) a short Adam phase, then
(iii) damped saddle-free Newton steps (Levenberg–Marquardt damping on |eigenvalues| of the exact
float64 Hessian, step accepted only if J decreases). Starts are `vmap`ped; the best J wins.

Reported error: `relative_error = √J / ‖ρ‖` (the relative L² error of the kernel). The closed
form cancels terms of size ~‖ρ‖², so in float64 it bottoms out near √(1e-16) ≈ 1e-8: fits to an
exact exponential sum reach J ≈ 1e-16 ‖ρ‖² (machine precision in J, not in √J).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from curse._losses import white_noise_loss
from curse._targets import PolynomialDecay, Target, compiled_method
from memdyn.internal import check_positive, check_shape


class ExponentialFit(NamedTuple):
    """Best width-m fit: `a`, `w` (rates sorted ascending), `loss` J(a, w), `relative_error`
    √J/‖ρ‖, and the losses reached from every start (`start_losses`)."""

    a: Float[Array, " m"]
    w: Float[Array, " m"]
    loss: Float[Array, ""]
    relative_error: Float[Array, ""]
    start_losses: Float[Array, " starts"]


class DampedPolynomial(Target):
    """ρ(t) = e^{−βt} (1 + t)^{−(1+ω)}: exponentially decaying with rate β (Theorem 4.2's regime).

    `L[ρ](s) = L[(1+t)^{−(1+ω)}](s + β)` and `‖ρ‖² = L[(1+t)^{−(2+2ω)}](2β)`, both by the
    quadrature of `curse.PolynomialDecay`. As β → 0 it becomes the polynomial kernel.
    """

    beta: Float[Array, ""]
    base: PolynomialDecay
    square: PolynomialDecay

    def __init__(self, beta, omega=1.0):
        self.beta = jnp.asarray(beta, dtype=float)
        check_positive("beta", self.beta)
        self.base = PolynomialDecay(omega)
        self.square = PolynomialDecay(1.0 + 2.0 * jnp.asarray(omega, dtype=float))

    @compiled_method
    def kernel(self, t):
        t = jnp.asarray(t)
        return jnp.exp(-self.beta * t) * self.base.kernel(t)

    @compiled_method
    def laplace(self, s):
        return self.base.laplace(jnp.asarray(s) + self.beta)

    @compiled_method
    def norm_squared(self):
        return self.square.laplace(2.0 * self.beta)

    def quadrature(self):
        return self.base.quadrature()

    def horizon(self):
        return 40.0 / self.beta


def fit_loss(
    theta: tuple[Array, Array], target: Target, mask: Float[Array, " m"] | None = None
) -> Float[Array, ""]:
    """J(a ⊙ mask, e^v) for θ = (a, v): the log-parameterised white-noise loss; units with
    mask 0 are switched off (a padded width compiles once for all m).

    Where a rate e^v underflows to 0 (v < −745 in float64: an optimiser step driving a unit
    towards a constant) J is undefined and this returns NaN, which the refinement's steps
    reject, rather than handing a zero rate to `white_noise_loss`, whose check would stop the
    whole vmapped fit."""
    a = theta[0] if mask is None else theta[0] * mask
    w = jnp.exp(theta[1])
    positive = jnp.all(w > 0)
    value = white_noise_loss(a, jnp.where(positive, w, 1.0), target)
    return jnp.where(positive, value, jnp.nan)


def optimal_weights(
    w: Float[Array, " m"], target: Target, mask: Float[Array, " m"] | None = None
) -> Float[Array, " m"]:
    """argmin_a J(a, w) for fixed rates: G a = `L[ρ](w)`, G_ij = 1/(w_i + w_j) (pseudo-inverse
    with relative eigenvalue cut-off 1e-14, as G is a notoriously ill-conditioned Cauchy matrix);
    a_i = 0 where mask_i = 0."""
    mask = jnp.ones_like(w) if mask is None else mask
    gram = mask[:, None] * mask[None, :] / (w[:, None] + w[None, :]) + jnp.diag(1.0 - mask)
    values, vectors = jnp.linalg.eigh(gram)
    keep = values > 1e-14 * values[-1]
    inverse = jnp.where(keep, 1.0 / jnp.where(keep, values, 1.0), 0.0)
    return vectors @ (inverse * (vectors.T @ (mask * target.laplace(w))))


def _refine(theta, target, mask, adam_steps, newton_steps, learning_rate):
    flat0, unravel = ravel_pytree(theta)
    loss = lambda x: fit_loss(unravel(x), target, mask)
    optimizer = optax.adam(learning_rate)

    def adam_step(carry, _):
        x, state = carry
        grad = jax.grad(loss)(x)
        updates, state = optimizer.update(grad, state, x)
        new = optax.apply_updates(x, updates)
        return (jnp.where(jnp.isfinite(loss(new)), new, x), state), None

    (x, _), _ = jax.lax.scan(adam_step, (flat0, optimizer.init(flat0)), None, adam_steps)

    def newton_step(carry, _):
        x, damping, value = carry
        grad = jax.grad(loss)(x)
        hessian = jax.hessian(loss)(x)
        values, vectors = jnp.linalg.eigh(0.5 * (hessian + hessian.T))
        scale = jnp.abs(values) + damping * jnp.max(jnp.abs(values))
        new = x - vectors @ ((vectors.T @ grad) / scale)
        new_value, new_grad = jax.value_and_grad(loss)(new)
        # Near the minimum J's changes drown in its rounding (~1e-16 ‖ρ‖²): there a step is
        # also accepted if it keeps J within that rounding and shrinks the gradient.
        roundoff = 1e-14 * target.norm_squared()
        polish = (new_value <= value + roundoff) & (
            jnp.linalg.norm(new_grad) < jnp.linalg.norm(grad)
        )
        accept = jnp.isfinite(new_value) & ((new_value <= value) | polish)
        x = jnp.where(accept, new, x)
        value = jnp.where(accept, new_value, value)
        damping = jnp.clip(jnp.where(accept, damping * 0.3, damping * 10.0), 1e-15, 1e3)
        return (x, damping, value), None

    start = (x, jnp.asarray(1e-3, x.dtype), loss(x))
    (x, _, value), _ = jax.lax.scan(newton_step, start, None, newton_steps)
    return unravel(x), value


@eqx.filter_jit
def fit_starts(
    v_starts: Float[Array, "starts m"],
    target: Target,
    mask: Float[Array, " m"],
    *,
    adam_steps: int = 300,
    newton_steps: int = 200,
    learning_rate: float = 0.03,
) -> tuple[tuple[Array, Array], Float[Array, " starts"]]:
    """Refine every start (log-rates `v_starts`, weights by `optimal_weights`); returns the
    refined θ = (a, v) per start and their losses. Unchecked core of `fit_exponential_sum`."""

    def one(v):
        a = optimal_weights(jnp.exp(v), target, mask)
        return _refine((a, v), target, mask, adam_steps, newton_steps, learning_rate)

    return jax.vmap(one)(v_starts)


def random_log_rates(
    m: int, starts: int, rate_range: tuple[float, float], *, key: PRNGKeyArray
) -> Float[Array, "starts m"]:
    """Start log-rates: row 0 geometric on `rate_range`, the others sorted log-uniform draws."""
    lo, hi = jnp.log(rate_range[0]), jnp.log(rate_range[1])
    draws = jnp.sort(jax.random.uniform(key, (starts, m), minval=lo, maxval=hi), axis=1)
    geometric = jnp.linspace(lo, hi, m + 2)[1:-1] if m > 0 else jnp.zeros(0)
    return draws.at[0].set(geometric)


def inserted_log_rates(v: Float[Array, " k"]) -> Float[Array, "k_plus_1 k_plus_1"]:
    """k + 1 sorted log-rate vectors, each v with one new value: below the smallest (−1.5),
    at each midpoint, above the largest (+1.5)."""
    v = jnp.sort(v)
    if v.shape[0] == 0:
        return jnp.zeros((1, 1))
    new = jnp.concatenate([v[:1] - 1.5, 0.5 * (v[1:] + v[:-1]), v[-1:] + 1.5])
    return jnp.sort(jnp.concatenate([jnp.tile(v, (new.shape[0], 1)), new[:, None]], axis=1), axis=1)


@functools.partial(jax.jit, static_argnames=("m", "starts", "rate_range", "width", "pad"))
def _padded_starts(key, warm_rates, *, m, starts, rate_range, width, pad):
    """The start log-rates of `fit_exponential_sum`, padded to `width` columns (switched off by
    the mask) and, with `pad`, to `starts + pad` rows; one compiled program per shape (eager
    ops would compile one program each, for every width of a sweep)."""
    v0 = random_log_rates(m, starts, rate_range, key=key)
    if warm_rates is not None:
        v0 = jnp.concatenate([v0, inserted_log_rates(jnp.log(warm_rates))])
    v0 = jnp.concatenate([v0, jnp.zeros((v0.shape[0], width - m))], axis=1)
    if pad is not None:
        # A fixed number of rows too, so that warm starts do not change the compiled shape.
        v0 = jnp.concatenate([v0, jnp.tile(v0[:1], (starts + pad - v0.shape[0], 1))])
    return v0, (jnp.arange(width) < m).astype(v0.dtype)


@functools.partial(jax.jit, static_argnames=("m",))
def _best_start(a, v, losses, norm_squared, *, m):
    """The best refined start's first m weights and rates (sorted by rate), loss and relative
    error √J/‖ρ‖, and every start's loss (non-finite ones made inf: they never win)."""
    losses = jnp.where(jnp.isfinite(losses), losses, jnp.inf)
    best = jnp.argmin(losses)
    a, v = a[best, :m], v[best, :m]
    order = jnp.argsort(v)
    loss = losses[best]
    error = jnp.sqrt(jnp.maximum(loss, 0.0) / norm_squared)
    return a[order], jnp.exp(v[order]), loss, error, losses


def fit_exponential_sum(
    target: Target,
    m: int,
    *,
    key: PRNGKeyArray,
    starts: int = 16,
    rate_range: tuple[float, float] = (1e-3, 1e2),
    adam_steps: int = 300,
    newton_steps: int = 200,
    warm_rates: Float[ArrayLike, " m_minus_1"] | None = None,
    pad_to: int | None = None,
) -> ExponentialFit:
    """Best width-m exponential sum Σ a_i e^{−w_i t} for `target`'s kernel in L² (eq. 18/77),
    from `starts` multi-starts (see the module docstring). `warm_rates`, the rates of a width
    m − 1 fit, add m starts that insert one new rate into them (between each pair of neighbours
    and beyond both ends). `pad_to` ≥ m pads the problem with switched-off units so that every
    m ≤ pad_to shares one compilation (set it to the largest width of a sweep). Run under
    `jax.enable_x64(True)`."""
    if not isinstance(target, Target):
        raise ValueError(f"target must be a curse.Target; got {type(target).__name__}")
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"width m must be a positive int; got {m!r}")
    if not isinstance(starts, int) or starts < 1:
        raise ValueError(f"starts must be a positive int; got {starts!r}")
    if not (0 < rate_range[0] < rate_range[1]):
        raise ValueError(f"rate_range must satisfy 0 < low < high; got {rate_range}")
    width = m if pad_to is None else pad_to
    if not isinstance(width, int) or width < m:
        raise ValueError(f"pad_to must be an int >= m = {m}; got {pad_to!r}")
    if warm_rates is not None:
        check_shape("warm_rates", warm_rates, (m - 1,))
        check_positive("warm_rates", warm_rates)
        warm_rates = jnp.asarray(warm_rates)
    v0, mask = _padded_starts(
        key,
        warm_rates,
        m=m,
        starts=starts,
        rate_range=tuple(rate_range),
        width=width,
        pad=pad_to,
    )
    (a, v), losses = fit_starts(v0, target, mask, adam_steps=adam_steps, newton_steps=newton_steps)
    a, w, loss, error, losses = _best_start(a, v, losses, target.norm_squared(), m=m)
    return ExponentialFit(a, w, loss, error, losses)
