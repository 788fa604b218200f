"""Sampled-path training data and loss (Li et al., §5 and App. C.3: Figs. 1 and 4(v)).

Instead of the Itô-isometry loss J = ‖ρ̂ − ρ‖² (eq. 18), train on actual input paths:

- input: white noise piecewise constant on a grid of step Δ, x_k ~ N(0, 1/Δ) i.i.d., so that
  ∫_{kΔ}^{(k+1)Δ} x dt = x_k Δ ~ N(0, Δ) is a Brownian increment;
- target: y_k = H_{(k+1)Δ}(x) = ∫_0^{(k+1)Δ} ρ(s) x((k+1)Δ − s) ds, which for such a path is the
  *exact* discrete convolution y_k = Σ_{j ≤ k} g_j x_{k−j} with the cell integrals
  g_j = ∫_{jΔ}^{(j+1)Δ} ρ(s) ds (Gauss–Legendre inside each cell, so the weights are consistent
  with the quadrature of ρ, not a left-point rule);
- loss: mean over paths and over steps k ≥ `burn_in` of (ŷ_k − y_k)².

For a linear model stepped by exact ZOH, ŷ_k = Σ_j ĝ_j x_{k−j} with ĝ_j the cell integrals of ρ̂,
so E[(ŷ_k − y_k)²] = Σ_{j ≤ k} (ĝ_j − g_j)²/Δ → ∫_0^∞ (ρ̂ − ρ)² dt = J as Δ → 0, k → ∞: the
sampled loss is an unbiased Monte-Carlo estimate of (a Δ-discretisation of) the Itô loss.
All functions are pure and `jit`/`vmap`-compatible; paths are generated on the device from a key.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from curse._models import AbstractDiscretisation, Euler, check_discretisation
from memdyn import check_finite
from memdyn.internal import as_float_array, check_count, check_positive, check_shape

_CELL_ORDER = 8


def white_noise_paths(
    key: PRNGKeyArray, num_paths: int, num_steps: int, dt: float, input_size: int = 1
) -> Float[Array, "paths time d"]:
    """`num_paths` white-noise inputs on a grid of step Δ = `dt`: x_k ~ N(0, 1/Δ), so that
    x_k Δ ~ N(0, Δ) is a Brownian increment (∫ x dt ≈ dW)."""
    shape = (
        check_count("num_paths", num_paths),
        check_count("num_steps", num_steps),
        check_count("input_size", input_size),
    )
    dt = check_positive("dt", dt)
    return jax.random.normal(key, shape, jnp.result_type(float)) / jnp.sqrt(dt)


def cell_integrals(kernel: Callable, num_steps: int, dt: float) -> Float[Array, " time"]:
    """g_j = ∫_{jΔ}^{(j+1)Δ} ρ(s) ds for j = 0..num_steps−1 (8-point Gauss–Legendre per cell).

    `kernel` is a scalar ρ(t) applied elementwise and written in JAX (e.g. `Target.kernel`):
    it is traced into one compiled program per kernel and grid."""
    check_count("num_steps", num_steps)
    return _cell_integrals(kernel, num_steps, check_positive("dt", dt))


@eqx.filter_jit
def _cell_integrals(kernel: Callable, num_steps: int, dt: float) -> Float[Array, " time"]:
    # One program per kernel and grid (a `Target`'s bound method is traced, not a constant).
    x, w = np.polynomial.legendre.leggauss(_CELL_ORDER)
    dtype = jnp.result_type(float)
    left = dt * jnp.arange(num_steps, dtype=dtype)
    nodes = left[:, None] + 0.5 * dt * (1.0 + jnp.asarray(x, dtype))[None, :]
    return jnp.sum(kernel(nodes) * (0.5 * dt * jnp.asarray(w, dtype)), axis=-1)


def causal_convolution(
    weights: Float[Array, " time"], xs: Float[Array, " time"]
) -> Float[Array, " time"]:
    """y_k = Σ_{j=0}^{k} g_j x_{k−j}, by zero-padded FFT (O(T log T), exact up to rounding).
    `weights` and `xs` are finite 1-d arrays of one length."""
    weights, xs = as_float_array("weights", weights), as_float_array("xs", xs)
    check_shape("xs", xs, (None,))
    check_shape("weights", weights, xs.shape)
    weights, xs = check_finite("weights", weights), check_finite("xs", xs)
    n = xs.shape[0]
    size = 2 * n
    product = jnp.fft.rfft(weights, size) * jnp.fft.rfft(xs, size)
    return jnp.fft.irfft(product, size)[:n]


def convolve_paths(
    weights: Float[Array, " time"], xs: Float[Array, "paths time 1"]
) -> Float[Array, "paths time"]:
    """Targets y_k of a batch of scalar input paths: `causal_convolution` on each path."""
    xs = as_float_array("xs", xs)
    check_shape("xs", xs, (None, None, 1))
    return _convolve_paths(weights, xs)


@jax.jit
def _convolve_paths(weights: Float[Array, " time"], xs: Float[Array, "paths time 1"]):
    # One program per shape: eagerly, the mapped FFTs and checks compiled one program each.
    return jax.vmap(causal_convolution, in_axes=(None, 0))(weights, xs[..., 0])


def sampled_batch(
    key: PRNGKeyArray, weights: Float[Array, " time"], num_paths: int, dt: float
) -> tuple[Float[Array, "paths time 1"], Float[Array, "paths time"]]:
    """A batch of (white-noise input, exact target output) pairs for the kernel with cell
    integrals `weights` (`cell_integrals`); generated on the device, safe inside `jit`."""
    xs = white_noise_paths(key, num_paths, weights.shape[0], dt)
    return xs, convolve_paths(weights, xs)


def path_mse(
    model: Callable,
    xs: Float[Array, "paths time d"],
    ys: Float[Array, "paths time"],
    dt: float,
    *,
    method: AbstractDiscretisation = Euler(),  # noqa: B008 (immutable, as Diffrax does)
    burn_in: int = 0,
) -> Float[Array, ""]:
    """Mean over paths and steps k ≥ `burn_in` of (ŷ_k − y_k)², ŷ = `model(x, dt, method=...)`
    applied to each path (`vmap`); `method` is `Euler()` (the default) or `ZeroOrderHold()`.
    Checked here, at the loss's entry (once per training step, not per time step): `xs` is
    `(paths, time, d)`, `ys` `(paths, time)`, both finite, and `0 <= burn_in < time`."""
    xs, ys = as_float_array("xs", xs), as_float_array("ys", ys)
    check_shape("xs", xs, (None, None, None))
    check_shape("ys", ys, xs.shape[:2])
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or not 0 <= burn_in < ys.shape[1]:
        raise ValueError(f"burn_in must be an int in [0, time = {ys.shape[1]}); got {burn_in!r}")
    ys = check_finite("ys", ys)
    check_discretisation(method)
    outputs = jax.vmap(lambda x: model(x, dt, method=method))(xs)
    return jnp.mean((outputs[:, burn_in:] - ys[:, burn_in:]) ** 2)


class SampledLoss(eqx.Module):
    """The sampled-path loss of a model on a fixed batch of paths, as a pytree callable
    (`loss(model)`) for `memdyn.train` and `memdyn._hessian`: its arrays are traced, so a
    new batch reuses the compiled training loop."""

    xs: Float[Array, "paths time d"]
    ys: Float[Array, "paths time"]
    dt: float = eqx.field(static=True)
    method: AbstractDiscretisation = eqx.field(static=True)
    burn_in: int = eqx.field(static=True)

    @eqx.filter_jit
    def __call__(self, model) -> Float[Array, ""]:
        return path_mse(model, self.xs, self.ys, self.dt, method=self.method, burn_in=self.burn_in)


class FreshSampledLoss(eqx.Module):
    """`loss(model, key)`: the sampled-path loss on a fresh batch drawn from `key` each call
    (stochastic gradients; pass `key=` to `memdyn.train`)."""

    weights: Float[Array, " time"]
    num_paths: int = eqx.field(static=True)
    dt: float = eqx.field(static=True)
    method: AbstractDiscretisation = eqx.field(static=True)
    burn_in: int = eqx.field(static=True)

    @eqx.filter_jit
    def __call__(self, model, key: PRNGKeyArray) -> Float[Array, ""]:
        xs, ys = sampled_batch(key, self.weights, self.num_paths, self.dt)
        return path_mse(model, xs, ys, self.dt, method=self.method, burn_in=self.burn_in)


def make_sampled_loss(
    kernel: Callable,
    *,
    key: PRNGKeyArray | None,
    num_paths: int,
    num_steps: int,
    dt: float,
    method: AbstractDiscretisation = Euler(),  # noqa: B008 (immutable, as Diffrax does)
    burn_in: int = 0,
) -> SampledLoss | FreshSampledLoss:
    """The sampled-path MSE against the target kernel ρ = `kernel` (e.g. `Target.kernel`), the
    model stepped by `method` (`Euler()`, the default, or `ZeroOrderHold()`).

    With a `key`, one fixed batch of `num_paths` paths of `num_steps` steps is drawn (full-batch
    training, deterministic loss): a `SampledLoss`. With `key=None`, a `FreshSampledLoss` that
    draws a new batch from the key it is called with.
    """
    check_discretisation(method)
    check_count("num_paths", num_paths)
    check_count("num_steps", num_steps)
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or not 0 <= burn_in < num_steps:
        raise ValueError(f"burn_in must be an int in [0, num_steps); got {burn_in!r}")
    check_positive("dt", dt)
    weights = cell_integrals(kernel, num_steps, dt)
    check_finite("target kernel cell integrals", weights)
    if key is None:
        return FreshSampledLoss(weights, num_paths, float(dt), method, burn_in)
    xs, ys = sampled_batch(key, weights, num_paths, dt)
    check_shape("ys", ys, (num_paths, num_steps))
    return SampledLoss(xs, ys, float(dt), method, burn_in)
