"""Lanczos extremes against numpy.linalg.eigvalsh of the exact Hessian."""

import jax
import numpy as np
import pytest

from curse._models import ContinuousRNN
from curse._sampled import make_sampled_loss
from curse._targets import ExponentialSum
from memdyn._hessian import hessian_matrix
from memdyn._lanczos import hessian_extremes, lanczos_eigenvalues


def test_full_run_recovers_every_eigenvalue_of_a_matrix():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(40, 40))
    A = A + A.T
    ritz = lanczos_eigenvalues(lambda v: A @ v, 40, 40, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(ritz, np.linalg.eigvalsh(A), atol=1e-10)


def test_hessian_extremes_equal_eigvalsh_of_exact_hessian():
    """Full-W linear RNN (m = 5: 35 parameters) on a sampled-path loss."""
    target = ExponentialSum([1.0, -0.4], [0.7, 2.0])
    model = ContinuousRNN(5, structure="full", key=jax.random.PRNGKey(1))
    loss = make_sampled_loss(
        target.kernel, key=jax.random.PRNGKey(2), num_paths=4, num_steps=60, dt=0.1, method="zoh"
    )
    exact = np.linalg.eigvalsh(np.asarray(hessian_matrix(loss, model)))
    assert exact.dtype == np.float64
    every = np.asarray(hessian_extremes(loss, model, 35, key=jax.random.PRNGKey(3)))
    np.testing.assert_allclose(every, exact, atol=1e-9 * np.abs(exact).max())
    partial = np.asarray(hessian_extremes(loss, model, 20, key=jax.random.PRNGKey(3)))
    scale = np.abs(exact).max()
    assert abs(partial[-1] - exact[-1]) < 1e-8 * scale
    assert abs(partial[0] - exact[0]) < 1e-6 * scale


def test_bad_iteration_count_raises_value_error():
    with pytest.raises(ValueError, match="num_iter"):
        lanczos_eigenvalues(lambda v: v, 5, 6, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="num_iter"):
        lanczos_eigenvalues(lambda v: v, 5, 0, key=jax.random.PRNGKey(0))
