"""Hessians of training losses (Li et al., Prop. C.3, Thm. D.3): exact matrices for small models,
Hessian-vector products for large ones, spectra along trajectories.

All functions take a scalar `loss_fn(theta)` of a parameter pytree θ and work on θ flattened by
`ravel_pytree` (leaf order of `jax.tree.leaves`). They are `eqx.filter_jit`-compiled: pass
`loss_fn` as a pytree callable (`jax.tree_util.Partial`, `eqx.Module`) to reuse compilations.
Run them under `jax.enable_x64(True)`: the eigenvalues of interest near a plateau are
exponentially small.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree


def _flat(loss_fn, theta):
    flat, unravel = ravel_pytree(theta)
    return flat, lambda x: loss_fn(unravel(x))


@eqx.filter_jit
def hessian_matrix(
    loss_fn: Callable[[PyTree], Float[Array, ""]], theta: PyTree
) -> Float[Array, "n n"]:
    """∇²J(θ) as an n × n matrix (n = number of scalars in θ), exact by `jax.hessian`."""
    flat, flat_loss = _flat(loss_fn, theta)
    return jax.hessian(flat_loss)(flat)


@eqx.filter_jit
def hessian_eigenvalues(
    loss_fn: Callable[[PyTree], Float[Array, ""]], theta: PyTree
) -> Float[Array, " n"]:
    """Eigenvalues of the symmetrised Hessian, ascending (`eigvalsh`), in θ's float precision."""
    hessian = hessian_matrix(loss_fn, theta)
    return jnp.linalg.eigvalsh(0.5 * (hessian + hessian.T))


@eqx.filter_jit
def hvp(loss_fn: Callable[[PyTree], Float[Array, ""]], theta: PyTree, v: PyTree) -> PyTree:
    """Hessian-vector product ∇²J(θ) v, forward-over-reverse (`jvp` of `grad`): one gradient's
    cost, no n × n matrix. `v` has θ's structure; so does the result."""
    return jax.jvp(jax.grad(loss_fn), (theta,), (v,))[1]


@eqx.filter_jit
def spectra_along(
    loss_fn: Callable[[PyTree], Float[Array, ""]], thetas: PyTree
) -> Float[Array, "save n"]:
    """Hessian eigenvalues at every saved state of a trajectory (θ stacked on a leading axis)."""
    return jax.vmap(lambda theta: hessian_eigenvalues(loss_fn, theta))(thetas)
