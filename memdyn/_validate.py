"""Validation at the public boundary: every failure names the offending input.

One function per check, working on concrete values and under `jit`/`vmap` alike:

- structural checks (shapes, dtypes, names, config fields) run in Python at trace time and raise
  `ValueError` / `TypeError`;
- value checks (`check_finite`, `check_positive`) raise `ValueError` at once on concrete input
  and, on traced input, attach an `eqx.error_if` to the value they return, so the check fires
  when the compiled program runs (an `EquinoxRuntimeError`, a `RuntimeError`, naming the input).
  Always use the returned value: `x = check_finite("x", x)`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

T = TypeVar("T")


def _concrete(x: Any) -> np.ndarray | None:
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def _inexact_leaves(tree: Any) -> list:
    return [
        leaf
        for leaf in jax.tree_util.tree_leaves(tree)
        if isinstance(leaf, jax.Array | np.ndarray | np.generic | float)
        and jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]


def check_finite(name: str, x: T) -> T:
    """Return `x` (an array or a pytree) after checking that its floating-point leaves hold no
    NaN or infinity; other leaves (integers, functions, strings) are ignored.

    Concrete leaves are checked now (`ValueError`); JAX arrays are counted where they live, so a
    dataset on an accelerator is not copied. Traced leaves get an `eqx.error_if` in the returned
    value, which raises when the compiled program runs.
    """
    traced = False
    for leaf in _inexact_leaves(x):
        if isinstance(leaf, jax.core.Tracer):
            traced = True
            continue
        if isinstance(leaf, jax.Array):
            # Eager even inside an outer trace (eval_shape, jit) that closes over `leaf`.
            with jax.ensure_compile_time_eval():
                bad = int(jnp.size(leaf) - jnp.count_nonzero(jnp.isfinite(leaf)))
        else:
            arr = np.asarray(leaf)
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    if not traced:
        return x
    bad = jnp.zeros((), bool)
    for leaf in _inexact_leaves(x):
        if isinstance(leaf, jax.core.Tracer):
            bad = bad | ~jnp.all(jnp.isfinite(leaf))
    return eqx.error_if(x, bad, f"{name} contains non-finite values (NaN or inf)")


def check_positive(name: str, x: T, *, strict: bool = True) -> T:
    """Return `x` after checking every entry is `> 0` (`>= 0` with `strict=False`) and finite;
    concrete input raises `ValueError` now, traced input an `eqx.error_if` at run time."""
    x = check_finite(name, x)
    sign = "> 0" if strict else ">= 0"
    arr = _concrete(x)
    if arr is None:
        bad = ~jnp.all(x > 0 if strict else x >= 0)
        return eqx.error_if(x, bad, f"{name} must be {sign}")
    ok = arr > 0 if strict else arr >= 0
    if not np.all(ok):
        raise ValueError(f"{name} must be {sign}; got min {arr.min()!r}")
    return x


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


def as_float_array(name: str, x: Any) -> jax.Array:
    """`x` as a JAX array of a real floating dtype, by one rule: float32 and float64 are kept,
    integers become the default float (float64 under `jax.enable_x64`), and booleans, complex
    numbers, half precision (float16, bfloat16) and non-numeric input raise `TypeError` naming
    `name`. Values are not checked (see `check_finite`)."""
    if isinstance(x, list | tuple):
        x = np.asarray(x)
    try:
        dtype = jnp.result_type(x)
    except TypeError as err:
        raise TypeError(f"{name} must be a real array; got {type(x).__name__}") from err
    if dtype == jnp.bool_ or jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real floating point; got dtype {dtype}")
    if jnp.issubdtype(dtype, jnp.integer):
        return jnp.asarray(x, dtype=jnp.result_type(float))
    if not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits < 32:
        raise TypeError(f"{name} must be float32 or float64; got dtype {dtype}")
    return jnp.asarray(x)
