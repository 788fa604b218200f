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
# tests on both xdist workers, a notebook's kernel or a CLI subprocess running what a test ran): a
# persistent compilation cache shared by the workers and every process they start compiles each
# once per checkout. It lives in the checkout's .pytest_cache, so a fresh clone starts cold. The
# environment variables carry it into subprocesses (JAX reads them at import).
_CACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation"
_CACHE_SETTINGS = {
    "jax_compilation_cache_dir": os.environ.get("MEMDYN_TEST_JAX_CACHE", str(_CACHE)),
    "jax_persistent_cache_min_compile_time_secs": 0.2,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}
for _name, _value in _CACHE_SETTINGS.items():
    jax.config.update(_name, _value)
    os.environ[_name.upper()] = str(_value)


_MAPS = Path("/proc/self/maps")
# Well below the kernel's usual limit (`vm.max_map_count`, 65,530), with room for a module's growth.
_MAPPINGS_BEFORE_CLEARING = 20_000


def _many_mappings() -> bool:
    """Whether this process holds enough memory mappings to drop its compiled programs (always
    where the operating system does not say)."""
    try:
        with _MAPS.open("rb") as maps:
            return sum(1 for _ in maps) > _MAPPINGS_BEFORE_CLEARING
    except OSError:
        return True


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop the compiled programs when a test module ends, if the process holds many.

    XLA:CPU maps about three memory regions per executable and keeps them while JAX caches the
    executable. A worker that kept every program of its ~900 tests passed 15,000 mappings within
    two minutes and heads for the kernel's limit (`vm.max_map_count`, 65,530), where LLVM fails to
    allocate and aborts the process: CI's "Fatal Python error: Aborted" in a random test. Clearing
    after every module instead recompiles the programs that modules share (eager operations,
    an experiment's quick run); so the caches are cleared only past 20,000 mappings.
    `test_process_limits.py` checks that `jax.clear_caches` gives the mappings back.
    """
    yield
    if _many_mappings():
        jax.clear_caches()
