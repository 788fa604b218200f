"""`curse memory` and the width tools it rests on (`curse._widths`), each against a reference that
is not the code under test: SciPy quadrature of NumPy's piecewise-linear interpolant, Gaussians
sampled in closed form, an exponential sum's known number of terms, loops and `np.polyfit` over
the quick run's recorded numbers. The experiment maps over no members (its tasks and kernels
are loops), so it has no mapped-versus-loop check.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

import memlab
from curse import (
    ExponentialSum,
    SampledKernel,
    bump_centre,
    cell_integrals,
    convolve_paths,
    fit_widths,
    minimal_width,
    white_noise_paths,
)
from curse.experiments import EXPERIMENTS
from curse.experiments.memory import (
    EXPERIMENT,
    Config,
    DelayTask,
    Lorenz96Task,
    horizons_along,
    memory_jump_times,
)
from memdyn import ConfigError, estimate_memory_kernel
from memdyn.internal import replace_fields


def _first_width(errors, epsilon) -> int | None:
    """m(ε) by a loop: the first width m whose error is at most ε."""
    for m, error in enumerate(errors, start=1):
        if error <= epsilon:
            return m
    return None


def test_width_of_an_exponential_sum_is_its_number_of_terms_known_and_estimated():
    """Three distinct rates: ε(2) ≈ 0.26, so m(ε) = 3 for the known kernel at ε = 1e-6 (the
    three-term fit is exact up to float64's floor of √J) and for the kernel estimated from
    noise-free white-noise paths at ε = 0.1 (above the ~3e-2 interpolation error of cell means
    on the quick run's grid, Δ = 0.2). Grid, paths and fit settings are the quick run's, so
    the two share their compilations."""
    quick = Config().quick()
    dt, lags = quick.dt, quick.num_lags()
    target = ExponentialSum(jnp.asarray([1.0, -2.0, 2.0]), jnp.asarray([0.4, 1.0, 2.5]))
    xs = white_noise_paths(jax.random.key(0), quick.num_paths, 2 * lags, dt)
    ys = convolve_paths(cell_integrals(target.kernel, 2 * lags, dt), xs)
    estimate = estimate_memory_kernel(
        xs[..., 0], ys, lags, key=jax.random.key(1), resamples=quick.resamples
    )
    errors, fits = fit_widths(
        [target, SampledKernel(estimate.kernel, dt)],
        quick.max_width,
        key=jax.random.key(2),
        starts=quick.starts,
        adam_steps=quick.adam_steps,
        newton_steps=quick.newton_steps,
        desc="test",
    )
    assert errors[0, 1] > 0.2 and errors[1, 1] > 0.2
    assert minimal_width(errors[0], 1e-6) == _first_width(errors[0], 1e-6) == 3
    assert minimal_width(errors[1], 0.1) == _first_width(errors[1], 0.1) == 3
    np.testing.assert_allclose(np.sort(fits[0][2]["w"]), [0.4, 1.0, 2.5], rtol=1e-5)
    assert np.isnan(minimal_width(errors[1], 1e-12))  # no width up to max_width reaches it


def test_sampled_kernel_norm_and_laplace_against_quadrature_of_the_interpolant():
    dt = 0.3
    cells = np.asarray(jax.random.normal(jax.random.key(3), (12,)))
    sampled = SampledKernel(jnp.asarray(cells), dt)
    means = cells / dt
    mids = dt * (np.arange(cells.size) + 0.5)
    # The documented interpolant: linear through the cell means, extended linearly to 0 and KΔ.
    knots = np.concatenate([[0.0], mids, [cells.size * dt]])
    values = np.concatenate(
        [
            [means[0] - 0.5 * (means[1] - means[0])],
            means,
            [means[-1] + 0.5 * (means[-1] - means[-2])],
        ]
    )
    interpolant = lambda t: np.interp(t, knots, values)
    end = knots[-1]
    square, _ = scipy.integrate.quad(lambda t: interpolant(t) ** 2, 0, end, points=knots, limit=200)
    assert float(sampled.norm_squared()) == pytest.approx(square, rel=1e-10)
    for s in (1e-4, 0.5, 3.0, 40.0):
        laplace, _ = scipy.integrate.quad(
            lambda t, s=s: np.exp(-s * t) * interpolant(t), 0, end, points=knots, limit=200
        )
        assert float(sampled.laplace(s)) == pytest.approx(laplace, rel=1e-9, abs=1e-13)
    inside = np.linspace(0, end, 57)
    np.testing.assert_allclose(np.asarray(sampled.kernel(inside)), interpolant(inside), atol=1e-12)
    assert float(sampled.kernel(end + 0.1)) == 0.0


@pytest.mark.parametrize("centre", [3.0, 4.37, 7.951])
def test_bump_centre_of_a_sampled_gaussian_is_its_centre(centre):
    """log of a Gaussian is a parabola, so the vertex through three samples is exact; a larger,
    narrower Gaussian before `after` is ignored."""
    dt, width = 0.1, 0.8
    mids = dt * (np.arange(120) + 0.5)
    bump = np.exp(-((mids - centre) ** 2) / (2 * width**2))
    early = 5.0 * np.exp(-((mids - 0.5) ** 2) / (2 * 0.1**2))  # < 1e-48 beyond t = 2
    assert bump_centre(bump + early, dt, 2.0) == pytest.approx(centre, abs=1e-10)


@pytest.fixture(scope="module")
def quick_record(tmp_path_factory):
    out = tmp_path_factory.mktemp("memory")
    paths = memlab.execute(EXPERIMENT, Config().quick(), out)
    assert paths["png"].stat().st_size > 0
    return json.loads(paths["json"].read_text())["result"]


def test_quick_run_table_is_finite_and_complete(quick_record):
    config = Config().quick()
    table = quick_record["table"]
    keys = {"task", "quantity", "predicted", "measured", "agrees", "tolerance", "criterion"}
    assert table and all(set(row) == keys for row in table)
    for row in table:
        for name in ("predicted", "measured", "tolerance"):
            assert row[name] is not None and np.isfinite(row[name]), (row, name)
        assert isinstance(row["agrees"], bool)
    tasks = {row["task"] for row in table}
    assert {"eq. 125", "Lorenz-96", f"delay d = {config.delay.delay}"} <= tasks
    per_omega = [row for row in table if row["task"].startswith("eq. 125, 1/ω")]
    # R², three widths, the bump centre, log τ and the memory jump per ω.
    assert len(per_omega) == len(config.flow.omegas) * (4 + len(config.epsilons))
    assert quick_record["rows"] == len(table)
    assert quick_record["agreements"] == sum(row["agrees"] for row in table)


def test_quick_run_numbers_against_their_definitions(quick_record):
    config = Config().quick()
    memory, delay = quick_record["memory"], quick_record["delay"]
    # The delay's estimate recovers the delta: its horizon is d, its mass at lag d is ≈ 1.
    assert delay["horizon"] == config.delay.delay
    assert delay["kernel"][config.delay.delay] == pytest.approx(1.0, abs=0.02)
    # The measured slope: np.polyfit of log τ against 1/ω.
    slope = np.polyfit(memory["inverse_omegas"], np.log(memory["plateau_times"]), 1)[0]
    assert memory["fit_on_inverse_omega"]["slope"] == pytest.approx(slope, rel=1e-12)
    assert slope > 0
    f = config.output_noise
    for row in quick_record["table"]:
        if row["quantity"] == "held-out R²":
            assert row["predicted"] == pytest.approx(1 / (1 + f**2))
    # Widths in the table: the recorded error curves read by a loop (max_width + 1: none).
    censored = lambda m: config.max_width + 1 if m is None else m
    for index, inverse in enumerate(memory["inverse_omegas"]):
        rows = {
            row["quantity"]: row
            for row in quick_record["table"]
            if row["task"] == f"eq. 125, 1/ω = {inverse:.4g}"
        }
        for epsilon in config.epsilons:
            row = rows[f"m(ε = {epsilon:g})"]
            assert row["predicted"] == censored(
                _first_width(memory["estimated_errors"][index], epsilon)
            )
            assert row["measured"] == censored(_first_width(memory["known_errors"][index], epsilon))
        assert rows["bump centre 1/ω"]["measured"] == pytest.approx(inverse)
        assert rows["bump centre 1/ω"]["predicted"] == pytest.approx(inverse, abs=3 * config.dt)
    lorenz = quick_record["lorenz96"]
    assert 0 < lorenz["shared_share"] < 1
    assert lorenz["explained_variance_raw"] <= 1 - lorenz["shared_share"] + 0.05


def test_horizons_along_training_and_their_jump_against_numpy(quick_record):
    """The horizon of Σ a_i e^{−w_i t} on the grid (k + ½) dt by a NumPy loop over lags; the jump
    time from a synthetic horizon curve by hand; and the quick run's jumps from its own curves."""
    dt, lags, epsilon = 0.1, 60, 0.05
    thetas = (np.array([[[1.0, 0.0], [0.3, 2.0]]]), np.array([[[0.5, 1.0], [0.2, 5.0]]]))
    horizons = horizons_along(thetas, lags, dt, epsilon)
    assert horizons.shape == (1, 2)
    t = (np.arange(lags) + 0.5) * dt
    for save in range(2):
        a, w = thetas[0][0, save], thetas[1][0, save]
        mass = np.abs(a @ np.exp(-np.outer(w, t)))
        k = next(k for k in range(lags) if mass[: k + 1].sum() >= (1 - epsilon) * mass.sum())
        assert horizons[0, save] == pytest.approx(k * dt)
    taus = np.array([0.1, 1.0, 10.0, 100.0])
    curves = np.array([[2.0, 2.0, 9.0, 10.0], [2.0, 2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(memory_jump_times(taus, curves), [10.0, np.inf])
    memory = quick_record["memory"]
    along = np.asarray(memory["horizons_along"], dtype=float)
    assert along.shape == (len(memory["omegas"]), len(memory["taus"]))
    np.testing.assert_array_equal(
        memory["memory_jump_times"], memory_jump_times(memory["taus"], along)
    )
    # The model starts from ρ̄ (short memory) and ends holding the bump: its horizon grows.
    assert np.all(along[:, -1] > along[:, 0])


def test_config_errors_name_the_field():
    assert "memory" in {experiment.name for experiment in EXPERIMENTS}
    with pytest.raises(ConfigError, match="dt"):
        Config(dt=-0.1)
    with pytest.raises(ConfigError, match="bump_after"):
        replace_fields(Config(), {"bump_after": 4.0})
    with pytest.raises(ConfigError, match=r"delay\.delay"):
        replace_fields(Config(), {"delay.delay": 10_000})
    with pytest.raises(ConfigError, match="num_lags"):
        Lorenz96Task(num_lags=300)
    with pytest.raises(ConfigError, match="delay"):
        DelayTask(delay=0)
    with pytest.raises(ConfigError, match="epsilons"):
        Config(epsilons=(0.5, 1.5))
