"""The test suite's own guard against the per-process limit on memory mappings (conftest's
`_release_compiled_programs`) relies on `jax.clear_caches` unmapping compiled programs."""

import gc
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

MAPS = Path(f"/proc/{os.getpid()}/maps")


def _mappings() -> int:
    return len(MAPS.read_text().splitlines())


@pytest.mark.skipif(not MAPS.exists(), reason="needs Linux's /proc/<pid>/maps")
def test_clearing_the_caches_unmaps_compiled_programs():
    # A first program maps what the process keeps for good (~70 regions: thread pools, arenas);
    # in a process that has compiled nothing yet, those would count as not given back.
    jax.jit(jnp.cos)(jnp.ones(1)).block_until_ready()
    jax.clear_caches()
    gc.collect()
    before = _mappings()
    for i in range(30):  # distinct shapes: 30 jitted executables (and 30 of `jnp.ones`)
        jax.jit(lambda x: jnp.sin(x) + x**2)(jnp.ones(i + 1)).block_until_ready()
    grown = _mappings() - before
    assert grown >= 30, grown  # each executable holds mappings while cached (measured: ~87)
    jax.clear_caches()
    gc.collect()
    assert _mappings() - before < grown / 4, (before, grown, _mappings())
