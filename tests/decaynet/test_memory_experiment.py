"""`decaynet memory`: the quick run end to end, the seeds' vmapped analysis against each seed
analysed alone (float32 and float64), and the Jacobian memory kernel of a trained classifier
against central finite differences of the classifier's own forward pass (`scan_cell`, not the
`memdyn.unroll` path the experiment differentiates).

Independent references: NumPy (the horizon from the recorded magnitude, the means, Welch's t by
hand), the accuracies counted one example at a time (`accuracy_reference`), finite differences.
"""

from __future__ import annotations

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import memdyn
import memlab
from decaynet import DecayCell, LSTMCell, PyTorchInit, row_classifier
from decaynet._rows import train_row
from decaynet.experiments import EXPERIMENTS, table2
from decaynet.experiments.memory import (
    EXPERIMENT,
    FIT_FIELDS,
    Config,
    analyse,
    logits_per_step,
    memory_of_classifier,
)
from memdyn.internal import replace_fields
from tests.decaynet.accuracy_reference import percent_correct, record_evaluations
from tests.decaynet.synthetic import synthetic_rows
from tests.mapped import PRECISIONS, RTOL, assert_mapped_equals_members, member, precision

LAGS = 28


def _horizon(magnitude: np.ndarray, epsilon: float) -> int:
    """The smallest k with Σ_{j ≤ k} m_j ≥ (1 − ε) Σ_j m_j, by a loop."""
    total, running = float(np.sum(magnitude)), 0.0
    for k, value in enumerate(magnitude):
        running += float(value)
        if running >= (1 - epsilon) * total:
            return k
    raise AssertionError("unreachable: the whole window holds all the mass")


def test_quick_run_record(tmp_path, mnist_files, monkeypatch):
    config = Config().quick()
    evaluations = record_evaluations(monkeypatch)
    paths = memlab.execute(EXPERIMENT, config, tmp_path)
    assert paths["png"].stat().st_size > 0
    result = json.loads(paths["json"].read_text())["result"]
    seeds, epsilons = config.seeds, config.epsilons
    assert result["lags"] == list(range(LAGS))
    assert [c["model"] for c in result["cells"]] == ["LSTM", "DecayNet"]
    assert len(evaluations) == 2
    for cell, (run, static, xt, yt, _) in zip(result["cells"], evaluations, strict=True):
        magnitude = np.asarray(cell["magnitude"], dtype=float)
        assert magnitude.shape == (seeds, LAGS) and np.all(np.isfinite(magnitude))
        assert np.all(magnitude > 0)
        kernel_norm = np.asarray(cell["kernel_norm"], dtype=float)
        assert kernel_norm.shape == (seeds, LAGS)
        assert np.all(kernel_norm <= magnitude * (1 + 1e-5))  # ‖E J‖ ≤ E‖J‖ (triangle)
        horizon = np.asarray(cell["horizon"])
        assert horizon.shape == (seeds, len(epsilons))
        expected = [[_horizon(m, eps) for eps in epsilons] for m in magnitude]
        np.testing.assert_array_equal(horizon, expected)
        lags = np.arange(LAGS)
        np.testing.assert_allclose(
            cell["mean_lag"], magnitude @ lags / magnitude.sum(axis=1), rtol=1e-5
        )
        assert np.all(horizon[:, 0] <= horizon[:, -1])  # a smaller ε needs as many lags or more
        for name in FIT_FIELDS:
            values = np.asarray(cell[name], dtype=float)
            assert values.shape == (seeds,) and np.all(np.isfinite(values)), name
        summary = cell["summary"]
        assert sum(summary["preferred_counts"].values()) == seeds
        assert summary["exponential_rate"]["mean"] == pytest.approx(
            np.mean(cell["exponential_rate"])
        )
        assert summary["horizon"][f"{epsilons[0]:g}"]["sd"] == pytest.approx(
            np.std(horizon[:, 0], ddof=1)
        )
        forget = np.asarray(cell["forget_by_step"], dtype=float)
        assert forget.shape == (seeds, LAGS) and np.all((forget >= 0) & (forget <= 1))
        np.testing.assert_allclose(cell["forget_mean"], forget.mean(axis=1), rtol=1e-5)
        np.testing.assert_allclose(cell["accuracies"], percent_correct(run, static, xt, yt))
    lstm, decay = result["cells"]
    # Trained for a few steps, the LSTM forgets: its last row weighs more than its first.
    assert np.all(np.asarray(lstm["magnitude"])[:, 0] > np.asarray(lstm["magnitude"])[:, -1])
    # The paper's claim: DecayNet's forget gate does not rise (its pre-activations stay in
    # [−3, 3] here), the LSTM's does.
    assert np.all(np.asarray(decay["forget_increase"]) < np.asarray(lstm["forget_increase"]))
    assert np.all(np.diff(np.asarray(decay["forget_by_step"]), axis=1) <= 1e-6)
    tests = result["tests"]
    compared = {"accuracies", "mean_lag", "exponential_rate", "power_exponent", "forget_mean"}
    assert set(tests) == compared | {f"horizon_{eps:g}" for eps in epsilons}
    a, b = np.asarray(lstm["forget_mean"]), np.asarray(decay["forget_mean"])
    va, vb = a.var(ddof=1) / seeds, b.var(ddof=1) / seeds
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (seeds - 1) + vb**2 / (seeds - 1))
    assert tests["forget_mean"]["welch_t"] == pytest.approx(t)
    assert tests["forget_mean"]["p_value"] == pytest.approx(2 * scipy.stats.t.sf(abs(t), df))


# One cell per precision (each compile costs seconds): the LSTM in float64, where XLA:CPU's
# known vmap miscompile lives (tests/mapped.py).
@pytest.mark.parametrize(
    ("name", "cell"), [("float32", DecayCell), ("float64", LSTMCell)], ids=PRECISIONS
)
def test_vmapped_over_seeds_equals_each_seed_alone(name, cell):
    options = {"epsilons": (0.05, 0.01), "chunk": 2}
    with precision(name) as dtype:
        # Test data from NumPy, the models in one compiled program: eagerly, each draw
        # compiles a program per shape.
        xs = jax.device_put(np.random.default_rng(1).uniform(size=(4, LAGS, 28)).astype(dtype))
        make = eqx.filter_jit(row_classifier(cell, 3, PyTorchInit()))
        models, _ = eqx.filter_vmap(make)(jax.random.split(jax.random.key(2), 3))
        params, static = eqx.partition(models, eqx.is_array)
        mapped = analyse(params, static, xs, **options)
        assert mapped["kernel"].dtype == dtype
        alone = eqx.filter_jit(memory_of_classifier)
        members = [alone(member(models, i, size=3), xs, **options) for i in range(3)]
        assert_mapped_equals_members(mapped, members, rtol=RTOL[name] * 10, size=3)


@pytest.mark.parametrize("cell", [LSTMCell, DecayCell], ids=["lstm", "decay"])
def test_jacobian_memory_of_a_trained_classifier_equals_central_differences(cell):
    """One lag of the kernel and of its magnitude against central differences (step 1e-6) of
    the classifier's own logits (`model(xs, state)`: the fused `scan_cell`), in float64."""
    train = replace_fields(table2.Config().train, {"batch_size": 32, "chunk_steps": 10})
    xs, ys = synthetic_rows(jax.random.key(3), 320)
    row = train_row(
        cell, 4, (xs, ys, xs[:64], ys[:64]), train, seeds=np.arange(2), init=PyTorchInit()
    )
    assert row.record["steps"] == 10
    models = memdyn.stacked_models(row.run, row.static)
    model, state = jax.tree.map(lambda a: a[0], (models, row.run.model_state))
    lag, batch, h = 5, 3, 1e-6
    with jax.enable_x64(True):
        model = jax.tree.map(
            lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) else a, model
        )
        images = jnp.asarray(xs[:batch], jnp.float64)
        memory = memdyn.jacobian_memory(logits_per_step, model, images)
        logits = lambda x: np.asarray(model(x, state, inference=True)[0])
        np.testing.assert_allclose(
            jax.vmap(logits_per_step, in_axes=(None, 0))(model, images)[:, -1],
            logits(images),
            rtol=0,
            atol=1e-12,
        )
        row_index = LAGS - 1 - lag
        moved = np.zeros((2, 28, batch, LAGS, 28))  # (sign, pixel, image, row, pixel)
        for j in range(28):
            moved[0, j, :, row_index, j], moved[1, j, :, row_index, j] = h, -h
        shifted = np.asarray(images)[None, None] + moved
        outputs = logits(jnp.asarray(shifted.reshape(-1, LAGS, 28))).reshape(2, 28, batch, 10)
        jacobians = np.moveaxis((outputs[0] - outputs[1]) / (2 * h), 0, -1)  # (image, out, pixel)
    np.testing.assert_allclose(memory.kernel[lag], jacobians.mean(axis=0), rtol=0, atol=1e-8)
    magnitude = np.linalg.norm(jacobians, axis=(1, 2)).mean()
    np.testing.assert_allclose(memory.magnitude[lag], magnitude, rtol=1e-7)
    assert np.max(np.abs(jacobians)) > 1e-4  # the lag matters: not a comparison of zeros


def test_config_and_registration():
    assert any(e.name == "memory" for e in EXPERIMENTS)
    full = Config()
    assert full.train == table2.Config().train  # trained exactly as Table 2's rows
    assert full.init == table2.Config().init == "pytorch"
    assert full.seeds == 20 and full.hidden_size == 32 and full.dataset == "mnist"
    assert full.epsilons == (0.05, 0.01)
    for field, value in [("cells", ("lstm",)), ("cells", ("lstm", "lstm")),
                         ("cells", ("lstm", "gru")), ("seeds", 1), ("epsilons", ()),
                         ("epsilons", (0.0,)), ("epsilons", (1.0,)), ("analysis_chunk", 0),
                         ("init", "xavier")]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            Config(**{field: value})
    with pytest.raises(ValueError, match="analysis_chunk"):
        Config(analysis_examples=100, analysis_chunk=30)
    with pytest.raises(ValueError, match="analysis_examples"):
        Config(test_subset=100, analysis_examples=200, analysis_chunk=100)
    with pytest.raises(ValueError, match="chunk"):
        memory_of_classifier(None, jnp.zeros((3, LAGS, 28)), epsilons=(0.05,), chunk=2)
