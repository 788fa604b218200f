"""Edges of the curse losses' checks that mutation testing found unguarded (docs/mutation.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curse import lyapunov_loss, memory_target


@pytest.mark.parametrize(
    "eigenvalues",
    [(-1.0, 0.5), (-1.0, 0.0), (-2.0, 1e-9)],
    ids=["unstable", "marginal", "barely-unstable"],
)
def test_lyapunov_loss_refuses_a_w_that_is_not_strictly_stable(eigenvalues):
    """Stability means every eigenvalue has a negative real part: 0 and tiny positive ones are
    refused (the check is `max Re λ >= 0`, under jit as well). A triangular W has exactly its
    diagonal as eigenvalues."""
    W = np.diag(eigenvalues) + np.array([[0.0, 0.7], [0.0, 0.0]])
    u, c = jnp.array([1.0, 0.5]), jnp.array([0.3, -0.2])
    target = memory_target(0.25)
    with pytest.raises(RuntimeError, match="W must be stable"):
        jax.block_until_ready(lyapunov_loss(jnp.asarray(W), u, c, target))
    with pytest.raises(RuntimeError, match="W must be stable"):
        jax.block_until_ready(jax.jit(lyapunov_loss)(jnp.asarray(W), u, c, target))


def test_lyapunov_loss_accepts_a_stable_w_close_to_the_edge():
    W = jnp.diag(jnp.array([-1.0, -1e-3]))
    loss = lyapunov_loss(W, jnp.array([1.0, 0.5]), jnp.array([0.3, -0.2]), memory_target(0.25))
    assert np.isfinite(float(loss))
