"""Stochastic trace estimators for any symmetric operator (a curvature operator: `op.size`,
`op.dtype`, `op(v)`), written once: Hutchinson's and Hutch++ (Meyer, Musco, Musco & Woodruff,
SOSA 2021), which spends a third of its products on a sketch of the top subspace and estimates
only the remainder stochastically: its error falls as 1/m rather than 1/√m in m products when the
spectrum decays.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from memdyn._lanczos import check_dtype
from memdyn._validate import check_count, check_finite


def _products(operator: Any, vectors: Float[Array, "k n"]) -> Float[Array, "k n"]:
    return jax.lax.map(operator, vectors)


def _rademacher(key: PRNGKeyArray, count: int, operator: Any) -> Float[Array, "k n"]:
    dtype = check_dtype("operator.dtype", operator.dtype)
    return jax.random.rademacher(key, (count, operator.size), dtype)


@eqx.filter_jit
def trace_hutchinson(operator: Any, num_matvecs: int, *, key: PRNGKeyArray) -> Float[Array, ""]:
    """(1/m) Σ_p z_pᵀ A z_p over m = `num_matvecs` Rademacher probes z_p: unbiased, variance
    2(‖A‖_F² − Σ A_ii²)/m."""
    check_count("num_matvecs", num_matvecs)
    dtype = check_dtype("operator.dtype", operator.dtype)

    def quadratic_form(probe_key):
        z = jax.random.rademacher(probe_key, (operator.size,), dtype)
        return z @ operator(z)

    estimate = jnp.mean(jax.lax.map(quadratic_form, jax.random.split(key, num_matvecs)))
    return check_finite("Hutchinson trace (the operator returned NaN or inf)", estimate)


@eqx.filter_jit
def trace_hutchpp(operator: Any, num_matvecs: int, *, key: PRNGKeyArray) -> Float[Array, ""]:
    """Hutch++ from m = `num_matvecs` products (a multiple of 3, ≤ 3n): with k = m/3 Rademacher
    sketches S and probes G, Q = orth(A S) and P = I − Q Qᵀ,

        tr A ≈ tr(Qᵀ A Q) + (1/k) tr(Gᵀ P A P G),

    exact on the span of Q and unbiased on its complement."""
    check_count("num_matvecs", num_matvecs)
    if num_matvecs % 3 or num_matvecs > 3 * operator.size:
        raise ValueError(
            f"num_matvecs must be a multiple of 3 and at most 3n = {3 * operator.size}; "
            f"got {num_matvecs}"
        )
    k = num_matvecs // 3
    sketch_key, probe_key = jax.random.split(key)
    sketch = _rademacher(sketch_key, k, operator)
    basis, _ = jnp.linalg.qr(_products(operator, sketch).T)  # n × k, orthonormal columns
    top = jnp.trace(basis.T @ _products(operator, basis.T).T)
    probes = _rademacher(probe_key, k, operator)
    probes = probes - (probes @ basis) @ basis.T  # P G, as rows
    rest = jnp.sum(probes * _products(operator, probes)) / k
    return check_finite("Hutch++ trace (the operator returned NaN or inf)", top + rest)
