import os
from pathlib import Path

import jax
import pytest

os.environ.setdefault("MEMDYN_NO_PROGRESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Two host devices in every test process, whatever the machine's cores (memdyn asks for one per
# core, `memdyn._xla`), so that work split over devices is tested in-process everywhere alike.
os.environ.setdefault("MEMDYN_HOST_DEVICES", "2")

# Many tests compile the same programs (an experiment's quick run in several tests, one module's
# tests on both xdist workers): a persistent compilation cache shared by the workers compiles each
# once per checkout. It lives in the checkout's .pytest_cache, so a fresh clone starts cold.
_CACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation"
jax.config.update("jax_compilation_cache_dir", os.environ.get("MEMDYN_TEST_JAX_CACHE", str(_CACHE)))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop a test module's compiled programs when the module ends.

    XLA:CPU maps about three memory regions per executable and keeps them while JAX caches the
    executable. A worker that kept every program of its ~900 tests passed 15,000 mappings within
    two minutes and heads for the kernel's limit (`vm.max_map_count`, 65,530), where LLVM fails to
    allocate and aborts the process: CI's "Fatal Python error: Aborted" in a random test.
    `test_process_limits.py` checks that `jax.clear_caches` gives the mappings back.
    """
    yield
    jax.clear_caches()
