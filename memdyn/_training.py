"""Optax training of any model, one compiled `lax.scan`; sweeps over learning rates, seeds and
targets are `vmap`s of it and compile once.

Only the model's floating-point arrays are trained (`memdyn.partition_parameters`); its other
leaves (activation functions, static fields, integer arrays) are passed through. Optimisers come
from one registry (`OPTIMIZERS`) and are built with `optax.inject_hyperparams`, so the learning rate
lives in the optimiser state as data: `train(..., learning_rate=lr)` under `jax.vmap` sweeps it
without recompiling. `memdyn.train_epochs` (minibatches, many seeds, checkpoints) shares
`optimizer_step` with `train`, and the chunks of both are `memdyn.scan_steps`. What a NaN or inf
loss or gradient does is one of the two policies of `memdyn._engine`: `train_epochs` applies
`memdyn.Stop` (it raises); `train`, which runs inside `vmap` sweeps, applies `memdyn.Freeze` in
the graph: it records the step in `Trajectory.stopped_at` and lets the other members go on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.tree_util import Partial
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, PyTree

from memdyn._engine import scan_steps
from memdyn._parameters import check_model, check_scalar_loss, partition_parameters
from memdyn._trajectory import Trajectory
from memdyn._tree import tree_all_finite
from memdyn._validate import check_finite, check_in, check_positive


def _rmsprop(learning_rate, decay=0.9, eps=1e-8, momentum=None):
    # PyTorch's convention: eps outside the square root, v from 0, momentum on the scaled step.
    return optax.rmsprop(learning_rate, decay=decay, eps=eps, eps_in_sqrt=False, momentum=momentum)


def _momentum(learning_rate, momentum=0.9, nesterov=False):
    return optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "gd": optax.sgd,
    "momentum": _momentum,
    "adam": optax.adam,
    "rmsprop": _rmsprop,
}
"""Optimiser name → Optax factory `f(learning_rate, **kwargs)`: `gd` (plain gradient descent),
`momentum` (heavy ball, β = 0.9 by default), `adam`, `rmsprop` (PyTorch's convention: eps outside
the square root; `decay` is PyTorch's `alpha`). Register a new one by adding an entry."""


def safe_global_norm(tree: PyTree) -> Float[Array, ""]:
    """‖g‖₂ over all leaves, computed as `m · sqrt(Σ (g/m)²)` with `m = max |g|`, so that it
    cannot overflow: in float32 the plain `sqrt(Σ g²)` is inf once an entry passes ~1.8e19."""
    leaves = [jnp.asarray(leaf) for leaf in jax.tree.leaves(tree)]
    largest = jnp.max(jnp.stack([jnp.max(jnp.abs(leaf), initial=0.0) for leaf in leaves]))
    scale = jnp.where(largest > 0, largest, 1.0)
    total = sum(jnp.sum(jnp.square(leaf / scale)) for leaf in leaves)
    return scale * jnp.sqrt(total)


def clip_by_safe_global_norm(max_norm: float) -> optax.GradientTransformation:
    """`optax.clip_by_global_norm` with the norm of `safe_global_norm`: equal where Optax's norm
    is finite, and still a clipped gradient (not all zeros) when Optax's norm overflows."""

    def update(updates, state, params=None):
        del params
        norm = safe_global_norm(updates)
        factor = jnp.where(norm < max_norm, 1.0, max_norm / jnp.where(norm > 0, norm, 1.0))
        return jax.tree.map(lambda g: (g * factor).astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    clip_norm: float = 0.0,
    clip_value: float = 0.0,
    inject: bool = True,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """The optimiser `name` of `OPTIMIZERS`.

    With `inject=True` (the default) its hyperparameters are injected
    (`optax.inject_hyperparams`): the learning rate is data, so `train(..., learning_rate=lr)`
    and `with_learning_rate` sweep it without recompiling. `inject=False` builds the plain
    transformation, whose learning rate is a compile-time constant: XLA then folds it, and float32
    results differ from the injected form in the last bits (after 100 Adam steps of a chaotic
    training run, enough to move test accuracies); use it to reproduce runs made that way.
    `clip_norm > 0` first clips the gradient's global norm (`clip_by_safe_global_norm`, which
    cannot overflow); `clip_value > 0` first clips every entry to `[-clip_value, clip_value]`
    (`optax.clip`). Extra keywords go to the factory."""
    check_in("optimizer", name, sorted(OPTIMIZERS))
    check_positive("learning_rate", learning_rate)
    check_positive("clip_norm", clip_norm, strict=False)
    check_positive("clip_value", clip_value, strict=False)
    factory = optax.inject_hyperparams(OPTIMIZERS[name]) if inject else OPTIMIZERS[name]
    optimizer = factory(learning_rate=learning_rate, **kwargs)
    clipping = [clip_by_safe_global_norm(clip_norm)] if clip_norm > 0 else []
    clipping += [optax.clip(clip_value)] if clip_value > 0 else []
    return optax.chain(*clipping, optimizer) if clipping else optimizer


def with_learning_rate(opt_state: PyTree, learning_rate: Float[ArrayLike, ""]) -> PyTree:
    """The state of a `make_optimizer` optimiser with its learning rate replaced."""
    if type(opt_state) is tuple:  # optax.chain: replace it in the injected member
        return tuple(with_learning_rate(s, learning_rate) for s in opt_state)
    if not hasattr(opt_state, "hyperparams"):
        return opt_state
    hyperparams = dict(opt_state.hyperparams)
    old = hyperparams["learning_rate"]
    hyperparams["learning_rate"] = jnp.asarray(learning_rate, dtype=jnp.result_type(old))
    return opt_state._replace(hyperparams=hyperparams)


def optimizer_step(
    loss_fn: Callable[..., Any],
    parameters: PyTree,
    static: PyTree,
    optimizer: optax.GradientTransformation,
    opt_state: PyTree,
    *args: Any,
    has_aux: bool = False,
) -> tuple[PyTree, PyTree, Any, Bool[Array, ""]]:
    """One step: `loss_fn(model, *args)` at `model = eqx.combine(parameters, static)`, its
    gradient with respect to `parameters`, the optimiser's update. Returns the new parameters,
    the new optimiser state, the loss at the old parameters (`(loss, aux)` with `has_aux`) and
    whether the loss and every gradient entry were finite."""
    value_and_grad = jax.value_and_grad(
        lambda p: loss_fn(eqx.combine(p, static), *args), has_aux=has_aux
    )
    loss, grad = value_and_grad(parameters)
    value = loss[0] if has_aux else loss
    finite = jnp.isfinite(value) & tree_all_finite(grad)
    updates, opt_state = optimizer.update(grad, opt_state, parameters)
    return optax.apply_updates(parameters, updates), opt_state, loss, finite


def _select(condition, new, old):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)


def _loss_args(key, step):
    return () if key is None else (jax.random.fold_in(key, step),)


@eqx.filter_jit
def train(
    loss_fn: Callable[..., Float[Array, ""]],
    model: PyTree,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    *,
    save_every: int,
    key: PRNGKeyArray | None = None,
    learning_rate: Float[ArrayLike, ""] | None = None,
    opt_state: PyTree | None = None,
) -> Trajectory:
    """Run `num_steps` optimiser steps from `model` inside one compiled `lax.scan`.

    Args:
        loss_fn: `loss_fn(model)`, or `loss_fn(model, key)` when `key` is given (step `t` gets
            `fold_in(key, t)`, e.g. fresh sampled input paths). Pass a pytree callable
            (`jax.tree_util.Partial`, an `eqx.Module`) so the arrays it closes over are traced.
        model: any `eqx.Module` or pytree; its floating-point arrays are trained.
        optimizer: an Optax transformation, typically `make_optimizer(...)`.
        num_steps: optimiser steps, a positive integer.
        save_every: steps between saves, a positive divisor of `num_steps`.
        learning_rate: overrides the injected learning rate of a `make_optimizer` optimiser
            (so `eqx.filter_vmap` over it sweeps learning rates in one compilation; `jax.vmap`
            does too when every leaf of the model is an array).
        opt_state: continue from this optimiser state instead of `optimizer.init`.

    Returns:
        The `Trajectory` at steps 0, save_every, ..., num_steps: `thetas` in the model's
        structure, `losses` at the saved models (for a stochastic loss, on that step's sample).

    Non-finite values follow the `memdyn.Freeze` policy, applied in the graph, so that one
    diverging member of a `vmap`ped sweep does not stop the others: at the first step t
    whose loss or gradient is NaN or inf, the update is dropped, the parameters go back to the
    last good ones (those of step t − 1, whose loss and gradient were finite; the start if
    t = 0) and stay there. The trajectory records t as `stopped_at` (-1 if the run never
    stopped), its `finished` is False, and `failures()` names the member and step. Saves after
    t hold the last good model and its loss; a save at t itself holds the model of step t (so
    does the last save when t = num_steps: the last model's gradient is checked as well).
    The steps themselves are not guarded: a chunk of `save_every` steps in which a member
    failed is replayed from a save up to its last good model, so runs that stay finite pay
    nothing for the check.
    """
    for name, value in (("num_steps", num_steps), ("save_every", save_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int; got {value!r}")
    if num_steps % save_every:
        raise ValueError(f"save_every ({save_every}) must divide num_steps ({num_steps})")
    check_scalar_loss(loss_fn, model, *_loss_args(key, 0))
    parameters, static = partition_parameters(check_finite("model parameters", check_model(model)))
    opt_state = optimizer.init(parameters) if opt_state is None else opt_state
    if learning_rate is not None:
        opt_state = with_learning_rate(opt_state, check_positive("learning_rate", learning_rate))

    def step(carry, index):
        parameters, state = carry
        parameters, state, loss, finite = optimizer_step(
            loss_fn, parameters, static, optimizer, state, *_loss_args(key, index)
        )
        return (parameters, state), (loss, finite)

    def replay(carry, start, count):
        # `count` steps again from step `start`: a while loop, which under `vmap` runs only as
        # often as the member that needs most, so a chunk in which nothing failed costs nothing.
        body = lambda i, carry: step(carry, start + i)[0]
        return jax.lax.fori_loop(0, count, body, carry)

    def chunk(carry, start):
        # Plain steps, no per-step selection: a member whose chunk held a non-finite step is
        # put back afterwards on its last good model, replayed from a chunk start.
        current, previous, stopped_at = carry
        end, losses, finite = scan_steps(step, current, start + jnp.arange(save_every))
        first = jnp.argmin(finite)  # the first non-finite step of the chunk, if any
        failed = (stopped_at < 0) & ~finite[first]
        # The last good model is that of step start + first - 1: replayed from this chunk's
        # start, or from the previous chunk's when the chunk's first step failed.
        back = (first == 0) & (start > 0)
        count = jnp.where(failed, jnp.where(back, save_every - 1, jnp.maximum(first - 1, 0)), 0)
        origin = _select(back, previous, current)
        last_good = replay(origin, jnp.where(back, start - save_every, start), count)
        kept = _select(failed, last_good, _select(stopped_at < 0, end, current))
        stopped_at = jnp.where(failed, start + first, stopped_at)
        return (kept, current, stopped_at), (current[0], losses[0])

    starts = save_every * jnp.arange(num_steps // save_every)
    never = jnp.asarray(-1, starts.dtype)
    carry = ((parameters, opt_state), (parameters, opt_state), never)
    ((last, state), _, stopped_at), (saved, losses) = jax.lax.scan(chunk, carry, starts)
    # The last model's gradient is checked too (its update is not used), so that a run whose
    # last step turns non-finite is not reported finished.
    *_, final_loss, finite = optimizer_step(
        loss_fn, last, static, optimizer, state, *_loss_args(key, num_steps)
    )
    stopped_at = jnp.where((stopped_at < 0) & ~finite, num_steps, stopped_at)
    saved = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]]), saved, last)
    losses = jnp.concatenate([losses, final_loss[None]])
    times = jnp.arange(0, num_steps + 1, save_every)
    thetas = eqx.combine(saved, static)
    return Trajectory(times=times, thetas=thetas, losses=losses, stopped_at=stopped_at)


def sweep_learning_rates(
    loss_fn: Callable,
    model: PyTree,
    optimizer: optax.GradientTransformation,
    learning_rates: Float[ArrayLike, " k"],
    num_steps: int,
    *,
    save_every: int,
    key: PRNGKeyArray | None = None,
) -> Trajectory:
    """`train` for each learning rate, as one `vmap` (one compilation). The optimiser must come
    from `make_optimizer`. Every field of the result gains a leading `k` axis."""
    learning_rates = check_positive("learning_rates", jnp.asarray(learning_rates))
    run = lambda rate: train(
        loss_fn, model, optimizer, num_steps, save_every=save_every, key=key, learning_rate=rate
    )
    return eqx.filter_vmap(run)(learning_rates)


def sweep_targets(
    objective: Callable,
    model: PyTree,
    optimizer: optax.GradientTransformation,
    targets: PyTree,
    num_steps: int,
    *,
    save_every: int,
) -> Trajectory:
    """`train` on `objective(model, target=...)` for a batch of targets (a pytree with a leading
    axis, e.g. `jax.vmap(curse.memory_target)(omegas)`), as one `vmap`."""

    def run(target):
        loss = Partial(objective, target=target)
        return train(loss, model, optimizer, num_steps, save_every=save_every)

    return eqx.filter_vmap(run)(targets)


def sweep_seeds(
    loss_fn: Callable,
    init_fn: Callable[[PRNGKeyArray], PyTree],
    optimizer: optax.GradientTransformation,
    keys: PRNGKeyArray,
    num_steps: int,
    *,
    save_every: int,
) -> Trajectory:
    """`train` from `init_fn(key)` with a stochastic `loss_fn(model, key)` for each key in
    `keys` (shape `(k, ...)`), as one `vmap`."""

    def run(key):
        init_key, loss_key = jax.random.split(key)
        model = init_fn(init_key)
        return train(loss_fn, model, optimizer, num_steps, save_every=save_every, key=loss_key)

    return eqx.filter_vmap(run)(keys)
