"""The trainable part of any model: its floating-point arrays, as a pytree or as one vector.

Every memdyn analysis takes a loss of a whole model — an `eqx.Module` or any pytree — and acts
on its inexact (floating-point) array leaves only, as `eqx.filter_grad` does. Other leaves
(activation functions, integers, strings, static fields, integer arrays) ride along unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree

from memdyn._validate import as_float_array, check_finite


def partition_parameters(model: PyTree) -> tuple[PyTree, PyTree]:
    """`(parameters, static)`: the inexact arrays of `model` and everything else
    (`eqx.partition(model, eqx.is_inexact_array)`); `eqx.combine` rebuilds the model."""
    return eqx.partition(model, eqx.is_inexact_array)


def parameter_vector(
    model: PyTree,
) -> tuple[Float[Array, " n"], Callable[[Float[Array, " n"]], PyTree]]:
    """The inexact arrays of `model` as one vector (leaf order of `jax.tree.leaves`), and the map
    from such a vector back to the whole model."""
    parameters, static = partition_parameters(model)
    flat, unravel = ravel_pytree(parameters)
    return flat, lambda vector: eqx.combine(unravel(vector), static)


def check_scalar_loss(loss_fn: Callable[..., Any], *args: Any) -> None:
    """Raise `ValueError` unless `loss_fn(*args)` is a real scalar (checked by shape, at trace
    time, without running the loss)."""
    out = eqx.filter_eval_shape(loss_fn, *args)
    shape, dtype = getattr(out, "shape", None), getattr(out, "dtype", None)
    if shape != () or dtype is None or not jax.numpy.issubdtype(dtype, jax.numpy.floating):
        raise ValueError(
            f"loss_fn must return a real floating-point scalar; got {type(out).__name__} "
            f"with shape {shape} and dtype {dtype}"
        )


def check_model(model: PyTree, name: str = "model") -> PyTree:
    """Return `model` after the entry checks of an analysis: its floating-point arrays follow
    `memdyn.as_float_array`'s dtype rule (float32 or float64; half precision and complex raise
    `TypeError` naming the leaf) and, where concrete, are finite (`ValueError` now, before
    anything compiles). Traced arrays are checked by `guard_parameters` on the result."""
    parameters, _ = partition_parameters(model)
    for path, leaf in jax.tree_util.tree_leaves_with_path(parameters):
        as_float_array(f"{name} parameter {jax.tree_util.keystr(path) or '(root)'}", leaf)
    # The returned copy is not needed: traced leaves are checked on the result instead.
    check_finite(f"{name} parameters", parameters)
    return model


def guard_parameters(model: PyTree, result: Any, name: str = "model") -> Any:
    """`result` with the check that `model`'s floating-point arrays are finite attached to it
    (`eqx.error_if` under `jit`/`vmap`), so that it fires even where `result` does not depend on
    their values (the Hessian of a quadratic)."""
    return check_finite(f"{name} parameters", partition_parameters(model)[0], into=result)


def check_saves(models: PyTree, name: str = "models") -> PyTree:
    """Return `models` after checking that its floating-point arrays share one leading save axis
    (`ValueError` naming the sizes otherwise), as a trajectory's saved models do."""
    parameters, _ = partition_parameters(models)
    lengths = {leaf.shape[0] if leaf.ndim else None for leaf in jax.tree.leaves(parameters)}
    if len(lengths) != 1 or None in lengths:
        raise ValueError(
            f"{name} must have one leading save axis on every floating-point array; got "
            f"leading sizes {sorted(lengths, key=str)}"
        )
    return models
