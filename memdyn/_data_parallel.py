"""Data-parallel minibatches: one model's training step (or a vmapped set of seeds) on every
device, each device computing its slice of the batch.

The JAX way, with nothing hand-partitioned: a 1-d mesh whose axis is named `"batch"`
(`batch_mesh`); parameters, optimiser and model state and the dataset replicated on it
(`replicate`); each minibatch constrained to `NamedSharding(mesh, P("batch"))` along its batch
axis inside the compiled step (`shard_batch`). `jit`'s partitioner then runs every device on its
slice and inserts the collectives itself: the all-reduce of the weight gradients, and of whatever
else couples a batch's examples, such as batch-norm moments, which therefore come out over the
whole batch, not per device. The compiled program is the unsharded one, partitioned, so any loss
and any model give the unsharded result up to the order of floating-point sums.
`memdyn.train_epochs(..., mesh=batch_mesh())` and `memdyn.train_chunk(..., mesh=...)` do all of
this; on CPU, simulate one device per core with
`XLA_FLAGS=--xla_force_host_platform_device_count=N` set before JAX starts.

The mesh may span the devices of several processes (after `jax.distributed.initialize`,
`batch_mesh()` holds every process's devices): every process runs the same program on the same
data, `replicate` places each process's own copy on its own devices without communicating
(`jax.make_array_from_callback`, as `memdyn.shard_leading_axis` does; `jax.device_put` would
check with a collective that every process passed the same value), and the compiled step's
all-reduce crosses processes (Gloo on CPUs, NCCL on GPUs). docs/cluster.md says how to launch it.

A recurrent loop needs one more thing. Differentiated through a `lax.scan`, a weight gradient is a
sum over time of products contracted over the batch, accumulated in the loop; with the batch split,
the partitioner reduces every step's product across devices inside the loop, one collective per
time step, and XLA:CPU (unlike its GPU and TPU pipelines) has no pass that moves such reductions
out of loops. A recurrent core that accumulates per batch shard instead, summing the shards after
the loop, asks `batch_shards()` how many there are: the size of the `"batch"` axis of the mesh the
step is traced under (`jax.sharding.use_abstract_mesh`, which `train_chunk` enters), 1 otherwise.
`decaynet`'s fused backward pass does this, so its gradients are reduced once per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from memdyn._sharding import axis_devices

BATCH_AXIS = "batch"


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-d mesh named `"batch"` over `devices` (default: every device of the default backend,
    `jax.devices()`: this process's, or every process's after `jax.distributed.initialize`), for
    `train_epochs(..., mesh=...)` and `train_chunk(..., mesh=...)`."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("batch_mesh needs at least one device")
    return Mesh(np.asarray(devices), (BATCH_AXIS,))


def batch_devices(mesh: Mesh, batch_size: int, name: str) -> int:
    """The number of devices along `mesh`'s `"batch"` axis, after checking that it has one and
    that it divides `batch_size` (every device gets an equal slice of each batch; `ConfigError`
    otherwise); `name` is the argument whose batch size it is, for the message."""
    return axis_devices(mesh, BATCH_AXIS, batch_size, name, "memdyn.batch_mesh()")


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every JAX or NumPy array leaf of `tree` copied to every device of `mesh` (a no-op for leaves
    already there); other leaves are left alone.

    On a mesh over several processes, a leaf this process holds (NumPy, or a JAX array on its
    own devices) must hold the same value on every process, as SPMD programs compute it: each
    process copies its own to its own devices. A leaf already spread over the mesh is left as it
    is if replicated, else gathered onto every device (a collective)."""
    replicated = NamedSharding(mesh, PartitionSpec())
    across = mesh.is_multi_process

    def place(leaf):
        if not isinstance(leaf, jax.Array | np.ndarray):
            return leaf
        if not across or (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable):
            return jax.device_put(leaf, replicated)
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, replicated, lambda index: value[index])

    return jax.tree.map(place, tree)


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Inside a compiled function: every array leaf of `tree` split along its leading (batch) axis
    over `mesh`'s `"batch"` axis. Under `vmap` the mapped axis stays whole."""
    split = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
    return jax.tree.map(lambda leaf: jax.lax.with_sharding_constraint(leaf, split), tree)


def batch_shards() -> int:
    """How many devices the batch is split over in the computation being traced: the size of the
    `"batch"` axis of the current abstract mesh (`jax.sharding.use_abstract_mesh`, entered by
    `train_chunk` with a mesh), or 1 outside one."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return 1
    return dict(mesh.shape).get(BATCH_AXIS, 1)
