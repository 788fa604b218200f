"""Lanczos iteration on any symmetric operator given as a matrix-vector product, and the extreme
Hessian eigenvalues of any loss of any model from Hessian-vector products (for models too large
for an n × n Hessian).

k steps of the Lanczos recurrence (Lanczos 1950; Golub & Van Loan, *Matrix Computations*, §10.1)
on a symmetric operator A build an orthonormal basis Q = (q_1, …, q_k) of the Krylov space
span{q_1, A q_1, …, A^{k−1} q_1} and the tridiagonal T = Qᵀ A Q with diagonal α and off-diagonal
β. The eigenvalues of T (Ritz values) converge first to the extreme eigenvalues of A; the squared
first components of T's eigenvectors are the Gauss quadrature weights of q_1's spectral measure
(the nodes and weights of stochastic Lanczos quadrature, `memdyn._spectral`).

In floating point the basis loses orthogonality as Ritz values converge (ghost eigenvalues), so
each new vector w is re-orthogonalised against the whole basis B (k × n, rows q_j) as
w ← w − Bᵀ(B w), repeated once when the first pass cancels much of w ("twice is enough": Kahan
and Parlett, in Parlett, *The Symmetric Eigenvalue Problem*, §6.9).
The iteration count is static (a `lax.fori_loop`), the memory is the k × n basis (never n × n),
and everything is `jit`- and `vmap`-compatible: one compilation per (n, k, dtype) and operator
structure.

Checks run at each function's entry, never inside the loop: the start vector's shape and dtype
(`memdyn.as_float_array`'s rule) and the operator's output shape at trace time; a start that is
non-finite or zero and a non-finite recurrence (the operator returned NaN or inf) by
`eqx.error_if` on the result; Hessian operators check the model when built (`hessian_matvec`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from memdyn._curvature import HessianOperator
from memdyn._hessian import guard_result
from memdyn._parameters import (
    check_model,
    guard_parameters,
    parameter_vector,
)
from memdyn._validate import as_float_array, check_count, check_finite, check_shape

Matvec = Callable[[Float[Array, " n"]], Float[Array, " n"]]


def check_num_iter(num_iter: int, dim: int) -> None:
    """Raise `ValueError` unless `num_iter` is an int in [1, dim]: k Lanczos steps need k
    orthonormal vectors in R^dim."""
    check_count("dim", dim)
    if isinstance(num_iter, bool) or not isinstance(num_iter, int) or not 1 <= num_iter <= dim:
        raise ValueError(f"num_iter must be an int in [1, dim = {dim}]; got {num_iter!r}")


def _project_out(basis: Float[Array, "k n"], w: Float[Array, " n"]) -> Float[Array, " n"]:
    # (B w) B rather than Bᵀ (B w): the same maths, but XLA:CPU runs the transposed product of a
    # 90 × 10⁶ basis ~4.7× slower (75 ms against 16 ms, measured in benchmarks/spectra).
    return w - (basis @ w) @ basis


def _orthogonalise(basis: Float[Array, "k n"], w: Float[Array, " n"]) -> Float[Array, " n"]:
    # Kahan–Parlett "twice is enough": a second pass only if the first cancelled more than
    # 1 − 1/√2 of the norm; after it w is orthogonal to working precision.
    once = _project_out(basis, w)
    cancelled = jnp.linalg.norm(once) < jnp.sqrt(0.5) * jnp.linalg.norm(w)
    return jax.lax.cond(cancelled, lambda: _project_out(basis, once), lambda: once)


def _restart(basis: Float[Array, "k n"]) -> Float[Array, " n"]:
    # The coordinate e_j least covered by the basis: Σ_j ‖B e_j‖² = k < n, so ‖B e_j‖ < 1.
    coverage = jnp.sum(basis**2, axis=0)
    j = jnp.argmin(coverage)
    return _project_out(
        basis, jnp.zeros(basis.shape[1], basis.dtype).at[j].set(1) - basis[:, j] @ basis
    )


def lanczos_recurrence(
    matvec: Matvec, start: Float[Array, " n"], num_iter: int
) -> tuple[Float[Array, " k"], Float[Array, " k"], Float[Array, "k n"]]:
    """`lanczos_tridiagonal` without its entry checks, for callers that check once outside
    their own loops (`memdyn.spectral_density`'s probes)."""
    n = start.shape[0]
    dtype = start.dtype
    tiny = 100 * jnp.finfo(dtype).eps

    def body(i, carry):
        basis, q, q_prev, beta_prev, scale, alphas, betas = carry
        basis = basis.at[i].set(q)
        w = matvec(q)
        if getattr(w, "shape", None) != q.shape or getattr(w, "dtype", None) != q.dtype:
            # A trace-time check: it costs nothing when the loop runs.
            raise ValueError(
                f"matvec must map a vector of shape {q.shape} and dtype {q.dtype} to one of the "
                f"same shape and dtype; got {getattr(w, 'shape', w)} {getattr(w, 'dtype', '')}"
            )
        alpha = q @ w
        w = _orthogonalise(basis, w - alpha * q - beta_prev * q_prev)
        beta = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.maximum(jnp.abs(alpha), beta))
        live = beta > tiny * scale
        w = jax.lax.cond(live, lambda: w, lambda: _restart(basis))
        norm = jnp.linalg.norm(w)
        q_next = w / jnp.where(norm > 0, norm, 1)
        beta = jnp.where(live, beta, 0)
        return basis, q_next, q, beta, scale, alphas.at[i].set(alpha), betas.at[i].set(beta)

    zeros = jnp.zeros(num_iter, dtype)
    scalar = jnp.zeros((), dtype)
    q = start / jnp.linalg.norm(start)
    init = (jnp.zeros((num_iter, n), dtype), q, jnp.zeros_like(q), scalar, scalar, zeros, zeros)
    basis, *_, alphas, betas = jax.lax.fori_loop(0, num_iter, body, init)
    return alphas, betas, basis


@eqx.filter_jit
def lanczos_tridiagonal(
    matvec: Matvec, start: Float[Array, " n"], num_iter: int
) -> tuple[Float[Array, " k"], Float[Array, " k"], Float[Array, "k n"]]:
    """`num_iter` = k Lanczos steps with full re-orthogonalisation from `start` (normalised here).

    Returns the diagonal α (k), the off-diagonal β (k; β_1..β_{k−1} couple T's rows, β_k is the
    residual norm) and the orthonormal basis Q (k × n, rows q_j), with T = Q A Qᵀ.

    On an exact breakdown (β_j ≈ 0: the Krylov space is an invariant subspace, as for degenerate
    spectra) the iteration restarts with β_j = 0 from the coordinate vector least covered by the
    basis, orthogonalised against it; T stays block-diagonal, its extra blocks' Ritz values are
    eigenvalues of A on the orthogonal complement (not spurious zeros) and their first components
    vanish, so the quadrature of `start`'s spectral measure is unchanged.

    `matvec` is a symmetric linear map of R^n; pass it as a pytree callable
    (`jax.tree_util.Partial`, an `eqx.Module`) so that its data are traced and one compilation
    serves every operator of the same shapes. `vmap` over `start` and the operator's data.
    """
    start = as_float_array("start", start)
    check_shape("start", start, (None,))
    check_num_iter(num_iter, start.shape[0])
    start = check_finite("start", start)
    start = eqx.error_if(start, jnp.all(start == 0), "start must be a nonzero vector")
    alphas, betas, basis = lanczos_recurrence(matvec, start, num_iter)
    alphas, betas = check_finite(
        "the Lanczos recurrence (matvec returned NaN or inf)", (alphas, betas)
    )
    return alphas, betas, basis


def _tridiagonal(alphas: Float[Array, " k"], betas: Float[Array, " k"]) -> Float[Array, "k k"]:
    off = betas[:-1]
    return jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)


def _check_coefficients(alphas, betas) -> tuple[Array, Array]:
    alphas, betas = as_float_array("alphas", alphas), as_float_array("betas", betas)
    check_shape("alphas", alphas, (None,))
    check_count("len(alphas)", alphas.shape[0])
    check_shape("betas", betas, alphas.shape)
    return check_finite("alphas", alphas), check_finite("betas", betas)


def ritz_values(alphas: Float[Array, " k"], betas: Float[Array, " k"]) -> Float[Array, " k"]:
    """Eigenvalues (ascending) of the tridiagonal T with diagonal α and off-diagonal
    β_1..β_{k−1} (`lanczos_tridiagonal`'s output; β_k is ignored). α and β must be finite
    vectors of one length k ≥ 1."""
    return jnp.linalg.eigvalsh(_tridiagonal(*_check_coefficients(alphas, betas)))


def ritz_values_and_first_components(
    alphas: Float[Array, " k"], betas: Float[Array, " k"]
) -> tuple[Float[Array, " k"], Float[Array, " k"]]:
    """Ritz values θ_j (ascending) and the first components u_{1j} of T's unit eigenvectors
    (`eigh` of the k × k tridiagonal). With q_1 the Lanczos start, Σ_j u_{1j}² f(θ_j) is the
    k-point Gauss quadrature of q_1ᵀ f(A) q_1 (Golub & Meurant 2010, ch. 6): the SLQ weights are
    the *squared* first components. α and β must be finite vectors of one length k ≥ 1."""
    return gauss_quadrature(*_check_coefficients(alphas, betas))


def gauss_quadrature(
    alphas: Float[Array, " k"], betas: Float[Array, " k"]
) -> tuple[Float[Array, " k"], Float[Array, " k"]]:
    """`ritz_values_and_first_components` without its entry checks (inside `lax.map`)."""
    values, vectors = jnp.linalg.eigh(_tridiagonal(alphas, betas))
    return values, vectors[0]


def lanczos_eigenvalues(
    matvec: Matvec,
    dim: int,
    num_iter: int,
    *,
    key: PRNGKeyArray,
    dtype=None,
) -> Float[Array, " k"]:
    """Ritz values (ascending) of the symmetric operator `matvec` on R^dim after `num_iter`
    Lanczos steps from a random Gaussian start; the first and last approximate λ_min and λ_max
    (exactly all eigenvalues when `num_iter == dim`). `dtype` (float32 or float64) defaults to
    JAX's default float."""
    check_num_iter(num_iter, dim)
    dtype = check_dtype("dtype", dtype)
    start = jax.random.normal(key, (dim,), dtype)
    alphas, betas, _ = lanczos_tridiagonal(matvec, start, num_iter)
    return ritz_values(alphas, betas)


def check_dtype(name: str, dtype) -> jnp.dtype:
    """`dtype`, or JAX's default float for `None`, after `memdyn.as_float_array`'s rule."""
    dtype = jnp.result_type(float) if dtype is None else dtype
    return as_float_array(name, jnp.zeros((), dtype)).dtype


def hessian_matvec(loss_fn: Callable[[PyTree], Float[Array, ""]], model: PyTree) -> HessianOperator:
    """v ↦ ∇²J v on `memdyn.parameter_vector(model)`'s vector of the model's floating-point
    arrays (forward-over-reverse, as `memdyn.hvp`): the `HessianOperator` over every array.

    The checks run here, once, not at every product: the loss must be a real scalar and the
    model's arrays float32/float64 and, where concrete, finite. A traced model (inside `jit`) is
    checked on the results of `hessian_extremes`, `hessian_spectral_density` and
    `hutchinson_trace`; `lanczos_tridiagonal` reports a NaN or inf the products return."""
    return HessianOperator(loss_fn, model)


@eqx.filter_jit
def _hessian_extremes(loss_fn, model, num_iter, *, key):
    flat, _ = parameter_vector(model)
    matvec = hessian_matvec(loss_fn, model)
    values = lanczos_eigenvalues(matvec, flat.shape[0], num_iter, key=key, dtype=flat.dtype)
    return guard_result(guard_parameters(model, values), "Hessian Ritz values")


def hessian_extremes(
    loss_fn: Callable[[PyTree], Float[Array, ""]],
    model: PyTree,
    num_iter: int,
    *,
    key: PRNGKeyArray,
) -> Float[Array, " k"]:
    """Ritz values (ascending) of ∇²J at `model` from `num_iter` Hessian-vector products: the
    ends approximate the extreme eigenvalues. Any `eqx.Module` or pytree; only its
    floating-point arrays are differentiated (`memdyn.parameter_vector`)."""
    return _hessian_extremes(loss_fn, check_model(model), num_iter, key=key)


class RitzPairs(eqx.Module):
    """Ritz values (ascending), their unit Ritz vectors (rows) and the residual norms
    ‖A y_j − θ_j y_j‖ = |β_k u_{kj}|, which bound each value's distance to an eigenvalue."""

    values: Float[Array, " k"]
    vectors: Float[Array, "k n"]
    residuals: Float[Array, " k"]


@eqx.filter_jit
def ritz_pairs(operator: Any, num_iter: int, *, key: PRNGKeyArray) -> RitzPairs:
    """`num_iter` Lanczos steps on `operator` (a curvature operator: `op.size`, `op.dtype` and
    `op(v)`) from a random Gaussian start: Ritz values, vectors y_j = Qᵀ u_j and residual norms.
    The extreme pairs converge first; `residuals` says how far each has."""
    dtype = check_dtype("operator.dtype", operator.dtype)
    check_num_iter(num_iter, operator.size)
    start = jax.random.normal(key, (operator.size,), dtype)
    alphas, betas, basis = lanczos_tridiagonal(operator, start, num_iter)
    values, vectors = jnp.linalg.eigh(_tridiagonal(alphas, betas))
    return RitzPairs(values, vectors.T @ basis, jnp.abs(betas[-1] * vectors[-1]))
