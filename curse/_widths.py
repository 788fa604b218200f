"""The width a linear RNN needs for a kernel, known or estimated from data (Li et al., §4,
Theorem 4.2, App. B; issue 23, item 3).

- `fit_widths`: the best exponential-sum fit (`curse._fitting.fit_exponential_sum`) of each
  target for every width m = 1..`max_width`, warm-started from width m − 1, giving the relative
  L² errors ε(m) = √J/‖ρ‖; `minimal_width`: m(ε), the smallest width with ε(m) ≤ ε.
- `SampledKernel`: a kernel known only on a grid, as `memdyn.estimate_memory_kernel` returns it
  (ρ̂_k: the weight of the input k steps of Δ back, for white-noise inputs the cell integral
  ∫_{kΔ}^{(k+1)Δ} ρ, `curse._sampled`), made a `Target` so the same fits apply: the piecewise
  linear interpolant of the cell means ρ̂_k/Δ at the cell midpoints (k + ½)Δ, extrapolated
  linearly to t = 0 and to t = KΔ, zero beyond. Interpolating the cell means of a smooth ρ costs
  a relative L² error of order (Δ ρ''/ρ)²: ~1e-3 for rates ≤ 2 at Δ = 0.1 (the experiment
  measures it by fitting the noise-free cell integrals the same way).
- `bump_centre`: where a kernel peaks beyond a lag, refined by a parabola through log ρ̂ at the
  three points around the maximum (exact for a Gaussian bump sampled at its own scale).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from curse._fitting import fit_exponential_sum
from curse._targets import Target, compiled_method
from memdyn import check_finite
from memdyn.internal import as_float_array, check_positive, check_shape, progress

_SEGMENT_ORDER = 8


class SampledKernel(Target):
    """ρ(t) from cell integrals g_k ≈ ∫_{kΔ}^{(k+1)Δ} ρ, k = 0..K−1: linear between the cell
    means g_k/Δ at (k + ½)Δ, extrapolated linearly on [0, Δ/2] and [(K − ½)Δ, KΔ], 0 beyond KΔ.
    Laplace transform and norm in closed form per linear piece (a quadrature would not resolve
    e^{−st} on a piece for large rates s, and the fits would exploit its error)."""

    knots: Float[Array, " knot"]
    values: Float[Array, " knot"]

    def __init__(self, cell_integrals: Float[ArrayLike, " lag"], dt: float):
        cells = check_finite("cell_integrals", as_float_array("cell_integrals", cell_integrals))
        check_shape("cell_integrals", cells, (None,))
        if cells.shape[0] < 2:
            raise ValueError(f"cell_integrals needs at least 2 lags; got {cells.shape[0]}")
        dt = check_positive("dt", jnp.asarray(dt, dtype=cells.dtype))
        means = cells / dt
        mids = dt * (jnp.arange(cells.shape[0], dtype=cells.dtype) + 0.5)
        first = means[0] - 0.5 * (means[1] - means[0])
        last = means[-1] + 0.5 * (means[-1] - means[-2])
        self.knots = jnp.concatenate([jnp.zeros(1, cells.dtype), mids, (mids[-1] + 0.5 * dt)[None]])
        self.values = jnp.concatenate([first[None], means, last[None]])

    @compiled_method
    def kernel(self, t):
        t = jnp.asarray(t)
        inside = (t >= 0) & (t <= self.knots[-1])
        return jnp.where(inside, jnp.interp(t, self.knots, self.values), 0.0)

    def quadrature(self):
        x, w = np.polynomial.legendre.leggauss(_SEGMENT_ORDER)
        dtype = self.knots.dtype
        half = 0.5 * (self.knots[1:] - self.knots[:-1])
        mid = 0.5 * (self.knots[1:] + self.knots[:-1])
        nodes = mid[:, None] + half[:, None] * jnp.asarray(x, dtype)[None, :]
        weights = half[:, None] * jnp.asarray(w, dtype)[None, :]
        return nodes.reshape(-1), weights.reshape(-1)

    @compiled_method
    def laplace(self, s):
        # Per piece [t0, t0 + h] with ρ = α + β(t − t0), x = sh:
        # ∫ e^{−st} ρ dt = e^{−s t0} h (α φ1(x) + β h φ2(x)), φ1 = (1 − e^{−x})/x,
        # φ2 = (1 − e^{−x}(1 + x))/x², by their series where x is small (they cancel there).
        s = jnp.asarray(s)[..., None]
        start, step = self.knots[:-1], self.knots[1:] - self.knots[:-1]
        alpha, beta = self.values[:-1], (self.values[1:] - self.values[:-1]) / step
        x = s * step
        small = x < 1e-3
        safe = jnp.where(small, 1.0, x)
        phi1 = jnp.where(small, 1 - x / 2 + x**2 / 6, -jnp.expm1(-safe) / safe)
        phi2 = jnp.where(
            small, 0.5 - x / 3 + x**2 / 8, (-jnp.expm1(-safe) - safe * jnp.exp(-safe)) / safe**2
        )
        pieces = jnp.exp(-s * start) * step * (alpha * phi1 + beta * step * phi2)
        return jnp.sum(pieces, axis=-1)

    @compiled_method
    def norm_squared(self):
        left, right = self.values[:-1], self.values[1:]
        step = self.knots[1:] - self.knots[:-1]
        return jnp.sum(step * (left**2 + left * right + right**2) / 3)

    def horizon(self):
        return self.knots[-1]


def minimal_width(errors: np.ndarray, epsilon: float) -> float:
    """Smallest m (errors[m − 1] is ε(m)) with ε(m) ≤ ε; NaN if none up to max_width."""
    hit = np.flatnonzero(np.asarray(errors) <= epsilon)
    return float(hit[0] + 1) if hit.size else float("nan")


def fit_widths(
    targets: list[Target],
    max_width: int,
    *,
    key: PRNGKeyArray,
    starts: int,
    adam_steps: int,
    newton_steps: int,
    desc: str,
) -> tuple[np.ndarray, list[list[dict]]]:
    """ε(m) for every target (rows) and width m = 1..`max_width` (columns), and each fit's
    (m, a, w). The fit of width m of target `row` draws its starts from
    `fold_in(key, 1000 row + m)` and is warm-started from the width m − 1 fit; all widths share
    one compilation (`pad_to`). Run under `jax.enable_x64(True)`."""
    errors = np.zeros((len(targets), max_width))
    fits = []
    for row, target in enumerate(progress(targets, desc=desc, total=len(targets))):
        row_fits = []
        warm = None
        for m in range(1, max_width + 1):
            fit = fit_exponential_sum(
                target,
                m,
                key=jax.random.fold_in(key, 1000 * row + m),
                starts=starts,
                adam_steps=adam_steps,
                newton_steps=newton_steps,
                warm_rates=warm,
                pad_to=max_width,
            )
            warm = fit.w
            errors[row, m - 1] = float(fit.relative_error)
            row_fits.append({"m": m, "a": np.asarray(fit.a), "w": np.asarray(fit.w)})
        fits.append(row_fits)
    return errors, fits


def bump_centre(kernel: Float[ArrayLike, " lag"], dt: float, after: float) -> float:
    """The time (k + ½)Δ of the largest ρ̂_k among the lags with (k + ½)Δ ≥ `after`, moved by
    the vertex of the parabola through log ρ̂ at k − 1, k, k + 1 (when all three are positive
    and the vertex lies within half a step); NumPy."""
    kernel = np.asarray(kernel, dtype=float)
    mids = dt * (np.arange(kernel.size) + 0.5)
    candidates = np.flatnonzero(mids >= after)
    if candidates.size == 0:
        raise ValueError(f"no lag beyond after = {after} in a kernel of {kernel.size} lags")
    k = int(candidates[np.argmax(kernel[candidates])])
    if 0 < k < kernel.size - 1 and np.all(kernel[k - 1 : k + 2] > 0):
        left, centre, right = np.log(kernel[k - 1 : k + 2])
        curvature = left - 2 * centre + right
        if curvature < 0:
            shift = 0.5 * (left - right) / curvature
            if abs(shift) <= 0.5:
                return float(mids[k] + shift * dt)
    return float(mids[k])
