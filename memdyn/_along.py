"""Curvature spectra in one call over many operators: along a trajectory's saved models (Lanczos,
SLQ or a trace estimator at each, `vmap`ped and compiled once, never a dense Hessian) and over a
model's blocks (one layer at a time, each at its own size).

Along a trajectory, `build(model)` makes the operator at each saved model (e.g.
`lambda m: memdyn.HessianOperator(loss, m)`, or a Gauss–Newton or Fisher operator), and `key` is
either one PRNG key, the same random start or probes at every save (so that differences between
saves come from the operator, not from the draws), or one key per save (a leading save axis, as
`jax.random.split(key, saves)` gives: independent draws at each save). Each estimator is the
one that acts on a single operator (`memdyn.ritz_pairs`, `memdyn.spectral_density`,
`memdyn.trace_hutchinson`, `memdyn.trace_hutchpp`), so a save's result equals that estimator
run on its operator alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from memdyn._curvature import AbstractCurvature, FilterSpec
from memdyn._lanczos import RitzPairs, ritz_pairs
from memdyn._parameters import check_saves, partition_parameters
from memdyn._spectral import SpectralDensity, spectral_density
from memdyn._trace import trace_hutchinson

Build = Callable[[PyTree], AbstractCurvature]
Estimate = Callable[[AbstractCurvature, PRNGKeyArray], PyTree]


def _key_axis(key: PRNGKeyArray, saves: int) -> int | None:
    """`None` for one key (shared by every save), 0 for one key per save; `ValueError` else."""
    shape = getattr(key, "shape", None)
    if shape is None:
        raise TypeError(f"key must be a JAX PRNG key array; got {type(key).__name__}")
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    batch = shape if typed else shape[:-1]  # a raw uint32 key carries its data on the last axis
    if batch == ():
        return None
    if batch == (saves,):
        return 0
    raise ValueError(
        f"key must be one PRNG key or one per save (a leading axis of {saves} saves); got a key "
        f"array of shape {shape}"
    )


def _over_saves(estimate: Estimate, build: Build, models: PyTree, key: PRNGKeyArray) -> PyTree:
    """`estimate(build(model), key)` at every saved model in one `vmap`; call it under `jit`."""
    parameters, static = partition_parameters(models)
    saves = jax.tree.leaves(parameters)[0].shape[0]
    one = lambda p, k: estimate(build(eqx.combine(p, static)), k)
    return jax.vmap(one, in_axes=(0, _key_axis(key, saves)))(parameters, key)


@eqx.filter_jit
def _ritz_pairs_along(build, models, num_iter, *, key):
    estimate = lambda operator, k: ritz_pairs(operator, num_iter, key=k)
    return _over_saves(estimate, build, models, key)


def ritz_pairs_along(
    build: Build,
    models: PyTree,
    num_iter: int,
    *,
    key: PRNGKeyArray,
) -> RitzPairs:
    """`memdyn.ritz_pairs` of `build(model)` at every saved model of a trajectory: `models` has
    one leading save axis on its floating-point arrays (as `memdyn.Trajectory.thetas`), and
    `build` makes the operator, e.g. `lambda m: memdyn.HessianOperator(loss, m)`. `key` is one
    key (the same random start at each save) or one per save. The result's arrays lead with the
    save axis."""
    check_saves(models)
    return _ritz_pairs_along(build, models, num_iter, key=key)


@eqx.filter_jit
def _spectral_density_along(build, models, num_iter, num_probes, *, key):
    estimate = lambda operator, k: spectral_density(
        operator, num_iter=num_iter, num_probes=num_probes, key=k
    )
    return _over_saves(estimate, build, models, key)


def spectral_density_along(
    build: Build,
    models: PyTree,
    num_iter: int,
    num_probes: int,
    *,
    key: PRNGKeyArray,
) -> SpectralDensity:
    """`memdyn.spectral_density` (SLQ: `num_probes` probes of `num_iter` Lanczos steps) of
    `build(model)` at every saved model of a trajectory, as `ritz_pairs_along`: `models` with a
    leading save axis, `key` one key (the same probes at each save) or one per save. The
    density's arrays have shape (save, probes, k), and its methods (`moment`, `density`,
    `negative_mass`) give one value per save."""
    check_saves(models)
    return _spectral_density_along(build, models, num_iter, num_probes, key=key)


@eqx.filter_jit
def _trace_along(build, models, num_matvecs, *, key, estimator):
    estimate = lambda operator, k: estimator(operator, num_matvecs, key=k)
    return _over_saves(estimate, build, models, key)


def trace_along(
    build: Build,
    models: PyTree,
    num_matvecs: int,
    *,
    key: PRNGKeyArray,
    estimator: Callable[..., Float[Array, ""]] = trace_hutchinson,
) -> Float[Array, " save"]:
    """A stochastic trace estimate of `build(model)` from `num_matvecs` products at every saved
    model of a trajectory, as `ritz_pairs_along`: `estimator` is `memdyn.trace_hutchinson`
    (the default) or `memdyn.trace_hutchpp` (any `estimator(operator, num_matvecs, *, key)`),
    `key` one key (the same probes at each save) or one per save."""
    check_saves(models)
    return _trace_along(build, models, num_matvecs, key=key, estimator=estimator)


def _by_block(estimate: Callable[[AbstractCurvature, int], Any], build, blocks, num_iter):
    """`estimate(operator, steps)` for each named block's operator, with `min(num_iter, its
    size)` Lanczos steps."""
    results = {}
    for name, spec in blocks.items():
        operator = build(spec)
        results[name] = estimate(operator, min(num_iter, operator.size))
    return results


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
    estimate = lambda operator, steps: ritz_pairs(operator, steps, key=key)
    return _by_block(estimate, build, blocks, num_iter)


def spectral_density_by_block(
    build: Callable[[FilterSpec], AbstractCurvature],
    blocks: Mapping[str, Any],
    num_iter: int,
    num_probes: int,
    *,
    key: PRNGKeyArray,
) -> dict[str, SpectralDensity]:
    """SLQ densities (`memdyn.spectral_density`) of the operator restricted to each named block,
    in one call, as `ritz_pairs_by_block`: each block gets `num_probes` probes of
    `min(num_iter, its size)` Lanczos steps. Each density's moments are per eigenvalue of its
    own block ((1/n_b) tr A_bᵐ)."""
    estimate = lambda operator, steps: spectral_density(
        operator, num_iter=steps, num_probes=num_probes, key=key
    )
    return _by_block(estimate, build, blocks, num_iter)
