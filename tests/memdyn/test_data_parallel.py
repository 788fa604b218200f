"""Data-parallel minibatches (`memdyn.batch_mesh`, `train_epochs(..., mesh=...)`): each batch split
over two host devices gives the one-device run, up to the order of floating-point sums.

Every test process has two host devices (tests/conftest.py), so the checks run in-process (they
ran in a subprocess once, which only added a JAX start): decaynet's LSTM and DecayNet classifiers
(hidden 8), with and without recurrent batch normalisation, two seeds, 8 Adam steps, train on two
devices as on one: parameters, optimiser states, running batch-norm moments, the loss log and
(with batch norm, whose evaluation reads the running moments) the epoch-end test accuracies; in
float32 every model, in float64 the DecayNet with batch norm, the farthest apart in float32.
Largest relative gaps measured: 2.6e-6 in float32, 2.3e-14 in float64; the bounds asserted are
`tests.mapped.RTOL`'s, 1e-5 and 1e-12. Batch-norm moments must be over the whole batch, not per
device: moments over one device's half of a batch are ~1 (relative) away from those the two runs
agree on. The compiled step of the plain LSTM holds no collective inside its loops (its weight
gradients are reduced once per step, not once per time step), where a control loop that sums over
the split batch at every step holds one.
"""

from __future__ import annotations

import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memdyn
from decaynet import (
    DecayCell,
    LSTMCell,
    PyTorchInit,
    RecurrentBatchNorm,
    SequenceClassifier,
    classifier_loss,
    evaluate,
)
from memdyn.internal import batch_shards
from tests.mapped import PRECISIONS, RTOL, assert_trees_close, precision, relative_gap

CELLS = {"lstm": LSTMCell, "decay": DecayCell}
TIME, INPUTS, HIDDEN, CLASSES = 5, 3, 8, 3
CONFIG = memdyn.TrainConfig(batch_size=8, epochs=2, chunk_steps=2)  # 4 steps an epoch
# Every model in float32; in float64 (compiling costs) the one farthest apart in float32.
CASES = {
    "float32": [("lstm", False), ("lstm", True), ("decay", False), ("decay", True)],
    "float64": [("decay", True)],
}


def make(cell, batch_norm):
    def make(key):
        normalisation = RecurrentBatchNorm(HIDDEN, TIME) if batch_norm else None
        return eqx.nn.make_with_state(SequenceClassifier)(
            cell=CELLS[cell],
            input_size=INPUTS,
            hidden_size=HIDDEN,
            num_classes=CLASSES,
            sequence_length=TIME,
            normalisation=normalisation,
            init=PyTorchInit(),
            key=key,
        )

    return make


def data(seed, n, dtype):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, TIME, INPUTS)).astype(dtype)
    xs[: n // 2] += 1.5  # halves of a batch differ more
    return jnp.asarray(xs), jnp.asarray(rng.integers(0, CLASSES, n).astype(np.int32))


def per_device_moments_gap(run, static, xs, ys):
    # How far seed 0's running moments after its first batch would be, were they taken over
    # one device's half of the batch, from those over the whole batch.
    model = jax.tree.map(
        lambda x: x[0] if eqx.is_array(x) else x, memdyn.stacked_models(run, static)
    )
    state = jax.tree.map(lambda x: x[0], run.model_state)
    batch = memdyn.epoch_order(jax.random.fold_in(run.order_keys[0], 0), len(ys), 8)[0]

    @eqx.filter_jit
    def moments(state, i):  # an argument: a state is used once, and each call gets a copy
        return jax.tree.leaves(classifier_loss(model, state, xs[i], ys[i])[1])

    whole = moments(state, batch)
    return max(
        relative_gap(a, b)
        for half in (batch[:4], batch[4:])
        for a, b in zip(moments(state, half), whole, strict=True)
        if jnp.issubdtype(a.dtype, jnp.floating)
    )


def _train_on_one_and_two_devices(out):
    mesh = memdyn.batch_mesh()
    gaps, models = {}, {}
    for name in PRECISIONS:
        with precision(name) as dtype:
            xs, ys = data(0, 32, dtype)
            xt, yt = data(1, 16, dtype)
            for cell, batch_norm in CASES[name]:
                case = f"{name} {cell}{' rbn' if batch_norm else ''}"
                optimizer = CONFIG.make_optimizer()
                run, static = memdyn.init_run(make(cell, batch_norm), [0, 1], optimizer)
                # Test accuracy after each epoch where it reads the running moments (and in
                # float32 only: compiling costs).
                accuracy = None
                if name == "float32" and batch_norm:
                    accuracy = lambda run, static=static, xt=xt, yt=yt: evaluate(
                        run, static, xt, yt
                    )
                args = (run, static, classifier_loss, xs, ys, CONFIG, optimizer)
                models[case] = run, static
                plain = memdyn.train_epochs(*args, evaluate=accuracy)
                split = memdyn.train_epochs(*args, evaluate=accuracy, mesh=mesh)
                assert len(split[0].params.head.weight.sharding.device_set) == 2, case
                for what, a, b in zip(("run", "losses", "accuracies"), split, plain, strict=True):
                    if accuracy is not None or what != "accuracies":
                        assert_trees_close(a, b, rtol=RTOL[name], what=f"{case} {what}")
                gaps[case] = max(
                    relative_gap(a, b)
                    for a, b in zip(
                        jax.tree.leaves(split[:2]), jax.tree.leaves(plain[:2]), strict=True
                    )
                    if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)
                )
                if case == "float32 lstm rbn":  # what the agreement above rules out
                    moved = per_device_moments_gap(run, static, xs, ys)
                    assert moved > 10_000 * RTOL[name], (case, moved)
                    print(f"{case}: moments over one device's half {moved:.2g} away")
    for case, gap in gaps.items():
        print(f"{case}: largest relative gap {gap:.2g}")

    with precision("float32"):
        # One compiled step of the plain LSTM (one step: the only loops are over time) ...
        xs, ys = data(0, 32, np.float32)
        optimizer = CONFIG.make_optimizer()
        run, static = models["float32 lstm"]
        step = jax.jit(
            lambda p, o, s, xs, ys, idx: memdyn.train_chunk(
                p, o, s, static, classifier_loss, optimizer, xs, ys, idx, mesh=mesh
            )
        )
        idx = jnp.arange(16).reshape(1, 2, 8)
        compiled = step.lower(run.params, run.opt_state, run.model_state, xs, ys, idx).compile()
        (out / "lstm_step.hlo").write_text(compiled.as_text())
        # ... and a loop over time that sums over the split batch at every step.
        split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "batch"))
        sequences = jax.device_put(xs[:, :, 0].T, split)  # (time, batch)
        total = jax.jit(lambda xs: jax.lax.scan(lambda c, x: (c + jnp.sum(x), None), 0.0, xs)[0])
        (out / "control.hlo").write_text(total.lower(sequences).compile().as_text())

    # A batch size that does not split evenly is refused, naming the argument.
    odd = memdyn.TrainConfig(batch_size=5)
    with pytest.raises(memdyn.ConfigError, match="batch_size is 5, not a multiple of the 2 dev"):
        memdyn.train_epochs(run, static, classifier_loss, xs, ys, odd, optimizer, mesh=mesh)
    with pytest.raises(memdyn.ConfigError, match=r"idx's last axis \(the batch size\) is 5, not"):
        memdyn.train_chunk(
            run.params,
            run.opt_state,
            run.model_state,
            static,
            classifier_loss,
            optimizer,
            xs,
            ys,
            jnp.zeros((1, 2, 5), int),
            mesh=mesh,
        )


COLLECTIVES = (
    r"= \S+ (all-reduce|all-gather|all-to-all|collective-permute|reduce-scatter)(?:-start)?\("
)


def collectives_in_loops(hlo: str) -> list[str]:
    """The collectives of a compiled HLO module that run inside a while loop: in a loop's body or
    in a computation it calls, transitively."""
    computations = {}
    for block in re.split(r"\n(?=\S)", hlo):
        name = re.match(r"(?:ENTRY )?%?([\w.\-]+)", block)
        if name:
            computations[name.group(1)] = block
    calls = r"(?:body|condition|calls|to_apply|true_computation|false_computation)=%?([\w.\-]+)"
    pending, inside = re.findall(r"body=%?([\w.\-]+)", hlo), set()
    while pending:
        name = pending.pop()
        if name in inside or name not in computations:
            continue
        inside.add(name)
        pending += re.findall(calls, computations[name])
        for group in re.findall(r"branch_computations=\{([^}]*)\}", computations[name]):
            pending += [part.strip().lstrip("%") for part in group.split(",")]
    return [op for name in sorted(inside) for op in re.findall(COLLECTIVES, computations[name])]


def test_two_devices_train_as_one(tmp_path):
    assert len(jax.devices()) == 2, jax.devices()  # tests/conftest.py's two host devices
    _train_on_one_and_two_devices(tmp_path)
    assert collectives_in_loops((tmp_path / "lstm_step.hlo").read_text()) == []
    assert collectives_in_loops((tmp_path / "control.hlo").read_text()) == ["all-reduce"]


def test_one_device_mesh_is_the_unsharded_program():
    """On one device the mesh changes nothing: the same numbers, bit for bit."""
    mesh = memdyn.batch_mesh(jax.devices()[:1])
    assert mesh.axis_names == (memdyn.BATCH_AXIS,) and batch_shards() == 1
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        assert batch_shards() == 1
    with jax.sharding.use_abstract_mesh(memdyn.batch_mesh().abstract_mesh):
        assert batch_shards() == len(jax.devices())
    xs = jnp.asarray(np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32))
    ys = jnp.asarray(np.random.default_rng(1).normal(size=16).astype(np.float32))
    config = memdyn.TrainConfig(optimizer="gd", learning_rate=0.1, batch_size=4, chunk_steps=2)
    optimizer = config.make_optimizer()

    def make(key):
        return jax.random.normal(key, (3,)), None

    def loss(w, state, xb, yb):
        return jnp.mean((xb @ w - yb) ** 2), state

    run, static = memdyn.init_run(make, [0, 1], optimizer)
    plain = memdyn.train_epochs(run, static, loss, xs, ys, config, optimizer)
    split = memdyn.train_epochs(run, static, loss, xs, ys, config, optimizer, mesh=mesh)
    np.testing.assert_array_equal(split[0].params, plain[0].params)
    np.testing.assert_array_equal(split[1], plain[1])


def test_bad_meshes_are_refused():
    with pytest.raises(ValueError, match="at least one device"):
        memdyn.batch_mesh([])
    optimizer = memdyn.make_optimizer("gd", 0.1)
    run, static = memdyn.init_run(lambda key: (jnp.zeros(2), None), [0], optimizer)
    loss = lambda w, state, xb, yb: (jnp.mean(xb @ w - yb), state)
    config = memdyn.TrainConfig(batch_size=2)
    args = (run, static, loss, jnp.ones((4, 2)), jnp.ones(4), config, optimizer)
    other = jax.sharding.Mesh(np.asarray(jax.devices()), ("model",))
    with pytest.raises(ValueError, match="mesh must have one axis, named 'batch' .* or 'sweep'"):
        memdyn.train_epochs(*args, mesh=other)
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        memdyn.train_epochs(*args, mesh="batch")
