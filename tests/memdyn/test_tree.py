"""`tree_all_finite`, the one "every entry finite" reduction, against NumPy leaf by leaf: other
leaves are ignored, and mapped over members it equals each member's verdict alone."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from memdyn.internal import tree_all_finite


def _numpy_verdict(tree) -> bool:
    leaves = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))]
    return all(bool(np.isfinite(x).all()) for x in leaves)


@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.complex64])
def test_agrees_with_numpy_and_ignores_other_leaves(bad, dtype):
    with jax.enable_x64(True):
        weights = jnp.ones((3, 2), dtype)
        if bad is not None:
            weights = weights.at[2, 1].set(bad)
        tree = {
            "weights": weights,
            "count": jnp.array(7),  # an integer array: ignored
            "key": jax.random.key(0),  # a typed key: ignored
            "activation": jnp.tanh,  # a function: ignored
            "nested": (jnp.zeros(4, dtype), None),
        }
        assert bool(tree_all_finite(tree)) == _numpy_verdict(tree) == (bad is None)
        assert bool(jax.jit(tree_all_finite)(eqx.filter(tree, eqx.is_array))) == (bad is None)


def test_a_tree_without_floating_point_leaves_is_finite():
    assert bool(tree_all_finite({"n": jnp.arange(3), "f": len}))
    assert bool(tree_all_finite([]))


def test_mapped_over_members_equals_each_member_alone():
    members = np.ones((5, 4))
    members[1, 2] = np.nan
    members[3, 0] = np.inf
    tree = {"a": jnp.asarray(members), "b": jnp.zeros((5, 2))}
    mapped = np.asarray(jax.vmap(tree_all_finite)(tree))
    alone = [bool(tree_all_finite(jax.tree.map(lambda x, i=i: x[i], tree))) for i in range(5)]
    np.testing.assert_array_equal(mapped, alone)
    np.testing.assert_array_equal(mapped, [True, False, True, False, True])
