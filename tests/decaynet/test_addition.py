"""Binary addition (App. B): digits, held-out split, training to exact sums, increase counts."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from decaynet import LSTMCell
from decaynet import _addition as A

DIGITS, HIDDEN = 8, 16


def test_bits_round_trip_against_python():
    numbers = [0, 1, 5, 8409, 29882, 38291, 65535]
    bits = np.asarray(A.to_bits(jnp.array(numbers), 16))
    for n, row in zip(numbers, bits, strict=True):
        assert "".join(map(str, row[::-1])) == format(n, "016b")
    np.testing.assert_array_equal(A.from_bits(bits), numbers)


def test_operands_sum_fits():
    first, second = A.operand_limits(16)
    assert (first, second) == (32768, 32767) and first + second == 2**16 - 1
    a, b = A.sample_operands(jax.random.key(0), 10_000, 16)
    assert int(jnp.max(a + b)) < 2**16 and int(jnp.max(a)) <= first


def test_held_out_split():
    a, b = A.sample_operands(jax.random.key(1), 200_000, 16)
    fraction = float(jnp.mean(A.is_held_out(a, b)))
    assert abs(fraction - 1 / 64) < 0.002
    test_a, test_b = A.held_out_operands(jax.random.key(2), 200, DIGITS)
    assert bool(jnp.all(A.is_held_out(test_a, test_b)))
    assert len({(int(x), int(y)) for x, y in zip(test_a, test_b, strict=True)}) == 200
    with pytest.raises(ValueError, match="count"):
        A.held_out_operands(jax.random.key(2), 10_000, DIGITS)


def test_count_increases_against_a_loop():
    forget = np.asarray(jax.random.uniform(jax.random.key(3), (4, 6, 5)))
    expected = [
        sum(forget[b, t, j] > forget[b, t - 1, j] for t in range(1, 6) for j in range(5))
        for b in range(4)
    ]
    np.testing.assert_array_equal(A.count_increases(forget, 0.0), expected)
    with pytest.raises(ValueError, match="forget"):
        A.count_increases(np.full((2, 3), np.nan))


@pytest.fixture(scope="module")
def trained():
    model = A.Adder(LSTMCell, HIDDEN, DIGITS, key=jax.random.key(2))
    a, b = A.held_out_operands(jax.random.key(102), 200, DIGITS)
    model, history = A.train_until_exact(
        model,
        A.addition_batch(a, b, DIGITS),
        optimizer=optax.sgd(0.1),
        batch_size=32,
        chunk_steps=500,
        max_steps=15_000,
        key=jax.random.key(52),
    )
    return model, history


def test_lstm_learns_exact_held_out_sums(trained):
    model, history = trained
    assert history.digit_accuracy[-1] == 1.0
    # Every held-out pair of 8-digit operands (200 of them decided when to stop), checked by
    # integer addition.
    first, second = A.operand_limits(DIGITS)
    a, b = (x.ravel() for x in np.meshgrid(np.arange(first + 1), np.arange(second + 1)))
    held_out = np.asarray(A.is_held_out(a, b))
    a, b = jnp.asarray(a[held_out]), jnp.asarray(b[held_out])
    assert a.shape[0] > 200
    np.testing.assert_array_equal(A.add(model, a, b, DIGITS), np.asarray(a) + np.asarray(b))


def test_bad_input_raises_named_errors(trained):
    model, _ = trained
    with pytest.raises(ValueError, match="cell"):
        A.Adder("lstm", key=jax.random.key(0))
    with pytest.raises(ValueError, match="b"):
        A.add(model, jnp.arange(3), jnp.arange(4), DIGITS)
    for optimizer in (0.1, "sgd"):
        with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
            A.make_train_chunk(optimizer, 8, DIGITS)
        with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
            A.train_until_exact(
                model, A.addition_batch(jnp.arange(2), jnp.arange(2), DIGITS),
                optimizer=optimizer, key=jax.random.key(0),
            )  # fmt: skip


def test_addition_experiment_smoke(tmp_path):
    from decaynet.experiments import addition as experiment
    from memlab import execute

    config = experiment.Config(
        hidden_size=HIDDEN, digits=DIGITS, batch_size=32, chunk_steps=100, max_steps=200,
        test_pairs=50, dims=(2, 12),
    )  # fmt: skip
    paths = execute(experiment.EXPERIMENT, config, tmp_path)
    assert paths["png"].stat().st_size > 0
    with pytest.raises(ValueError, match="dims"):
        experiment.Config(dims=(0, 12))
    with pytest.raises(ValueError, match="cells"):
        experiment.Config(cells=("gru",))


def test_a_non_finite_step_stops_training_keeps_the_last_finite_model_and_says_where(
    monkeypatch,
):
    """Nothing silent: when a step is non-finite (here the second of the third chunk, flagged),
    training stops, returns the last good model, the one the step before was taken at (equal
    to a run stopped there by its step budget), records only finite chunks and names the
    failing step."""
    real = A.make_train_chunk
    sgd = optax.sgd(0.1)

    def third_chunk_fails(optimizer, *args):
        assert optimizer is sgd  # train_until_exact steps with the optimizer it is given
        chunk = real(optimizer, *args)
        calls = []

        def chunk_or_nan(model, opt_state, keys):
            calls.append(keys)
            model, opt_state, losses, finite = chunk(model, opt_state, keys)
            return model, opt_state, losses, finite.at[1].set(len(calls) != 3)

        return chunk_or_nan

    monkeypatch.setattr(A, "make_train_chunk", third_chunk_fails)
    model = A.Adder(LSTMCell, HIDDEN, DIGITS, key=jax.random.key(2))
    a, b = A.held_out_operands(jax.random.key(102), 50, DIGITS)
    test = A.addition_batch(a, b, DIGITS)
    options = dict(optimizer=sgd, batch_size=16, chunk_steps=5, key=jax.random.key(52))
    trained, history = A.train_until_exact(model, test, max_steps=500, **options)
    assert history.stopped_at == 11
    assert history.steps == [5, 10] and np.all(np.isfinite(history.loss))
    budget, finished = A.train_until_exact(model, test, max_steps=10, **options)
    assert finished.stopped_at is None and finished.steps == [5, 10]
    for x, y in zip(
        jax.tree.leaves(eqx.filter(trained, eqx.is_inexact_array)),
        jax.tree.leaves(eqx.filter(budget, eqx.is_inexact_array)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
