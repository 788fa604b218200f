"""Plateau measurements on training trajectories (Li et al., §5, eq. 22).

`hitting_time` is the escape time of Theorem 5.1: the first time the parameters have moved a
distance δ from their start (eq. 22), or the first time the loss has dropped by δ. It works on
saved trajectories (flows or discrete optimisers), interpolates between saved points, and is a
pure `jnp` function, so it `vmap`s over a sweep of trajectories.

`plateau_intervals` finds flat stretches of a (possibly noisy) loss curve, for figures.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PyTree

from memdyn._parameters import partition_parameters
from memdyn._validate import as_float_array, check_count, check_finite, check_in, check_positive


class HittingTime(NamedTuple):
    """`time` is `inf` and `hit` is False when the threshold is never reached."""

    time: Float[Array, ""]
    hit: Bool[Array, ""]


def running_median(values: Float[ArrayLike, " n"], window: int) -> Float[Array, " n"]:
    """Centred moving median with an odd `window` (edges use the available points; an even one
    acts as `window + 1`). `values` is 1-d; NaNs are skipped within a window (`nanmedian`)."""
    values = as_float_array("values", values)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-d; got shape {values.shape}")
    check_count("window", window)
    if window <= 1:
        return values
    half = window // 2
    n = values.shape[0]
    index = jnp.arange(n)[:, None] + jnp.arange(-half, half + 1)[None, :]
    valid = (index >= 0) & (index < n)
    windows = jnp.where(valid, values[jnp.clip(index, 0, n - 1)], jnp.nan)
    return jnp.nanmedian(windows, axis=1)


def _first_crossing(times, progress, delta, log_time):
    """First time at which `progress` (non-decreasing) reaches `delta`, interpolated."""
    reached = progress >= delta
    hit = jnp.any(reached)
    i = jnp.argmax(reached)
    j = jnp.maximum(i - 1, 0)
    # Interpolate in log τ on log grids (τ > 0 on both sides), linearly otherwise.
    use_log = log_time & (times[j] > 0) & (times[i] > 0)
    lo = jnp.where(use_log, jnp.log(jnp.where(use_log, times[j], 1.0)), times[j])
    hi = jnp.where(use_log, jnp.log(jnp.where(use_log, times[i], 1.0)), times[i])
    gap = progress[i] - progress[j]
    fraction = jnp.where(gap > 0, (delta - progress[j]) / jnp.where(gap > 0, gap, 1.0), 1.0)
    point = lo + jnp.clip(fraction, 0.0, 1.0) * (hi - lo)
    time = jnp.where(use_log, jnp.exp(point), point)
    time = jnp.where(i == 0, times[0], time)
    return HittingTime(jnp.where(hit, time, jnp.inf), hit)


def hitting_time(
    times: Float[ArrayLike, " save"],
    thetas: PyTree | None,
    losses: Float[ArrayLike, " save"] | None,
    *,
    delta: float,
    criterion: str = "parameter",
    smooth: int = 1,
    log_time: bool = True,
) -> HittingTime:
    """Hitting time of eq. 22 from a saved trajectory.

    - `criterion="parameter"`: first τ with ‖θ(τ) − θ(0)‖₂ ≥ δ over the floating-point arrays of
      θ (`thetas`: any model with a leading `save` axis on its arrays, as `Trajectory.thetas`);
    - `criterion="loss"`: first τ at which the running minimum of the loss (after a centred
      moving median of width `smooth`, which suppresses isolated noisy dips) has dropped by δ
      below its starting value.

    The crossing is interpolated between the two saved points around it: in log τ when both are
    positive and `log_time` (flows saved on log grids), linearly otherwise (optimiser steps).
    Returns `HittingTime(inf, False)` when the threshold is not reached by the end.

    Checks: `times` is a non-empty, finite 1-d array (`ValueError`; under `jit`, `eqx.error_if`)
    matching the trajectory's length; `delta > 0`; `smooth` a positive int. Non-finite losses or
    states are allowed (a failed member of a `throw=False` sweep), but read them with the
    solve's `finished`: from a NaN on nothing counts as reaching δ, while an infinite state or
    loss counts as reaching it, at the last finite save before it.
    """
    check_in("criterion", criterion, ("parameter", "loss"))
    check_count("smooth", smooth)
    if not isinstance(log_time, bool):
        raise ValueError(f"log_time must be True or False; got {log_time!r}")
    delta = check_positive("delta", delta)
    times = as_float_array("times", times)
    if times.ndim != 1 or times.shape[0] == 0:
        raise ValueError(f"times must be a non-empty 1-d array; got shape {times.shape}")
    times = check_finite("times", times)
    if criterion == "parameter":
        if thetas is None:
            raise ValueError("thetas is required for criterion='parameter'")
        leaves = jax.tree.leaves(partition_parameters(thetas)[0])
        if not leaves or any(leaf.ndim == 0 for leaf in leaves):
            raise ValueError("thetas must hold floating-point arrays with a leading save axis")
        return _parameter_crossing(times, leaves, delta, log_time=log_time)
    if losses is None:
        raise ValueError("losses are required for criterion='loss'")
    return _loss_crossing(times, losses, delta, smooth=smooth, log_time=log_time)


# The measurement after the checks on concrete values, one compiled program per shape: eagerly its
# dozen small operations would each compile and dispatch on their own, for every curve of a sweep.
# `delta` is an argument (sweeps take it from each curve's start), not a compile-time constant.
@functools.partial(jax.jit, static_argnames="log_time")
def _parameter_crossing(times, leaves, delta, *, log_time):
    flat = jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], axis=1)
    distance = jnp.linalg.norm(flat - flat[0], axis=1)
    return _checked_crossing(times, jax.lax.cummax(distance), delta, log_time)


@functools.partial(jax.jit, static_argnames=("smooth", "log_time"))
def _loss_crossing(times, losses, delta, *, smooth, log_time):
    smoothed = running_median(losses, smooth)
    return _checked_crossing(times, smoothed[0] - jax.lax.cummin(smoothed), delta, log_time)


def _checked_crossing(times, progress, delta, log_time):
    if progress.shape != times.shape:
        raise ValueError(f"times {times.shape} and trajectory {progress.shape} differ in length")
    return _first_crossing(times, progress, delta, log_time)


class Plateau(NamedTuple):
    start: float
    end: float
    level: float


def plateau_intervals(
    times: Float[ArrayLike, " save"],
    losses: Float[ArrayLike, " save"],
    *,
    tolerance: float = 0.05,
    min_fraction: float = 0.1,
    scale: str = "log",
    smooth: int = 1,
) -> list[Plateau]:
    """Maximal flat stretches of a loss curve.

    A plateau is a run of saved points over which the smoothed loss stays within a relative band
    `max/min ≤ 1 + tolerance`, lasting at least `min_fraction` of the whole time range measured on
    `scale` ("log" for flows saved on log grids, "linear" for optimiser steps). Runs are grown
    greedily from the left; `level` is the median loss on the run. Eager NumPy, for figures.
    Points whose time or smoothed loss is not finite, and times ≤ 0 on the log scale, are left
    out (a diverged or failed run's tail); `times` and `losses` must be 1-d of one length.
    """
    check_in("scale", scale, ("log", "linear"))
    check_positive("tolerance", tolerance)
    check_positive("min_fraction", min_fraction)
    times = as_float_array("times", times, host=True)
    losses = as_float_array("losses", losses, host=True)
    if times.shape != losses.shape or times.ndim != 1:
        raise ValueError(f"times {times.shape} and losses {losses.shape} must be equal 1-d")
    values = np.asarray(running_median(jnp.asarray(losses, dtype=float), smooth))
    if times.shape != values.shape or times.ndim != 1:
        raise ValueError(f"times {times.shape} and losses {values.shape} must be equal 1-d")
    ordered = times[np.isfinite(times)]
    if np.any(np.diff(ordered) < 0):
        raise ValueError("times must be non-decreasing")
    finite = np.isfinite(values) & np.isfinite(times) & ((times > 0) | (scale == "linear"))
    times, values = times[finite], values[finite]
    if times.size < 2:
        return []
    axis = np.log(times) if scale == "log" else times
    min_length = min_fraction * (axis[-1] - axis[0])
    plateaus = []
    i = 0
    while i < len(values) - 1:
        lo = hi = values[i]
        j = i
        while j + 1 < len(values):
            lo, hi = min(lo, values[j + 1]), max(hi, values[j + 1])
            if hi > (1 + tolerance) * lo:
                break
            j += 1
        if j > i and axis[j] - axis[i] >= min_length:
            level = float(np.median(values[i : j + 1]))
            plateaus.append(Plateau(float(times[i]), float(times[j]), level))
            i = j + 1
        else:
            i += 1
    return plateaus
