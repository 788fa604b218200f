"""Seeds split over devices (`memdyn.sweep_mesh()` given to `train_chunk` / `train_epochs`): each
device steps its own seeds (`jax.shard_map`, a loop over them on the CPU), so every seed computes
what it computes on one device, bit for bit, in both precisions. decaynet's classifiers, with and
without batch normalisation, are checked against seeds trained alone in
tests/decaynet/test_mapped.py; here a least-squares model, the placement and the refusals. The test
processes have two host devices (tests/conftest.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import memdyn
from tests.mapped import PRECISIONS, precision

SEEDS = [0, 1, 2, 3]


def _problem(name):
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.normal(size=(24, 3)), dtype=name)
    ys = jnp.asarray(rng.normal(size=24), dtype=name)
    config = memdyn.TrainConfig(optimizer="adam", learning_rate=0.05, batch_size=4, chunk_steps=3)
    optimizer = config.make_optimizer()

    def make(key):
        return {"w": jax.random.normal(key, (3,), dtype=name), "b": jnp.zeros((), name)}, None

    run, static = memdyn.init_run(make, SEEDS, optimizer)
    return run, static, xs, ys, config, optimizer


def loss(params, state, xb, yb):
    return jnp.mean((xb @ params["w"] + params["b"] - yb) ** 2), state


@pytest.mark.parametrize("name", PRECISIONS)
def test_seeds_over_two_devices_equal_one_device_bitwise(name):
    assert len(jax.devices()) == 2, jax.devices()
    with precision(name):
        run, static, xs, ys, config, optimizer = _problem(name)
        mesh = memdyn.sweep_mesh()
        one = memdyn.train_epochs(run, static, loss, xs, ys, config, optimizer)
        split = memdyn.train_epochs(run, static, loss, xs, ys, config, optimizer, mesh=mesh)
        assert split[0].params["w"].sharding.spec == P(memdyn.SWEEP_AXIS)
        assert split[0].params["w"].dtype == jnp.dtype(name)
        for a, b in zip(jax.tree.leaves(one[0]), jax.tree.leaves(split[0]), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(one[1], split[1])
        # The public chunk alike, from arrays placed anywhere (it places them itself).
        idx = jnp.arange(len(SEEDS) * 4).reshape(1, len(SEEDS), 4) % xs.shape[0]
        arguments = (run.params, run.opt_state, run.model_state, static, loss, optimizer, xs, ys)
        alone = memdyn.train_chunk(*arguments, idx)
        spread = memdyn.train_chunk(*arguments, idx, mesh=mesh)
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(spread), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_seeds_that_do_not_divide_over_the_devices_are_refused():
    run, static, xs, ys, config, optimizer = _problem("float32")
    three = jax.tree.map(lambda leaf: leaf[:3] if jnp.ndim(leaf) else leaf, run)
    with pytest.raises(
        memdyn.ConfigError, match="the number of seeds is 3, not a multiple of the 2"
    ):
        memdyn.train_epochs(
            three, static, loss, xs, ys, config, optimizer, mesh=memdyn.sweep_mesh()
        )
