"""The memory kernel that data demand: the linear functional that best explains input–output
sequences (Li et al., eq. 12: a linear, causal, time-homogeneous target is
`H_t(x) = ∫_0^∞ ρ(s) x(t − s) ds`; on a grid of steps, `y_t = Σ_k ρ_k x_{t−k}`).

`estimate_memory_kernel` fits `y_t ≈ b + Σ_{k < K} ρ_k x_{t−k}` by ridge regression on the
Toeplitz design of lagged inputs, with the penalty chosen by cross-validation over folds of whole
sequences, percentile bootstrap intervals from resampled sequences, and the fraction of the
outputs' variance the linear functional explains on held-out sequences (out of sample: in-sample
R² is biased up by about K / N and would credit a purely nonlinear target). Everything is built
from per-sequence sufficient statistics (counts, sums, the K × K Gram matrix), so folds and
bootstrap replicates are weighted sums of them: one pass over the data, then K × K solves
(a Cholesky factorisation written in JAX, see `_solve_positive_definite`).
Horizon and decay type of the estimate: `memory_horizon`, `fit_decay` (`memdyn._decay`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from memdyn._errors import ConfigError
from memdyn._validate import (
    as_float_array,
    check_count,
    check_finite,
    check_positive,
    check_shape,
)

PENALTIES = tuple(10.0**p for p in range(-8, 3))
"""The default grid of relative ridge penalties r (10⁻⁸, …, 10²): the penalty is
r · trace(C) / K for the training data's centred Gram matrix C."""


class MemoryKernelEstimate(eqx.Module):
    """A memory kernel estimated from data (`estimate_memory_kernel`).

    Attributes:
        kernel: `(lag,)`, ρ̂_k: the weight of the input k steps back (entry 0: the current one).
        intercept: b, the outputs' offset.
        lower, upper: `(lag,)`, the bootstrap percentile interval of each ρ̂_k at `level`.
        standard_error: `(lag,)`, the bootstrap standard deviation of each ρ̂_k (a noise floor
            for `fit_decay` is about twice it). The ridge's bias is not in the bootstrap's
            spread: where the chosen penalty is large, intervals undercover.
        penalty: the chosen relative penalty r (an entry of `penalties`).
        penalties: `(grid,)`, the relative penalties tried.
        validation_error: `(grid,)`, the held-out mean squared error per output step for each
            penalty, summed over the folds (`inf` where the penalty was too small for the
            Gram matrix's rounding and its factorisation failed).
        explained_variance: the fraction of the outputs' variance the linear functional explains
            on held-out sequences at the chosen penalty, `1 − SSE / SST` with SST about each
            fold's training mean. Near 1: a linear target; near or below 0: the outputs are
            not a linear functional of the inputs (nonlinear, or independent of them).
        level: the intervals' nominal coverage.
    """

    kernel: Float[Array, " lag"]
    intercept: Float[Array, ""]
    lower: Float[Array, " lag"]
    upper: Float[Array, " lag"]
    standard_error: Float[Array, " lag"]
    penalty: Float[Array, ""]
    penalties: Float[Array, " grid"]
    validation_error: Float[Array, " grid"]
    explained_variance: Float[Array, ""]
    level: float = eqx.field(static=True)


class _Statistics(eqx.Module):
    """Sufficient statistics of a set of rows (design X, outputs y): counts, sums, products."""

    count: Array
    sum_x: Array
    sum_y: Array
    gram: Array
    cross: Array
    sum_yy: Array

    def weighted(self, weights: Array) -> _Statistics:
        """Σ_b weights_b · statistics of sequence b (a leading sequence axis)."""
        return jax.tree.map(lambda s: jnp.tensordot(weights, s, axes=1), self)


def _statistics(x: Array, y: Array, num_lags: int, initial_rest: bool) -> _Statistics:
    """One sequence's statistics; row t holds x_t, x_{t−1}, …, x_{t−K+1}."""
    time = x.shape[0]
    padded = jnp.concatenate([jnp.zeros(num_lags - 1, x.dtype), x])
    index = jnp.arange(time)[:, None] + (num_lags - 1) - jnp.arange(num_lags)[None, :]
    design = padded[index]
    if not initial_rest:
        design, y = design[num_lags - 1 :], y[num_lags - 1 :]
    return _Statistics(
        count=jnp.asarray(y.shape[0], x.dtype),
        sum_x=jnp.sum(design, axis=0),
        sum_y=jnp.sum(y),
        gram=design.T @ design,
        cross=design.T @ y,
        sum_yy=y @ y,
    )


def _solve_positive_definite(matrix: Array, rhs: Array) -> Array:
    """`matrix⁻¹ rhs` for a symmetric positive-definite `matrix`, by a Cholesky factorisation and
    two triangular solves written in JAX (loops of `lax.fori_loop`), not LAPACK: jaxlib 0.10.2's
    batched CPU LAPACK kernels (eigh, Cholesky, …) block an XLA:CPU pool thread while they wait
    for the batch's chunks queued on the same pool, and two such calls running at once deadlock
    a two-thread pool (measured here: 1 run in 3 of a vmapped estimate hung)."""
    n = matrix.shape[0]
    index = jnp.arange(n)

    def factor_column(j, lower):
        column = matrix[:, j] - lower @ lower[j]  # columns >= j of `lower` are still zero
        pivot = jnp.sqrt(column[j])
        return lower.at[:, j].set(
            jnp.where(index > j, column / pivot, jnp.where(index == j, pivot, 0.0))
        )

    lower = jax.lax.fori_loop(0, n, factor_column, jnp.zeros_like(matrix))

    def forward(i, y):
        return y.at[i].set((rhs[i] - lower[i] @ y) / lower[i, i])

    def backward(k, x):
        i = n - 1 - k
        return x.at[i].set((y[i] - lower[:, i] @ x) / lower[i, i])

    y = jax.lax.fori_loop(0, n, forward, jnp.zeros_like(rhs))
    return jax.lax.fori_loop(0, n, backward, jnp.zeros_like(rhs))


def _ridge(stats: _Statistics, relative: Array) -> tuple[Array, Array]:
    """Kernels `(grid, lag)` and intercepts `(grid,)` of the centred ridge, one per relative
    penalty."""
    mean_x, mean_y = stats.sum_x / stats.count, stats.sum_y / stats.count
    gram = stats.gram - stats.count * jnp.outer(mean_x, mean_x)
    cross = stats.cross - stats.count * mean_x * mean_y
    scale = jnp.trace(gram) / gram.shape[0]
    identity = jnp.eye(gram.shape[0], dtype=gram.dtype)
    kernels = jax.vmap(lambda r: _solve_positive_definite(gram + r * scale * identity, cross))(
        relative
    )
    return kernels, mean_y - kernels @ mean_x


def _squared_error(stats: _Statistics, kernel: Array, intercept: Array) -> Array:
    """Σ (y − b − Xρ)² over the rows summarised by `stats`."""
    return (
        stats.sum_yy
        - 2 * intercept * stats.sum_y
        - 2 * kernel @ stats.cross
        + stats.count * intercept**2
        + 2 * intercept * kernel @ stats.sum_x
        + kernel @ stats.gram @ kernel
    )


@eqx.filter_jit
def _estimate(xs, ys, penalties, key, num_lags, folds, resamples, level, initial_rest):
    offset = jnp.mean(ys)  # taken out first: the sums of squares then cancel less
    per_sequence = jax.vmap(lambda x, y: _statistics(x, y, num_lags, initial_rest))(xs, ys - offset)
    batch = xs.shape[0]
    membership = jax.nn.one_hot(jnp.arange(batch) % folds, folds, dtype=xs.dtype).T
    total = per_sequence.weighted(jnp.ones(batch, xs.dtype))

    def fold_errors(held_out_weights):
        held_out = per_sequence.weighted(held_out_weights)
        training = jax.tree.map(jnp.subtract, total, held_out)
        kernels, intercepts = _ridge(training, penalties)
        errors = jax.vmap(lambda k, b: _squared_error(held_out, k, b))(kernels, intercepts)
        mean_y = training.sum_y / training.count
        spread = held_out.sum_yy - 2 * mean_y * held_out.sum_y + held_out.count * mean_y**2
        return errors, spread

    errors, spreads = jax.vmap(fold_errors)(membership)
    # A penalty too small for the rounding of an ill-conditioned Gram matrix fails its Cholesky
    # factorisation (NaN): it is never chosen.
    errors = jnp.sum(errors, axis=0)
    errors = jnp.where(jnp.isfinite(errors), errors, jnp.inf)
    best = jnp.argmin(errors)
    chosen = penalties[best][None]
    kernel, intercept = jax.tree.map(lambda a: a[0], _ridge(total, chosen))

    draws = jax.random.randint(key, (resamples, batch), 0, batch)
    counts = jax.vmap(lambda d: jnp.zeros(batch, xs.dtype).at[d].add(1.0))(draws)
    replicates = jax.vmap(lambda c: _ridge(per_sequence.weighted(c), chosen)[0][0])(counts)
    tails = jnp.asarray([(1 - level) / 2, (1 + level) / 2], xs.dtype)
    lower, upper = jnp.quantile(replicates, tails, axis=0)
    result = MemoryKernelEstimate(
        kernel=kernel,
        intercept=intercept + offset,
        lower=lower,
        upper=upper,
        standard_error=jnp.std(replicates, axis=0, ddof=1),
        penalty=chosen[0],
        penalties=penalties,
        validation_error=errors / total.count,
        explained_variance=1 - errors[best] / jnp.sum(spreads),
        level=level,
    )
    # A penalty whose factorisation failed has an infinite validation error; the rest is finite.
    return check_finite(
        "memory kernel estimate (finite data: too few rows for the lags?)",
        (kernel, intercept, replicates, result.explained_variance),
        into=result,
    )


def estimate_memory_kernel(
    xs: Float[Array, "batch time"],
    ys: Float[Array, "batch time"],
    num_lags: int,
    *,
    key: PRNGKeyArray,
    folds: int = 5,
    penalties: Float[Array, " grid"] = PENALTIES,
    resamples: int = 200,
    level: float = 0.9,
    initial_rest: bool = True,
) -> MemoryKernelEstimate:
    """Estimate the memory kernel ρ̂ of input–output data: `y_t ≈ b + Σ_{k < K} ρ̂_k x_{t−k}`,
    K = `num_lags`, by ridge regression with an unpenalised intercept b,

        ρ̂ = (C + λ I)⁻¹ c,   λ = r · trace(C) / K,

    C, c the centred Gram matrix of the lagged inputs and their products with the outputs. Then:

    - r is chosen from `penalties` by `folds`-fold cross-validation over whole sequences
      (sequence b is held out in fold b mod `folds`; time steps of one sequence are never split
      between training and validation), by the smallest held-out squared error;
    - uncertainty: `resamples` bootstrap replicates resample the sequences with replacement
      (`key`), refit at the chosen r, and give percentile intervals at `level` and standard
      errors;
    - `explained_variance`: the held-out R² at the chosen r (the minimum over the grid, so
      optimistic by the grid's selection, little for a grid of ~10).

    Shapes: `xs` and `ys` are `(batch, time)`, one scalar input and one scalar output channel
    per step, independent sequences along `batch` (at least `folds` of them); estimate each
    output channel separately. With `initial_rest` (default) each sequence starts at rest: inputs
    before step 0 are zero, as for an RNN started from zero state or `curse`'s sampled paths.
    Without it only the steps t ≥ K − 1, where every lag is observed, enter (data cut from a
    longer stationary run). Use float64 when the outputs are nearly noise-free: the held-out
    errors come from sums of squares, which cancel. Returns a `MemoryKernelEstimate`."""
    xs = check_finite("xs", as_float_array("xs", xs))
    ys = check_finite("ys", as_float_array("ys", ys))
    check_shape("xs", xs, (None, None))
    check_shape("ys", ys, xs.shape)
    num_lags = check_count("num_lags", num_lags)
    folds = check_count("folds", folds, minimum=2)
    resamples = check_count("resamples", resamples, minimum=2)
    if xs.shape[0] < folds:
        raise ConfigError(f"xs and ys need at least folds = {folds} sequences; got {xs.shape[0]}")
    if xs.shape[1] < num_lags:
        raise ConfigError(f"num_lags = {num_lags} exceeds the sequences' length {xs.shape[1]}")
    if not isinstance(level, int | float) or isinstance(level, bool) or not 0 < level < 1:
        raise ConfigError(f"level must be a number in (0, 1); got {level!r}")
    dtype = jnp.result_type(xs, ys)
    penalties = as_float_array("penalties", penalties).astype(dtype)
    check_shape("penalties", penalties, (None,))
    if penalties.shape[0] < 1:
        raise ConfigError("penalties must hold at least one relative penalty")
    penalties = check_positive("penalties", penalties)
    return _estimate(
        xs.astype(dtype),
        ys.astype(dtype),
        penalties,
        key,
        num_lags,
        folds,
        resamples,
        float(level),
        bool(initial_rest),
    )
