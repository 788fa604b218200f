"""The recurrent core of the gated cells: one batched scan with a hand-written backward pass.

`recurrence` runs `carry_t, extras_t = step(params, t, inputs_t, W_R q_{t-1}, carry_{t-1})` over
time for a batch, where `q` is the carry's first leaf. Everything a step does besides the
recurrent matrix product (gates, forget polar, normalisations) is `step`, a pure function of one
example, which the core maps over the batch with `vmap` under a name (so that recurrent batch
normalisation takes its moments over the batch in both passes); the product `W_R q_{t-1}` is the
core's, one `(batch, hidden) × (hidden, 4·hidden)` product per step.

How the core is differentiated is a strategy object, as Diffrax's adjoints are.
`FusedBackward()` is a custom VJP (as cuDNN's LSTM has one):

- forward: per step, the product, then the step under `jax.vjp`, which keeps exactly that step's
  residuals (gate activations, `tanh(s_t)`, ...): what the backward needs, decided by autodiff
  of the elementwise step alone, never the product's inputs a second time;
- backward: the reverse scan carries the recurrent chain (`∂q`, `∂s`, `∂p` for DecayNet), `∂W_R`
  and the step's own parameters' cotangents; per step it applies the stored pullback, one
  product `∂q_{t-1} += W_Rᵀ ∂r_t` and one `∂W_R += ∂r_t q_{t-1}ᵀ`.

Measured on the 2-core CPU this was designed on (`benchmarks/lstm.py`): forming `∂W_R` after the
scan as one product over all steps, as cuDNN does, was twice as slow overall (106 and 118 ms
against 53 and 51 ms at 196 steps, batch 64, hidden 64), because it stores `∂r` for every step,
`(time, batch, 4·hidden)`, and transposes it for the product: on that CPU the memory traffic
cost more than the per-step products it saves. Hoisting `W_x x_t` out of the loop lost for the
same reason (`decaynet._cells`). Measurements, not designs, decide such choices.

`AutodiffBackward()` is the plain scan (its gradient is `jax.grad`'s): the reference the tests
compare the fused pass with, and the path for forward mode (`jax.jvp`, `jax.jacfwd`) through the
scan itself, which a custom VJP does not support. Reverse-over-reverse and forward-over-reverse
(Hessian-vector products, `jax.hessian`) work through either.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Hashable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from memdyn.internal import batch_shards, check_positive, check_strategy

# `step(params, time, inputs_t, recurrent_t, carry) -> (carry_t, extras_t)` for one example;
# the carry's first leaf is the hidden state `q`.
Step = Callable[[PyTree, Array, PyTree, Float[Array, " gates"], PyTree], tuple[PyTree, PyTree]]


def _batched(step, extras_axes, axis_name):
    """`step` over the batch (the carry's and the inputs' leading axis), with its named axis."""
    return jax.vmap(
        step, in_axes=(None, None, 0, 0, 0), out_axes=(0, extras_axes), axis_name=axis_name
    )


def _hidden(carry: PyTree) -> Array:
    return jax.tree.leaves(carry)[0]


def _plain(step, options, params, weight, inputs, initial):
    extras_axes, axis_name, unroll = options
    batched = _batched(step, extras_axes, axis_name)

    def body(carry, slices):
        time, inputs_t = slices
        new, extras = batched(params, time, inputs_t, _hidden(carry) @ weight.T, carry)
        return new, (new, extras)

    times = jnp.arange(jax.tree.leaves(inputs)[0].shape[0])
    final, (carries, extras) = jax.lax.scan(body, initial, (times, inputs), unroll=unroll)
    return final, carries, extras


def _with_first_leaf(tree: PyTree, first: Array) -> PyTree:
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, [first, *leaves[1:]])


@eqx.filter_custom_vjp
def _fused(differentiable, step, params_static, options):
    weight, params_dynamic, inputs, initial = differentiable
    params = eqx.combine(params_dynamic, params_static)
    return _plain(step, options, params, weight, inputs, initial)


def _pullback(step, options, params_static):
    """`step` over the batch as a function of what the backward pass differentiates."""
    extras_axes, axis_name, _ = options
    batched = _batched(step, extras_axes, axis_name)

    def local(params_dynamic, inputs_t, recurrent_t, carry, time):
        params = eqx.combine(params_dynamic, params_static)
        return batched(params, time, inputs_t, recurrent_t, carry)

    return local


@_fused.def_fwd
def _fused_fwd(perturbed, differentiable, step, params_static, options):
    """The forward scan, keeping each step's VJP residuals (what the backward needs, decided by
    autodiff of the elementwise step alone): gate activations, `tanh(s_t)`, and so on."""
    del perturbed
    weight, params_dynamic, inputs, initial = differentiable
    local = _pullback(step, options, params_static)

    def body(carry, slices):
        time, inputs_t = slices
        recurrent_t = _hidden(carry) @ weight.T
        (new, extras), pullback = eqx.filter_vjp(
            lambda p, x, r, c: local(p, x, r, c, time), params_dynamic, inputs_t, recurrent_t, carry
        )
        return new, (new, extras, pullback)

    times = jnp.arange(jax.tree.leaves(inputs)[0].shape[0])
    final, (carries, extras, pullbacks) = jax.lax.scan(
        body, initial, (times, inputs), unroll=options[2]
    )
    return (final, carries, extras), (carries, extras, pullbacks)


def _zeros_for_none(cotangent: PyTree, like: PyTree) -> PyTree:
    return jax.tree.map(
        lambda c, x: jnp.zeros_like(x) if c is None and x is not None else c,
        cotangent,
        like,
        is_leaf=_is_none,
    )


def _is_none(x: Any) -> bool:
    return x is None


@_fused.def_bwd
def _fused_bwd(residuals, grad_obj, perturbed, differentiable, step, params_static, options):
    """The reverse scan carries `∂carry`, `∂W_R` and the step parameters' cotangents; per step it
    applies the stored pullback, `∂q_{t-1} += W_Rᵀ ∂r_t` and `∂W_R += ∂r_t q_{t-1}ᵀ`."""
    del perturbed, step, params_static
    carries, extras, pullbacks = residuals
    weight, params_dynamic, inputs, initial = differentiable
    d_final, d_carries, d_extras = grad_obj
    d_final = _zeros_for_none(d_final, initial)
    d_carries = _zeros_for_none(d_carries, carries)
    d_extras = _zeros_for_none(d_extras, extras)

    def body(carry, slices):
        d_next, d_params, d_weight = carry
        pullback_t, hidden_t, d_carry_t, d_extras_t = slices
        d_new = jax.tree.map(jnp.add, d_next, d_carry_t)
        d_params_t, d_inputs_t, d_recurrent_t, d_previous = pullback_t((d_new, d_extras_t))
        # The chain through the recurrent product: ∂q_{t-1} += W_Rᵀ ∂r_t.
        d_hidden = _hidden(d_previous) + d_recurrent_t @ weight
        d_weight = d_weight + d_recurrent_t.T @ hidden_t
        d_params = jax.tree.map(_add, d_params, d_params_t, is_leaf=_is_none)
        return (_with_first_leaf(d_previous, d_hidden), d_params, d_weight), d_inputs_t

    d_params = jax.tree.map(jnp.zeros_like, eqx.filter(params_dynamic, eqx.is_inexact_array))
    hidden = jnp.concatenate([_hidden(initial)[None], _hidden(carries)[:-1]])  # q_{t-1}
    (d_initial, d_params, d_weight), d_inputs = jax.lax.scan(
        body,
        (d_final, d_params, jnp.zeros_like(weight)),
        (pullbacks, hidden, d_carries, d_extras),
        reverse=True,
        unroll=options[2],
    )
    return d_weight, d_params, d_inputs, d_initial


def _add(total, term):
    return total if term is None else total + term


BACKWARDS = "FusedBackward() or AutodiffBackward()"  # the `check_strategy` examples


class AbstractBackward(eqx.Module):
    """How `recurrence` is differentiated; pass an instance as `backward`."""

    @abc.abstractmethod
    def scan(
        self, step: Step, params: PyTree, weight: Array, inputs: PyTree, initial: PyTree, options
    ) -> tuple[PyTree, PyTree, PyTree]:
        """`recurrence`'s result, `options = (extras_axes, axis_name, unroll)`."""


class FusedBackward(AbstractBackward):
    """The hand-written backward pass of the module docstring (a custom VJP): the default. In a
    data-parallel step it runs one scan per device's slice of the batch, so that its weight
    gradients are reduced across devices once, after the reverse scan (`_per_shard`)."""

    def scan(self, step, params, weight, inputs, initial, options):
        params_dynamic, params_static = eqx.partition(params, eqx.is_array)

        def fused(inputs, initial):
            return _fused((weight, params_dynamic, inputs, initial), step, params_static, options)

        return _per_shard(fused, inputs, initial, options)


class AutodiffBackward(AbstractBackward):
    """The plain `lax.scan`, differentiated by JAX: the reference, and the path for forward mode
    (`jax.jvp`, `jax.jacfwd`) through the scan itself."""

    def scan(self, step, params, weight, inputs, initial, options):
        return _plain(step, options, params, weight, inputs, initial)


def recurrence(
    step: Step,
    params: PyTree,
    weight: Float[Array, "gates hidden"],
    inputs: PyTree,
    initial: PyTree,
    *,
    extras_axes: PyTree = 0,
    axis_name: Hashable | None = None,
    backward: AbstractBackward = FusedBackward(),  # noqa: B008 (immutable, as Diffrax does)
    unroll: int = 1,
) -> tuple[PyTree, PyTree, PyTree]:
    """Scan `step` over time for a batch, from `initial`.

    `inputs` is a pytree of arrays shaped `(time, batch, ...)`, `initial` a carry of arrays
    `(batch, ...)` whose first leaf is the hidden state `q` (`(batch, hidden)`). `step` is
    written for one example, `step(params, time, inputs_t, recurrent_t, carry) -> (carry, extras)`
    with `recurrent_t = W_R q_{t-1}`; the core maps it over the batch with `vmap`, under the name
    `axis_name` (for collectives such as batch statistics) and with `extras_axes` as the extras'
    `out_axes` (`None` for what is the same for the whole batch, such as batch moments).
    Returns `(final_carry, carries, extras)`, the last two stacked over time (`(time, batch, ...)`).

    `backward` is `FusedBackward()` (the hand-written backward pass described in the module
    docstring) or `AutodiffBackward()` (`lax.scan`'s own); both compute the same values and, up to
    rounding, the same gradients. `unroll` is `lax.scan`'s, used by the forward and the backward
    scan.
    """
    check_strategy("backward", backward, AbstractBackward, BACKWARDS)
    check_positive("unroll", unroll)
    return backward.scan(step, params, weight, inputs, initial, (extras_axes, axis_name, unroll))


def _per_shard(scan, inputs: PyTree, initial: PyTree, options) -> tuple[PyTree, PyTree, PyTree]:
    """`scan(inputs, initial)`, run once per device's slice of the batch when the step is traced
    for several devices (`memdyn.internal.batch_shards`, a data-parallel `memdyn.train_chunk`).

    Differentiated through the scan, `∂W_R` and the step parameters' gradients are sums over time
    of products contracted over the batch. With the batch split over devices and the parameters
    replicated, the partitioner reduces each step's product across devices inside the reverse
    scan, a collective per time step (XLA:CPU has no pass that moves them out of loops). Under
    `vmap` over the slices, with the parameters shared, the custom VJP's batching rule sums the
    slices' cotangents once, after the reverse scan. Not where the steps share moments over the
    batch (`axis_name`, recurrent batch normalisation): those need a collective at every step
    anyway, over the whole batch.
    """
    extras_axes, axis_name, _ = options
    shards, batch = batch_shards(), _hidden(initial).shape[0]
    if axis_name is not None or shards == 1 or batch % shards:
        return scan(inputs, initial)
    split = lambda axis: lambda x: x.reshape(*x.shape[:axis], shards, -1, *x.shape[axis + 1 :])
    merge = lambda axis: lambda x: x.reshape(*x.shape[:axis], -1, *x.shape[axis + 2 :])
    final, carries, extras = jax.vmap(
        scan,
        in_axes=(1, 0),  # inputs and carries are (time, batch, ...), initial (batch, ...)
        out_axes=(0, 1, jax.tree.map(lambda axis: axis + 1, extras_axes)),
    )(jax.tree.map(split(1), inputs), jax.tree.map(split(0), initial))
    extras = jax.tree.map(
        lambda axis, x: x if axis is None else jax.tree.map(merge(axis + 1), x),
        extras_axes,
        extras,
        is_leaf=_is_none,
    )
    return jax.tree.map(merge(0), final), jax.tree.map(merge(1), carries), extras
