"""Validation at the public boundary: every failure is a `ValueError` naming the offending input.

Checks run on concrete values only; inside `jit` the arrays are tracers and the checks are skipped
(validate before you trace).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np


def _concrete(x: Any) -> np.ndarray | None:
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def check_finite(name: str, x: Any) -> None:
    """Raise if `x` (an array or a pytree of arrays) holds NaN or infinity."""
    for leaf in jax.tree_util.tree_leaves(x):
        arr = _concrete(leaf)
        if arr is None or not np.issubdtype(arr.dtype, np.inexact):
            continue
        if not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")


def check_positive(name: str, x: Any, *, strict: bool = True) -> None:
    """Raise if any entry of `x` is not `> 0` (or `>= 0` with `strict=False`) or is non-finite."""
    check_finite(name, x)
    arr = _concrete(x)
    if arr is None:
        return
    ok = arr > 0 if strict else arr >= 0
    if not np.all(ok):
        sign = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be {sign}; got min {arr.min()!r}")


def check_shape(name: str, x: Any, shape: Sequence[int | None]) -> None:
    """Raise unless `x.shape` matches `shape`, where `None` matches any size."""
    actual = tuple(np.shape(x))
    if len(actual) != len(shape) or any(
        s is not None and s != a for s, a in zip(shape, actual, strict=True)
    ):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}; got {actual}")


def check_in(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise unless `value` is one of `allowed`, listing the choices."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {allowed}")
