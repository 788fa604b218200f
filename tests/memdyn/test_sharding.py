"""Sweeps sharded across devices: the test process's two host devices (tests/conftest.py), results
equal to the unsharded run and spread over both devices."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curse import memory_target, white_noise_loss
from decaynet import DecayCell, PyTorchInit, SequenceClassifier, classifier_loss
from memdyn import (
    TrainConfig,
    init_run,
    make_optimizer,
    shard_leading_axis,
    sweep_mesh,
    sweep_targets,
    train_epochs,
)


def _make(key):
    return eqx.nn.make_with_state(SequenceClassifier)(
        cell=DecayCell,
        input_size=3,
        hidden_size=4,
        num_classes=3,
        sequence_length=5,
        init=PyTorchInit(),
        key=key,
    )


def test_sweeps_sharded_over_two_devices_equal_unsharded():
    devices = len(jax.devices())
    assert devices == 2, jax.devices()
    mesh = sweep_mesh()

    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(32, 5, 3)).astype(np.float32))
    ys = jnp.asarray(rng.integers(0, 3, 32).astype(np.int32))
    config = TrainConfig(batch_size=8, epochs=2, chunk_steps=2)
    optimizer = config.make_optimizer()
    plain, static = init_run(_make, list(range(8)), optimizer)
    sharded = shard_leading_axis(plain, mesh)
    plain, _, _ = train_epochs(plain, static, classifier_loss, xs, ys, config, optimizer)
    sharded, _, _ = train_epochs(sharded, static, classifier_loss, xs, ys, config, optimizer)
    for a, b in zip(
        jax.tree_util.tree_leaves(plain.params),
        jax.tree_util.tree_leaves(sharded.params),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        assert len(b.sharding.device_set) == devices, b.sharding

    omegas = jnp.array([1 / 2, 1 / 3, 1 / 4, 1 / 5])
    targets = jax.vmap(memory_target)(omegas)
    theta0 = (jnp.array([0.1, 0.1, 0.1]), jnp.array([1.0, 2.0, 0.5]))
    objective = lambda theta, target: white_noise_loss(theta[0], theta[1], target)
    opt = make_optimizer("gd", 0.01)
    plain = sweep_targets(objective, theta0, opt, targets, 200, save_every=50)
    sharded = sweep_targets(
        objective, theta0, opt, shard_leading_axis(targets, mesh), 200, save_every=50
    )
    np.testing.assert_allclose(np.asarray(plain.losses), np.asarray(sharded.losses), rtol=1e-6)
    assert len(sharded.losses.sharding.device_set) == devices, sharded.losses.sharding


def test_shard_leading_axis_on_one_device_keeps_values():
    mesh = sweep_mesh()
    tree = {"a": jnp.arange(6.0).reshape(3, 2), "step": jnp.asarray(4), "name": "x"}
    placed = shard_leading_axis(tree, mesh)
    np.testing.assert_array_equal(placed["a"], tree["a"])
    assert placed["name"] == "x" and int(placed["step"]) == 4
    with pytest.raises(ValueError, match="at least one device"):
        sweep_mesh([])
    assert jax.devices()  # the default backend has devices
