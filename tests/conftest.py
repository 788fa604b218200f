import os
from pathlib import Path

import jax

os.environ.setdefault("MEMDYN_NO_PROGRESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# Many tests compile the same programs (an experiment's quick run in several tests, one module's
# tests on both xdist workers): a persistent compilation cache shared by the workers compiles each
# once per checkout. It lives in the checkout's .pytest_cache, so a fresh clone starts cold.
_CACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "jax-compilation"
jax.config.update("jax_compilation_cache_dir", os.environ.get("MEMDYN_TEST_JAX_CACHE", str(_CACHE)))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
