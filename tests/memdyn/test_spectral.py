"""Stochastic Lanczos quadrature and Hutchinson's trace against the exact spectrum
(`numpy.linalg.eigvalsh` of `jax.hessian`, float64) of a small MLP classifier whose model holds
non-array leaves (the MLP's activation functions, a Python float), with statistical tolerances
derived from the exact Hessian."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

from memdyn import hessian_extremes
from memdyn._spectral import (
    SpectralDensity,
    hessian_spectral_density,
    hutchinson_trace,
    spectral_density,
)

pytestmark = pytest.mark.usefixtures("float64")


class Classifier(eqx.Module):
    mlp: eqx.nn.MLP
    temperature: float

    def __call__(self, x):
        return self.mlp(x) / self.temperature


def make_classifier(key):
    """8 → 16 → 16 → 3 tanh MLP: 467 parameters."""
    return Classifier(eqx.nn.MLP(8, 3, 16, 2, activation=jnp.tanh, key=key), 1.5)


def cross_entropy(model, inputs, labels):
    logits = jax.vmap(model)(inputs)
    picked = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - picked)


@pytest.fixture(scope="module")
def problem():
    """(model, loss, exact Hessian as NumPy) shared by the tests, so they share compilations."""
    with jax.enable_x64(True):
        input_key, label_key, model_key = jax.random.split(jax.random.key(1), 3)
        inputs = jax.random.normal(input_key, (64, 8))
        labels = jax.random.randint(label_key, (64,), 0, 3)
        loss = Partial(cross_entropy, inputs=inputs, labels=labels)
        model = make_classifier(model_key)
        parameters, static = eqx.partition(model, eqx.is_inexact_array)
        flat, unravel = ravel_pytree(parameters)
        exact = jax.jit(jax.hessian(lambda x: loss(eqx.combine(unravel(x), static))))(flat)
        return model, loss, np.asarray(exact)


def test_slq_moments_and_wasserstein_distance_match_the_exact_spectrum(problem):
    """10 probes × 40 steps. Per probe, the Gauss quadrature is exact for the mean and second
    moment; what remains is the probe average, of standard deviation √(2 Var(λᵐ)/((n + 2) P))
    for uniform unit probes: asserted within 4 of them. W₁ between the SLQ measure and the
    eigenvalues' empirical measure: ~0.4 % of the spectral range observed, 1.5 % asserted."""
    model, loss, exact_hessian = problem
    exact = np.linalg.eigvalsh(exact_hessian)
    n, probes = exact.size, 10
    density = hessian_spectral_density(
        loss, model, num_iter=40, num_probes=probes, key=jax.random.key(2)
    )
    nodes, weights = np.asarray(density.nodes), np.asarray(density.weights)
    assert nodes.shape == weights.shape == (probes, 40) and nodes.dtype == np.float64
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    for order in (1, 2):
        spread = np.sqrt(2 * np.var(exact**order) / ((n + 2) * probes))
        assert abs(float(density.moment(order)) - np.mean(exact**order)) < 4 * spread
    spectral_range = exact[-1] - exact[0]
    distance = scipy.stats.wasserstein_distance(nodes.ravel(), exact, weights.ravel() / probes)
    assert distance < 0.015 * spectral_range
    sigma = 1e-3 * spectral_range
    grid = density.grid(sigma, 4000)
    broadened = np.asarray(density.density(grid, sigma))
    assert np.all(broadened >= 0)
    np.testing.assert_allclose(np.trapezoid(broadened, np.asarray(grid)), 1.0, atol=1e-12)


def test_operator_density_recovers_a_degenerate_spectrum_and_its_negative_mass():
    """diag(−1 ×30, 2 ×70): every probe's nodes are −1 and 2 (restart blocks carry no weight),
    and the negative mass is a Beta(15, 35) draw per probe, mean 0.3, variance
    0.3 · 0.7 · 2 / (n + 2)."""
    diagonal = jnp.asarray(np.repeat([-1.0, 2.0], [30, 70]))
    probes = 8
    density = spectral_density(
        Partial(jnp.multiply, diagonal), 100, num_iter=6, num_probes=probes, key=jax.random.key(3)
    )
    nodes, weights = np.asarray(density.nodes), np.asarray(density.weights)
    carried = weights > 1e-12
    assert np.all(np.isclose(nodes[carried, None], [-1.0, 2.0]).any(axis=1))
    spread = np.sqrt(0.3 * 0.7 * 2 / (102 * probes))
    assert abs(float(density.negative_mass()) - 0.3) < 4 * spread
    assert float(density.negative_mass(threshold=1.5)) == 0.0
    mean = float(density.moment(1))
    np.testing.assert_allclose(mean, 2 - 3 * float(density.negative_mass()), atol=1e-12)


def test_hutchinson_trace_matches_the_exact_trace(problem):
    """300 Rademacher probes; asserted within 4 standard errors √(2(‖H‖_F² − Σ H_ii²)/P)."""
    model, loss, exact_hessian = problem
    probes = 300
    estimate = float(hutchinson_trace(loss, model, probes, key=jax.random.key(4)))
    off_diagonal = np.sum(exact_hessian**2) - np.sum(np.diag(exact_hessian) ** 2)
    assert abs(estimate - np.trace(exact_hessian)) < 4 * np.sqrt(2 * off_diagonal / probes)


def test_model_with_non_array_leaves_goes_through_hessian_extremes(problem):
    """The classifier holds functions and a Python float, which `ravel_pytree` of the whole
    model cannot flatten; the other tests run SLQ and Hutchinson on it too."""
    model, loss, exact_hessian = problem
    leaves = jax.tree.leaves(model)
    assert leaves[-1] == 1.5 and any(callable(leaf) for leaf in leaves)
    with pytest.raises(TypeError, match="dtype"):
        ravel_pytree(model)
    exact = np.linalg.eigvalsh(exact_hessian)
    ritz = np.asarray(hessian_extremes(loss, model, 80, key=jax.random.key(5)))
    np.testing.assert_allclose(ritz[[0, -1]], exact[[0, -1]], atol=1e-10 * np.abs(exact).max())


SWEEP_TRACES = []


def estimators(loss, model, key):
    """SLQ and Hutchinson with the settings of the tests above, whose compilations the
    unbatched calls below reuse."""
    density_key, trace_key = jax.random.split(key)
    return (
        hessian_spectral_density(loss, model, num_iter=40, num_probes=10, key=density_key),
        hutchinson_trace(loss, model, 300, key=trace_key),
    )


@eqx.filter_jit
def sweep(loss, models, keys):
    SWEEP_TRACES.append(None)
    return eqx.filter_vmap(estimators, in_axes=(None, eqx.if_array(0), 0))(loss, models, keys)


def member(models, index):
    return jax.tree.map(lambda x: x[index] if eqx.is_inexact_array(x) else x, models)


def test_vmapped_sweep_equals_separate_calls_and_traces_once(problem):
    """Three stacked classifiers through SLQ and Hutchinson in one `eqx.filter_vmap`ped,
    jitted program equal three unbatched calls; the program traces once (a second sweep with
    other values retraces nothing)."""
    _, loss, _ = problem
    models = eqx.filter_jit(eqx.filter_vmap(make_classifier))(
        jax.random.split(jax.random.key(6), 3)
    )
    keys = jax.random.split(jax.random.key(7), 3)
    batched = sweep(loss, models, keys)
    sweep(loss, jax.tree.map(lambda x: x * 1.01 if eqx.is_inexact_array(x) else x, models), keys)
    assert len(SWEEP_TRACES) == 1
    densities = batched[0]
    assert densities.nodes.shape == (3, 10, 40)
    sigma = 0.01
    grids = densities.grid(sigma, 200)
    broadened = densities.density(grids, sigma)
    for i in range(3):
        single = estimators(loss, member(models, i), keys[i])
        for one, many in zip(jax.tree.leaves(single), jax.tree.leaves(batched), strict=True):
            np.testing.assert_allclose(one, many[i], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(
            single[0].density(grids[i], sigma), broadened[i], rtol=1e-8, atol=1e-8
        )


def test_nan_parameters_raise_under_jit_and_vmap(problem):
    """The finiteness check of `memdyn._hessian` fires at run time, unbatched and in a sweep
    where one member is broken (the sweep's program of the test above)."""
    model, loss, _ = problem
    broken = eqx.tree_at(
        lambda m: m.mlp.layers[0].bias, model, replace_fn=lambda b: b.at[0].set(jnp.nan)
    )
    with pytest.raises(ValueError, match="model parameters contain"):  # concrete: before jit
        hessian_spectral_density(loss, broken, num_iter=40, num_probes=10, key=jax.random.key(2))
    stacked = jax.tree.map(
        lambda *xs: jnp.stack(xs) if eqx.is_inexact_array(xs[0]) else xs[0], model, broken, model
    )
    with pytest.raises(eqx.EquinoxRuntimeError, match="non-finite"):
        sweep(loss, stacked, jax.random.split(jax.random.key(0), 3))
    assert len(SWEEP_TRACES) == 1


def test_bad_arguments_raise_value_error_naming_them(problem):
    model, loss, _ = problem
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="num_probes"):
        hessian_spectral_density(loss, model, num_iter=4, num_probes=0, key=key)
    with pytest.raises(ValueError, match="num_iter"):
        hessian_spectral_density(loss, model, num_iter=468, num_probes=1, key=key)
    with pytest.raises(ValueError, match="num_probes"):
        hutchinson_trace(loss, model, 2.5, key=key)
    with pytest.raises(ValueError, match="num_iter"):
        spectral_density(lambda v: v, 3, num_iter=4, num_probes=1, key=key)
    with pytest.raises(TypeError, match="dim is needed unless matvec is a curvature operator"):
        spectral_density(lambda v: v, num_iter=2, num_probes=1, key=key)
    density = SpectralDensity(jnp.zeros((1, 2)), jnp.full((1, 2), 0.5))
    with pytest.raises(ValueError, match="sigma"):
        density.density(jnp.linspace(-1, 1, 5), 0.0)
    with pytest.raises(ValueError, match="num_points"):
        density.grid(0.1, 0)
