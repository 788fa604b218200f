"""Training guards: overflow-safe gradient clipping and a stop on non-finite gradients.

References: `optax.global_norm` / `optax.clip_by_global_norm` / `optax.clip` where they are finite,
and NumPy float64 norms of the float32 gradients where Optax's overflows.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import memdyn


def random_tree(key, scale=1.0):
    k1, k2 = jax.random.split(key)
    return {"w": scale * jax.random.normal(k1, (7, 5)), "b": scale * jax.random.normal(k2, (5,))}


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e10])
def test_safe_norm_and_clip_equal_optax_where_finite(scale):
    tree = random_tree(jax.random.key(0), scale)
    np.testing.assert_allclose(memdyn.safe_global_norm(tree), optax.tree.norm(tree), rtol=1e-6)
    for max_norm in (0.5 * float(optax.tree.norm(tree)), 2.0 * float(optax.tree.norm(tree))):
        ours, _ = memdyn.clip_by_safe_global_norm(max_norm).update(tree, optax.EmptyState())
        theirs, _ = optax.clip_by_global_norm(max_norm).update(tree, optax.EmptyState())
        for key in tree:
            np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-6)


def test_safe_clip_survives_where_optax_overflows():
    tree = random_tree(jax.random.key(1), 3e35)  # float32: squares overflow
    assert not np.isfinite(float(optax.tree.norm(tree)))
    theirs, _ = optax.clip_by_global_norm(1.0).update(tree, optax.EmptyState())
    assert all(np.all(np.asarray(v) == 0) for v in jax.tree.leaves(theirs))  # Optax: all zeros
    ours, _ = memdyn.clip_by_safe_global_norm(1.0).update(tree, optax.EmptyState())
    flat = np.concatenate([np.asarray(v, np.float64).ravel() for v in jax.tree.leaves(tree)])
    clipped = np.concatenate([np.asarray(v, np.float64).ravel() for v in jax.tree.leaves(ours)])
    np.testing.assert_allclose(np.linalg.norm(clipped), 1.0, rtol=1e-5)
    np.testing.assert_allclose(clipped, flat / np.linalg.norm(flat), rtol=1e-4, atol=1e-9)


def test_safe_norm_is_right_where_optax_underflows():
    tree = random_tree(jax.random.key(3), 1e-25)  # float32: squares underflow to 0
    assert float(optax.tree.norm(tree)) == 0.0
    flat = np.concatenate([np.asarray(v, np.float64).ravel() for v in jax.tree.leaves(tree)])
    np.testing.assert_allclose(memdyn.safe_global_norm(tree), np.linalg.norm(flat), rtol=1e-5)


def test_clip_value_equals_optax_clip():
    tree = random_tree(jax.random.key(2), 3.0)
    optimizer = memdyn.make_optimizer("gd", 1.0, clip_value=0.5, inject=False)
    ours, _ = optimizer.update(tree, optimizer.init(tree))
    reference = optax.chain(optax.clip(0.5), optax.sgd(1.0))
    theirs, _ = reference.update(tree, reference.init(tree))
    for key in tree:
        np.testing.assert_array_equal(ours[key], theirs[key])


def _linear(key):
    return eqx.nn.Linear(3, 1, key=key), None


def _mse(model, state, xb, yb):
    return jnp.mean((jax.vmap(model)(xb)[:, 0] - yb) ** 2), state


def test_non_finite_gradient_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(32, 3)), jnp.float32)
    ys = jnp.asarray(rng.normal(size=32), jnp.float32)
    good = memdyn.TrainConfig(
        optimizer="gd", learning_rate=0.01, batch_size=8, epochs=4, chunk_steps=4,
        checkpoint_every=4,
    )  # fmt: skip
    checkpoint = tmp_path / "run.eqx"
    run, static = memdyn.init_run(_linear, [0, 1], good.make_optimizer())
    run, _, _ = memdyn.train_epochs(
        run, static, _mse, xs, ys, good, good.make_optimizer(), checkpoint=checkpoint
    )
    assert int(run.step) == 16
    # Far too large a step: the parameters overflow within a few steps.
    bad = memdyn.TrainConfig(
        optimizer="gd", learning_rate=1e18, batch_size=8, epochs=8, chunk_steps=4,
        checkpoint_every=4,
    )  # fmt: skip
    other = tmp_path / "bad.eqx"
    run, static = memdyn.init_run(_linear, [0, 1], bad.make_optimizer())
    with pytest.raises(
        FloatingPointError, match=r"non-finite loss or gradient at step \d+ for seed"
    ):
        memdyn.train_epochs(run, static, _mse, xs, ys, bad, bad.make_optimizer(), checkpoint=other)
    if other.exists():  # whatever was saved is from before the failure, and finite
        saved, meta = memdyn.load_checkpoint(other, run)
        assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(saved.params))
        assert np.all(np.isfinite(meta["losses"]))
