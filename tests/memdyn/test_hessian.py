"""memdyn Hessians on the white-noise loss of curse: finite differences of the analytic gradient
(eq. 19), HVPs against the matrix, spectra along a trajectory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from curse import memory_target, white_noise_grad, white_noise_loss
from memdyn import hessian, hessian_eigenvalues, hessian_eigenvalues_along, hvp

A = np.array([0.8, -0.3, 0.5])
W = np.array([0.7, 1.9, 3.1])


def objective(theta, target):
    return white_noise_loss(theta["a"], theta["w"], target)


def test_hessian_equals_finite_differences_of_eq19_gradient():
    target = memory_target(0.2)
    theta = {"a": jnp.asarray(A), "w": jnp.asarray(W)}
    matrix = hessian(Partial(objective, target=target), theta)
    # ravel_pytree orders leaves by dict key: a then w.
    x0 = np.concatenate([A, W])
    grad = lambda x: np.concatenate(white_noise_grad(x[:3], x[3:], target))
    h = 1e-5
    columns = [(grad(x0 + h * e) - grad(x0 - h * e)) / (2 * h) for e in np.eye(6)]
    np.testing.assert_allclose(matrix, np.stack(columns, axis=1), rtol=1e-7, atol=1e-9)


def test_eigenvalues_are_float64_and_hvp_matches_matrix():
    loss = Partial(objective, target=memory_target(0.2))
    theta = {"a": jnp.asarray(A), "w": jnp.asarray(W)}
    eigenvalues = hessian_eigenvalues(loss, theta)
    assert eigenvalues.dtype == jnp.float64
    matrix = np.asarray(hessian(loss, theta))
    np.testing.assert_allclose(eigenvalues, np.linalg.eigvalsh(matrix), rtol=1e-10, atol=1e-12)
    v = {"a": jnp.array([1.0, 0.0, -2.0]), "w": jnp.array([0.5, 0.3, 0.1])}
    product = hvp(loss, theta, v)
    expected = matrix @ np.concatenate([v["a"], v["w"]])
    np.testing.assert_allclose(np.concatenate([product["a"], product["w"]]), expected, rtol=1e-10)


def test_spectra_along_a_stacked_trajectory():
    loss = Partial(objective, target=memory_target(0.2))
    thetas = {"a": jnp.stack([A, 1.1 * A]), "w": jnp.stack([W, 0.9 * W])}
    spectra = hessian_eigenvalues_along(loss, thetas)
    assert spectra.shape == (2, 6)
    second = jax.tree.map(lambda x: x[1], thetas)
    np.testing.assert_allclose(spectra[1], hessian_eigenvalues(loss, second), rtol=1e-12)


pytestmark = pytest.mark.usefixtures("float64")
