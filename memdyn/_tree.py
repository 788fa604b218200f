"""Reductions over pytrees, in one home (as `optax.tree_utils`): training, meta-training, the
value checks and gradient flows all ask "is every entry finite?" through `tree_all_finite`."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, PyTree


def tree_all_finite(tree: PyTree) -> Bool[Array, ""]:
    """Whether every entry of every floating-point array leaf of `tree` is finite.

    Other leaves (integers, PRNG keys, functions) are ignored, and a tree without floating-point
    leaves is finite. Traceable: map it with `jax.vmap` for one verdict per member or saved step.
    """
    leaves = jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))
    return (
        jnp.array(True)
        if not leaves
        else jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves]))
    )
