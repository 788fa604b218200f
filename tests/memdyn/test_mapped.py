"""memdyn's paths that map over members equal their members run one by one, unbatched, in float32
and float64, at a small odd size (where XLA:CPU's miscompile of `vmap(grad(scan LSTM))` shows,
`tests/mapped.py`) and at a realistic one; their gradients equal central finite differences.

Paths: `sweep_learning_rates`, `sweep_seeds`, `sweep_targets`; SLQ, Hutchinson and Lanczos
(`hessian_spectral_density`, `hutchinson_trace`, `hessian_extremes`) and `hvp` under
`eqx.filter_vmap` over stacked models; sweeps sharded over the test process's two host devices
(`sweep_mesh`, `shard_leading_axis`). `train_epochs` over seeds, which needs the papers' models
with batch norm, is in tests/decaynet/test_mapped.py. Already covered elsewhere, not repeated:
`lanczos_tridiagonal` vmapped over operators in both precisions (test_lanczos.py).

The gradient a training sweep used is read off its first plain gradient-descent step,
`∇J(θ_0) = (θ_0 − θ_1) / η` (batched like every other step: the scan's carry is), so the central
differences check the mapped program's own gradients, not a recomputation; the losses they
difference come from the members' compiled programs (`losses[0]` of a run from the moved θ).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import memdyn
from tests.mapped import (
    PRECISIONS,
    RTOL,
    SIZES,
    ScanLSTM,
    Size,
    assert_gradient_matches_central_differences,
    assert_mapped_equals_members,
    assert_trees_close,
    member,
    precision,
    regression_data,
    regression_loss,
)

# The stack's own correctness: `make test-latest` runs these against the newest releases.
pytestmark = pytest.mark.canary


STEPS = 3  # gradient-descent steps of each training sweep, every one saved
RATES = (0.05, 0.1, 0.2, 0.4)


# Each case compiles its own programs, a few seconds each on one core: the realistic size runs
# with the slow tests.
MARKS = {"small": (), "realistic": pytest.mark.slow}


def _cases():
    return [
        pytest.param(size, name, id=f"{size}-{name}", marks=MARKS[size])
        for size in SIZES
        for name in PRECISIONS
    ]


# Models and data each built by one compiled program (per precision and shape): eagerly, each
# random draw and each operation on it compiles a program of its own.
_lstm = eqx.filter_jit(ScanLSTM)


@eqx.filter_jit
def _models(size: Size, key):
    return eqx.filter_vmap(lambda k: ScanLSTM(size.inputs, size.hidden, key=k))(
        jax.random.split(key, size.members)
    )


def _target_loss(model, target):
    return regression_loss(model, target["xs"], target["ys"])


@eqx.filter_jit
def _target(size: Size, key):
    xs, ys = regression_data(key, size.batch, size.time, size.inputs)
    return {"xs": xs, "ys": ys}


@jax.jit
def _member_keys(keys):
    """`sweep_seeds` splits each member's key into its initialisation and loss keys."""
    return jnp.swapaxes(jax.vmap(jax.random.split)(keys), 0, 1)


# One optimiser object for every run: `train` compiles once per optimiser object (its update
# functions are static), and `make_optimizer` builds new ones at each call.
OPTIMIZER = memdyn.make_optimizer("gd", 0.1)


def _run(loss, model, rate, **options):
    """A member: `STEPS` steps of plain gradient descent at `rate`, every one saved. The learning
    rate sweep's, the target sweep's and the central differences' members share this program:
    the rate is always a strongly typed array of the default float (a weakly typed one, from a
    Python float, would compile a program of its own)."""
    rate = jnp.asarray(rate, float)
    return memdyn.train(loss, model, OPTIMIZER, STEPS, save_every=1, learning_rate=rate, **options)


def _check_first_step(swept, rates, run, losses):
    """The gradient of each member's first step, `(θ_0 − θ_1) / η`, against central differences
    of its loss (from `run(loss, θ)`, a member's compiled program: `losses[0]` is J(θ))."""
    for index, (rate, loss) in enumerate(zip(rates, losses, strict=True)):
        trajectory = member(swept, index, size=len(rates))
        before, after = trajectory.model_at(0), trajectory.model_at(1)
        gradient = jax.tree.map(lambda a, b, rate=rate: (a - b) / rate, before, after)
        assert_gradient_matches_central_differences(
            lambda model, loss=loss: run(loss, model).losses[0],
            before,
            gradient,
            key=jax.random.key(index),
        )


class SampledLoss(eqx.Module):
    """A stochastic loss: fresh inputs from the step's key, as `sweep_seeds` trains on."""

    batch: int = eqx.field(static=True)
    time: int = eqx.field(static=True)
    inputs: int = eqx.field(static=True)

    def __call__(self, model, key):
        return regression_loss(model, *regression_data(key, self.batch, self.time, self.inputs))


@pytest.mark.parametrize(("size", "name"), _cases())
def test_sweep_learning_rates_equals_members(size, name):
    config = SIZES[size]
    with precision(name):
        model = _lstm(config.inputs, config.hidden, key=jax.random.key(0))
        loss = Partial(_target_loss, target=_target(config, jax.random.key(1)))
        rates = jnp.asarray(RATES[: config.members])
        swept = memdyn.sweep_learning_rates(loss, model, OPTIMIZER, rates, STEPS, save_every=1)
        assert swept.losses.dtype == jnp.dtype(name)
        assert_mapped_equals_members(
            swept, [_run(loss, model, rate) for rate in rates], rtol=RTOL[name]
        )
        if name == "float64":
            run = lambda loss, m: _run(loss, m, RATES[0])
            _check_first_step(swept, rates, run, [loss] * config.members)


@pytest.mark.parametrize(("size", "name"), _cases())
def test_sweep_targets_equals_members(size, name):
    config = SIZES[size]
    with precision(name):
        model = _lstm(config.inputs, config.hidden, key=jax.random.key(3))
        targets = jax.vmap(lambda k: _target(config, k))(
            jax.random.split(jax.random.key(4), config.members)
        )
        swept = memdyn.sweep_targets(_target_loss, model, OPTIMIZER, targets, STEPS, save_every=1)
        losses = [Partial(_target_loss, target=member(targets, i)) for i in range(config.members)]
        assert_mapped_equals_members(
            swept, [_run(loss, model, 0.1) for loss in losses], rtol=RTOL[name]
        )
        if name == "float64":
            run = lambda loss, m: _run(loss, m, 0.1)
            _check_first_step(swept, [0.1] * config.members, run, losses)


@pytest.mark.parametrize(("size", "name"), _cases())
def test_sweep_seeds_equals_members(size, name):
    config = SIZES[size]
    with precision(name):
        loss = SampledLoss(config.batch, config.time, config.inputs)
        init = lambda key: ScanLSTM(config.inputs, config.hidden, key=key)
        keys = jax.random.split(jax.random.key(2), config.members)
        swept = memdyn.sweep_seeds(loss, init, OPTIMIZER, keys, STEPS, save_every=1)
        init_keys, loss_keys = _member_keys(keys)
        members = [
            _run(loss, _lstm(config.inputs, config.hidden, key=init_key), 0.1, key=loss_key)
            for init_key, loss_key in zip(init_keys, loss_keys, strict=True)
        ]
        assert_mapped_equals_members(swept, members, rtol=RTOL[name])
        if name == "float64":
            run = lambda loss_key, m: _run(loss, m, 0.1, key=loss_key)
            _check_first_step(swept, [0.1] * config.members, run, list(loss_keys))


# Lanczos steps and probes: the small model has 186 parameters, the realistic one 7,840.
ESTIMATOR_SETTINGS = {"small": (8, 3), "realistic": (12, 2)}


@eqx.filter_jit
def _estimators(loss, model, key, tangent, *, num_iter, num_probes):
    density_key, trace_key, extremes_key = jax.random.split(key, 3)
    return (
        memdyn.hessian_spectral_density(
            loss, model, num_iter=num_iter, num_probes=num_probes, key=density_key
        ),
        memdyn.hutchinson_trace(loss, model, num_probes, key=trace_key),
        memdyn.hessian_extremes(loss, model, num_iter, key=extremes_key),
        memdyn.hvp(loss, model, tangent),
    )


@pytest.mark.parametrize(("size", "name"), _cases())
def test_curvature_estimators_over_stacked_models_equal_members(size, name):
    """SLQ, Hutchinson and Lanczos in one `eqx.filter_vmap` over stacked models, and the
    Hessian-vector products they are built on, equal each model's own; in float64 each member's
    product equals central differences of its gradient."""
    config = SIZES[size]
    num_iter, num_probes = ESTIMATOR_SETTINGS[size]
    with precision(name):
        models = _models(config, jax.random.key(5))
        tangents = _models(config, jax.random.key(8))
        loss = Partial(_target_loss, target=_target(config, jax.random.key(6)))
        keys = jax.random.split(jax.random.key(7), config.members)
        estimators = functools.partial(_estimators, num_iter=num_iter, num_probes=num_probes)
        mapped = eqx.filter_jit(eqx.filter_vmap(estimators, in_axes=(None, 0, 0, 0)))(
            loss, models, keys, tangents
        )
        members = [
            estimators(loss, member(models, i), keys[i], member(tangents, i))
            for i in range(config.members)
        ]
        # Lanczos carries each product's rounding into the next: a batched product that sums in
        # another order moves the float64 Ritz values by a few 1e-13 of the spectrum's scale.
        rtol = {"float32": RTOL["float32"], "float64": 1e-11}[name]
        assert_mapped_equals_members(mapped, members, rtol=rtol)
        if name == "float64":
            # ∇J(θ) = θ_0 − θ_1 of a gradient-descent step of rate 1 (a member's program).
            # NumPy arithmetic: eager JAX operations would compile a program per leaf shape.
            def gradient(model):
                thetas = jax.tree.map(np.asarray, _run(loss, model, 1.0).thetas)
                return jax.tree.map(lambda a: a[0] - a[1], thetas)

            h = 1e-5
            for index, (*_, product) in enumerate(members):
                model, tangent = member(models, index), member(tangents, index)
                forward = gradient(jax.tree.map(lambda p, t: p + h * t, model, tangent))
                backward = gradient(jax.tree.map(lambda p, t: p - h * t, model, tangent))
                difference = jax.tree.map(lambda a, b: (a - b) / (2 * h), forward, backward)
                assert_trees_close(difference, product, rtol=1e-6, what=f"member {index} Hv")


# Three members on each of two devices: the sharded sweep's size.
SHARDED_SIZE = SIZES["small"]._replace(members=6)


def test_sweep_sharded_over_two_devices_equals_members():
    """`sweep_seeds` with its keys placed over two host devices (three members on each) equals
    the members trained one by one on one device, in both precisions. Every test process has two
    host devices (tests/conftest.py); test_sharding.py compares sharded sweeps with unsharded
    ones, not with their members. The members run in the programs
    test_sweep_seeds_equals_members compiled."""
    assert len(jax.devices()) == 2, jax.devices()
    config = SHARDED_SIZE
    for name in PRECISIONS:
        with precision(name):
            loss = SampledLoss(config.batch, config.time, config.inputs)
            init = lambda key: ScanLSTM(config.inputs, config.hidden, key=key)
            keys = jax.random.split(jax.random.key(2), config.members)
            placed = memdyn.shard_leading_axis(keys, memdyn.sweep_mesh())
            swept = memdyn.sweep_seeds(loss, init, OPTIMIZER, placed, STEPS, save_every=1)
            assert len(swept.losses.sharding.device_set) == 2, swept.losses.sharding
            swept = memdyn.gather(swept)
            members = [
                _run(loss, _lstm(config.inputs, config.hidden, key=i), 0.1, key=k)
                for i, k in zip(*_member_keys(keys), strict=True)
            ]
            assert_mapped_equals_members(swept, members, rtol=RTOL[name])
