"""Figures 1 and 4 and the spectrum experiment on small sizes (seconds each)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curse._models import ContinuousRNN
from curse._sampled import cell_integrals, convolve_paths, white_noise_paths
from curse._targets import ScaledAiry
from curse.experiments import fig1, fig4, spectrum
from memdyn import make_optimizer
from memdyn.internal import replace_fields


def test_airy_plateau_lengthens_with_t0():
    """Panel (b) in miniature: one vmapped GD run per t0 on shared paths; the escape step (loss
    down by half) and the detected plateau length are non-decreasing in t0."""
    config = fig1.Fig1Config().quick()
    t0s = (0.0, 4.0, 8.0)
    dt, steps = 0.2, 150
    xs = white_noise_paths(jax.random.PRNGKey(0), 8, steps, dt)
    weights = jnp.stack([cell_integrals(ScaledAiry(1.0, t0).kernel, steps, dt) for t0 in t0s])
    ys = jax.vmap(convolve_paths, in_axes=(0, None))(weights, xs)
    model = ContinuousRNN(16, structure="full", key=jax.random.PRNGKey(1))
    runs = fig1.train_on_outputs(model, xs, ys, dt, make_optimizer("gd", 0.1), 900, 60)
    panel = fig1._panel(runs, config)
    escape = panel["escape_steps"]
    lengths = [sum(end - start for start, end, _ in p) for p in panel["plateaus"]]
    assert np.all(np.isfinite(escape))
    assert np.all(np.diff(escape) >= 0) and escape[-1] > 5 * escape[0]
    assert np.all(np.diff(lengths) >= 0) and lengths[-1] > 0


def test_quick_lorenz96_panel_detects_plateaus_on_most_seeds():
    """Panel (c) at `--quick` size with the standard two-scale system (K = 8, J = 32, F = 10):
    most seeds show a detected plateau (flat within 5 % over >= 5 % of the run, at least twice
    the lowest later loss), and every seed's loss falls well below the initial one."""
    config = fig1.Fig1Config().quick()
    assert config.lorenz96.setting == "standard" and config.lorenz96.num_seeds == 5
    keys = jax.random.split(jax.random.PRNGKey(config.seed), 6)
    panel = fig1.lorenz_panel(config, keys[3], keys[4])
    assert panel["system"]["fast"] == 32 and panel["system"]["forcing"] == 10.0
    losses = panel["losses"]
    assert losses.shape == (5, config.num_saves + 1) and np.all(np.isfinite(losses))
    with_plateau = [bool(p) for p in panel["plateaus"]]
    assert sum(with_plateau) >= 3, panel["plateaus"]
    for plateaus, curve in zip(panel["plateaus"], losses, strict=True):
        for start, end, level in plateaus:
            assert 0 <= start < end and level >= 2 * curve[panel["steps"] >= end].min()
    assert np.all(losses[:, -1] < 0.7 * losses[:, 0])


def test_legacy_lorenz_setting_is_still_selectable():
    """The earlier panel (c) (F = 2, K = J = 8, 10-time-unit horizon) is one set of overrides."""
    panel = fig1.Fig1Config(lorenz96=fig1.LEGACY_LORENZ).lorenz96
    system = fig1.LORENZ_SETTINGS[panel.setting]
    assert (system.forcing, system.slow, system.fast) == (2.0, 8, 8)
    assert panel.num_steps * panel.dt == pytest.approx(10.0)
    assert (panel.num_paths, panel.train_steps, panel.num_seeds) == (32, 6000, 1)
    default = fig1.LORENZ_SETTINGS[fig1.Fig1Config().lorenz96.setting]
    assert (default.forcing, default.slow, default.fast) == (10.0, 8, 32)
    assert (default.coupling, default.time_scale, default.amplitude) == (1.0, 10.0, 10.0)


def test_fig4_plateaus_persist_in_every_case_and_adam_shortens_them():
    config = dataclasses.replace(
        fig4.Fig4Config(), omegas=(1 / 4, 1 / 8), train_steps=1500, num_saves=150, num_paths=4
    )
    result = fig4.run(config)
    for case, data in result["cases"].items():
        assert np.all(data["finite"]), case
        times = data["plateau_times"]
        assert np.all(np.isfinite(times)) and times[1] > times[0], case
    flow, adam = result["cases"]["flow"], result["cases"]["adam"]
    assert adam["plateau_times"][1] < flow["plateau_times"][1]
    assert result["adam_alleviates"] and result["adam_plateau_grows_with_memory"]


def test_spectrum_small_eigenvalues_and_lanczos_check():
    config = replace_fields(
        spectrum.SpectrumConfig().quick(),
        {
            "omegas": (1 / 4, 1 / 8),
            "exact.train_steps": 400,
            "exact.save_every": 100,
            "lanczos.hidden": 6,
            "lanczos.check_hidden": 4,
            "lanczos.iterations": 20,
            "lanczos.train_steps": 10,
            "lanczos.num_steps": 40,
            "density.hidden": 4,  # part 3 has its own tests (tests/curse/test_spectrum_density.py)
            "density.train_steps": 20,
            "density.save_every": 10,
            "density.points": 2,
            "density.iterations": 6,
            "density.probes": 1,
            "density.trace_probes": 1,
            "density.grid_points": 50,
        },
    )
    result = spectrum.run(config)
    assert result["eigenvalues"].dtype == np.float64
    # Longer memory, exponentially smaller curvature at the start (Prop. C.3).
    start = result["min_abs_eigenvalue_start"]
    assert start[1] < 0.1 * start[0]
    assert result["lanczos_check"]["max_relative_error"] < 1e-8
    assert result["lanczos"]["parameters"] == 6 * 6 + 2 * 6


def test_configs_reject_bad_fields():
    config = fig1.Fig1Config()
    with pytest.raises(ValueError, match=r"Fig1Config\.airy\.t0s"):
        replace_fields(config, {"airy.t0s": (-1.0,)})
    with pytest.raises(ValueError, match=r"exponential_sum\.train_steps must be a multiple"):
        replace_fields(config, {"exponential_sum.train_steps": 1001})
    with pytest.raises(ValueError, match=r"Fig1Config\.lorenz96\.setting"):
        replace_fields(config, {"lorenz96.setting": "chaotic"})
    with pytest.raises(ValueError, match=r"Lorenz96Panel\.num_seeds"):
        fig1.Lorenz96Panel(num_seeds=0)
    with pytest.raises(ValueError, match="omegas"):
        fig4.Fig4Config(omegas=(0.0,))
    with pytest.raises(ValueError, match="drop_fractions"):
        fig4.Fig4Config(drop_fractions=(1.5,))
    with pytest.raises(ValueError, match=r"SpectrumConfig\.lanczos: iterations must be in"):
        replace_fields(spectrum.SpectrumConfig(), {"lanczos.iterations": 10_000})


@pytest.mark.slow
def test_full_fig4_plateaus_grow_in_every_case_and_adam_alleviates():
    """`curse fig4` in full (~2 min): plateau times grow with 1/ω in every case; Adam is faster
    than the flow at every ω but its plateau still grows (alleviates, does not remove)."""
    result = fig4.run(fig4.Fig4Config())
    for name, case in result["cases"].items():
        assert all(case["plateau_hit"]), name
        assert case["slope"] > 0.2, name
    assert result["adam_alleviates"] and result["adam_plateau_grows_with_memory"]
    assert np.all(np.asarray(result["adam_speedup"]) > 1)
