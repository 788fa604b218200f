"""Cobweb trajectories of scalar difference equations `x_t = T_t(x_{t-1})` (§3, App. A).

A cobweb starts on the diagonal at `(x_0, x_0)`, maps vertically to `(x_0, T_1(x_0))` (the
computation) and horizontally back to the diagonal at `(x_1, x_1)` (the update `x_1 = T_1(x_0)`),
and so on: a zig-zag of `2n + 1` vertices for `n` steps. The maps may change with `t` (Fig. 2's
`T_t(x) = f_t x + i_t tanh(x)`); plotting lives in `decaynet.plots`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from memdyn import check_finite
from memdyn.internal import check_positive


class Cobweb(NamedTuple):
    """The iterates `x_0..x_n` and the zig-zag path's vertices `(x, y)`, `2n + 1` of them."""

    iterates: Float[Array, " steps_plus_one"]
    path: Float[Array, "vertices 2"]


def cobweb(
    T: Callable[..., Any],
    x0: float,
    num_steps: int | None = None,
    *,
    params: Any = None,
) -> Cobweb:
    """Iterate `x_t = T(x_{t-1})` (or `T(x_{t-1}, params_t)`) and build the cobweb path.

    Args:
        T: a scalar map, `T(x)`, or `T(x, params_t)` when `params` is given.
        x0: the initial value `x_0`.
        num_steps: the number of steps `n` for a fixed map; omitted when `params` is given.
        params: a pytree whose leaves have a leading time axis of length `n`: the time-varying
            parameters of `T_t`, one slice per step.
    """
    check_finite("x0", x0)
    if params is None:
        if num_steps is None:
            raise ValueError("num_steps is required when params is not given")
        check_positive("num_steps", num_steps)

        def step(x, _):
            y = T(x)
            return y, y

        xs = None
        length = num_steps
    else:
        leaves = jax.tree_util.tree_leaves(params)
        if not leaves or any(jnp.ndim(leaf) == 0 for leaf in leaves):
            raise ValueError("params must have a leading time axis on every leaf")
        length = jnp.shape(leaves[0])[0]
        if num_steps is not None and num_steps != length:
            raise ValueError(f"num_steps={num_steps} disagrees with params' time axis ({length})")

        def step(x, p):
            y = T(x, p)
            return y, y

        xs = params
    x0 = jnp.asarray(x0, dtype=float)
    _, later = jax.lax.scan(step, x0, xs, length=length)
    iterates = jnp.concatenate([x0[None], later])
    before, after = iterates[:-1], iterates[1:]
    # Vertices: (x_{t-1}, x_{t-1}) -> (x_{t-1}, x_t) -> (x_t, x_t), sharing the diagonal points.
    vertical = jnp.stack([before, after], axis=1)
    diagonal = jnp.stack([after, after], axis=1)
    zigzag = jnp.stack([vertical, diagonal], axis=1).reshape(-1, 2)
    path = jnp.concatenate([jnp.stack([x0, x0])[None], zigzag])
    return Cobweb(iterates, path)


def cell_state_map(x: Float[Array, ""], gates: tuple[Array, Array]) -> Float[Array, ""]:
    """Fig. 2's cell-state update with constant gates: `T_t(x) = f_t x + i_t tanh(x)`."""
    forget, input_gate = gates
    return forget * x + input_gate * jnp.tanh(x)
