"""Coincided critical affine spaces (App. D): counts, gradients, flatness, Hessian null spaces."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

from curse._landscape import (
    coincided_space,
    count_coincided_spaces,
    labelled_partitions,
    stirling2,
    zero_eigenvalue_count,
)
from curse._losses import white_noise_loss
from curse._targets import ExponentialSum
from curse.experiments.landscape_exp import LandscapeConfig
from curse.experiments.landscape_exp import run as run_landscape

A_STAR, W_STAR = np.array([1.0, 0.5]), np.array([1.0, 2.0])


def _set_partitions(items):
    """All set partitions of a list, by placing the first item in each block of the rest."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _set_partitions(rest):
        yield [[first], *partition]
        for i in range(len(partition)):
            yield [*partition[:i], [first, *partition[i]], *partition[i + 1 :]]


def test_stirling_numbers_against_enumerated_partitions():
    for m in range(1, 7):
        blocks = [len(p) for p in _set_partitions(list(range(m)))]
        for k in range(0, m + 2):
            assert stirling2(m, k) == blocks.count(k)
        for k in range(1, m + 1):
            assert count_coincided_spaces(m, k) == math.factorial(k) * blocks.count(k)
            assert len(labelled_partitions(m, k)) == count_coincided_spaces(m, k)
    # Larger m against the explicit formula S(m, k) = Σ_j (−1)^j C(k, j) (k − j)^m / k!.
    for m, k in ((20, 7), (30, 12), (12, 12)):
        explicit = sum((-1) ** j * math.comb(k, j) * (k - j) ** m for j in range(k + 1))
        assert stirling2(m, k) == explicit // math.factorial(k)
    assert stirling2(0, 0) == 1


def _width_one_minimiser():
    """Independent width-1 minimiser of J for the two-term target: for fixed w the best
    a = 2w L(w), so J(w) = ‖ρ‖² − 2w L(w)², stationary where L(w) + 2w L'(w) = 0 (scipy brentq)."""
    laplace = lambda s: np.sum(A_STAR / (s + W_STAR))
    slope = lambda s: -np.sum(A_STAR / (s + W_STAR) ** 2)
    w = brentq(lambda s: laplace(s) + 2.0 * s * slope(s), 0.1, 10.0, xtol=1e-15, rtol=1e-15)
    return np.array([2.0 * w * laplace(w)]), np.array([w])


@pytest.fixture(scope="module")
def target():
    return ExponentialSum(jnp.asarray(A_STAR), jnp.asarray(W_STAR))


@pytest.mark.parametrize(
    "b, v, groups",
    [
        (A_STAR, W_STAR, (0, 1, 1, 0)),  # k = m* = 2: the global minimiser split over 4 units
        (*_width_one_minimiser(), (0, 0, 0, 0)),  # k = 1, from scipy's minimiser
    ],
)
def test_gradient_vanishes_and_loss_constant_on_coincided_space(target, b, v, groups):
    loss = lambda theta: white_noise_loss(theta[0], theta[1], target)
    space = coincided_space(jnp.asarray(b), jnp.asarray(v), groups)
    m, k = len(groups), len(b)
    assert space.basis.shape == (m - k, 2 * m)
    base = float(loss((space.a, space.w)))
    # The group sums equal b, and every w equals its group's v.
    np.testing.assert_allclose(np.bincount(groups, weights=np.asarray(space.a)), b, rtol=1e-14)

    @jax.jit
    def inspect(a, w):
        grad = jnp.concatenate(jax.grad(loss)((a, w)))
        hessian = jax.hessian(lambda x: loss((x[:m], x[m:])))(jnp.concatenate([a, w]))
        return loss((a, w)), jnp.linalg.norm(grad), jnp.linalg.eigvalsh(hessian), hessian

    for xi in jax.random.normal(jax.random.key(0), (3, m - k)):
        move = 2.0 * xi @ space.basis
        a, w = space.a + move[:m], space.w + move[m:]
        np.testing.assert_array_equal(np.asarray(w), np.asarray(space.w))
        value, grad_norm, spectrum, hessian = inspect(a, w)
        assert float(grad_norm) <= 1e-10
        assert abs(float(value) - base) <= 1e-13
        assert zero_eigenvalue_count(spectrum) >= m - k
        # The null space contains the space's directions: H d = 0 for every basis vector.
        assert float(jnp.max(jnp.abs(hessian @ space.basis.T))) <= 1e-10


def test_a_generic_point_is_not_critical(target):
    loss = lambda theta: white_noise_loss(theta[0], theta[1], target)
    grad = jax.grad(loss)((jnp.array([0.3, 0.3, 0.9, 0.0]), jnp.array([1.1, 1.1, 2.0, 0.5])))
    assert float(jnp.linalg.norm(jnp.concatenate(grad))) > 1e-3


def test_landscape_experiment_smoke():
    config = LandscapeConfig(
        target_a=tuple(A_STAR), target_w=tuple(W_STAR), width=3, points_per_space=1,
        line_s=tuple(np.linspace(-1.0, 2.0, 31)), starts=2,
    )  # fmt: skip
    result = run_landscape(config)
    for row in result["spaces"]:
        assert row["enumerated_spaces"] == row["predicted_spaces"]
        assert row["max_grad_norm"] <= 1e-10
        assert row["min_zero_eigs"] >= row["null_dimension_bound"]
    # Prop. D.1: the sign change of one eigenvalue splits the line into saddles and stable parts.
    assert len(result["line_crossings"]) >= 1
    assert 0.0 < result["line_saddle_fraction"] < 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="m and k"):
        stirling2(-1, 2)
    with pytest.raises(ValueError, match="1 <= k <= m"):
        labelled_partitions(2, 3)
    with pytest.raises(ValueError, match="groups"):
        coincided_space(jnp.ones(2), jnp.ones(2), (0, 0, 0))
    with pytest.raises(ValueError, match="b and v"):
        coincided_space(jnp.ones(2), jnp.ones(3), (0, 1))
    with pytest.raises(ValueError, match="width"):
        LandscapeConfig(width=0)
    with pytest.raises(ValueError, match="target_w"):
        LandscapeConfig(target_w=(1.0, 1.0, -1.0))
