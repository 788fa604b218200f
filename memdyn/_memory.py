"""What a sequence model remembers: memory functions of any model `apply(params, xs) -> ys`,
which maps inputs `xs` of shape `(time, input)` to outputs `ys` of shape `(time, output)`, with
`params` any pytree or `eqx.Module` (Li et al., *On the Curse of Memory*, eq. 7 and §4).

For a linear, time-invariant model that starts at rest, `y_t = Σ_{k ≤ t} ρ(k) x_{t−k}` (a matrix
`ρ(k)` of shape `(output, input)` per lag k), and all three functions below return ρ:

- `heaviside_memory`: the jumps `‖y_{t+1} − y_t‖₂` of the response to a constant input switched
  on at t = 0, the memory function of radarFudan/Curse-of-memory (`src/memoryfunction.py`); for
  a linear model entry t is `‖ρ(t + 1) v‖₂`;
- `impulse_response`: `∂y_t/∂x_0` at rest (zero input throughout), the linear part of the
  response to an impulse at t = 0; for a linear model entry t is `ρ(t)`;
- `jacobian_memory`: `∂y_{T−1}/∂x_{T−1−k}` along data inputs, averaged over a batch: the exact
  linearised memory kernel where the model is used; for a linear model entry k is `ρ(k)`.

For a nonlinear model they differ, and each depends on its input (a step's height, the data's
scale): record it beside the result. The memory's horizon and decay type are `memory_horizon`
and `fit_decay` (`memdyn._decay`).

Each function compiles with `eqx.filter_jit`, with `apply` as a static argument: pass the same
function object (not a new `lambda` per call) to reuse the compilation. All are `jax.vmap`-able
over a stack of models' `params`. Checks, at entry: `params`' floating-point leaves must be
float32 or float64 (`TypeError`) and finite (`ValueError` now, or an `eqx.error_if` when traced);
`apply` must return `(time, output)` (`ValueError` at trace time); a non-finite result is an
error naming `apply`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from memdyn._parameters import check_model, guard_parameters
from memdyn._validate import as_float_array, check_count, check_finite, check_shape

Apply = Callable[[PyTree, Float[Array, "time input"]], Float[Array, "time output"]]


def _outputs(apply: Apply, params: PyTree, xs: Array) -> Array:
    """`apply(params, xs)` after checking its shape: `(time, output)` for `xs` `(time, input)`."""
    ys = apply(params, xs)
    shape = getattr(ys, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != xs.shape[0]:
        raise ValueError(
            f"apply must return outputs of shape (time, output) = ({xs.shape[0]}, *) for inputs "
            f"of shape {xs.shape}; got {shape} (a scalar output is ys[:, None])"
        )
    return ys


def _guarded(params: PyTree, result: Any, what: str) -> Any:
    result = guard_parameters(params, result, "params")
    return check_finite(f"{what} (finite params: check apply)", result)


@eqx.filter_jit
def _heaviside(apply, params, step_input, length, subtract_baseline):
    xs = jnp.broadcast_to(step_input, (length, step_input.shape[0]))
    ys = _outputs(apply, params, xs)
    if subtract_baseline:
        ys = ys - _outputs(apply, params, jnp.zeros_like(xs))
    jumps = jnp.linalg.norm(ys[1:] - ys[:-1], axis=-1)
    return _guarded(params, jumps, "Heaviside memory function")


def heaviside_memory(
    apply: Apply,
    params: PyTree,
    step_input: Float[Array, " input"],
    length: int,
    *,
    subtract_baseline: bool = False,
) -> Float[Array, " length_minus_1"]:
    """The Heaviside memory function of radarFudan/Curse-of-memory (`src/memoryfunction.py`,
    lines 5–29, after Li et al.'s memory function): feed the constant input `x_t = v`
    (`step_input`) for t = 0, …, `length` − 1, record the outputs `y_t`, and return

        M_t = ‖y_{t+1} − y_t‖₂   for t = 0, …, length − 2

    (the Euclidean norm over the output channels of the absolute jumps; for one output channel
    `|y_{t+1} − y_t|`). `length` − 1 values: the first jump, from before the input to `y_0`, is
    left out, as in the reference. For a linear model at rest `y_t = Σ_{k ≤ t} ρ(k) v`, so
    `M_t = ‖ρ(t + 1) v‖₂`: entry t is lag t + 1.

    The reference draws v from `torch.randn` (seed 233) and uses `length` = 1024; pass the same v
    to compare. For a nonlinear model M is not proportional to v: record v. With
    `subtract_baseline`, the outputs for a zero input are subtracted first (`y_t − y_t^0`), so
    that a biased model relaxing from its initial state does not count as memory; the reference
    does not subtract them.
    """
    check_model(params, "params")
    step_input = check_finite("step_input", as_float_array("step_input", step_input))
    check_shape("step_input", step_input, (None,))
    check_count("length", length, minimum=2)
    return _heaviside(apply, params, step_input, length, bool(subtract_baseline))


@eqx.filter_jit
def _impulse(apply, params, input_size, length, dtype):
    def response(first):
        xs = jnp.zeros((length, input_size), dtype).at[0].set(first)
        return _outputs(apply, params, xs)

    jacobian = jax.jacfwd(response)(jnp.zeros(input_size, dtype))
    return _guarded(params, jacobian, "impulse response")


def impulse_response(
    apply: Apply, params: PyTree, input_size: int, length: int, *, dtype: Any = None
) -> Float[Array, "length output input"]:
    """The linear impulse response `R_t = ∂y_t/∂x_0` (t = 0, …, `length` − 1) at rest: the
    Jacobian of the outputs with respect to the first input, all inputs zero, the model from its
    own initial state. Entry `[t, i, j]` is the response of output i at step t to a unit impulse
    in input j at step 0, to first order: `lim_{ε→0} (y_t(ε e_j δ_{t0}) − y_t(0)) / ε`.

    For a linear time-invariant model at rest `R_t = ρ(t)` exactly (lag t). For a nonlinear model
    it is the linear part at rest only: an impulse of finite height also excites the nonlinear
    terms (compare `heaviside_memory` at two heights), and a model whose state moves under zero
    input (a bias) is not time-invariant, so `R_t` can differ from `jacobian_memory`'s
    `∂y_{T−1}/∂x_{T−1−t}`. One forward-mode pass per input channel (`jax.jacfwd`). `dtype` is
    the inputs' float type (default JAX's default float)."""
    check_model(params, "params")
    check_count("input_size", input_size)
    check_count("length", length)
    dtype = jnp.result_type(float) if dtype is None else jnp.dtype(dtype)
    as_float_array("dtype", jnp.zeros((), dtype))
    return _impulse(apply, params, input_size, length, dtype)


class JacobianMemory(eqx.Module):
    """The linearised memory kernel of a model along data (`jacobian_memory`).

    Attributes:
        kernel: `(lag, output, input)`, the batch mean of `∂y_{T−1}/∂x_{T−1−k}` at lag k
            (entry 0 is the current input's direct effect); for a linear model ρ(k).
        magnitude: `(lag,)`, the batch mean of the Frobenius norm `‖∂y_{T−1}/∂x_{T−1−k}‖_F`.
            Unlike `kernel`'s norm it does not cancel where the sequences' Jacobians differ in
            sign (a nonlinear model along varied data): use it for horizons and decay fits.
    """

    kernel: Float[Array, "lag output input"]
    magnitude: Float[Array, " lag"]


@eqx.filter_jit
def _jacobian_memory(apply, params, xs):
    def one(x):
        final = jax.jacrev(lambda inputs: _outputs(apply, params, inputs)[-1])(x)
        return jnp.flip(jnp.moveaxis(final, 1, 0), axis=0)  # (time, output, input) by lag

    jacobians = jax.vmap(one)(xs)
    result = JacobianMemory(
        kernel=jnp.mean(jacobians, axis=0),
        magnitude=jnp.mean(jnp.sqrt(jnp.sum(jacobians**2, axis=(2, 3))), axis=0),
    )
    return _guarded(params, result, "Jacobian memory kernel")


def jacobian_memory(
    apply: Apply, params: PyTree, xs: Float[Array, "batch time input"]
) -> JacobianMemory:
    """The exact linearised memory kernel of a model along data inputs,

        ρ̂(k) = E_x[∂y_{T−1}/∂x_{T−1−k}],   k = 0, …, T − 1,

    the sensitivity of the last output to the input k steps earlier, averaged over the batch of
    sequences `xs` (`(batch, time, input)`, T = time). For a linear time-invariant model it is
    the model's kernel ρ(k) for any data (Li et al., eq. 7); for a nonlinear one it depends on
    the inputs' distribution and scale: record them. One forward pass and one reverse pass
    (VJP) per output channel give every lag at once (`jax.jacrev` of `y_{T−1}` with respect to
    the whole sequence); the batch is `jax.vmap`ped. Memory grows with batch × time × output ×
    input."""
    check_model(params, "params")
    xs = check_finite("xs", as_float_array("xs", xs))
    check_shape("xs", xs, (None, None, None))
    if xs.shape[0] < 1 or xs.shape[1] < 1:
        raise ValueError(f"xs must hold at least one sequence of one step; got shape {xs.shape}")
    return _jacobian_memory(apply, params, xs)
