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
    jax.clear_caches()
    gc.collect()
    before = _mappings()
    for i in range(60):  # distinct shapes: 60 executables
        jax.jit(lambda x: jnp.sin(x) + x**2)(jnp.ones(i + 1)).block_until_ready()
    grown = _mappings() - before
    assert grown >= 60, grown  # each executable holds mappings while cached
    jax.clear_caches()
    gc.collect()
    assert _mappings() - before < grown / 4, (before, grown, _mappings())
