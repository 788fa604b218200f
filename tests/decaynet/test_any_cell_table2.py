"""Table 2's pipeline with any `memdyn.AbstractCell`: a GRU and an LRU row through `run` on real
MNIST, the classifier's logits against NumPy loops with the same weights, seeds in one `vmap`
against seeds one by one, parameter counts against closed forms, the registry and the CLI."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memdyn
from decaynet import (
    CellClassifier,
    LSTMCell,
    PaperInit,
    SequenceClassifier,
    classifier_loss,
    count_parameters,
    parameter_count,
    row_classifier,
)
from decaynet import _data as data
from decaynet.cli import DESCRIPTION, main
from decaynet.experiments import EXPERIMENTS
from decaynet.experiments.table2 import Config, parse_model, run
from memlab._cli import build_parser, config_from_args
from tests.decaynet.accuracy_reference import record_evaluations

M, C = 28, 10  # Table 2's rows of 28 pixels, 10 classes

TINY = Config(
    models=("mnist/gru/16", "mnist/lru/16"),
    seeds=2,
    train=memdyn.TrainConfig(optimizer="adam", learning_rate=0.01, batch_size=32, chunk_steps=64),
    train_subset=2048,
    test_subset=500,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, mnist_files):
    """The tiny run, and the run state and model parts of each row as `evaluate` got them."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = record_evaluations(monkeypatch)
        result = run(TINY, tmp_path_factory.mktemp("table2_any"))
    return result, [(run_state, static) for run_state, static, *_ in calls]


def test_gru_and_lru_rows_learn_through_table2(tiny):
    """64 Adam steps on 2,048 images: every seed of both rows well above chance (10 %) on 500
    test images (measured: GRU 40 and 47 %, LRU 58 and 61 %), its mean loss over the 64 steps
    clearly below the untrained ~log 10 (GRU 1.99, 1.94), and the parameter counts the closed
    forms."""
    result, _ = tiny
    gru, lru = result["rows"]
    assert (gru["model"], lru["model"]) == ("GRU", "LRU")
    assert gru["params"] == 3 * 16 * (M + 16) + 4 * 16 + C * 16 + C
    assert lru["params"] == 3 * 16 + 4 * 16 * M + M + C * M + C
    for row in (gru, lru):
        assert row["steps"] == 2048 // 32
        assert np.all(np.asarray(row["accuracies"]) > 25), row
        assert np.all(np.asarray(row["final_loss"]) < math.log(10) - 0.2), row
    (test,) = result["tests"]
    assert test["pair"] == ["GRU-16", "LRU-16"] and 0 <= test["p_value"] <= 1


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_gru_classifier_logits_equal_a_numpy_loop():
    """PyTorch's GRU equations in NumPy, the reset gate on the recurrent product `W_hn h + b_hn`,
    with the classifier's weights, then the head on `h_D`."""
    hidden, xs = 6, np.random.default_rng(0).normal(size=(3, 28, M))
    with jax.enable_x64(True):
        model, state = row_classifier(memdyn.GRUCell, hidden)(jax.random.key(0))
        logits, _ = model(jnp.asarray(xs), state)
    assert isinstance(model, CellClassifier)
    assert count_parameters(model) == 3 * hidden * (M + hidden) + 4 * hidden + C * hidden + C
    cell = jax.tree.map(np.asarray, model.cell)
    w_r, w_z, w_n = np.split(cell.weight_input, 3)
    u_r, u_z, u_n = np.split(cell.weight_recurrent, 3)
    b_r, b_z, b_n = np.split(cell.bias, 3)
    expected = []
    for sequence in xs:
        h = np.zeros(hidden)
        for x in sequence:
            r = _sigmoid(w_r @ x + u_r @ h + b_r)
            z = _sigmoid(w_z @ x + u_z @ h + b_z)
            n = np.tanh(w_n @ x + b_n + r * (u_n @ h + cell.bias_new))
            h = (1 - z) * n + z * h
        expected.append(np.asarray(model.head.weight) @ h + np.asarray(model.head.bias))
    np.testing.assert_allclose(logits, np.stack(expected), rtol=1e-12, atol=1e-13)


def test_lru_classifier_logits_equal_a_numpy_loop_in_complex_arithmetic():
    state_size, xs = 5, np.random.default_rng(1).normal(size=(2, 28, M))
    with jax.enable_x64(True):
        model, state = row_classifier(memdyn.LRUCell, state_size)(jax.random.key(1))
        logits, _ = model(jnp.asarray(xs), state)
    cell = jax.tree.map(np.asarray, model.cell)
    lam = np.exp(-np.exp(cell.nu_log) + 1j * np.exp(cell.theta_log))
    b = np.exp(cell.gamma_log)[:, None] * (cell.input_real + 1j * cell.input_imag)
    c = cell.output_real + 1j * cell.output_imag
    expected = []
    for sequence in xs:
        x = np.zeros(state_size, complex)
        for u in sequence:
            x = lam * x + b @ u
        y = (c @ x).real + cell.skip * sequence[-1]
        expected.append(np.asarray(model.head.weight) @ y + np.asarray(model.head.bias))
    assert model.head.weight.shape == (C, M)  # the LRU's output has the input's size
    assert count_parameters(model) == 3 * state_size + 4 * state_size * M + M + C * M + C
    np.testing.assert_allclose(logits, np.stack(expected), rtol=1e-12, atol=1e-13)


def test_each_seed_of_the_tiny_run_equals_that_seed_trained_alone(tiny):
    """The GRU row's two seeds, trained in one `vmap`, against seed 1 trained alone on the same
    images in the same order (float32: the batched and single matrix products may sum in
    another order, so after 64 Adam steps they agree to 1e-6, measured 4e-7, not bitwise)."""
    (together, static), _ = tiny[1]
    train, _ = data.load("mnist")
    xs = data.as_sequences(
        train.images[: TINY.train_subset], normalisation=data.DEFAULT_NORMALISATION["mnist"]
    )
    config = TINY.train
    optimizer = config.make_optimizer()
    # The model built in one compiled program: eagerly, each draw compiles one per shape.
    make = eqx.filter_jit(row_classifier(memdyn.GRUCell, 16))
    alone, _ = memdyn.init_run(make, [1], optimizer)
    alone, _, _ = memdyn.train_epochs(
        alone, static, classifier_loss, xs, train.labels[: TINY.train_subset], config, optimizer
    )
    for a, b in zip(jax.tree.leaves(together.params), jax.tree.leaves(alone.params), strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a[1], b[0], rtol=1e-5, atol=1e-6)  # measured: 4.3e-7


def test_lru_seeds_in_one_vmap_equal_seeds_one_by_one_in_float64():
    """Six Adam steps on 96 random images: the parameters of seeds 3 and 4 trained together
    equal those of each trained alone, to 1e-12."""
    rng = np.random.default_rng(2)
    xs = rng.uniform(size=(96, 28, M))
    ys = rng.integers(0, C, size=96).astype(np.int32)
    config = memdyn.TrainConfig(
        optimizer="adam", learning_rate=0.01, batch_size=16, epochs=1, chunk_steps=6
    )

    # The models built in one compiled program: eagerly, each draw compiles one per shape.
    make = eqx.filter_jit(row_classifier(memdyn.LRUCell, 4))

    def trained(seeds):
        optimizer = config.make_optimizer()
        run_state, static = memdyn.init_run(make, seeds, optimizer)
        run_state, _, _ = memdyn.train_epochs(
            run_state, static, classifier_loss, xs, ys, config, optimizer, desc="seeds"
        )
        return run_state.params

    with jax.enable_x64(True):
        together = trained([3, 4])
        alone = [trained([seed]) for seed in (3, 4)]
    assert jax.tree.leaves(together)[0].dtype == jnp.float64
    for index, single in enumerate(alone):
        for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(a[index], b[0], rtol=1e-12, atol=1e-12)


def test_parameter_counts_against_closed_forms():
    """GRU: `3N(M + N) + 4N` — PyTorch's `nn.GRU` has `3N(M + N) + 6N`, but its input and
    recurrent biases of the reset and update gates only ever appear summed, so the GRU keeps one
    of each (as the LSTM keeps `b_ih + b_hh`); `b_in` and `b_hn` stay apart. LRU: `3N` for
    `ν, θ, γ`, `2NM` each for complex B and C, `M` for `d`; its head reads M outputs."""
    n, key = 32, jax.random.key(0)
    count = {  # from the shapes alone (`eqx.filter_eval_shape`): nothing is built
        cell: count_parameters(eqx.filter_eval_shape(row_classifier(cell, n), key)[0])
        for cell in (memdyn.GRUCell, memdyn.LRUCell, LSTMCell)
    }
    pytorch_gru = 3 * n * (M + n) + 6 * n
    assert count[memdyn.GRUCell] == pytorch_gru - 2 * n + C * n + C == 6218
    assert count[memdyn.LRUCell] == 3 * n + 4 * n * M + M + C * M + C == 3998
    assert count[LSTMCell] == parameter_count(M, n) == 8138
    torch = pytest.importorskip("torch", reason="PyTorch (the bench extra) is not installed")
    assert sum(p.numel() for p in torch.nn.GRU(M, n).parameters()) == pytorch_gru


def test_gated_cells_keep_the_fused_classifier_and_other_cells_take_the_unrolled_one():
    class LeakyCell(memdyn.AbstractCell):  # a user's cell: the constructor is all it needs
        weight: jax.Array

        def __init__(self, input_size, hidden_size, *, key):
            self.weight = jax.random.normal(key, (hidden_size, hidden_size + input_size)) / 8

        def initial_carry(self):
            return jnp.zeros(self.weight.shape[0])

        def __call__(self, carry, x):
            carry = 0.5 * carry + 0.5 * jnp.tanh(self.weight @ jnp.append(carry, x))
            return carry, carry

    lstm, _ = eqx.filter_eval_shape(row_classifier(LSTMCell, 4), jax.random.key(0))
    assert type(lstm) is SequenceClassifier and lstm.label == "LSTM"
    leaky, state = row_classifier(LeakyCell, 3)(jax.random.key(0))
    assert type(leaky) is CellClassifier and leaky.label == "Leaky"
    xs = jnp.ones((2, 28, M))
    loss_and_grad = eqx.filter_value_and_grad(
        lambda m: classifier_loss(m, state, xs, jnp.zeros(2, int))[0]
    )
    loss, grads = eqx.filter_jit(loss_and_grad)(leaky)
    assert jnp.isfinite(loss) and count_parameters(grads) == 3 * 31 + C * 3 + C
    with pytest.raises(ValueError, match=r"xs"):
        leaky(jnp.ones((2, 27, M)), state)


def test_bad_cells_and_inits():
    with pytest.raises(ValueError, match=r"init must be PyTorchInit\(\) for a GRU"):
        row_classifier(memdyn.GRUCell, 4, PaperInit())
    with pytest.raises(TypeError, match="init must be an AbstractInit"):
        row_classifier(memdyn.GRUCell, 4, "pytorch")
    with pytest.raises(ValueError, match="init"):
        Config(models=("mnist/lstm/32", "mnist/lru/32"), init="paper")
    with pytest.raises(ValueError, match="AbstractGatedCell or memdyn.AbstractCell"):
        row_classifier(eqx.nn.GRUCell, 4)

    class PairCell(memdyn.AbstractCell):  # two outputs per step: no vector for the head
        weight: jax.Array

        def __init__(self, input_size, hidden_size, *, key):
            self.weight = jax.random.normal(key, (hidden_size, input_size))

        def initial_carry(self):
            return jnp.zeros(self.weight.shape[0])

        def __call__(self, carry, x):
            return carry, (carry, self.weight @ x)

    with pytest.raises(ValueError, match="one vector per step"):
        row_classifier(PairCell, 4)(jax.random.key(0))


def test_registry_and_command_line(capsys):
    assert parse_model("mnist/gru/32") == ("mnist", "gru", 32)
    assert parse_model("fashion_mnist/lru/48") == ("fashion_mnist", "lru", 48)
    with pytest.raises(ValueError, match="mnist/rnn/32"):
        parse_model("mnist/rnn/32")
    assert "gru (GRU)" in DESCRIPTION and "lru (LRU)" in DESCRIPTION
    (table2,) = [e for e in EXPERIMENTS if e.name == "table2"]
    parser = build_parser("decaynet", DESCRIPTION, EXPERIMENTS)
    args = parser.parse_args(["table2", "--models", "mnist/gru/32", "mnist/lru/32"])
    config = config_from_args(table2.config, args)
    assert config.models == ("mnist/gru/32", "mnist/lru/32") and config.init == "pytorch"
    with pytest.raises(SystemExit) as exit_info:
        main(["table2", "--help"])
    assert exit_info.value.code == 0
    assert "`gru` or `lru`" in " ".join(capsys.readouterr().out.split())
