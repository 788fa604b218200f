"""Hessians of any loss of any model: exact matrices for small models, Hessian-vector products for
large ones, spectra along trajectories (Li et al., Prop. C.3, Thm. D.3).

Every function takes a scalar `loss_fn(model)` of an `eqx.Module` or pytree and differentiates
with respect to its inexact arrays only (`memdyn.partition_parameters`); the matrix is indexed by
`memdyn.parameter_vector(model)`'s order. They are `eqx.filter_jit`-compiled: pass `loss_fn` as a
pytree callable (`jax.tree_util.Partial`, an `eqx.Module`) to reuse compilations. Use float64
(`jax.enable_x64(True)`) when the eigenvalues of interest are small, as near a plateau.

Checks: `loss_fn` must return a scalar (at trace time), and the parameters must be finite
(`eqx.error_if`, so it holds under `jit` and `vmap`).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from memdyn._parameters import check_scalar_loss, parameter_vector, partition_parameters
from memdyn._validate import check_finite

LossFn = Callable[[PyTree], Float[Array, ""]]


def _vector_loss(loss_fn: LossFn, model: PyTree):
    check_scalar_loss(loss_fn, model)
    flat, rebuild = parameter_vector(check_finite("model parameters", model))
    return flat, lambda vector: loss_fn(rebuild(vector))


@eqx.filter_jit
def hessian(loss_fn: LossFn, model: PyTree) -> Float[Array, "n n"]:
    """∇²J as an n × n matrix over the n floating-point scalars of `model`, exact
    (`jax.hessian`, forward-over-reverse)."""
    flat, vector_loss = _vector_loss(loss_fn, model)
    return jax.hessian(vector_loss)(flat)


@eqx.filter_jit
def hessian_eigenvalues(loss_fn: LossFn, model: PyTree) -> Float[Array, " n"]:
    """Eigenvalues of the symmetrised Hessian, ascending (`eigvalsh`), in the model's precision."""
    matrix = hessian(loss_fn, model)
    return jnp.linalg.eigvalsh(0.5 * (matrix + matrix.T))


@eqx.filter_jit
def hessian_eigenvalues_along(loss_fn: LossFn, models: PyTree) -> Float[Array, "save n"]:
    """Hessian eigenvalues at every saved state of a trajectory: `models` has a leading `save`
    axis on its arrays (as `memdyn.Trajectory.thetas`)."""
    parameters, static = partition_parameters(models)
    return jax.vmap(lambda p: hessian_eigenvalues(loss_fn, eqx.combine(p, static)))(parameters)


@eqx.filter_jit
def hvp(loss_fn: LossFn, model: PyTree, tangent: PyTree) -> PyTree:
    """Hessian-vector product ∇²J v (forward-over-reverse, `jvp` of `grad`): one gradient's cost,
    no n × n matrix. `tangent` has the structure of `model`'s parameters
    (`memdyn.partition_parameters(model)[0]`, or the model itself: its non-array leaves are
    ignored); so does the result."""
    check_scalar_loss(loss_fn, model)
    parameters, static = partition_parameters(check_finite("model parameters", model))
    tangent, _ = partition_parameters(tangent)
    gradient = jax.grad(lambda p: loss_fn(eqx.combine(p, static)))
    return jax.jvp(gradient, (parameters,), (tangent,))[1]
