"""Hessians of any loss of any model: exact matrices for small models, Hessian-vector products for
large ones, spectra along trajectories (Li et al., Prop. C.3, Thm. D.3).

Every function takes a scalar `loss_fn(model)` of an `eqx.Module` or pytree and differentiates
with respect to its inexact arrays only (`memdyn.partition_parameters`); the matrix is indexed by
`memdyn.parameter_vector(model)`'s order. They compile with `eqx.filter_jit`: pass `loss_fn` as a
pytree callable (`jax.tree_util.Partial`, an `eqx.Module`) to reuse compilations. Use float64
(`jax.enable_x64(True)`) when the eigenvalues of interest are small, as near a plateau.

Checks, at each function's entry (`memdyn._parameters.check_model`): `loss_fn` must return a
real scalar (`ValueError` at trace time); the parameters must be float32/float64 (`TypeError`)
and finite: concrete ones raise `ValueError` before compiling, traced ones (under `jit`, `vmap`)
an `eqx.error_if` on the result. The result itself must be finite: a NaN or inf from the data
`loss_fn` closes over is an error naming `loss_fn`, never a silent NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from memdyn._curvature import hessian_product
from memdyn._parameters import (
    check_model,
    check_saves,
    check_scalar_loss,
    guard_parameters,
    parameter_vector,
    partition_parameters,
)
from memdyn._validate import check_finite

LossFn = Callable[[PyTree], Float[Array, ""]]


def guard_result(result: PyTree, what: str) -> PyTree:
    """`result` with the check that it is finite: a finite model whose loss yields a NaN or inf
    `what` has non-finite data or overflows."""
    return check_finite(f"{what} of loss_fn (finite parameters: check loss_fn's data)", result)


@eqx.filter_jit
def _hessian(loss_fn: LossFn, model: PyTree) -> Float[Array, "n n"]:
    check_scalar_loss(loss_fn, model)
    flat, rebuild = parameter_vector(model)
    matrix = jax.hessian(lambda vector: loss_fn(rebuild(vector)))(flat)
    # The parameters' check is attached first, so that it is the one reported for NaN input.
    return guard_result(guard_parameters(model, matrix), "Hessian")


@eqx.filter_jit
def _eigenvalues(loss_fn: LossFn, model: PyTree) -> Float[Array, " n"]:
    matrix = _hessian(loss_fn, model)
    return jnp.linalg.eigvalsh(0.5 * (matrix + matrix.T))


def hessian(loss_fn: LossFn, model: PyTree) -> Float[Array, "n n"]:
    """∇²J as an n × n matrix over the n floating-point scalars of `model`, exact
    (`jax.hessian`, forward-over-reverse)."""
    return _hessian(loss_fn, check_model(model))


def hessian_eigenvalues(loss_fn: LossFn, model: PyTree) -> Float[Array, " n"]:
    """Eigenvalues of the symmetrised Hessian, ascending (`eigvalsh`), in the model's precision."""
    return _eigenvalues(loss_fn, check_model(model))


@eqx.filter_jit
def _eigenvalues_along(loss_fn: LossFn, models: PyTree) -> Float[Array, "save n"]:
    parameters, static = partition_parameters(models)
    return jax.vmap(lambda p: _eigenvalues(loss_fn, eqx.combine(p, static)))(parameters)


def hessian_eigenvalues_along(loss_fn: LossFn, models: PyTree) -> Float[Array, "save n"]:
    """Hessian eigenvalues at every saved state of a trajectory: `models` has a leading `save`
    axis on its arrays (as `memdyn.Trajectory.thetas`), the same length on every one.

    Exact and dense: it forms the n × n Hessian at each save (n² memory per save, n³ work), so
    it is the reference for small models (a few thousand parameters at most). For larger
    models, or another curvature than the Hessian, use the matrix-free `memdyn.ritz_pairs_along`
    (extreme eigenvalues by Lanczos) or `memdyn.spectral_density_along` (the density by SLQ)."""
    return _eigenvalues_along(loss_fn, check_saves(check_model(models, "models")))


def _signature(parameters: PyTree) -> list[tuple[str, tuple[int, ...], jnp.dtype]]:
    return [
        (jax.tree_util.keystr(path), leaf.shape, leaf.dtype)
        for path, leaf in jax.tree_util.tree_leaves_with_path(parameters)
    ]


def check_tangent(model: PyTree, tangent: PyTree) -> PyTree:
    """`tangent`'s floating-point arrays in the structure of `model`'s, after checking that they
    sit at the same paths with the same shapes and dtypes (`ValueError`) and, where concrete, are
    finite.

    The leaves' paths, shapes and dtypes are compared, never trees with `==`: a Flax NNX module
    compares by identity, so a tree of shapes built from one never equals another. The tangent is
    returned in the model's own tree structure, so static fields in which the two differ (a
    tangent built from another instance) do not stop `jax.jvp`."""
    parameters, _ = partition_parameters(model)
    tangent, _ = partition_parameters(tangent)
    expected, actual = _signature(parameters), _signature(tangent)
    if expected != actual:
        describe = lambda signature: ", ".join(
            f"{path or '(root)'} {shape} {dtype}" for path, shape, dtype in signature
        )
        raise ValueError(
            "tangent must have the structure (leaf paths), shapes and dtypes of the model's "
            "floating-point arrays (memdyn.partition_parameters(model)[0]); got "
            f"[{describe(actual)}] for [{describe(expected)}]"
        )
    tangent = jax.tree.unflatten(jax.tree.structure(parameters), jax.tree.leaves(tangent))
    check_finite("tangent", tangent)  # concrete now; traced on the result, in _hvp
    return tangent


@eqx.filter_jit
def _hvp(loss_fn: LossFn, model: PyTree, tangent: PyTree) -> PyTree:
    check_scalar_loss(loss_fn, model)
    product = hessian_product(loss_fn, *partition_parameters(model), tangent)
    product = guard_parameters(model, check_finite("tangent", tangent, into=product))
    return guard_result(product, "Hessian-vector product")


def hvp(loss_fn: LossFn, model: PyTree, tangent: PyTree) -> PyTree:
    """Hessian-vector product ∇²J v (forward-over-reverse, `jvp` of `grad`): one gradient's cost,
    no n × n matrix. `tangent` has the structure of `model`'s parameters
    (`memdyn.partition_parameters(model)[0]`, or the model itself: its non-array leaves are
    ignored); so does the result."""
    model = check_model(model)
    return _hvp(loss_fn, model, check_tangent(model, tangent))
