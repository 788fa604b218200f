"""Validation at the public boundary: every failure is a `ValueError` naming the offending input.

Checks run on concrete values only; inside `jit` the arrays are tracers and the checks are skipped
(validate before you trace).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _concrete(x: Any) -> np.ndarray | None:
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def check_finite(name: str, x: Any) -> None:
    """Raise if `x` (an array or a pytree of arrays) holds NaN or infinity.

    JAX arrays are checked where they live (only a count comes back to the host), so validating
    a large dataset already on an accelerator does not copy it.
    """
    for leaf in jax.tree_util.tree_leaves(x):
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
            if jnp.issubdtype(leaf.dtype, jnp.inexact):
                # Eager even inside an outer trace (eval_shape, jit) that closes over `leaf`.
                with jax.ensure_compile_time_eval():
                    bad = int(jnp.size(leaf) - jnp.count_nonzero(jnp.isfinite(leaf)))
                if bad:
                    raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
            continue
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


def check_fields(config: Any) -> None:
    """Check a config dataclass's field values against their annotations: `int` fields hold
    integers (not floats or bools), `float` fields finite real numbers, `bool` fields bools, `str`
    fields strings, `tuple[T, ...]` fields sequences of such; `T | None` also allows `None`.
    Other annotations are not checked. Call it first in `__post_init__`."""
    try:
        hints = typing.get_type_hints(type(config))
    except (NameError, TypeError):  # unresolvable annotations: nothing to check against
        return
    for field in dataclasses.fields(config):
        name = f"{type(config).__name__}.{field.name}"
        _check_value(name, getattr(config, field.name), hints.get(field.name))


def _check_value(name: str, value: Any, annotation: Any) -> None:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            _check_value(name, value, inner[0])
        return
    if origin is tuple:
        if not isinstance(value, tuple | list):
            raise ValueError(f"{name} must be a sequence; got {value!r}")
        element = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if element is not None:
            for i, item in enumerate(value):
                _check_value(f"{name}[{i}]", item, element)
        return
    if annotation is bool:
        if not isinstance(value, bool | np.bool_):
            raise ValueError(f"{name} must be True or False; got {value!r}")
    elif annotation is int:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name} must be an integer; got {value!r}")
    elif annotation is float:
        real = isinstance(value, int | float | np.integer | np.floating)
        if isinstance(value, bool | np.bool_) or not real or not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number; got {value!r}")
    elif annotation is str and not isinstance(value, str):
        raise ValueError(f"{name} must be a string; got {value!r}")


def check_at_least(config: Any, names: Iterable[str], minimum: float) -> None:
    """Raise unless every field `names` of `config` is `>= minimum` (config range checks)."""
    for name in names:
        value = getattr(config, name)
        if not value >= minimum:
            raise ValueError(f"{name} must be >= {minimum}; got {value}")
