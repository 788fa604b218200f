"""Lanczos against independent references: matrices with known spectra, `numpy.linalg.eigvalsh`
of the exact Hessian, and ARPACK (`scipy.sparse.linalg.eigsh`) on the same Hessian-vector
product wrapped as a `scipy.sparse.linalg.LinearOperator`."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse.linalg
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

from memdyn._lanczos import (
    hessian_extremes,
    lanczos_eigenvalues,
    lanczos_tridiagonal,
    ritz_values,
    ritz_values_and_first_components,
)

pytestmark = pytest.mark.usefixtures("float64")


class TanhRNN(eqx.Module):
    """h_{t+1} = tanh(W h_t + U x_t + b), output c·h_T."""

    recurrent: jax.Array
    encoder: jax.Array
    bias: jax.Array
    readout: jax.Array

    def __init__(self, hidden: int, inputs: int, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.recurrent = jax.random.normal(k1, (hidden, hidden)) / jnp.sqrt(hidden)
        self.encoder = jax.random.normal(k2, (hidden, inputs))
        self.bias = jnp.zeros(hidden)
        self.readout = jax.random.normal(k3, (hidden,)) / jnp.sqrt(hidden)

    def __call__(self, xs):
        def step(h, x):
            return jnp.tanh(self.recurrent @ h + self.encoder @ x + self.bias), None

        h, _ = jax.lax.scan(step, jnp.zeros_like(self.bias), xs)
        return self.readout @ h


def rnn_problem(hidden, inputs, key):
    model_key, x_key, y_key = jax.random.split(key, 3)
    xs = jax.random.normal(x_key, (16, 10, inputs))
    ys = jax.random.normal(y_key, (16,))
    loss = Partial(lambda model, xs, ys: jnp.mean((jax.vmap(model)(xs) - ys) ** 2), xs=xs, ys=ys)
    return TanhRNN(hidden, inputs, key=model_key), loss


def matmul(matrix, vector):
    return matrix @ vector


def test_full_run_recovers_every_eigenvalue_of_a_matrix():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(40, 40))
    matrix = matrix + matrix.T
    ritz = lanczos_eigenvalues(lambda v: matrix @ v, 40, 40, key=jax.random.PRNGKey(0))
    np.testing.assert_allclose(ritz, np.linalg.eigvalsh(matrix), atol=1e-10)


SPECTRA = {
    "uniform": np.linspace(-3.0, 7.0, 200),
    "clustered": np.concatenate(
        [1 + 1e-3 * np.arange(100), 10 + 1e-3 * np.arange(88), np.full(10, 20.0), [-5.0, 30.0]]
    ),
    "degenerate": np.repeat([-1.0, 2.0, 5.0], [60, 100, 40]),
}


@pytest.mark.parametrize("name", SPECTRA)
def test_extremes_of_known_spectra(name):
    """Diagonal operators rotated by one random orthogonal matrix; 60 steps on n = 200. On the
    degenerate spectrum the Krylov space has dimension 3: after the breakdown the restarts yield
    eigenvalues of the operator, never spurious zeros."""
    eigenvalues = SPECTRA[name]
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(200, 200)))
    matrix = jnp.asarray((rotation * eigenvalues) @ rotation.T)
    ritz = np.asarray(lanczos_eigenvalues(Partial(matmul, matrix), 200, 60, key=jax.random.key(2)))
    scale = np.abs(eigenvalues).max()
    np.testing.assert_allclose(
        ritz[[0, -1]], [eigenvalues.min(), eigenvalues.max()], atol=1e-10 * scale
    )
    assert np.all(ritz >= eigenvalues.min() - 1e-10 * scale)
    assert np.all(ritz <= eigenvalues.max() + 1e-10 * scale)
    if name == "degenerate":
        distance = np.abs(ritz[:, None] - np.unique(eigenvalues)).min(axis=1)
        assert distance.max() < 1e-10 * scale


def test_degenerate_spectrum_weights_are_the_multiplicities():
    """Squared first components: the Gauss weights of the start's spectral measure; from the
    all-ones start on diag(−1 ×60, 2 ×100, 5 ×40) they are 0.3, 0.5, 0.2 at −1, 2, 5 and 0 on the
    restarted blocks."""
    diagonal = jnp.asarray(SPECTRA["degenerate"])
    alphas, betas, basis = lanczos_tridiagonal(
        Partial(lambda d, v: d * v, diagonal), jnp.ones(200), 12
    )
    np.testing.assert_allclose(basis @ basis.T, np.eye(12), atol=1e-12)
    nodes, first = ritz_values_and_first_components(alphas, betas)
    np.testing.assert_allclose(nodes, ritz_values(alphas, betas), atol=1e-12)
    masses = [float(np.sum(first**2 * np.isclose(nodes, value))) for value in (-1, 2, 5)]
    np.testing.assert_allclose(masses, [0.3, 0.5, 0.2], atol=1e-12)


def test_hessian_extremes_equal_eigvalsh_of_exact_hessian():
    """Tanh RNN with 4 hidden units (28 parameters): all 28 steps give every eigenvalue (partial
    runs: against ARPACK below)."""
    model, loss = rnn_problem(4, 1, jax.random.key(3))
    flat, unravel = ravel_pytree(model)
    exact = np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(lambda x: loss(unravel(x))))(flat)))
    assert exact.dtype == np.float64
    scale = np.abs(exact).max()
    every = np.asarray(hessian_extremes(loss, model, 28, key=jax.random.key(4)))
    np.testing.assert_allclose(every, exact, atol=1e-9 * scale)


def test_hessian_extremes_agree_with_arpack_on_the_same_hvp():
    """Tanh RNN with 16 hidden units (320 parameters): ARPACK's extreme eigenvalues of the
    Hessian-vector product (forward-over-reverse, written here without memdyn) as a NumPy
    `LinearOperator`, against 100 Lanczos steps."""
    model, loss = rnn_problem(16, 2, jax.random.key(5))
    flat, unravel = ravel_pytree(model)
    gradient = jax.grad(lambda x: loss(unravel(x)))
    product = jax.jit(lambda v: jax.jvp(gradient, (flat,), (v,))[1])
    operator = scipy.sparse.linalg.LinearOperator(
        (flat.size, flat.size),
        matvec=lambda v: np.asarray(product(jnp.asarray(v.ravel()))),
        dtype=np.float64,
    )
    arpack = scipy.sparse.linalg.eigsh(
        operator, k=2, which="BE", tol=1e-12, return_eigenvectors=False
    )
    ritz = np.asarray(hessian_extremes(loss, model, 100, key=jax.random.key(6)))
    scale = np.abs(arpack).max()
    np.testing.assert_allclose(ritz[[0, -1]], np.sort(arpack), atol=1e-9 * scale)


def test_vmaps_over_start_and_operator_and_compiles_once():
    """Three operators and starts in one vmapped call equal three separate calls; float32 too.
    The matvec is traced once per (n, k, dtype), whatever the operator's values and batching."""
    traces = []

    def counted(matrix, vector):
        traces.append(None)
        return matrix @ vector

    rng = np.random.default_rng(7)
    matrices = rng.normal(size=(3, 30, 30))
    matrices = jnp.asarray(matrices + matrices.transpose(0, 2, 1))
    starts = jnp.asarray(rng.normal(size=(3, 30)))
    run = lambda m, s: lanczos_tridiagonal(Partial(counted, m), s, 12)[:2]
    batched = jax.vmap(run)(matrices, starts)
    for i in range(3):
        alphas, betas = run(matrices[i], starts[i])
        np.testing.assert_allclose(batched[0][i], alphas, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(batched[1][i], betas, rtol=1e-12, atol=1e-12)
    assert len(traces) == 1  # jit traces once; vmap batches the traced program
    single = np.asarray(ritz_values(*run(2 * matrices[0], starts[0])))
    assert len(traces) == 1
    low = ritz_values(*run(matrices[0].astype(jnp.float32), starts[0].astype(jnp.float32)))
    assert low.dtype == jnp.float32 and len(traces) == 2
    np.testing.assert_allclose(low, single / 2, rtol=1e-4, atol=1e-4 * np.abs(single).max())


def test_bad_arguments_raise_value_error_naming_them():
    with pytest.raises(ValueError, match="num_iter"):
        lanczos_eigenvalues(lambda v: v, 5, 6, key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_iter"):
        lanczos_eigenvalues(lambda v: v, 5, 0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_iter"):
        lanczos_tridiagonal(lambda v: v, jnp.ones(5), 2.0)
    with pytest.raises(ValueError, match="start"):
        lanczos_tridiagonal(lambda v: v, jnp.ones((5, 2)), 2)
    model, loss = rnn_problem(2, 1, jax.random.key(0))
    with pytest.raises(ValueError, match="num_iter"):
        hessian_extremes(loss, model, 11, key=jax.random.key(0))
