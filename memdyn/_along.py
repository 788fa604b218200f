"""Curvature spectra in one call over many operators: along a trajectory's saved models (Lanczos
at each, `vmap`ped and compiled once, never a dense Hessian) and over a model's blocks (one
layer at a time, each at its own size)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
from jaxtyping import PRNGKeyArray, PyTree

from memdyn._curvature import AbstractCurvature, FilterSpec
from memdyn._lanczos import RitzPairs, ritz_pairs
from memdyn._parameters import check_saves, partition_parameters


@eqx.filter_jit
def _ritz_pairs_along(build, models, num_iter, *, key):
    parameters, static = partition_parameters(models)
    one = lambda p: ritz_pairs(build(eqx.combine(p, static)), num_iter, key=key)
    return jax.vmap(one)(parameters)


def ritz_pairs_along(
    build: Callable[[PyTree], AbstractCurvature],
    models: PyTree,
    num_iter: int,
    *,
    key: PRNGKeyArray,
) -> RitzPairs:
    """Ritz pairs of `build(model)` at every saved model of a trajectory, from the same random
    start at each: `models` has one leading save axis on its floating-point arrays (as
    `memdyn.Trajectory.thetas`), and `build` makes the operator, e.g.
    `lambda m: memdyn.HessianOperator(loss, m)`. The result's arrays lead with the save axis."""
    check_saves(models)
    return _ritz_pairs_along(build, models, num_iter, key=key)


def ritz_pairs_by_block(
    build: Callable[[FilterSpec], AbstractCurvature],
    blocks: Mapping[str, Any],
    num_iter: int,
    *,
    key: PRNGKeyArray,
) -> dict[str, RitzPairs]:
    """Ritz pairs of the operator restricted to each named block, in one call: `build(block)`
    makes the operator for a filter spec (e.g. `lambda b: memdyn.HessianOperator(loss, model,
    block=b)`), and each block gets `min(num_iter, its size)` Lanczos steps."""
    pairs = {}
    for name, spec in blocks.items():
        operator = build(spec)
        pairs[name] = ritz_pairs(operator, min(num_iter, operator.size), key=key)
    return pairs
