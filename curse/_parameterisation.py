"""Stable parameterisations of a diagonal recurrent matrix W = −diag(w), w > 0 (Li et al., eq. 8).

Training acts on an unconstrained vector v; the decay rates are w = f(v) > 0, so every model in the
hypothesis space is stable (eq. 8) whatever the optimiser does:

- `"direct"`: w = v, positivity only checked (a step can still leave the stable set);
- `"exp"`: w = e^v;
- `"softplus"`: w = log(1 + e^v);
- `"inverse_square"`: w = 1/(v² + c), c > 0 (rates bounded by 1/c; small rates at large |v|).

`to_rates` is f, `from_rates` its inverse (for `"inverse_square"` the branch v ≥ 0, defined for
0 < w < 1/c). Both are pure `jnp` functions, safe under `jit`, `vmap` and `grad`.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from memdyn import check_finite
from memdyn.internal import check_in, check_positive

NAMES = ("direct", "exp", "softplus", "inverse_square")
INVERSE_SQUARE_C = 0.01


def to_rates(
    name: str, v: Float[ArrayLike, "*shape"], *, c: float = INVERSE_SQUARE_C
) -> Float[Array, "*shape"]:
    """Decay rates w = f(v) > 0 of the parameterisation `name` (see the module docstring)."""
    check_in("parameterisation", name, NAMES)
    check_finite("v", v)
    v = jnp.asarray(v, dtype=jnp.result_type(jnp.asarray(v), float))
    if name == "direct":
        check_positive("v (direct parameterisation: rates w = v)", v)
        return v
    if name == "exp":
        return jnp.exp(v)
    if name == "softplus":
        return jnp.logaddexp(v, 0.0)
    check_positive("c", c)
    return 1.0 / (v**2 + c)


def from_rates(
    name: str, w: Float[ArrayLike, "*shape"], *, c: float = INVERSE_SQUARE_C
) -> Float[Array, "*shape"]:
    """The unconstrained v with `to_rates(name, v) == w`, for rates w > 0."""
    check_in("parameterisation", name, NAMES)
    check_positive("w (decay rates)", w)
    w = jnp.asarray(w, dtype=jnp.result_type(jnp.asarray(w), float))
    if name == "direct":
        return w
    if name == "exp":
        return jnp.log(w)
    if name == "softplus":
        # log(e^w − 1) = w + log(1 − e^{−w}), stable for large and small w.
        return w + jnp.log(-jnp.expm1(-w))
    check_positive("c", c)
    check_positive(f"1/w − c (inverse_square needs w < 1/c = {1 / c:g})", 1.0 / w - c)
    return jnp.sqrt(1.0 / w - c)
