"""curse.plots on small synthetic results: each figure draws, names its paper figure, and has a
legend entry for every marker and line style it uses."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from curse import plots


def _legend_texts(fig) -> set[str]:
    return {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _fig3_result():
    inverse = np.array([4.0, 6.0, 8.0])
    return {
        "inverse_omegas": inverse,
        "plateau_times": np.exp(-4 + 0.6 * inverse),
        "separation_times": np.exp(-4 + 0.5 * inverse),
        "min_hessian_eigs": -np.exp(1 - 0.4 * inverse),
        "hessian_eigs_start": np.array([[-1.0, 0.1, 2.0], [-0.5, 0.05, 2.0], [-0.2, 0.01, 2.0]]),
        "intercept": -4.0,
        "slope": 0.6,
        "r2": 1.0,
        "separation_intercept": -4.0,
        "separation_slope": 0.5,
        "separation_r2": 1.0,
        "hessian_slope": -0.4,
        "local_slope_centres": np.array([5.0, 7.0]),
        "local_slopes": np.array([0.6, 0.6]),
        "window_slope_centres": np.array([6.0]),
        "window_slopes": np.array([0.6]),
    }


def test_fig3_names_its_figure_and_renders_mathtext():
    fig = plots.plot_fig3(_fig3_result())
    assert fig._suptitle.get_text().startswith("Li et al. 2021, Fig. 3")
    title = fig.axes[0].get_title()
    # mathtext, not literal braces: e^{c/ω} is written as $e^{c/\omega}$
    assert "$e^{c/\\omega}$" in title
    fig.canvas.draw()
    assert {
        "plateau time (loss drop)",
        "separation time",
        "|λ_min| (λ_min < 0)",
        "|λ| of every eigenvalue",
    } <= _legend_texts(fig)
    fit = [t for t in _legend_texts(fig) if t.startswith("plateau fit")]
    assert fit == ["plateau fit: log τ = -4.00 + 0.600/ω (r² = 1.000)"]


def test_fig1_explains_the_shaded_plateaus():
    steps = np.arange(10.0)
    panel = {"steps": steps, "losses": np.exp(-steps)[None], "plateaus": [[[1.0, 3.0, 0.5]]]}
    airy = {**panel, "t0s": [0.0, 4.0], "losses": np.stack([np.exp(-steps)] * 2),
            "plateaus": [[], [[2.0, 5.0, 0.1]]]}  # fmt: skip
    fig = plots.plot_fig1({"exponential_sum": panel, "airy": airy, "lorenz96": panel})
    fig.canvas.draw()
    assert {"detected plateau", "t0 = 0", "t0 = 4", "training loss"} <= _legend_texts(fig)
    assert fig._suptitle.get_text().startswith("Li et al. 2021, Fig. 1")


def test_fig4_explains_the_dotted_plateau_times():
    times = np.logspace(-2, 2, 20)
    case = {"times": times, "losses": np.ones((2, 20)), "plateau_times": [0.1, None], "slope": 0.5}
    result = {"omegas": [0.25, 0.125], "inverse_omegas": [4.0, 8.0],
              "cases": {name: case for name in plots.FIG4_TITLES}}  # fmt: skip
    fig = plots.plot_fig4(result)
    fig.canvas.draw()
    assert {"plateau time τ", "1/ω = 4", "1/ω = 8", "flow: slope 0.50"} <= _legend_texts(fig)


def test_momentum_explains_solid_and_dashed():
    four = np.array([0.1, 0.2, 0.4, 0.8])
    flow = {"losses": np.ones((2, 5))}
    result = {
        "flow_curvatures": four, "discrete_curvatures": four,
        "gradient_flow_times": 1 / four, "heavy_ball_flow_times": 1 / np.sqrt(four),
        "gradient_flow_exact": 1 / four, "heavy_ball_flow_exact_no_friction": 1 / np.sqrt(four),
        "gd_steps": 1 / four, "heavy_ball_steps": 1 / np.sqrt(four),
        "exponents": {"gradient_flow": -1.0, "heavy_ball_flow": -0.5, "gd": -1.0,
                      "heavy_ball": -0.5},
        "omegas": [0.25, 0.125], "plateau_taus": np.arange(5.0),
        "plateau_gd": flow, "plateau_momentum": flow,
    }  # fmt: skip
    fig = plots.plot_momentum(result)
    legends = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    styles = [a for a in fig.axes[2].artists if isinstance(a, matplotlib.legend.Legend)]
    assert legends == ["1/ω = 4", "1/ω = 8"]
    assert [t.get_text() for t in styles[0].get_texts()] == ["GD", "heavy ball"]
