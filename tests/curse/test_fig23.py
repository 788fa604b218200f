"""Figures 2-3 on a small grid: plateau time grows as ω decreases, with a positive fit slope."""

import dataclasses
import json

import numpy as np
import pytest
import scipy.integrate

from curse.cli import main
from curse.experiments import EXPERIMENTS, fig3
from curse.experiments.fig2 import MemoryFlowConfig
from curse.experiments.fig3 import Fig3Config
from curse.plots import plot_fig3
from memlab._results import result_arrays

SMALL = dataclasses.replace(
    Fig3Config(), omegas=(1 / 4, 1 / 7, 1 / 10, 1 / 13), long_omegas=(), tau_max=1e3, num_saves=41
)


@pytest.fixture(scope="module")
def result():
    return fig3.run(SMALL)


def test_plateau_time_increases_as_omega_decreases(result):
    assert np.all(result["plateau_hit"])
    assert np.all(np.diff(result["plateau_times"]) > 0)
    assert np.all(np.diff(result["separation_times"]) > 0)
    assert result["slope"] > 0 and result["separation_slope"] > 0
    assert result["separation_r2"] > 0.95
    # Short memories: λ_min is set by the bump's coupling ~ e^{−w/ω}, w = 0.5, so the slope is
    # near w here, well below the asymptotic 2w (fig3's module docstring).
    assert 0.3 < result["separation_slope"] < 0.8


def test_local_slopes_match_numpy_from_recorded_times(result):
    x, log_tau = result["inverse_omegas"], np.log(result["plateau_times"])
    np.testing.assert_allclose(result["local_slopes"], np.diff(log_tau) / np.diff(x), rtol=1e-12)
    np.testing.assert_allclose(result["local_slope_centres"], (x[1:] + x[:-1]) / 2)
    expected = [np.polyfit(x[i : i + 3], log_tau[i : i + 3], 1)[0] for i in range(2)]
    np.testing.assert_allclose(result["window_slopes"], expected, rtol=1e-10)
    log_sep = np.log(result["separation_times"])
    np.testing.assert_allclose(result["separation_local_slopes"], np.diff(log_sep) / np.diff(x))
    # The saddle prediction's escape times, 1/|λ|, on the same grid.
    np.testing.assert_allclose(
        result["predicted_escape_times"], 1 / np.abs(result["predicted_min_eigs"])
    )


def test_start_is_the_short_memory_fit_and_flow_decreases_loss(result):
    # J(θ(0)) = ‖ρ_0(· − 1/ω)‖², because θ(0) reproduces ρ̄ exactly.
    for omega, loss in zip(SMALL.omegas, result["initial_loss"], strict=True):
        bump = lambda t, c=1 / omega: np.exp(-((t - c) ** 2))
        expected, _ = scipy.integrate.quad(bump, 0, 1 / omega + 20, epsabs=0, epsrel=1e-12)
        np.testing.assert_allclose(loss, expected, rtol=1e-9)
    assert np.all(np.diff(result["losses"], axis=1) <= 1e-12)  # gradient flow never ascends
    assert np.all(result["solve_finished"])


def test_smallest_hessian_eigenvalue_at_start_vanishes_as_omega_decreases(result):
    eigs = result["min_hessian_eigs"]
    assert result["hessian_eigs_start"].shape == (4, 6)
    assert np.all(eigs < 0)  # θ(0) is a saddle ...
    assert np.all(np.diff(np.abs(eigs)) < 0)  # ... whose descent direction fades with memory
    assert result["hessian_slope"] < 0


def test_fig3_plot_draws(result):
    figure = plot_fig3(result)
    assert len(figure.axes) == 3  # times, local slopes, Hessian spectrum


def test_fig2_cli_writes_json_and_png(tmp_path):
    """On `SMALL`'s flows (its ω, τ_max and saves), so the CLI's solve reuses the fixture's
    compiled program."""
    assert {e.name for e in EXPERIMENTS} >= {"fig2", "fig3"}
    omegas = [repr(omega) for omega in SMALL.omegas]
    args = ["fig2", "--omegas", *omegas, "--tau-max", "1000", "--num-saves", str(SMALL.num_saves)]
    assert main([*args, "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "fig2.json").read_text())
    losses = np.asarray(record["result"]["losses"], dtype=float)
    assert losses.shape == (len(SMALL.omegas), SMALL.num_saves + 1)
    np.testing.assert_array_equal(record["result"]["omegas"], SMALL.omegas)
    assert (tmp_path / "fig2.png").stat().st_size > 10_000


def test_fig3_cli_reports_omegas_without_escape_as_lower_bounds(tmp_path, capsys):
    """Memories 1/ω = 1000 and 2000 stay on their plateau to τ = 1e3: a run, not a traceback (it
    used to end in sliding_window_view's error), that says so on stderr, records `plateau_hit`
    False with infinite (JSON null) plateau times and NaN fits, and draws a figure."""
    argv = ["fig3", "--quick", "--omegas", "1e-3", "5e-4", "--num-saves", "21"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        "fig3: no escape from the plateau by the end of the flow for ω = 0.001 (τ = 1e+03), "
        "ω = 0.0005 (τ = 1e+03): their plateau times are lower bounds"
    ) in err
    result = json.loads((tmp_path / "fig3.json").read_text())["result"]
    assert result["plateau_hit"] == [False, False]
    assert result["plateau_times"] == [None, None] and result["slope"] is None
    assert result["window_slopes"] == []  # 2 ω, a window of 3: no window
    assert (tmp_path / "fig3.png").stat().st_size > 10_000
    replotted = plot_fig3(result_arrays(result))  # the record read back draws too
    labels = replotted.axes[0].get_legend_handles_labels()[1]
    assert "no escape: plateau time > end of flow" in labels


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(omegas=(0.5, 0.0)), "omegas"),
        (dict(omegas=(0.5, float("nan"))), "omegas"),
        (dict(short_w=(1.0, -2.0)), "short_w"),
        (dict(short_a=(1.0,)), "equal length"),
        (dict(tau_max=1e-4), "tau_max"),
        (dict(extra_rate=0.0), "extra_rate"),
    ],
)
def test_bad_config_raises_value_error(changes, message):
    with pytest.raises(ValueError, match=message):
        MemoryFlowConfig(**changes)


def test_fig3_config_rejects_bad_threshold():
    with pytest.raises(ValueError, match="loss_delta"):
        Fig3Config(loss_delta=-1.0)


@pytest.mark.slow
def test_full_fig3_reproduces_exponential_scaling():
    full = fig3.run(Fig3Config())
    assert full["slope"] > 0 and full["r2"] > 0.95
    # 1/ω = 36 exhausts its step budget after its plateau (its crossing is recorded)
    assert np.all(full["solve_finished"][:-1]) and np.all(full["plateau_hit"])
    np.testing.assert_allclose(full["inverse_omegas"], np.arange(4, 37, 2))
    # Long memories: the plateau time approaches the saddle prediction 1/|λ| (within 15 %).
    np.testing.assert_allclose(full["plateau_over_predicted"][-4:], 1.0, rtol=0.15)
    assert full["separation_r2"] > 0.98
