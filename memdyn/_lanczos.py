"""Extreme Hessian eigenvalues from Hessian-vector products (Lanczos), for models too large for an
n × n Hessian (issue 5: more than ~2,000 parameters).

k steps of the Lanczos recurrence on a symmetric operator A build an orthonormal basis Q of the
Krylov space span{q, Aq, ..., A^{k−1}q} and the tridiagonal T = Qᵀ A Q; the eigenvalues of T (Ritz
values) converge first to the extreme eigenvalues of A. In floating point the basis loses
orthogonality as Ritz values converge (ghost eigenvalues), so every new vector is
re-orthogonalised against the whole basis (twice: "twice is enough", Parlett). The iteration count
is static, the loop is a `lax.fori_loop`, and the whole function is `jit`-able; memory is k·n.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from memdyn._hessian import hvp


def lanczos_tridiagonal(
    matvec: Callable[[Float[Array, " n"]], Float[Array, " n"]],
    start: Float[Array, " n"],
    num_iter: int,
) -> tuple[Float[Array, " k"], Float[Array, " k"], Float[Array, "k n"]]:
    """`num_iter` Lanczos steps with full re-orthogonalisation from `start`.

    Returns the diagonal α (k), the off-diagonal β (k; β_k unused by T) and the basis Q (k × n).
    After an exact breakdown (an invariant subspace found, β ≈ 0) the remaining vectors are zero
    and contribute Ritz values 0; callers keep num_iter ≤ n.
    """
    n = start.shape[0]
    basis = jnp.zeros((num_iter, n), start.dtype)
    q = start / jnp.linalg.norm(start)
    tiny = 100 * jnp.finfo(start.dtype).eps

    def body(i, carry):
        basis, q, q_prev, beta_prev, alphas, betas = carry
        basis = basis.at[i].set(q)
        w = matvec(q)
        alpha = q @ w
        w = w - alpha * q - beta_prev * q_prev
        for _ in range(2):
            w = w - basis.T @ (basis @ w)
        beta = jnp.linalg.norm(w)
        scale = jnp.maximum(jnp.max(jnp.abs(alphas)), jnp.abs(alpha))
        live = beta > tiny * jnp.maximum(scale, 1e-300)
        q_next = jnp.where(live, w / jnp.where(live, beta, 1.0), 0.0)
        beta = jnp.where(live, beta, 0.0)
        return basis, q_next, q, beta, alphas.at[i].set(alpha), betas.at[i].set(beta)

    zeros = jnp.zeros(num_iter, start.dtype)
    init = (basis, q, jnp.zeros_like(q), jnp.zeros((), start.dtype), zeros, zeros)
    basis, _, _, _, alphas, betas = jax.lax.fori_loop(0, num_iter, body, init)
    return alphas, betas, basis


def ritz_values(alphas: Float[Array, " k"], betas: Float[Array, " k"]) -> Float[Array, " k"]:
    """Eigenvalues of the tridiagonal T with diagonal α and off-diagonal β_1..β_{k−1}, ascending."""
    off = betas[:-1]
    tridiagonal = jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)
    return jnp.linalg.eigvalsh(tridiagonal)


def lanczos_eigenvalues(
    matvec: Callable[[Float[Array, " n"]], Float[Array, " n"]],
    dim: int,
    num_iter: int,
    *,
    key: PRNGKeyArray,
    dtype=None,
) -> Float[Array, " k"]:
    """Ritz values (ascending) of the symmetric operator `matvec` on R^dim after `num_iter`
    steps from a random Gaussian start; the first and last approximate λ_min and λ_max."""
    if not isinstance(num_iter, int) or not 1 <= num_iter <= dim:
        raise ValueError(f"num_iter must be an int in [1, dim = {dim}]; got {num_iter!r}")
    dtype = jnp.result_type(float) if dtype is None else dtype
    start = jax.random.normal(key, (dim,), dtype)
    alphas, betas, _ = lanczos_tridiagonal(matvec, start, num_iter)
    return ritz_values(alphas, betas)


@eqx.filter_jit
def hessian_extremes(
    loss_fn: Callable[[PyTree], Float[Array, ""]],
    theta: PyTree,
    num_iter: int,
    *,
    key: PRNGKeyArray,
) -> Float[Array, " k"]:
    """Ritz values of ∇²J(θ) from `num_iter` Hessian-vector products (`memdyn._hessian.hvp`,
    forward-over-reverse), ascending: the ends approximate the extreme eigenvalues."""
    flat, unravel = ravel_pytree(theta)
    matvec = lambda v: ravel_pytree(hvp(loss_fn, theta, unravel(v)))[0]
    return lanczos_eigenvalues(matvec, flat.shape[0], num_iter, key=key, dtype=flat.dtype)
