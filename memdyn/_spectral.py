"""Spectral densities and traces of Hessians (or any symmetric operator) from matrix-vector
products alone: stochastic Lanczos quadrature and Hutchinson's trace estimator.

Stochastic Lanczos quadrature (SLQ; Ghorbani, Krishnan & Xiao, "An investigation into neural net
optimization via Hessian eigenvalue density", ICML 2019, §2–3, after Lin, Saad & Yang 2016;
reference code google/spectral-density). The spectral density of a symmetric A ∈ R^{n×n} is
φ(t) = (1/n) Σ_i δ(t − λ_i). For a random unit vector v, E[vᵀ f(A) v] = (1/n) tr f(A) = ∫ f dφ,
and k Lanczos steps from v give the k-point Gauss quadrature of vᵀ f(A) v: nodes θ_j (the Ritz
values) and weights u_{1j}², the SQUARED first components of the tridiagonal's unit eigenvectors
(PyHessian squared them only from its PR #23). Averaging over `num_probes` probes gives the
discrete measure φ̂ = (1/P) Σ_p Σ_j u_{1j,p}² δ(· − θ_{j,p}), exact for polynomial moments of
degree < 2k up to the probe average; it is broadened by a Gaussian of width σ for plotting.

Hutchinson (1990): for Rademacher z (i.i.d. ±1), E[zᵀ A z] = tr A, with variance
2(‖A‖_F² − Σ_i A_ii²) per probe.

Probes run one after another (`lax.map`), so the memory is the k × n Lanczos basis of one probe,
never n × n. Every function is `jit`- and `vmap`-compatible: `eqx.filter_vmap` over a leading
axis of stacked models gives one program for a whole sweep.

Checks run at the entry, not per probe: counts and dtypes in Python; a Hessian's loss must be a
real scalar and its model float32/float64 and finite (concrete: `ValueError` before compiling;
traced: on the result); a NaN or inf result (the operator's data) raises, naming it.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from memdyn._curvature import AbstractCurvature
from memdyn._hessian import guard_result
from memdyn._lanczos import (
    Matvec,
    check_dtype,
    check_num_iter,
    gauss_quadrature,
    hessian_matvec,
    lanczos_recurrence,
)
from memdyn._parameters import check_model, guard_parameters
from memdyn._trace import trace_hutchinson
from memdyn._validate import check_count, check_finite, check_positive


class SpectralDensity(eqx.Module):
    """The SLQ measure φ̂ of a symmetric operator: Ritz values `nodes[p, j]` with Gauss weights
    `weights[p, j]` = u_{1j}² (each probe's weights sum to 1), for P probes of k Lanczos steps.

    Methods reduce over the trailing (probe, k) axes, so a `SpectralDensity` from
    `eqx.filter_vmap` over a sweep (arrays of shape (sweep, P, k)) evaluates per sweep member.
    """

    nodes: Float[Array, "*sweep probes k"]
    weights: Float[Array, "*sweep probes k"]

    def moment(self, order: int) -> Float[Array, "*sweep"]:
        """∫ tᵐ dφ̂ ≈ (1/n) tr Aᵐ, m = `order` (exact per probe for m < 2k)."""
        return jnp.mean(jnp.sum(self.weights * self.nodes**order, axis=-1), axis=-1)

    def negative_mass(
        self,
        threshold: float | Float[Array, "*sweep 1 1"] | None = None,
        *,
        relative_threshold: float | None = None,
    ) -> Float[Array, "*sweep"]:
        """φ̂((−∞, −τ)): the fraction of eigenvalues below −τ (Ghorbani et al. §3's measure of
        negative curvature).

        By default τ = ε · max_{p,j} |θ_{p,j}| with ε = `relative_threshold` = 10⁻³: relative to
        the largest Ritz value in magnitude of each sweep member (≈ max |λ|, which Lanczos
        finds first). The mass below an absolute 0 is dominated by a Hessian's near-zero bulk,
        whose Ritz nodes scatter on both sides of 0 (0.69 against an exact 0.49 on an LRU, and
        drifting with the number of Lanczos steps); below −ε max|θ| it counts curvature the
        quadrature resolves. `threshold=τ` gives an absolute τ ≥ 0 instead (`0.0` for the mass
        below zero), broadcast against `nodes`: one per sweep member has shape `(*sweep, 1, 1)`.
        Give one of the two, not both."""
        if threshold is not None and relative_threshold is not None:
            raise ValueError("give threshold (absolute) or relative_threshold, not both")
        if threshold is None:
            factor = 1e-3 if relative_threshold is None else relative_threshold
            factor = check_positive("relative_threshold", factor, strict=False)
            largest = jnp.max(jnp.abs(self.nodes), axis=(-2, -1), keepdims=True)
            threshold = factor * largest
        else:
            threshold = check_positive("threshold", threshold, strict=False)
        below = self.nodes < -threshold
        return jnp.mean(jnp.sum(jnp.where(below, self.weights, 0), axis=-1), axis=-1)

    @eqx.filter_jit
    def grid(
        self, sigma: float | Float[Array, ""], num_points: int = 1000
    ) -> Float[Array, "*sweep grid"]:
        """`num_points` equally spaced points over [θ_min − 5σ, θ_max + 5σ], where the density
        broadened by σ lives."""
        check_count("num_points", num_points)
        low = jnp.min(self.nodes, axis=(-2, -1)) - 5 * sigma
        high = jnp.max(self.nodes, axis=(-2, -1)) + 5 * sigma
        steps = jnp.linspace(0.0, 1.0, num_points, dtype=self.nodes.dtype)
        return low[..., None] + (high - low)[..., None] * steps

    @eqx.filter_jit
    def density(
        self, grid: Float[Array, "*sweep grid"], sigma: float | Float[Array, ""]
    ) -> Float[Array, "*sweep grid"]:
        """φ̂ convolved with a Gaussian of standard deviation σ > 0, on `grid` (ascending),
        normalised so that its trapezoidal integral over `grid` is 1 (as
        google/spectral-density's `eigv_to_density`); the grid should cover the nodes."""
        sigma = check_positive("sigma", sigma)
        shift = grid[..., :, None, None] - self.nodes[..., None, :, :]
        kernel = jnp.exp(-0.5 * (shift / sigma) ** 2) / (sigma * jnp.sqrt(2 * jnp.pi))
        values = jnp.mean(jnp.sum(self.weights[..., None, :, :] * kernel, axis=-1), axis=-1)
        return values / jnp.trapezoid(values, grid, axis=-1)[..., None]


@eqx.filter_jit
def spectral_density(
    matvec: Matvec | AbstractCurvature,
    dim: int | None = None,
    *,
    num_iter: int,
    num_probes: int,
    key: PRNGKeyArray,
    dtype=None,
) -> SpectralDensity:
    """SLQ spectral density of the symmetric operator `matvec` on R^dim: `num_probes` random unit
    probes (normalised Gaussians), `num_iter` Lanczos steps each (Ghorbani et al. use ~90).

    `matvec` is a curvature operator (`op.size`, `op.dtype`, `op(v)`, as `ritz_pairs` and
    `trace_hutchinson` take: then `dim` and `dtype` default to its size and dtype) or any
    symmetric matrix-vector product with its `dim`. Pass it as a pytree callable
    (`jax.tree_util.Partial`, `eqx.Module`) to reuse compilations; `dtype` defaults to the
    operator's, else JAX's default float."""
    if dim is None:
        if not (hasattr(matvec, "size") and hasattr(matvec, "dtype")):
            raise TypeError(
                "dim is needed unless matvec is a curvature operator (with .size and .dtype, "
                f"as memdyn.AbstractCurvature); got a {type(matvec).__name__} and no dim"
            )
        dim = matvec.size
        dtype = matvec.dtype if dtype is None else dtype
    check_num_iter(num_iter, dim)
    check_count("num_probes", num_probes)
    dtype = check_dtype("dtype", dtype)

    def one_probe(probe_key):
        start = jax.random.normal(probe_key, (dim,), dtype)
        alphas, betas, _ = lanczos_recurrence(matvec, start, num_iter)
        nodes, first = gauss_quadrature(alphas, betas)
        return nodes, first**2

    nodes, weights = jax.lax.map(one_probe, jax.random.split(key, num_probes))
    nodes, weights = check_finite(
        "SLQ nodes and weights (matvec returned NaN or inf)", (nodes, weights)
    )
    return SpectralDensity(nodes, weights)


@eqx.filter_jit
def _hessian_spectral_density(loss_fn, model, *, num_iter, num_probes, key):
    density = spectral_density(
        hessian_matvec(loss_fn, model), num_iter=num_iter, num_probes=num_probes, key=key
    )
    return guard_result(guard_parameters(model, density), "Hessian spectral density")


def hessian_spectral_density(
    loss_fn: Callable[[PyTree], Float[Array, ""]],
    model: PyTree,
    *,
    num_iter: int,
    num_probes: int,
    key: PRNGKeyArray,
) -> SpectralDensity:
    """SLQ spectral density of ∇²J at `model` (any `eqx.Module` or pytree; its floating-point
    arrays, `memdyn.parameter_vector`) from `num_probes × num_iter` Hessian-vector products."""
    return _hessian_spectral_density(
        loss_fn, check_model(model), num_iter=num_iter, num_probes=num_probes, key=key
    )


@eqx.filter_jit
def _hutchinson_trace(loss_fn, model, num_probes, *, key):
    check_count("num_probes", num_probes)
    trace = trace_hutchinson(hessian_matvec(loss_fn, model), num_probes, key=key)
    return guard_result(guard_parameters(model, trace), "Hutchinson trace")


def hutchinson_trace(
    loss_fn: Callable[[PyTree], Float[Array, ""]],
    model: PyTree,
    num_probes: int,
    *,
    key: PRNGKeyArray,
) -> Float[Array, ""]:
    """Hutchinson's estimate (1/P) Σ_p z_pᵀ ∇²J z_p of tr ∇²J at `model`, Rademacher z_p, from
    P = `num_probes` Hessian-vector products; standard error √(2(‖H‖_F² − Σ H_ii²)/P)."""
    return _hutchinson_trace(loss_fn, check_model(model), num_probes, key=key)
