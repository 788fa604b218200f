"""Spread a vmapped sweep over devices with `jax.sharding`.

memdyn's sweeps (seeds in `decaynet._train`, ω / learning rates / seeds in `memdyn._training`) are
one `vmap` over a leading axis inside one `jit`. To run them on several devices, place the inputs'
leading axis across a 1-d device mesh; `jit` then partitions the computation along it (GSPMD) and
the results come back sharded the same way — the code of the sweep does not change:

    mesh = sweep_mesh()                      # all devices, axis "sweep"
    run = shard_leading_axis(run, mesh)      # e.g. a `decaynet._train.RunState` of 8 seeds
    run, losses = train.train(run, ...)      # unchanged

Scalars and arrays whose leading axis does not divide evenly are replicated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SWEEP_AXIS = "sweep"


def sweep_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-d mesh named `"sweep"` over `devices` (default: all devices of the default backend)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("sweep_mesh needs at least one device")
    return Mesh(np.asarray(devices), (SWEEP_AXIS,))


def shard_leading_axis(tree: Any, mesh: Mesh, *, size: int | None = None) -> Any:
    """Put every array leaf of `tree` on `mesh`: split along its leading axis when that axis has
    length `size` (default: the first leaf's) divisible by the number of devices, else replicate.
    Non-array leaves are left alone."""
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
        return jax.device_put(leaf, split if along else replicated)

    return jax.tree_util.tree_map(place, tree)


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array | np.ndarray)
