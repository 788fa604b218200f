"""Discrete training with Optax (gradient descent, heavy-ball momentum, Adam), one `lax.scan`.

Optimisers are built with `optax.inject_hyperparams`, so the learning rate lives in the optimiser
state as data: a learning-rate sweep is one `vmap` over `train` that compiles once. Sweeps over ω
(a batch of targets, which are pytrees) or over seeds are `vmap`s too; see the `sweep_*` helpers.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.tree_util import Partial
from jaxtyping import ArrayLike, Float, PRNGKeyArray, PyTree

from memdyn._flow import Trajectory
from memdyn._validate import check_finite, check_in, check_positive

OPTIMIZERS = {"gd": optax.sgd, "momentum": optax.sgd, "adam": optax.adam}


def make_optimizer(name: str, learning_rate: float, **kwargs) -> optax.GradientTransformation:
    """`gd` (plain GD), `momentum` (heavy ball, default β = 0.9) or `adam`, with the learning rate
    injected as a hyperparameter (`optax.inject_hyperparams`). Extra keywords go to Optax."""
    check_in("optimizer", name, sorted(OPTIMIZERS))
    check_positive("learning_rate", learning_rate)
    if name == "momentum":
        kwargs.setdefault("momentum", 0.9)
    return optax.inject_hyperparams(OPTIMIZERS[name])(learning_rate=learning_rate, **kwargs)


def with_learning_rate(opt_state: PyTree, learning_rate: Float[ArrayLike, ""]) -> PyTree:
    """The state of an `inject_hyperparams` optimiser with its learning rate replaced."""
    hyperparams = dict(opt_state.hyperparams)
    old = hyperparams["learning_rate"]
    hyperparams["learning_rate"] = jnp.asarray(learning_rate, dtype=jnp.result_type(old))
    return opt_state._replace(hyperparams=hyperparams)


def _loss(loss_fn, theta, key, step):
    if key is None:
        return loss_fn(theta)
    return loss_fn(theta, jax.random.fold_in(key, step))


@eqx.filter_jit
def train_core(
    loss_fn: Callable,
    theta0: PyTree,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    *,
    save_every: int,
    key: PRNGKeyArray | None = None,
    opt_state: PyTree | None = None,
) -> Trajectory:
    """`train` without input checks, for use under `vmap`."""
    opt_state = optimizer.init(theta0) if opt_state is None else opt_state

    def step(carry, index):
        theta, state = carry
        loss, grad = jax.value_and_grad(lambda p: _loss(loss_fn, p, key, index))(theta)
        updates, state = optimizer.update(grad, state, theta)
        return (optax.apply_updates(theta, updates), state), loss

    def chunk(carry, start):
        theta = carry[0]
        carry, losses = jax.lax.scan(step, carry, start + jnp.arange(save_every))
        return carry, (theta, losses[0])

    starts = save_every * jnp.arange(num_steps // save_every)
    (theta, _), (thetas, losses) = jax.lax.scan(chunk, (theta0, opt_state), starts)
    final_loss = _loss(loss_fn, theta, key, num_steps)
    thetas = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]]), thetas, theta)
    losses = jnp.concatenate([losses, final_loss[None]])
    times = jnp.arange(0, num_steps + 1, save_every)
    return Trajectory(times=times, thetas=thetas, losses=losses)


def train(
    loss_fn: Callable,
    theta0: PyTree,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    *,
    save_every: int,
    key: PRNGKeyArray | None = None,
    opt_state: PyTree | None = None,
) -> Trajectory:
    """Run `num_steps` optimiser steps from `theta0` inside one compiled `lax.scan`.

    `loss_fn(theta)`, or `loss_fn(theta, key)` when `key` is given (each step then gets
    `fold_in(key, step)`, e.g. fresh sampled input paths). Pass `loss_fn` as a pytree callable
    (`jax.tree_util.Partial`, an `eqx.Module`) so that the arrays it closes over are traced.
    Returns the `Trajectory` at steps 0, save_every, ..., num_steps; `losses` are the losses at
    the saved parameters (for a stochastic loss, on that step's sample).
    """
    check_finite("theta0", theta0)
    if not isinstance(num_steps, int) or num_steps <= 0:
        raise ValueError(f"num_steps must be a positive int; got {num_steps!r}")
    if not isinstance(save_every, int) or save_every <= 0 or num_steps % save_every:
        raise ValueError(f"save_every must be a positive divisor of num_steps; got {save_every!r}")
    return train_core(
        loss_fn, theta0, optimizer, num_steps, save_every=save_every, key=key, opt_state=opt_state
    )


def sweep_learning_rates(
    loss_fn: Callable,
    theta0: PyTree,
    optimizer: optax.GradientTransformation,
    learning_rates: Float[ArrayLike, " k"],
    num_steps: int,
    *,
    save_every: int,
    key: PRNGKeyArray | None = None,
) -> Trajectory:
    """`train` for each learning rate, as one `vmap` (the optimiser must come from
    `make_optimizer`). The result has a leading `k` axis on every field."""
    learning_rates = jnp.asarray(learning_rates)
    check_positive("learning_rates", learning_rates)
    base = optimizer.init(theta0)

    def one(rate):
        state = with_learning_rate(base, rate)
        return train_core(
            loss_fn, theta0, optimizer, num_steps, save_every=save_every, key=key, opt_state=state
        )

    return jax.vmap(one)(learning_rates)


def sweep_targets(
    objective: Callable,
    theta0: PyTree,
    optimizer: optax.GradientTransformation,
    targets: PyTree,
    num_steps: int,
    *,
    save_every: int,
) -> Trajectory:
    """`train` on `objective(theta, target=...)` for a batch of targets (e.g.
    `jax.vmap(memory_target)(omegas)`), as one `vmap`."""

    def one(target):
        loss = Partial(objective, target=target)
        return train_core(loss, theta0, optimizer, num_steps, save_every=save_every)

    return jax.vmap(one)(targets)


def sweep_seeds(
    loss_fn: Callable,
    init_fn: Callable[[PRNGKeyArray], PyTree],
    optimizer: optax.GradientTransformation,
    keys: PRNGKeyArray,
    num_steps: int,
    *,
    save_every: int,
) -> Trajectory:
    """`train` from `init_fn(key)` with a stochastic `loss_fn(theta, key)` for each key in
    `keys` (shape `(k, ...)`), as one `vmap`."""

    def one(key):
        init_key, loss_key = jax.random.split(key)
        return train_core(
            loss_fn, init_fn(init_key), optimizer, num_steps, save_every=save_every, key=loss_key
        )

    return jax.vmap(one)(keys)
