"""Training many seeds at once: one compiled, `vmap`ped step over parameters, keys and data order.

Every seed has its own initialisation key and data-order key; epoch `e`'s order of seed `s` is
`jax.random.permutation(fold_in(order_key_s, e), n)` cut into batches, so the step counter alone
fixes where a run is. A chunk of `chunk_steps` optimiser steps is one `lax.scan` inside one
`eqx.filter_jit`; chunks run in a Python loop with a progress bar, and a checkpoint (parameters,
optimiser state, BN state, order keys, step) is written atomically every `checkpoint_every` steps.
Chunk boundaries are always multiples of `chunk_steps` from the start of an epoch, so a resumed run
executes the same compiled computation on the same batches and ends bitwise identical.

Optimisers (Optax): `"adam"`; `"rmsprop"` in PyTorch's convention — `v = decay·v + (1-decay)·g²`
from `v = 0`, step `g / (sqrt(v) + eps)` with eps *outside* the root (`eps_in_sqrt=False`; Optax's
default puts it inside), heavy-ball momentum on the scaled step (PyTorch's `alpha` is `decay`);
`clip_norm > 0` prepends `optax.clip_by_global_norm`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from decaynet._data import epoch_order
from memdyn._checkpoint import load_checkpoint, save_checkpoint
from memdyn._progress import progress
from memdyn._validate import check_at_least, check_fields, check_finite, check_in

OPTIMIZERS = ("adam", "rmsprop")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule. `max_steps = 0` trains `epochs` full epochs (remainder dropped)."""

    optimizer: str = "adam"
    learning_rate: float = 0.01
    momentum: float = 0.9
    decay: float = 0.9
    eps: float = 1e-8
    clip_norm: float = 0.0
    batch_size: int = 100
    epochs: int = 1
    max_steps: int = 0
    chunk_steps: int = 100
    checkpoint_every: int = 0

    def __post_init__(self):
        check_fields(self)
        check_in("optimizer", self.optimizer, OPTIMIZERS)
        check_at_least(self, ("batch_size", "epochs", "chunk_steps"), 1)
        check_at_least(self, ("max_steps", "checkpoint_every", "clip_norm", "eps"), 0)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}")
        if not 0 <= self.momentum < 1 or not 0 <= self.decay < 1:
            raise ValueError(
                f"momentum and decay must be in [0, 1); got {self.momentum}, {self.decay}"
            )
        if self.checkpoint_every % self.chunk_steps:
            raise ValueError(
                f"checkpoint_every ({self.checkpoint_every}) must be a multiple of chunk_steps "
                f"({self.chunk_steps})"
            )


@functools.cache
def _optimizer(name, learning_rate, momentum, decay, eps, clip_norm):
    if name == "adam":
        opt = optax.adam(learning_rate, eps=eps)
    else:
        opt = optax.rmsprop(
            learning_rate, decay=decay, eps=eps, eps_in_sqrt=False, momentum=momentum or None
        )
    return optax.chain(optax.clip_by_global_norm(clip_norm), opt) if clip_norm > 0 else opt


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The Optax transformation of `config` (cached: the same config gives the same object)."""
    c = config
    return _optimizer(c.optimizer, c.learning_rate, c.momentum, c.decay, c.eps, c.clip_norm)


class RunState(eqx.Module):
    """Everything a run needs to continue: leaves stacked over seeds (leading axis)."""

    params: Any
    opt_state: Any
    model_state: Any
    order_keys: Array
    step: Array


def init_run(
    make_model: Callable[[PRNGKeyArray], tuple[eqx.Module, eqx.nn.State]],
    seeds: Int[np.ndarray, " seeds"] | list[int],
    config: TrainConfig,
) -> tuple[RunState, Any]:
    """Initialise every seed: `PRNGKey(seed)` splits into an init key and a data-order key.

    Returns the stacked run state and the static (non-array) part of the model.
    """
    seeds = np.asarray(seeds)
    if seeds.ndim != 1 or seeds.size == 0:
        raise ValueError(f"seeds must be a non-empty 1-d list of integers; got {seeds!r}")
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    init_keys, order_keys = jnp.swapaxes(jax.vmap(jax.random.split)(keys), 0, 1)
    models, states = eqx.filter_vmap(make_model)(init_keys)
    params, static = eqx.partition(models, eqx.is_inexact_array)
    opt_state = jax.vmap(make_optimizer(config).init)(params)
    run = RunState(params, opt_state, states, order_keys, jnp.zeros((), jnp.int32))
    return run, static


def combine(run: RunState, static: Any) -> eqx.Module:
    """The stacked models (leading seed axis on every array)."""
    return eqx.combine(run.params, static)


def _loss(params, static, model_state, xb, yb):
    model = eqx.combine(params, static)
    batched = jax.vmap(
        functools.partial(model, inference=False),
        in_axes=(0, None),
        out_axes=(0, None),
        axis_name="batch",
    )
    logits, model_state = batched(xb, model_state)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    return loss, model_state


@eqx.filter_jit
def _train_chunk(params, opt_state, model_state, static, opt, xs, ys, idx):
    """`idx`: (steps, seeds, batch) example indices. Returns updated states and losses."""

    def one(p, o, s, i):
        (loss, s), grads = jax.value_and_grad(_loss, has_aux=True)(p, static, s, xs[i], ys[i])
        updates, o = opt.update(grads, o, p)
        return optax.apply_updates(p, updates), o, s, loss

    def body(carry, idx_step):
        p, o, s, loss = jax.vmap(one)(*carry, idx_step)
        return (p, o, s), loss

    (params, opt_state, model_state), losses = jax.lax.scan(
        body, (params, opt_state, model_state), idx
    )
    return params, opt_state, model_state, losses


@eqx.filter_jit
def _orders(order_keys, epoch, n, batch_size):
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(order_keys, epoch)
    return jax.vmap(lambda k: epoch_order(k, n, batch_size))(keys)


def steps_per_epoch(n: int, config: TrainConfig) -> int:
    return n // config.batch_size


def total_steps(n: int, config: TrainConfig) -> int:
    full = config.epochs * steps_per_epoch(n, config)
    return min(full, config.max_steps) if config.max_steps else full


def train(
    run: RunState,
    static: Any,
    xs: Float[Array, "n time features"],
    ys: Int[Array, " n"],
    config: TrainConfig,
    *,
    checkpoint: str | os.PathLike | None = None,
    stop_at: int | None = None,
    desc: str = "train",
) -> tuple[RunState, Float[np.ndarray, "chunks seeds"]]:
    """Train from `run.step` to `total_steps` (or `stop_at`), resuming from `checkpoint` if present.

    `stop_at` must fall on a chunk boundary (chunks of `chunk_steps` from each epoch's start, so
    epoch ends always qualify), so that a run stopped there resumes bitwise identically.
    Returns the final run state and the mean training loss of every chunk (per seed), including
    chunks run before a resume (kept in the checkpoint's metadata).
    """
    check_finite("xs", xs)
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    n = xs.shape[0]
    if ys.shape != (n,):
        raise ValueError(f"ys must have shape ({n},); got {ys.shape}")
    if config.batch_size > n:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {n} training examples")
    losses: list[list[float]] = []
    settings = dataclasses.asdict(config) | {"examples": n, "seeds": int(run.order_keys.shape[0])}
    if checkpoint is not None and Path(checkpoint).exists():
        run, meta = load_checkpoint(checkpoint, run)
        if meta.get("settings") != settings:
            raise ValueError(
                f"checkpoint {checkpoint} was written by a different run ({meta.get('settings')}); "
                f"this run is {settings}: use another checkpoint path"
            )
        losses = meta["losses"]
    opt = make_optimizer(config)
    per_epoch, end = steps_per_epoch(n, config), total_steps(n, config)
    step = int(run.step)
    chunks = []  # always cut from each epoch's start, so that resumed runs repeat them exactly
    while step < end:
        epoch, within = divmod(step, per_epoch)
        length = min(config.chunk_steps, per_epoch - within, end - step)
        chunks.append((epoch, within, length))
        step += length
    if stop_at is not None and stop_at < end:
        ends = [e * per_epoch + w + k for e, w, k in chunks]
        if stop_at not in ends and stop_at > int(run.step):
            raise ValueError(
                f"stop_at={stop_at} is not a chunk boundary (chunks of {config.chunk_steps} "
                f"steps from each epoch start, {per_epoch} steps per epoch; next ones "
                f"{ends[:4]}); a run stopped there would not resume bitwise identically"
            )
        chunks = [c for c, stop in zip(chunks, ends, strict=True) if stop <= stop_at]
        end = stop_at
    order_cache: dict[int, Array] = {}
    last_saved = int(run.step)
    for epoch, within, length in progress(chunks, desc=desc, total=len(chunks)):
        if epoch not in order_cache:
            order_cache = {epoch: _orders(run.order_keys, epoch, n, config.batch_size)}
        idx = jnp.swapaxes(order_cache[epoch][:, within : within + length], 0, 1)
        params, opt_state, model_state, chunk_losses = _train_chunk(
            run.params, run.opt_state, run.model_state, static, opt, xs, ys, idx
        )
        run = RunState(params, opt_state, model_state, run.order_keys, run.step + length)
        chunk_mean = np.asarray(chunk_losses.mean(axis=0))
        losses.append(chunk_mean.tolist())
        if not np.all(np.isfinite(chunk_mean)):
            bad = np.flatnonzero(~np.isfinite(chunk_mean)).tolist()
            warnings.warn(
                f"{desc}: non-finite training loss for seed indices {bad} at step {int(run.step)}",
                RuntimeWarning,
                stacklevel=2,
            )
        done = int(run.step)
        if (
            checkpoint is not None
            and config.checkpoint_every
            and (done - last_saved >= config.checkpoint_every or done == end)
        ):
            save_checkpoint(checkpoint, run, {"step": done, "settings": settings, "losses": losses})
            last_saved = done
    return run, np.asarray(losses, dtype=float).reshape(len(losses), -1)


@eqx.filter_jit
def _correct(params, static, model_state, xb, yb, mask):
    def one(p, s):
        model = eqx.combine(p, static)
        logits, _ = jax.vmap(
            functools.partial(model, inference=True),
            in_axes=(0, None),
            out_axes=(0, None),
            axis_name="batch",
        )(xb, s)
        return jnp.sum((jnp.argmax(logits, axis=-1) == yb) * mask)

    return jax.vmap(one)(params, model_state)


def evaluate(
    run: RunState,
    static: Any,
    xs: Float[Array, "n time features"],
    ys: Int[Array, " n"],
    *,
    batch_size: int = 1000,
) -> Float[np.ndarray, " seeds"]:
    """Test accuracy of every seed (BN in inference mode: running statistics)."""
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    n = xs.shape[0]
    if n == 0 or ys.shape != (n,):
        raise ValueError(f"evaluate needs n > 0 examples and ys of shape ({n},); got {ys.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    batch_size = min(batch_size, n)
    correct = 0
    for start in range(0, n, batch_size):
        xb, yb = xs[start : start + batch_size], ys[start : start + batch_size]
        pad = batch_size - xb.shape[0]
        mask = jnp.concatenate([jnp.ones(xb.shape[0]), jnp.zeros(pad)])
        if pad:
            xb = jnp.concatenate([xb, jnp.zeros((pad, *xb.shape[1:]), xb.dtype)])
            yb = jnp.concatenate([yb, jnp.zeros(pad, yb.dtype)])
        correct = correct + _correct(run.params, static, run.model_state, xb, yb, mask)
    return np.asarray(correct, dtype=float) / n
