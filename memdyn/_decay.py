"""How far back a memory kernel reaches and how it decays: its horizon, and exponential against
power-law decay (Li et al., §4: exponentially decaying memory is what a linear RNN approximates
cheaply, Thm. 4.2; a power-law tail is the curse of memory).

Both take any kernel indexed by lag on its first axis, from a model (`heaviside_memory`,
`impulse_response`, `jacobian_memory`) or from data (`estimate_memory_kernel`), are pure JAX
and map over a stack of kernels with `jax.vmap`. A finite window matters for both: a heavy tail
cut at 64 lags holds its mass much earlier than the whole tail, and exponential and power-law
decay are told apart only over the lags above the noise floor. Report the window.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

from memdyn._errors import ConfigError
from memdyn._validate import as_float_array, check_finite, check_positive, check_shape

DECAY_TYPES = ("exponential", "power law", "neither")
"""The names of `DecayFit.preferred`'s codes 0, 1 and 2."""


def _lag_mass(name: str, kernel: ArrayLike) -> Array:
    kernel = check_finite(name, as_float_array(name, kernel))
    if kernel.ndim < 1 or kernel.shape[0] < 1:
        raise ValueError(f"{name} must have a leading lag axis of length >= 1; got {kernel.shape}")
    return jnp.sum(jnp.abs(kernel.reshape(kernel.shape[0], -1)), axis=1)


def _noise_floor(noise_floor: ArrayLike, lags: int) -> Array:
    noise_floor = check_finite("noise_floor", as_float_array("noise_floor", noise_floor))
    if noise_floor.ndim not in (0, 1) or noise_floor.size not in (1, lags):
        raise ValueError(
            f"noise_floor must be a scalar or have shape ({lags},); got {noise_floor.shape}"
        )
    return noise_floor


def _check_fraction(name: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1:
        raise ConfigError(f"{name} must be a number in (0, 1); got {value!r}")
    return float(value)


def memory_horizon(
    kernel: Float[ArrayLike, "lag ..."],
    epsilon: float = 0.05,
    *,
    noise_floor: Float[ArrayLike, "*lag"] = 0.0,
) -> Int[Array, ""]:
    """The smallest lag k whose kernel entries 0, …, k hold a fraction 1 − ε of the kernel's L1
    mass: `Σ_{j ≤ k} |ρ_j| ≥ (1 − ε) Σ_j |ρ_j|`, with `|ρ_j|` summed over any trailing axes
    (output, input). Entries at or below `noise_floor` (a scalar or one value per lag, e.g.
    twice an estimate's bootstrap standard error) count as zero, so that an estimate's noise
    does not stretch its horizon. The horizon is relative to the window given: a kernel cut at
    n lags holds its mass earlier than its whole tail. A zero kernel has horizon 0. `epsilon`
    in (0, 1)."""
    epsilon = _check_fraction("epsilon", epsilon)
    mass = _lag_mass("kernel", kernel)
    mass = jnp.where(mass > _noise_floor(noise_floor, mass.shape[0]), mass, 0.0)
    cumulative = jnp.cumsum(mass)
    return jnp.argmax(cumulative >= (1 - epsilon) * cumulative[-1])


class DecayFit(eqx.Module):
    """Exponential `c e^{−λ t}` and power-law `c t^{−α}` fits of a kernel's decay (`fit_decay`).

    Attributes:
        points: how many lags the fits used (the window above the noise floor).
        exponential_scale, exponential_rate: c and λ of `c e^{−λ t}` (λ per unit of `lags`).
        exponential_r2, exponential_rss: R² and residual sum of squares of log|ρ| for it.
        power_scale, power_exponent: c and α of `c t^{−α}`.
        power_r2, power_rss: R² and residual sum of squares of log|ρ| for it.
        tail_mass: the fraction of the mass above the floor that lies beyond the window (a
            kernel that revives after a dip, as eq. 125's bump after its short memory).
        preferred: 0 (exponential), 1 (power law) or 2 (neither), the index into
            `memdyn.DECAY_TYPES`; `preferred_name()` spells it for one fit.
    """

    points: Int[Array, ""]
    exponential_scale: Float[Array, ""]
    exponential_rate: Float[Array, ""]
    exponential_r2: Float[Array, ""]
    exponential_rss: Float[Array, ""]
    power_scale: Float[Array, ""]
    power_exponent: Float[Array, ""]
    power_r2: Float[Array, ""]
    power_rss: Float[Array, ""]
    tail_mass: Float[Array, ""]
    preferred: Int[Array, ""]

    def preferred_name(self) -> str:
        """ "exponential", "power law" or "neither" (one fit, not a stack of them)."""
        if jnp.ndim(self.preferred) != 0:
            raise ValueError("preferred_name needs one fit; index a stack of fits first")
        return DECAY_TYPES[int(self.preferred)]


def _line(x: Array, y: Array, weight: Array) -> tuple[Array, Array, Array, Array]:
    """Weighted least-squares line y ≈ a + b x over the points of weight 1: a, b, R², RSS."""
    count = jnp.maximum(jnp.sum(weight), 1.0)
    x_mean = jnp.sum(weight * x) / count
    y_mean = jnp.sum(weight * y) / count
    dx, dy = weight * (x - x_mean), weight * (y - y_mean)
    sxx = jnp.sum(dx**2)
    slope = jnp.where(sxx > 0, jnp.sum(dx * dy) / jnp.where(sxx > 0, sxx, 1.0), 0.0)
    intercept = y_mean - slope * x_mean
    rss = jnp.sum(weight * (y - intercept - slope * x) ** 2)
    total = jnp.sum(dy**2)
    r2 = jnp.where(total > 0, 1.0 - rss / jnp.where(total > 0, total, 1.0), jnp.nan)
    return intercept, slope, r2, rss


def fit_decay(
    kernel: Float[ArrayLike, "lag ..."],
    *,
    lags: Float[ArrayLike, " lag"] | None = None,
    noise_floor: Float[ArrayLike, "*lag"] = 0.0,
    relative_floor: float = 1e-10,
    min_r2: float = 0.9,
    max_tail_mass: float = 0.05,
) -> DecayFit:
    """Fit the decay of `|ρ|` (summed over trailing axes) at positions t = `lags` (default
    1, 2, …, n: entry k at t = k + 1, so that a power law is finite at the first entry; for
    `heaviside_memory`, whose entry t is lag t + 1, t is the lag) by least squares on log|ρ|:

        log|ρ_t| ≈ log c − λ t       (exponential),
        log|ρ_t| ≈ log c − α log t   (power law).

    The window: the leading entries above the floor `max(noise_floor, relative_floor · max|ρ|)`,
    up to (not including) the first entry at or below it; past it log|ρ| measures noise, not
    decay. Pass a noise floor for an estimated kernel, e.g. twice its bootstrap standard error
    (`noise_floor` a scalar or one value per lag).

    The rule: both models have two parameters, so their AIC differ by their residual sums of
    squares on the same window; the smaller RSS is preferred if its R² ≥ `min_r2`, the window
    holds at least 3 points and at most a fraction `max_tail_mass` of the mass above the floor
    lies beyond the window; otherwise "neither" (a bump, as eq. 125's, whether the window
    crosses it or stops at the dip before it; a kernel that hardly decays). Exponential and
    power-law decay are not identifiable beyond the window, and a sum of exponentials mimics a
    power law over a finite one: "exponential" means "one rate fits". Lags must be positive (a
    power law needs log t)."""
    mass = _lag_mass("kernel", kernel)
    n = mass.shape[0]
    if lags is None:
        lags = jnp.arange(1, n + 1, dtype=mass.dtype)
    else:
        lags = as_float_array("lags", lags)
        check_shape("lags", lags, (n,))
        lags = check_positive("lags", lags)
    noise_floor = _noise_floor(noise_floor, n)
    relative_floor = float(relative_floor)
    if not 0 <= relative_floor < 1:
        raise ConfigError(f"relative_floor must be in [0, 1); got {relative_floor!r}")
    min_r2 = _check_fraction("min_r2", min_r2)
    max_tail_mass = _check_fraction("max_tail_mass", max_tail_mass)

    above = mass > jnp.maximum(noise_floor, relative_floor * jnp.max(mass))
    window = jnp.cumprod(above).astype(mass.dtype)
    log_mass = jnp.log(jnp.where(window > 0, mass, 1.0))
    exp_intercept, exp_slope, exp_r2, exp_rss = _line(lags, log_mass, window)
    pow_intercept, pow_slope, pow_r2, pow_rss = _line(jnp.log(lags), log_mass, window)
    points = jnp.sum(window).astype(jnp.int32)
    significant = jnp.where(above, mass, 0.0)
    total = jnp.sum(significant)
    tail_mass = jnp.where(total > 0, jnp.sum((1 - window) * significant) / total, 0.0)
    power_better = pow_rss < exp_rss
    best_r2 = jnp.where(power_better, pow_r2, exp_r2)
    decided = (points >= 3) & (best_r2 >= min_r2) & (tail_mass <= max_tail_mass)
    preferred = jnp.where(decided, power_better.astype(jnp.int32), 2)
    return DecayFit(
        points=points,
        exponential_scale=jnp.exp(exp_intercept),
        exponential_rate=-exp_slope,
        exponential_r2=exp_r2,
        exponential_rss=exp_rss,
        power_scale=jnp.exp(pow_intercept),
        power_exponent=-pow_slope,
        power_r2=pow_r2,
        power_rss=pow_rss,
        tail_mass=tail_mass,
        preferred=preferred,
    )
