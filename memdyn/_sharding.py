"""Spread a vmapped sweep over devices, on one host or several, with `jax.sharding`.

memdyn's sweeps (seeds in `decaynet._train`, ω / learning rates / seeds in `memdyn._training`) are
one `vmap` over a leading axis inside one `jit`. To run them on several devices, place the inputs'
leading axis across a 1-d device mesh; `jit` then partitions the computation along it (GSPMD) and
the results come back sharded the same way — the code of the sweep does not change:

    mesh = sweep_mesh()                      # all devices, axis "sweep"
    keys = shard_leading_axis(keys, mesh)    # e.g. 8 seeds' keys, or a `memdyn.RunState`
    result = memdyn.sweep_seeds(..., keys, ...)   # unchanged
    result = gather(result)                  # NumPy, the whole sweep, on every process

Several hosts (processes) run the same program after `jax.distributed.initialize()` (see
docs/cluster.md): `jax.devices()` then lists every process's devices, so `sweep_mesh()` spans
them all, and each process holds only the slices of a sharded array that live on its own
devices. The functions here work unchanged for one process and for many: `shard_leading_axis`
builds each process's slices from the full value that every process computed alike (same seeds,
same hyperparameters), and `gather` fetches the global value onto every process.

Scalars and arrays whose leading axis does not divide evenly are replicated.

Minibatch training across processes (`memdyn.train_epochs` on a `spans_processes` mesh) reads
its run state with `gather` and has process 0 alone read and write its checkpoints,
`from_process_zero` bringing the outcome to every process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from memdyn._errors import ConfigError

SWEEP_AXIS = "sweep"


def sweep_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-d mesh named `"sweep"` over `devices` (default: all devices of the default backend, of
    every process after `jax.distributed.initialize`)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("sweep_mesh needs at least one device")
    return Mesh(np.asarray(devices), (SWEEP_AXIS,))


def sweep_mesh_for(size: int, devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """A `sweep_mesh` over as many of `devices` (default: this process's, `jax.local_devices()`)
    as split a sweep of `size` members evenly, the first ones; `None` where that is one device,
    which needs no mesh. For `train_epochs(..., mesh=sweep_mesh_for(len(seeds)))`: on the CPU,
    where memdyn asks for one host device per core (`memdyn._xla`), 20 seeds on 2 cores are 10 a
    core, and 3 seeds stay on one."""
    devices = list(jax.local_devices() if devices is None else devices)
    if size < 1:
        raise ValueError(f"size must be at least 1; got {size}")
    count = max(d for d in range(1, len(devices) + 1) if size % d == 0)
    return None if count == 1 else sweep_mesh(devices[:count])


def axis_devices(mesh: Mesh, axis: str, size: int, name: str, builder: str) -> int:
    """The number of devices along `mesh`'s axis `axis`, after checking that it has one (else
    `ValueError` pointing to `builder`, the function that makes such a mesh) and that it divides
    `size` (every device gets an equal share; `ConfigError` otherwise, naming `name`)."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh ({builder}); got {mesh!r}")
    if axis not in mesh.axis_names:
        raise ValueError(
            f"mesh must have an axis named {axis!r} (use {builder}); got axes {mesh.axis_names}"
        )
    devices = mesh.shape[axis]
    if size % devices:
        raise ConfigError(
            f"{name} is {size}, not a multiple of the {devices} devices of the mesh's {axis!r} "
            "axis: every device must get an equal share"
        )
    return devices


def sweep_devices(mesh: Mesh, size: int, name: str) -> int:
    """The number of devices along `mesh`'s `"sweep"` axis, after checking that it divides
    `size`, the length of the sweep (`axis_devices`); `name` says what is swept."""
    return axis_devices(mesh, SWEEP_AXIS, size, name, "memdyn.sweep_mesh()")


def shard_leading_axis(tree: Any, mesh: Mesh, *, size: int | None = None) -> Any:
    """Put every array leaf of `tree` on `mesh`: split along its leading axis when that axis has
    length `size` (default: the first leaf's) divisible by the number of devices, else replicate.
    Non-array leaves, and arrays already placed so, are left alone.

    Every leaf must be host-local (a NumPy array or a JAX array on this process's devices) and, on
    a mesh over several processes, hold the same value on every process, as SPMD programs do when
    every process initialises the sweep from the same seeds. Each process keeps the slices that
    belong to its own devices (`jax.make_array_from_callback`), so placing costs no communication.
    """
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(tree) if _is_array(leaf)]
    if size is None:
        size = next((leaf.shape[0] for leaf in leaves if np.ndim(leaf) > 0), None)
    devices = mesh.devices.size
    split = NamedSharding(mesh, PartitionSpec(SWEEP_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())

    def place(leaf):
        if not _is_array(leaf):
            return leaf
        along = np.ndim(leaf) > 0 and leaf.shape[0] == size and size % devices == 0
        sharding = split if along else replicated
        if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
            return leaf
        if not mesh.is_multi_process:
            return jax.device_put(leaf, sharding)
        if not (isinstance(leaf, np.ndarray) or leaf.is_fully_addressable):
            raise ValueError(
                f"shard_leading_axis needs host-local arrays; got one of shape {leaf.shape} "
                f"already spread over other processes' devices ({leaf.sharding})"
            )
        return jax.make_array_from_callback(np.shape(leaf), sharding, lambda index: leaf[index])

    return jax.tree_util.tree_map(place, tree)


def gather(tree: Any) -> Any:
    """Every array leaf of `tree` as a NumPy array of its global value, on every process (for
    writing records, plotting, `np.savez`); non-array leaves are left alone.

    It is memdyn's one way of reading a device value on the host. Arrays this process holds whole
    are copied to the host, and so is one local copy of an array replicated over several
    processes' devices (a `train_epochs` run state, a loss). An array split over several
    processes' devices is all-gathered (`jax.experimental.multihost_utils.process_allgather`): a
    collective, so every process must call `gather` on the same structure.
    """

    def fetch(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if leaf.is_fully_replicated:
                return np.asarray(leaf.addressable_data(0))
            return multihost_utils.process_allgather(leaf, tiled=True)
        return np.asarray(leaf) if _is_array(leaf) else leaf

    return jax.tree_util.tree_map(fetch, tree)


def spans_processes(mesh: Mesh) -> bool:
    """Whether `mesh` holds devices of several processes; then it must hold devices of all of
    them, as the processes of a job take turns in its collectives (`ValueError` otherwise)."""
    processes = {device.process_index for device in mesh.devices.flat}
    if len(processes) > 1 and len(processes) != jax.process_count():
        raise ValueError(
            f"the mesh spans processes {sorted(processes)} of {jax.process_count()}: a mesh over "
            "several processes must hold devices of every process of the job"
        )
    return len(processes) > 1


_NOTHING, _BYTES, _FAILED = 0, 1, 2  # outcomes; _FAILED + i: failed with errors[i]


def from_process_zero(action: Callable[[], bytes | None], errors: tuple[type, ...]) -> bytes | None:
    """Run `action` on process 0 alone and give every process its outcome: the bytes it returned
    (or `None`), or the failure it raised (an instance of one of `errors`), raised on every
    process, so that none waits in a collective for a process that has given up.

    Process 0 raises its own exception; the others raise the first of `errors` that it is an
    instance of, with its message prefixed "on process 0". A collective: every process of the
    job calls it, in the same order.
    """
    if jax.process_count() == 1:
        return action()
    outcome, data, failure = _NOTHING, b"", None
    if jax.process_index() == 0:
        try:
            result = action()
        except errors as error:
            failure = error
            kind = next(i for i, error_type in enumerate(errors) if isinstance(error, error_type))
            outcome, data = _FAILED + kind, f"{type(error).__name__}: {error}".encode()
        else:
            if result is not None:
                outcome, data = _BYTES, result
    # The length first (two 32-bit words: no 64-bit integers without x64), then the bytes:
    # broadcast_one_to_all needs every process to pass arrays of the same shape. It sums the
    # source's array with zeros from the others, which leaves bytes exact.
    head = np.asarray([outcome, *divmod(len(data), 2**32)], np.uint32)
    outcome, high, low = (int(x) for x in multihost_utils.broadcast_one_to_all(head))
    size = high * 2**32 + low
    if size:
        body = np.frombuffer(data, np.uint8) if data else np.zeros(size, np.uint8)
        data = np.asarray(multihost_utils.broadcast_one_to_all(body)).tobytes()
    if outcome >= _FAILED:
        if failure is not None:
            raise failure
        raise errors[outcome - _FAILED](f"on process 0, {data.decode()}")
    return data if outcome == _BYTES else None


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray)
