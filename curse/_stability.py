"""Stable reparameterisations of the decay rates and the memory they learn (beyond Li et al.).

Later work on state-space models and RNNs trains the rates of W = −diag(w) through a map
w = f(v) (`curse._parameterisation`: direct, exp, softplus, 1/(v² + c)). Two questions, asked on
the white-noise loss (eq. 18/77):

- plateaus: the gradient flow in v, dv/dτ = −∇_v J(a, f(v)), rescales each rate's force by
  f'(v)²; `rate_loss` is the objective of that flow;
- memory stability: perturb the learned v by β (v + βξ, ξ standard normal) and measure the error
  growth J(a, f(v + βξ)) − J(a, f(v)); with the direct map a perturbation can push a rate to
  w ≤ 0 (an unstable model, counted in `unstable_fraction`), the others stay stable.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from curse._losses import white_noise_loss
from curse._parameterisation import INVERSE_SQUARE_C, NAMES, to_rates
from curse._targets import Target
from memdyn import check_finite
from memdyn.internal import check_in, check_positive


def rate_loss(
    theta: tuple[Array, Array],
    target: Target,
    parameterisation: str,
    c: float = INVERSE_SQUARE_C,
) -> Float[Array, ""]:
    """J(a, f(v)) for θ = (a, v) under the rate map f = `parameterisation`."""
    return white_noise_loss(theta[0], to_rates(parameterisation, theta[1], c=c), target)


def rate_loss_indexed(
    theta: tuple[Array, Array], target: Target, index: Int[Array, ""], c: float = INVERSE_SQUARE_C
) -> Float[Array, ""]:
    """`rate_loss` with the map chosen by its position in `NAMES` as data (`lax.switch`), so
    that a sweep over parameterisations is one `vmap` and one compilation."""
    return white_noise_loss(theta[0], _rates_indexed(index, theta[1], c), target)


def _rates_indexed(index: Int[Array, ""], v: Float[Array, " m"], c: float) -> Float[Array, " m"]:
    """The rate map at position `index` of `NAMES`, chosen as data (`lax.switch`)."""
    branches = [lambda v, name=name: _rates(name, v, c) for name in NAMES]
    return jax.lax.switch(index, branches, v)


class PerturbationGrowth(NamedTuple):
    """Per β: mean and max loss increase over the stable samples, and the unstable fraction."""

    betas: Float[Array, " n"]
    mean_increase: Float[Array, " n"]
    max_increase: Float[Array, " n"]
    unstable_fraction: Float[Array, " n"]


def perturbation_growth(
    a: Float[Array, " m"],
    v: Float[Array, " m"],
    target: Target,
    parameterisation: str,
    betas: Float[Array, " n"],
    *,
    key: PRNGKeyArray,
    samples: int = 256,
    c: float = INVERSE_SQUARE_C,
) -> PerturbationGrowth:
    """Loss growth when the learned v is perturbed to v + βξ, ξ ~ N(0, I), `samples` draws per β
    (the same draws for every β and every parameterisation with the same key)."""
    check_in("parameterisation", parameterisation, NAMES)
    check_finite("v", v)
    check_finite("betas", betas)
    if parameterisation == "direct":  # eagerly, as `to_rates` checks it outside a trace
        check_positive("v (direct parameterisation: rates w = v)", v)
    a, v, betas = jnp.asarray(a), jnp.asarray(v), jnp.asarray(betas)
    index = jnp.asarray(NAMES.index(parameterisation))
    return _growth(a, v, target, betas, key, index, samples=samples, c=c)


@eqx.filter_jit
def _growth(a, v, target, betas, key, index, *, samples, c) -> PerturbationGrowth:
    """`perturbation_growth` after its checks, the map chosen by its index in `NAMES` (as in
    `rate_loss_indexed`): one compiled program for every map, per shape and sample count."""
    base = rate_loss_indexed((a, v), target, index, c)
    noise = jax.random.normal(key, (samples, v.shape[0]), dtype=v.dtype)

    def at(beta):
        def one(xi):
            w = _rates_indexed(index, v + beta * xi, c)
            stable = jnp.all(w > 0)
            loss = white_noise_loss(a, jnp.where(stable, w, 1.0), target)
            return jnp.where(stable, loss - base, jnp.nan), stable

        growth, stable = jax.vmap(one)(noise)
        return jnp.nanmean(growth), jnp.nanmax(growth), 1.0 - jnp.mean(stable)

    mean, worst, unstable = jax.vmap(at)(betas)
    return PerturbationGrowth(betas, mean, worst, unstable)


def _rates(name, v, c):
    # `to_rates("direct", ·)` rejects w ≤ 0 eagerly; here a non-positive rate is data (unstable).
    return v if name == "direct" else to_rates(name, v, c=c)
