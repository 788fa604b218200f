"""Validation at the public boundary: every failure names the offending input.

One function per check, working on concrete values and under `jit`/`vmap` alike:

- structural checks (shapes, dtypes, names) run in Python at trace time and raise `ValueError` /
  `TypeError`; checks of sizes, counts and choices raise `ConfigError` (a `ValueError`), as the
  config fields' checks in `memdyn._schema` do;
- value checks (`check_finite`, `check_positive`) raise `ValueError` at once on concrete input
  and, on traced input, attach an `eqx.error_if` to the value they return, so the check fires
  when the compiled program runs (an `EquinoxRuntimeError`, a `RuntimeError`, naming the input;
  under `jax.jit` rather than `eqx.filter_jit` JAX wraps it in a `JaxRuntimeError` whose text
  holds the same message). Always use the returned value: `x = check_finite("x", x)`, or attach
  the check to the result with `into=` where the result may not depend on `x`'s values.

Public functions check at their entry, once per call, never inside the body of a `lax.scan` or
loop (where a check would run at every step): see each function's docstring for where its
checks live.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from memdyn._errors import ConfigError
from memdyn._sharding import gather
from memdyn._tree import tree_all_finite

T = TypeVar("T")


def _concrete(x: Any) -> np.ndarray | None:
    """`x` on the host where it can be read here, `None` for a traced value. An array spread
    over several processes' devices (a sweep sharded across a `jax.distributed` job) is reduced
    where it lives by callers (`_spread`), never fetched whole."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def _spread(x: Any) -> bool:
    """Whether `x` is an array over devices of several processes. Its checks are reductions that
    every process computes alike, read from this process's copy of the replicated result
    (`memdyn.gather`): a failing `eqx.error_if` on such an array left the processes hanging."""
    return (
        isinstance(x, jax.Array)
        and not isinstance(x, jax.core.Tracer)
        and not (x.is_fully_addressable)
    )


def _inexact_leaves(tree: Any) -> list:
    # `jax.dtypes.issubdtype` of the leaf's own dtype, not `jnp.result_type`: a typed PRNG key
    # (`jax.random.key`, Flax NNX's `Rngs`) has an extended dtype that `result_type` rejects.
    return [
        leaf
        for leaf in jax.tree_util.tree_leaves(tree)
        if isinstance(leaf, float)
        or (
            isinstance(leaf, jax.Array | np.ndarray | np.generic)
            and jax.dtypes.issubdtype(leaf.dtype, jnp.inexact)
        )
    ]


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


_SELF: Any = object()


_HOST_DTYPES = frozenset(
    map(np.dtype, ("float16", "float32", "float64", "complex64", "complex128"))
)


def _on_host(leaf: jax.Array) -> bool:
    """Whether NumPy can read `leaf` where it lives: one process's CPU memory, a NumPy dtype."""
    return (
        not _spread(leaf)
        and leaf.dtype in _HOST_DTYPES
        and all(device.platform == "cpu" for device in leaf.devices())
    )


@jax.jit
def _nonfinite_on_device(leaf: jax.Array) -> jax.Array:
    return jnp.size(leaf) - jnp.count_nonzero(jnp.isfinite(leaf))


def _nonfinite_count(leaf: Any) -> int:
    """How many NaN or infinite entries a concrete leaf holds. On the CPU NumPy counts them (no
    program to compile for each new shape: eager `jnp` ops compiled two per shape, the most
    frequent compilations of the test suite); an array on an accelerator is counted where it
    lives, so a dataset is not copied, and one over several processes by every process alike."""
    if isinstance(leaf, jax.Array) and not _on_host(leaf):
        # Eager even inside an outer trace (eval_shape, jit) that closes over `leaf`.
        with jax.ensure_compile_time_eval():
            return int(_nonfinite_on_device(leaf))
    arr = np.asarray(leaf)
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))


def check_finite(name: str, x: T, *, into: Any = _SELF) -> T:
    """Return `x` (an array or a pytree) after checking that its floating-point leaves hold no
    NaN or infinity; other leaves (integers, functions, strings) are ignored.

    Concrete leaves are checked now (`ValueError`); JAX arrays are counted where they live, so a
    dataset on an accelerator is not copied. Traced leaves get an `eqx.error_if` in the returned
    value, which raises when the compiled program runs.

    With `into=result`, `result` is returned instead of `x`, with the traced check attached to
    it: use it when `result` may not depend on `x`'s values (the Hessian of a quadratic is a
    constant), where XLA would otherwise drop the unused check as dead code.
    """
    result = x if into is _SELF else into
    traced = False
    for leaf in _inexact_leaves(x):
        if isinstance(leaf, jax.core.Tracer):
            traced = True
            continue
        bad = _nonfinite_count(leaf)
        if bad:
            raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    if not traced:
        return result
    bad = ~tree_all_finite(
        [leaf for leaf in _inexact_leaves(x) if isinstance(leaf, jax.core.Tracer)]
    )
    # `eqx.error_if` cannot carry typed PRNG keys through its callback: attach it to the rest.
    keys, rest = eqx.partition(result, _is_key)
    rest = eqx.error_if(rest, bad, f"{name} contains non-finite values (NaN or inf)")
    return eqx.combine(rest, keys)


def check_positive(name: str, x: T, *, strict: bool = True) -> T:
    """Return `x` after checking every entry is `> 0` (`>= 0` with `strict=False`) and finite;
    concrete input raises `ValueError` now, traced input an `eqx.error_if` at run time."""
    x = check_finite(name, x)
    sign = "> 0" if strict else ">= 0"
    if _spread(x):
        lowest = float(gather(jnp.min(x)))
        if not (lowest > 0 if strict else lowest >= 0):
            raise ValueError(f"{name} must be {sign}; got min {lowest!r}")
        return x
    arr = _concrete(x)
    if arr is None:
        bad = ~jnp.all(x > 0 if strict else x >= 0)
        return eqx.error_if(x, bad, f"{name} must be {sign}")
    ok = arr > 0 if strict else arr >= 0
    if not np.all(ok):
        raise ValueError(f"{name} must be {sign}; got min {arr.min()!r}")
    return x


def check_strategy(name: str, value: T, kind: type, examples: str) -> T:
    """`value`, after checking that it is an instance of the strategy class `kind` (an abstract
    `eqx.Module` whose subclasses say how to do something, as Diffrax's solvers); a name such as
    `"zoh"`, or anything else, raises `TypeError` naming the argument and `examples` (e.g.
    `"Euler() or ZeroOrderHold()"`)."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be an {kind.__name__} ({examples}); got {value!r}")
    return value


def check_optimizer(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """`optimizer`, after checking that it is an Optax transformation (not a name, a learning rate
    or a config): `TypeError` otherwise."""
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation, e.g. config.make_optimizer() or "
            f"optax.sgd(0.1); got {type(optimizer).__name__} {optimizer!r}"
        )
    return optimizer


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """Return `value` after checking it is a Python or NumPy integer (not a bool, not a float
    such as `2.0`) and `>= minimum`: sizes, lengths, step and probe counts. `ConfigError`
    either way, as `check_fields` for config fields."""
    integer = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not integer or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_shape(name: str, x: Any, shape: Sequence[int | None]) -> None:
    """Raise unless `x.shape` matches `shape`, where `None` matches any size."""
    actual = tuple(np.shape(x))
    if len(actual) != len(shape) or any(
        s is not None and s != a for s, a in zip(shape, actual, strict=True)
    ):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}; got {actual}")


def check_in(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise `ConfigError` unless `value` is one of `allowed`, listing the choices."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {allowed}")


def as_float_array(name: str, x: Any, *, host: bool = False) -> Any:
    """`x` as an array of a real floating dtype, by the package's one dtype rule:

    - float32 and float64 are kept (`host=False`);
    - integers (and Python ints) are cast to the default float: float64 under
      `jax.enable_x64`, float32 otherwise;
    - booleans, complex numbers, half precision (float16, bfloat16) and non-numeric input
      raise `TypeError` naming `name`.

    Every public function of memdyn, curse and decaynet that takes arrays applies this rule at
    its entry (model parameters too: their floating-point leaves must be float32 or float64).
    With `host=True` the result is a float64 NumPy array instead, for the eager NumPy analyses
    (plateau detection, fits), which run in float64 whatever JAX's precision. Values are not
    checked here (see `check_finite`)."""
    if isinstance(x, list | tuple):
        try:
            x = np.asarray(x)
        except ValueError as err:  # ragged nesting
            raise TypeError(f"{name} must be a real array; got a ragged sequence") from err
    try:
        dtype = jnp.result_type(x)
    except TypeError as err:
        raise TypeError(f"{name} must be a real array; got {type(x).__name__}") from err
    if dtype == jnp.bool_ or jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(f"{name} must be real floating point; got dtype {dtype}")
    if jnp.issubdtype(dtype, jnp.integer):
        dtype = jnp.result_type(float)
    elif not jnp.issubdtype(dtype, jnp.floating) or jnp.finfo(dtype).bits < 32:
        raise TypeError(f"{name} must be float32 or float64; got dtype {dtype}")
    if host:
        return np.asarray(x, dtype=np.float64)
    return jnp.asarray(x, dtype=dtype)
