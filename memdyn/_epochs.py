"""Minibatch training of many seeds at once: one compiled step over the seeds' parameters, keys and
data order (a loop over the seeds inside it on the CPU, a `vmap` elsewhere: `_over_seeds`), with
atomic checkpoints and exact resume. Any model and any loss.

Every seed has its own initialisation key and data-order key; epoch `e`'s order of seed `s` is
`jax.random.permutation(fold_in(order_key_s, e), n)` cut into batches (`epoch_order`), so the step
counter alone fixes where a run is. A chunk of `chunk_steps` optimiser steps is one `lax.scan`
inside one `eqx.filter_jit`; chunks run in a Python loop with a progress bar, and a checkpoint
(parameters, optimiser state, model state, order keys, step) is written atomically every
`checkpoint_every` steps and at every epoch end that is evaluated (the evaluations ride in the
checkpoint's metadata, so there is no second file to lose or corrupt). Chunk boundaries are
always multiples of `chunk_steps` from the start of an epoch, so a resumed run executes the same
compiled computation on the same batches and ends bitwise identical. The optimiser is an Optax
`GradientTransformation` that `init_run` and `train_epochs` take as an argument: any Optax
optimiser, or the config's own, built once by `TrainConfig.make_optimizer()` (the config keeps
the optimiser's name for the command line). The optimiser step is
`memdyn.optimizer_step`, shared with `memdyn.train`; the chunks run through `memdyn.run_chunks`
with the `memdyn.Stop` policy (a non-finite step raises, keeping the last good checkpoint).

The loss is `loss_fn(model, model_state, xs_batch, ys_batch) -> (loss, model_state)`, where
`model_state` is an `eqx.nn.State` (batch-norm statistics) or `None`.

Across processes (a `mesh` over the devices of several processes, after
`jax.distributed.initialize`), every process runs `train_epochs` on the same run and data, and
the compiled chunks split each batch over all of the mesh's devices. The run state stays
replicated on every device, so one copy of it is the whole state: process 0 alone writes the
checkpoint (atomic and hashed as on one process), from its own copy, which costs no
communication. On resume, process 0 alone reads the file and broadcasts its bytes
(`memdyn._sharding.from_process_zero`); every process then checks and reads them as one process
reads the file. So the processes need no shared file system, they resume from one and the same
checkpoint (a file per process could differ after a process was killed between two writes), and
a bad or foreign checkpoint raises the same `CheckpointError` on every process, as does a write
that failed on process 0, instead of leaving the others waiting in a collective. Orbax's
per-process shards would pay off for a state too large for one host, which is not the case of a
replicated state. Host reads (the step, the losses, the finiteness flags) go through
`memdyn.gather`, which reads a replicated value from this process's own copy. Only process 0
shows the progress bar and the resume message.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, use_abstract_mesh
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, PyTree

from memdyn._checkpoint import load_checkpoint, metadata_copy, save_checkpoint
from memdyn._data_parallel import BATCH_AXIS, batch_devices, replicate, shard_batch
from memdyn._engine import NonFiniteStep, Stop, run_chunks, scan_steps
from memdyn._errors import CheckpointError, ConfigError
from memdyn._files import to_jsonable
from memdyn._parameters import partition_parameters
from memdyn._progress import progress
from memdyn._schema import AtLeast, InRange, NonNegative, OneOf, Positive, check_fields
from memdyn._sharding import (
    SWEEP_AXIS,
    from_process_zero,
    gather,
    shard_leading_axis,
    spans_processes,
    sweep_devices,
)
from memdyn._training import OPTIMIZERS, make_optimizer, optimizer_step
from memdyn._validate import check_count, check_finite, check_optimizer

MinibatchLoss = Callable[[Any, Any, Array, Array], tuple[Float[Array, ""], Any]]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule of minibatch training.

    The optimiser's fields (`optimizer` to `clip_value`) name an Optax transformation for the
    command line: `make_optimizer()` builds it, once, for `init_run` and `train_epochs`, which take
    the transformation (this one or any other) and read only the schedule from the config.

    Attributes:
        optimizer: a name of `memdyn.OPTIMIZERS` ("adam", "rmsprop", "gd", "momentum").
        learning_rate: step size.
        momentum: heavy-ball momentum for "rmsprop" and "momentum" (0 = none).
        decay: RMSProp's averaging constant (PyTorch's `alpha`).
        eps: Adam's / RMSProp's epsilon (RMSProp in PyTorch's convention: outside the root).
        clip_norm: clip the gradient's global norm to this value first (0 = no clipping); the
            norm is computed so that it cannot overflow (`memdyn.clip_by_safe_global_norm`).
        clip_value: clip every gradient entry to [-clip_value, clip_value] first (0 = none).
        batch_size: examples per step.
        epochs: passes over the training set (the remainder of each epoch is dropped).
        max_steps: stop after this many steps (0 = train all `epochs`).
        chunk_steps: optimiser steps per compiled chunk (one progress-bar tick).
        checkpoint_every: steps between checkpoints, a multiple of `chunk_steps` (0 = none).
    """

    optimizer: Annotated[str, OneOf(OPTIMIZERS)] = "adam"
    learning_rate: Annotated[float, Positive] = 0.01
    momentum: Annotated[float, InRange(0, 1, closed="left")] = 0.9
    decay: Annotated[float, InRange(0, 1, closed="left")] = 0.9
    eps: Annotated[float, NonNegative] = 1e-8
    clip_norm: Annotated[float, NonNegative] = 0.0
    clip_value: Annotated[float, NonNegative] = 0.0
    batch_size: Annotated[int, AtLeast(1)] = 100
    epochs: Annotated[int, AtLeast(1)] = 1
    max_steps: Annotated[int, NonNegative] = 0
    chunk_steps: Annotated[int, AtLeast(1)] = 100
    checkpoint_every: Annotated[int, NonNegative] = 0

    def __post_init__(self):
        check_fields(self)
        if self.checkpoint_every % self.chunk_steps:
            raise ConfigError(
                f"checkpoint_every ({self.checkpoint_every}) must be a multiple of chunk_steps "
                f"({self.chunk_steps})"
            )

    def make_optimizer(self) -> optax.GradientTransformation:
        """The Optax transformation this config's optimiser fields describe, for `init_run` and
        `train_epochs`: `memdyn.make_optimizer(optimizer, learning_rate, ...)` with a constant
        learning rate. The same object for equal configs, so compiled chunks are reused."""
        return _optimizer(self)


@functools.cache
def _optimizer(config: TrainConfig) -> optax.GradientTransformation:
    c = config
    kwargs = {
        "adam": {"eps": c.eps},
        "rmsprop": {"decay": c.decay, "eps": c.eps, "momentum": c.momentum or None},
        "momentum": {"momentum": c.momentum},
        "gd": {},
    }[c.optimizer]
    # Not injected: the README's Table 2 and permuted-MNIST runs were made with constant rates.
    return make_optimizer(
        c.optimizer,
        c.learning_rate,
        clip_norm=c.clip_norm,
        clip_value=c.clip_value,
        inject=False,
        **kwargs,
    )


def epoch_order(key: PRNGKeyArray, n: int, batch_size: int) -> Int[Array, "batches batch"]:
    """Shuffled indices for one epoch, `(n // batch_size, batch_size)`; the remainder is dropped."""
    check_count("batch_size", batch_size)
    _check_batch_fits(batch_size, n, "examples")
    order = jax.random.permutation(key, n)
    steps = n // batch_size
    return order[: steps * batch_size].reshape(steps, batch_size)


class RunState(eqx.Module):
    """Everything a run needs to continue: leaves stacked over seeds (leading axis)."""

    params: Any
    opt_state: Any
    model_state: Any
    order_keys: Array
    step: Array


def init_run(
    make_model: Callable[[PRNGKeyArray], tuple[Any, Any]],
    seeds: Int[np.ndarray, " seeds"] | list[int],
    optimizer: optax.GradientTransformation,
) -> tuple[RunState, Any]:
    """Initialise every seed: `PRNGKey(seed)` splits into an init key and a data-order key.

    `make_model(key) -> (model, model_state)` (e.g. `eqx.nn.make_with_state(Model)(..., key=key)`,
    or `(model, None)` for a stateless model) is `vmap`ped over the seeds, and the state of
    `optimizer` (any Optax transformation, e.g. a `TrainConfig`'s `config.make_optimizer()`;
    `train_epochs` must be given the same one) is initialised on each seed's parameters. Returns
    the stacked run state and the static (non-array) part of the models.
    """
    check_optimizer(optimizer)
    seeds = np.asarray(seeds)
    if seeds.ndim != 1 or seeds.size == 0 or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"seeds must be a non-empty 1-d list of integers; got {seeds!r}")
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds))
    init_keys, order_keys = jnp.swapaxes(jax.vmap(jax.random.split)(keys), 0, 1)
    models, states = eqx.filter_vmap(make_model)(init_keys)
    params, static = partition_parameters(models)
    opt_state = jax.vmap(optimizer.init)(params)
    run = RunState(params, opt_state, states, order_keys, jnp.zeros((), jnp.int32))
    return run, static


def stacked_models(run: RunState, static: Any) -> Any:
    """The models of every seed, stacked (leading seed axis on every array)."""
    return eqx.combine(run.params, static)


def train_chunk(
    params: PyTree,
    opt_state: PyTree,
    model_state: PyTree,
    static: PyTree,
    loss_fn: Callable,
    opt: optax.GradientTransformation,
    xs: Array,
    ys: Array,
    idx: Int[Array, "steps seeds batch"],
    *,
    mesh: Mesh | None = None,
) -> tuple[PyTree, PyTree, PyTree, Float[Array, "steps seeds"], Bool[Array, "steps seeds"]]:
    """Minibatch steps of every seed at once: a `lax.scan` over steps of a map over seeds (a loop
    on the CPU, a `vmap` elsewhere and over a batch mesh), compiled once. It is the step
    `train_epochs` runs between checkpoints, public so that a benchmark or a user's own loop times
    and drives exactly what training runs.

    `params`, `opt_state`, `model_state` are stacked over seeds (a `RunState`'s fields), `static`
    the models' non-array part, `loss_fn(model, model_state, x_batch, y_batch) -> (loss,
    model_state)`; step `t` of seed `s` trains on `xs[idx[t, s]]`, `ys[idx[t, s]]`. Returns the
    new parameters, optimiser and model states, the losses before each step and whether each
    step's loss and gradient were finite (a step that was not is still applied: the caller
    decides, as `train_epochs` does, what a non-finite step means).

    `mesh` spreads the work over devices, by the name of its one axis:

    - `memdyn.batch_mesh()` (`"batch"`): every batch is split over the devices and the rest is
      replicated on them: one compiled step on all devices, the gradients reduced across them
      (`memdyn._data_parallel`). The batch (`idx`'s last axis) must be a multiple of the number
      of devices.
    - `memdyn.sweep_mesh()` (`"sweep"`): the seeds are split over the devices, each device
      stepping its own seeds with no communication at all (`jax.shard_map`); on the CPU, where
      memdyn asks for one host device per core (`memdyn._xla`), that is the seeds on every
      core. The number of seeds must be a multiple of the number of devices. Each seed computes
      what it computes alone on one device.

    Arguments are placed on the mesh here (a no-op where they already are). On a mesh over
    several processes every process calls it alike, with the same arguments.
    """
    check_optimizer(opt)
    if mesh is None:
        loop = _platform((params, xs)) == "cpu"
        return _train_chunk(
            params, opt_state, model_state, static, loss_fn, opt, xs, ys, idx, loop=loop
        )
    seeds = idx.shape[1]
    axis = mesh_axis(mesh, seeds, idx.shape[-1], "idx's last axis (the batch size)")
    params, opt_state, model_state = _place_seeds(
        (params, opt_state, model_state), mesh, axis, seeds
    )
    xs, ys, idx = replicate((xs, ys, idx), mesh)
    loop = axis == SWEEP_AXIS and mesh.devices.flat[0].platform == "cpu"
    return _train_chunk(
        params, opt_state, model_state, static, loss_fn, opt, xs, ys, idx, mesh=mesh, loop=loop
    )


def mesh_axis(mesh: Mesh, seeds: int, batch_size: int, batch_name: str) -> str:
    """The axis training spreads over, `BATCH_AXIS` or `SWEEP_AXIS`: the name of `mesh`'s one
    axis, after checking that its devices divide the batch (`batch_name` is the argument that
    holds it) or the `seeds` (`ConfigError` otherwise)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh (memdyn.batch_mesh() or memdyn.sweep_mesh()); got "
            f"{mesh!r}"
        )
    if mesh.axis_names == (SWEEP_AXIS,):
        sweep_devices(mesh, seeds, "the number of seeds")
        return SWEEP_AXIS
    if mesh.axis_names == (BATCH_AXIS,):
        batch_devices(mesh, batch_size, batch_name)
        return BATCH_AXIS
    raise ValueError(
        f"mesh must have one axis, named {BATCH_AXIS!r} (memdyn.batch_mesh(): each batch split "
        f"over the devices) or {SWEEP_AXIS!r} (memdyn.sweep_mesh(): the seeds split over them); "
        f"got axes {mesh.axis_names}"
    )


def _place_seeds(tree: Any, mesh: Mesh, axis: str, seeds: int) -> Any:
    """Per-seed state (a leading axis of `seeds`; scalars such as the step replicated) on
    `mesh`: replicated for a batch mesh, split along the seeds for a sweep mesh."""
    if axis == BATCH_AXIS:
        return replicate(tree, mesh)
    return shard_leading_axis(tree, mesh, size=seeds)


def _platform(tree: Any) -> str:
    """The platform of the devices the first concrete array of `tree` lives on (the default
    backend's where none does, as inside an enclosing `jit`)."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
            return next(iter(leaf.devices())).platform
    return jax.default_backend()


def _over_seeds(one: Callable, loop: bool) -> Callable:
    """`one` over the leading seed axis of its arguments: a loop inside the compiled step
    (`lax.map`) where `loop`, the CPU's choice, else `vmap`. XLA:CPU runs a `vmap`ped seed at
    about twice a lone seed's cost, and the loop at one seed's (16 Table 2 seeds, one Adam step on
    one core: LSTM-64 122-125 against 63-64 ms, DecayNet-64 148-151 against 85-87 ms; each seed
    then computes exactly the program it would alone)."""
    if loop:
        return lambda *args: jax.lax.map(lambda member: one(*member), args)
    return jax.vmap(one)


@eqx.filter_jit
def _train_chunk(
    params, opt_state, model_state, static, loss_fn, opt, xs, ys, idx, *, mesh=None, loop=False
):
    batch_split = mesh is not None and mesh.axis_names == (BATCH_AXIS,)

    def chunk(params, opt_state, model_state, xs, ys, idx):
        def one(p, o, s, i):
            batch = shard_batch((xs[i], ys[i]), mesh) if batch_split else (xs[i], ys[i])
            step = optimizer_step(loss_fn, p, static, opt, o, s, *batch, has_aux=True)
            p, o, (loss, s), finite = step
            return p, o, s, loss, finite

        def body(carry, idx_step):
            p, o, s, loss, finite = _over_seeds(one, loop)(*carry, idx_step)
            return (p, o, s), (loss, finite)

        (params, opt_state, model_state), losses, finite = scan_steps(
            body, (params, opt_state, model_state), idx
        )
        return params, opt_state, model_state, losses, finite

    arrays = (params, opt_state, model_state, xs, ys, idx)
    if mesh is None:
        return chunk(*arrays)
    if batch_split:
        # Recurrent cores learn how many shards the batch has (`batch_shards`).
        with use_abstract_mesh(mesh.abstract_mesh):
            return chunk(*arrays)
    seeds, per_step, whole = P(SWEEP_AXIS), P(None, SWEEP_AXIS), P()
    split = jax.shard_map(
        chunk,
        mesh=mesh,
        in_specs=(seeds, seeds, seeds, whole, whole, per_step),
        out_specs=(seeds, seeds, seeds, per_step, per_step),
        check_vma=False,
    )
    return split(*arrays)


@eqx.filter_jit
def _orders(order_keys, epoch, n, batch_size):
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(order_keys, epoch)
    return jax.vmap(lambda k: epoch_order(k, n, batch_size))(keys)


def _check_batch_fits(batch_size: int, n: int, examples: str) -> None:
    if batch_size > n:
        raise ConfigError(
            f"batch_size {batch_size} exceeds the {n} {examples}: an epoch drops its last "
            "incomplete batch, so it would have no step; lower batch_size or use more examples"
        )


def steps_per_epoch(n: int, config: TrainConfig, *, examples: str = "training examples") -> int:
    """Optimiser steps in an epoch of `n` examples, ≥ 1. An epoch drops its last incomplete batch,
    so a `config.batch_size` above `n` raises `ConfigError`; `examples` says in its message what
    the n examples are (a config that subsets its data checks here before loading it)."""
    _check_batch_fits(config.batch_size, n, examples)
    return n // config.batch_size


def total_steps(n: int, config: TrainConfig) -> int:
    full = config.epochs * steps_per_epoch(n, config)
    return min(full, config.max_steps) if config.max_steps else full


def _step(run: RunState) -> int:
    return int(gather(run.step))


def _checkpoint_bytes(checkpoint: Path) -> bytes | None:
    """The content of the checkpoint file, `None` where the run has none yet; `CheckpointError`
    where its metadata copy says that it was lost."""
    if checkpoint.exists():
        return checkpoint.read_bytes()
    if metadata_copy(checkpoint).exists():
        raise CheckpointError(
            f"checkpoint {checkpoint} is missing but its copy {metadata_copy(checkpoint)} "
            "exists: the checkpoint was deleted or moved and this run's progress is lost; "
            "restore it, or rerun with --fresh to start over"
        )
    return None


def _resume(
    checkpoint: Path, data: bytes, run: RunState, settings: dict, per_epoch: int, evaluated: bool
) -> tuple[RunState, list, list]:
    """The run state, chunk losses and epoch-end evaluations saved at `checkpoint` (whose content
    is `data`), checked against this run's settings."""
    run, meta = load_checkpoint(checkpoint, run, data=data)
    if meta.get("settings") != settings:
        raise CheckpointError(
            f"checkpoint {checkpoint} was written by a different run ({meta.get('settings')}); "
            f"this run is {settings}: use another checkpoint path, or delete it (rerun with "
            "--fresh) to start over"
        )
    step, losses, evaluations = _step(run), meta["losses"], meta["evaluations"]
    if meta["step"] != step or (evaluated and len(evaluations) != step // per_epoch):
        raise CheckpointError(
            f"checkpoint {checkpoint} is inconsistent (step {step}, metadata step {meta['step']}, "
            f"{len(evaluations)} epoch evaluations); delete it or rerun with --fresh"
        )
    return run, losses, evaluations


def train_epochs(
    run: RunState,
    static: Any,
    loss_fn: MinibatchLoss,
    xs: Float[Array, "n ..."],
    ys: Int[Array, " n"],
    config: TrainConfig,
    optimizer: optax.GradientTransformation,
    *,
    checkpoint: str | os.PathLike | None = None,
    stop_at: int | None = None,
    evaluate: Callable[[RunState], Any] | None = None,
    desc: str = "train",
    mesh: Mesh | None = None,
) -> tuple[RunState, Float[np.ndarray, "chunks seeds"], list]:
    """Train every seed of `run` on `loss_fn(model, model_state, xs[batch], ys[batch])` from
    `run.step` to `total_steps` (or `stop_at`), resuming from `checkpoint` if present.

    `loss_fn` returns `(loss, new_model_state)`; pass a pytree callable or a module-level
    function so that repeated calls reuse the compiled chunk.

    `config` gives the schedule (batch size, epochs, `max_steps`, chunks, checkpoints);
    `optimizer`, an Optax transformation, the steps: the one `run`'s optimiser state was made
    by in `init_run`, `config.make_optimizer()` for the config's own or any other. The
    checkpoint records the config, not the optimiser: resume with the same one.

    `stop_at` must fall on a chunk boundary (chunks of `chunk_steps` from each epoch's start, so
    epoch ends always qualify), so that a run stopped there resumes bitwise identically.

    `evaluate(run_state)`, if given, is called at the end of every full epoch; its result (arrays
    or numbers, stored as JSON) goes into the checkpoint written at that epoch end, in the same
    atomic write, so a run killed at any moment loses no evaluation and never repeats one. Across
    processes it is called on every process, with the run state on the whole mesh, and must
    return the same host values on every process: compute on the run state (a collective, as
    every process calls it) and read the result with `memdyn.gather`.

    A resumed run says so on stderr (file, step N of M). A checkpoint that fails its SHA-256 or
    structure check, was written by another run, or was deleted while its `.json` copy remains
    raises `CheckpointError`. A non-finite loss or gradient raises `TrainingStopped` (the
    `memdyn.Stop` policy) naming the step (counted from 0) and the seed index, keeping the last
    good checkpoint: the seeds share one checkpoint, which cannot hold one seed frozen while the
    others go on, so `train_epochs` takes no other policy. Returns the final run state, the
    mean training loss of every chunk (per seed), and the list of epoch-end evaluations (in JSON
    form), both including those made before a resume (kept in the checkpoint's metadata).

    With `mesh`, training uses several devices (`train_chunk`), and the returned run state
    lives on the mesh. With `memdyn.batch_mesh()` it is data-parallel: the run state and the data
    are replicated on the mesh and every batch of every seed is split over its devices;
    `config.batch_size` must be a multiple of their number (`ConfigError` otherwise). The result
    equals the run on one device up to the order of floating-point sums (batch-norm moments
    included: they are over the whole batch). With `memdyn.sweep_mesh()` the seeds are split
    over the devices (their number a multiple of the devices', `ConfigError` otherwise), each
    device training its own with no communication, and each seed computes what it computes on
    one device. A checkpoint does not record the mesh: a run resumed on another mesh continues,
    equal up to the rounding above.

    The mesh may span several processes (after `jax.distributed.initialize`; docs/cluster.md):
    every process then calls `train_epochs` with the same arguments, the same `run` and data
    (computed alike on each, as from the same seeds). The `checkpoint` path is process 0's, the
    only one that writes or reads it (the module's docstring says why); every process raises
    the errors above, and every process returns the run state on the mesh (read it with
    `memdyn.gather`), the same losses and the same evaluations. A job killed at any moment
    resumes exactly from process 0's checkpoint when it is launched again, on as many processes.
    """
    check_optimizer(optimizer)
    xs = check_finite("xs", xs)
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    n = xs.shape[0]
    if ys.shape != (n,):
        raise ValueError(f"ys must have shape ({n},); got {ys.shape}")
    per_epoch, end = steps_per_epoch(n, config), total_steps(n, config)
    seeds = int(run.order_keys.shape[0])
    shared = False  # whether the processes of a job share this run (a mesh across them)
    if mesh is not None:
        axis = mesh_axis(mesh, seeds, config.batch_size, "batch_size")
        shared = spans_processes(mesh)
    lead = not shared or jax.process_index() == 0  # the process that reports on the run
    checkpoint_errors = (CheckpointError, OSError)
    losses: list[list[float]] = []
    evaluations: list = []
    settings = dataclasses.asdict(config) | {
        "examples": n,
        "seeds": seeds,
        "evaluated": evaluate is not None,
    }
    saved = False  # whether a checkpoint of this run exists (read or written)
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        read = functools.partial(_checkpoint_bytes, checkpoint)
        data = from_process_zero(read, checkpoint_errors) if shared else read()
        if data is not None:
            run, losses, evaluations = _resume(
                checkpoint, data, run, settings, per_epoch, evaluate is not None
            )
            saved = True
            if lead:
                print(
                    f"{desc}: resuming from {checkpoint} at step {_step(run)} of {end}",
                    file=sys.stderr,
                )
    if mesh is not None:
        xs, ys = replicate((xs, ys), mesh)
        run = _place_seeds(run, mesh, axis, seeds)
    start = step = _step(run)
    chunks = []  # always cut from each epoch's start, so that resumed runs repeat them exactly
    while step < end:
        epoch, within = divmod(step, per_epoch)
        length = min(config.chunk_steps, per_epoch - within, end - step)
        chunks.append((epoch, within, length))
        step += length
    if stop_at is not None and stop_at < end:
        ends = [e * per_epoch + w + k for e, w, k in chunks]
        if stop_at not in ends and stop_at > start:
            raise ValueError(
                f"stop_at={stop_at} is not a chunk boundary (chunks of {config.chunk_steps} "
                f"steps from each epoch start, {per_epoch} steps per epoch; next ones "
                f"{ends[:4]}); a run stopped there would not resume bitwise identically"
            )
        chunks = [c for c, stop in zip(chunks, ends, strict=True) if stop <= stop_at]
        end = stop_at
    last_saved = start

    def save(run: RunState, meta: dict) -> None:
        if not shared:
            save_checkpoint(checkpoint, run, meta)
            return
        state = gather(run)  # on every process: a collective for a leaf that is not replicated

        def write() -> None:
            save_checkpoint(checkpoint, state, meta)

        from_process_zero(write, checkpoint_errors)

    def batches():
        order_cache: dict[int, Array] = {}
        shown = progress(chunks, desc=desc, total=len(chunks)) if lead else chunks
        for epoch, within, length in shown:
            if epoch not in order_cache:
                # The epoch as an array: a Python int would be static and compile once per epoch.
                epoch_index = jnp.asarray(epoch, jnp.int32)
                order_cache = {epoch: _orders(run.order_keys, epoch_index, n, config.batch_size)}
            yield jnp.swapaxes(order_cache[epoch][:, within : within + length], 0, 1)

    def advance(run: RunState, idx: Array):
        params, opt_state, model_state, chunk_losses, finite = train_chunk(
            run.params,
            run.opt_state,
            run.model_state,
            static,
            loss_fn,
            optimizer,
            xs,
            ys,
            idx,
            mesh=mesh,
        )
        run = RunState(params, opt_state, model_state, run.order_keys, run.step + idx.shape[0])
        return run, chunk_losses, finite

    def after_chunk(run: RunState, chunk_losses: Array, done: int) -> bool:
        nonlocal last_saved, saved
        losses.append(gather(chunk_losses.mean(axis=0)).tolist())
        epoch_end = evaluate is not None and done % per_epoch == 0
        if epoch_end:
            evaluations.append(to_jsonable(evaluate(run)))
        if (
            checkpoint is not None
            and config.checkpoint_every
            and (done - last_saved >= config.checkpoint_every or done == end or epoch_end)
        ):
            meta = {"step": done, "settings": settings, "losses": losses}
            save(run, {**meta, "evaluations": evaluations})
            last_saved, saved = done, True
        return False

    def message(failure: NonFiniteStep) -> str:
        kept = (
            f"the last good checkpoint, step {last_saved}, is kept at {checkpoint}"
            if saved
            else "no checkpoint was written"
        )
        return (
            f"{desc}: non-finite loss or gradient at step {failure.step} for seed index "
            f"{failure.member} (of {seeds}); training stopped and {kept}. Lower the learning "
            "rate, clip (clip_norm, clip_value) or check the data"
        )

    run, _ = run_chunks(
        advance, run, batches(), policy=Stop(), start=start, message=message,
        after_chunk=after_chunk,
    )  # fmt: skip
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(run.params))  # the losses' precision
    return run, np.asarray(losses, dtype=dtype).reshape(len(losses), -1), evaluations
