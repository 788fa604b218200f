"""`decaynet spectrum`: the quick run end to end, and the spectral quantities of one analysis
point against the exact Hessian (`jax.hessian`, `numpy.linalg.eigvalsh`) of a tiny classifier."""

from __future__ import annotations

import json

import equinox as eqx
import jax
import numpy as np
import pytest
import scipy.stats
from jax.flatten_util import ravel_pytree

import decaynet
import memdyn
import memlab
from decaynet import DecayCell, LSTMCell, classifier_loss, count_parameters
from decaynet.experiments import EXPERIMENTS
from decaynet.experiments.spectrum import (
    COMPARED,
    EXPERIMENT,
    Config,
    analyse,
    analyse_model,
    precision_gap,
)
from tests.decaynet.accuracy_reference import percent_correct, record_evaluations

PER_SEED = ("top_eigenvalue", "bottom_eigenvalue", "trace_hutchinson", "trace_slq",
            "negative_mass", "negative_mass_relative", "loss", "gradient_norm")  # fmt: skip


def _mass_below(nodes, weights, tau):
    """Σ of the Ritz weights at nodes below −τ, averaged over the probes (last two axes)."""
    return np.where(nodes < -tau, weights, 0.0).sum(-1).mean(-1)


def test_quick_run_record(tmp_path, mnist_files, monkeypatch):
    config = Config().quick()
    evaluations = record_evaluations(monkeypatch)
    paths = memlab.execute(EXPERIMENT, config, tmp_path)
    assert paths["png"].stat().st_size > 0
    result = json.loads(paths["json"].read_text())["result"]
    points, seeds, probes, k = 3, config.seeds, config.slq_probes, config.lanczos_steps
    assert result["quick"] and result["steps"] == [0, 5, 10]
    assert len(result["grid"]) == config.grid_points
    assert [c["model"] for c in result["cells"]] == ["LSTM", "DecayNet"]
    assert len(evaluations) == len(result["cells"])
    for cell, (run, static, xt, yt, _) in zip(result["cells"], evaluations, strict=True):
        assert np.asarray(cell["nodes"]).shape == (points, seeds, probes, k)
        assert np.asarray(cell["weights"]).shape == (points, seeds, probes, k)
        assert np.asarray(cell["density"]).shape == (points, seeds, config.grid_points)
        np.testing.assert_allclose(np.asarray(cell["weights"]).sum(-1), 1, rtol=1e-4)
        integral = np.trapezoid(np.asarray(cell["density"]), result["grid"], axis=-1)
        np.testing.assert_allclose(integral, 1, rtol=1e-4)
        for name in PER_SEED:
            values = np.asarray(cell[name], dtype=float)
            assert values.shape == (points, seeds) and np.all(np.isfinite(values)), name
        # φ̂((−∞, −τ)) from the record's own Ritz nodes and weights, averaged over the probes.
        nodes, weights = np.asarray(cell["nodes"]), np.asarray(cell["weights"])
        top = np.asarray(cell["top_eigenvalue"])[..., None, None]
        np.testing.assert_allclose(
            cell["negative_mass"], _mass_below(nodes, weights, 0.0), rtol=1e-5, atol=1e-7
        )
        np.testing.assert_allclose(
            cell["negative_mass_relative"],
            _mass_below(nodes, weights, config.negative_threshold * top),
            rtol=1e-5,
            atol=1e-7,
        )
        assert np.all(np.asarray(cell["top_eigenvalue"]) > np.asarray(cell["bottom_eigenvalue"]))
        accuracy = np.asarray(cell["test_accuracy"])
        assert accuracy.shape == (seeds,)
        np.testing.assert_allclose(accuracy, percent_correct(run, static, xt, yt), atol=1e-9)
        assert np.asarray(cell["train_loss"]).shape == (2, seeds)  # two chunks of 5 steps
        assert "precision" not in cell  # quick mode skips the float64 comparison
    assert set(result["tests"]) == {f"{q}_{w}" for q in COMPARED for w in
                                    ("final", "mean_over_training")}  # fmt: skip
    lstm, decay = result["cells"]
    for name in COMPARED:
        x, y = np.asarray(lstm[name], float), np.asarray(decay[name], float)
        for when, u, v in (("final", x[-1], y[-1]), ("mean_over_training", x.mean(0), y.mean(0))):
            welch = scipy.stats.ttest_ind(u, v, equal_var=False)
            test = result["tests"][f"{name}_{when}"]
            # The record keeps float32 values: agreement to float32 precision.
            assert test["welch_t"] == pytest.approx(float(welch.statistic), rel=1e-5)
            assert test["p_value"] == pytest.approx(float(welch.pvalue), rel=1e-4)


def _random_batch(seed):
    """32 uniform random images and labels, from NumPy (test data: an eager `jax.random` draw
    compiles a program per shape and precision) in JAX's default float."""
    rng = np.random.default_rng(seed)
    xs = rng.uniform(size=(32, 28, 28)).astype(jax.dtypes.canonicalize_dtype(np.float64))
    return jax.device_put(xs), jax.device_put(rng.integers(0, 10, 32).astype(np.int32))


def _tiny_run(cell):
    """Two seeds of a hidden-3 classifier (424 parameters) at initialisation, as the experiment
    builds them, and a fixed batch of 32 random images."""
    xs, ys = _random_batch(7)
    config = memdyn.TrainConfig(batch_size=16)
    # One compiled program: eagerly, each initialiser's draw compiles one per shape.
    make = eqx.filter_jit(decaynet.row_classifier(cell, 3, decaynet.PyTorchInit()))
    run, static = memdyn.init_run(make, [0, 1], config.make_optimizer())
    return run, static, xs, ys


@eqx.filter_jit
def _exact_hessian(model, state, xs, ys):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda v: classifier_loss(eqx.combine(unravel(v), static), state, xs,
                                                 ys)[0])(flat)  # fmt: skip


def test_one_point_against_the_exact_hessian():
    """Float64, DecayNet (the LSTM runs the same analysis). λ_max from 40 Lanczos steps to 1e-6
    relative; the traces within 4 standard errors of tr H (Hutchinson's
    √(2(‖H‖_F² − Σ H_ii²)/P), SLQ's ≤ √(2‖H‖_F²/P)); the negative mass within 4 standard errors
    (√(2f(1 − f)/((n + 2)P)), the sphere's) of the exact fraction f; and the vmapped analysis of
    both seeds equals each seed analysed alone."""
    options = {"lanczos_steps": 40, "slq_probes": 8, "hutchinson_probes": 64,
               "negative_threshold": 0.01}  # fmt: skip
    with jax.enable_x64(True):
        run, static, xs, ys = _tiny_run(DecayCell)
        keys = jax.random.split(jax.random.PRNGKey(3), 2)
        out = analyse(run.params, static, run.model_state, xs, ys, keys, **options)
        models = memdyn.stacked_models(run, static)
        alone = eqx.filter_jit(analyse_model)
        for i in range(2):
            model, state = jax.tree.map(lambda a, i=i: a[i], (models, run.model_state))
            assert count_parameters(model) == 424
            hessian = np.asarray(_exact_hessian(model, state, xs, ys))
            eigenvalues = np.linalg.eigvalsh(hessian)
            n, trace = len(eigenvalues), np.trace(hessian)
            frobenius, diagonal = np.sum(hessian**2), np.sum(np.diag(hessian) ** 2)
            top = float(out["top_eigenvalue"][i])
            assert top == pytest.approx(eigenvalues[-1], rel=1e-6)
            hutchinson_se = np.sqrt(2 * (frobenius - diagonal) / options["hutchinson_probes"])
            assert abs(float(out["trace_hutchinson"][i]) - trace) < 4 * hutchinson_se
            slq_se = np.sqrt(2 * frobenius / options["slq_probes"])
            assert abs(float(out["trace_slq"][i]) - trace) < 4 * slq_se
            fraction = np.mean(eigenvalues < -0.01 * eigenvalues[-1])
            mass_se = np.sqrt(2 * fraction * (1 - fraction) / ((n + 2) * options["slq_probes"]))
            assert abs(float(out["negative_mass_relative"][i]) - fraction) < 4 * mass_se + 1e-3
            single = alone(model, state, xs, ys, key=keys[i], **options)
            for name, value in single.items():
                np.testing.assert_allclose(out[name][i], value, rtol=1e-9, atol=1e-12,
                                           err_msg=name)  # fmt: skip


def test_float32_against_float64():
    make = eqx.filter_jit(decaynet.row_classifier(LSTMCell, 3, decaynet.PyTorchInit()))
    model, state = make(jax.random.PRNGKey(0))
    xs, ys = _random_batch(1)
    gap = precision_gap(model, state, xs, ys, key=jax.random.PRNGKey(0), lanczos_steps=30)
    assert gap["top_eigenvalue_relative_difference"] < 1e-4
    assert gap["trace_relative_difference"] < 1e-4
    assert gap["negative_mass_difference"] < 1e-3


def test_config_and_registration():
    assert any(e.name == "spectrum" for e in EXPERIMENTS)
    full = Config()
    assert full.seeds >= 4 and full.train.epochs == 1 and full.train.learning_rate == 0.01
    assert full.train.optimizer == "adam" and full.train.batch_size == 64
    assert full.hidden_size == 32 and full.dataset == "mnist"
    assert len(full.analysis_steps) + 1 >= 10 and full.analysis_steps[0] == 0
    for field, value in [("cells", ("lstm",)), ("cells", ("lstm", "gru")), ("seeds", 1),
                         ("analysis_steps", (0, 30)), ("analysis_steps", (50, 25)),
                         ("lanczos_steps", 0), ("density_sigma", 0.0), ("init", "xavier"),
                         ("negative_threshold", 1.5)]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            Config(**{field: value})
    with pytest.raises(ValueError, match="analysis_examples"):
        Config(train_subset=100, analysis_examples=200)
