"""`memdyn.check_finite` counts a concrete CPU array's non-finite entries with NumPy: no XLA
program per new shape (eagerly, `jnp.isfinite` and `count_nonzero` compiled two each, the most
frequent compilations of the test suite). Counts against NumPy's own; dtypes NumPy cannot read
(bfloat16) still go through JAX."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memdyn import check_finite


def _compilations(caplog, run) -> int:
    caplog.clear()
    with jax.log_compiles(True), caplog.at_level(logging.WARNING):
        run()
    return sum("Compiling" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64, jnp.bfloat16])
def test_counts_the_non_finite_entries(dtype):
    values = np.array([1.0, np.nan, 2.0, np.inf, -np.inf, 0.5, np.nan], dtype=np.float32)
    expected = int(np.sum(~np.isfinite(values)))
    assert expected == 4
    with pytest.raises(ValueError, match=f"x contains {expected} non-finite"):
        check_finite("x", jnp.asarray(values, dtype))
    finite = jnp.asarray(np.nan_to_num(values, posinf=3.0, neginf=-3.0), dtype)
    assert check_finite("x", finite) is finite


def test_a_cpu_array_of_a_new_shape_compiles_nothing(caplog):
    shapes = [(3, 7), (11,), (2, 5, 13)]
    arrays = [jnp.ones(shape, jnp.float32) for shape in shapes]  # created before counting
    assert _compilations(caplog, lambda: [check_finite("x", a) for a in arrays]) == 0
    # The logger does see compilations (the count above could fail).
    assert _compilations(caplog, lambda: jnp.sin(jnp.ones((17, 19))).block_until_ready()) > 0
