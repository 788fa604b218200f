"""Cobweb trajectories against direct iteration in plain Python floats."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from decaynet._cobweb import cell_state_map, cobweb


def test_fixed_map_equals_direct_iteration():
    web = cobweb(lambda x: jnp.tanh(3 * x), 0.05, 6)
    x, expected = 0.05, [0.05]
    for _ in range(6):
        x = math.tanh(3 * x)
        expected.append(x)
    np.testing.assert_allclose(web.iterates, expected, rtol=1e-6)
    # The zig-zag: diagonal start, then alternating vertical and horizontal segments.
    path = np.asarray(web.path)
    assert path.shape == (13, 2)
    np.testing.assert_allclose(path[0], [0.05, 0.05])
    np.testing.assert_allclose(path[1::2, 0], expected[:-1], rtol=1e-6)
    np.testing.assert_allclose(path[1::2, 1], expected[1:], rtol=1e-6)
    np.testing.assert_allclose(path[2::2, 0], path[2::2, 1])
    np.testing.assert_allclose(path[-1], [expected[-1]] * 2, rtol=1e-6)


def test_time_varying_map_equals_direct_iteration():
    f, i = [1.0, 0.25, 1.0], [1.0, 0.0, 0.75]
    web = cobweb(cell_state_map, 0.5, params=(jnp.array(f), jnp.array(i)))
    x, expected = 0.5, [0.5]
    for ft, it in zip(f, i, strict=True):
        x = ft * x + it * math.tanh(x)
        expected.append(x)
    np.testing.assert_allclose(web.iterates, expected, rtol=1e-6)


def test_sink_converges_and_source_escapes():
    assert abs(float(cobweb(lambda x: 0.5 * x, 1.0, 20).iterates[-1])) < 1e-5
    assert float(cobweb(lambda x: 1.5 * x, 0.01, 10).iterates[-1]) == pytest.approx(0.01 * 1.5**10)


def test_bad_input():
    with pytest.raises(ValueError, match="x0"):
        cobweb(lambda x: x, float("nan"), 3)
    with pytest.raises(ValueError, match="num_steps"):
        cobweb(lambda x: x, 0.1)
    with pytest.raises(ValueError, match="num_steps"):
        cobweb(lambda x: x, 0.1, 0)
    with pytest.raises(ValueError, match="num_steps"):
        cobweb(cell_state_map, 0.1, 2, params=(jnp.ones(3), jnp.ones(3)))
    with pytest.raises(ValueError, match="params"):
        cobweb(cell_state_map, 0.1, params=(jnp.array(1.0), jnp.array(1.0)))


def test_cobweb_experiment_smoke(tmp_path):
    from decaynet.experiments import cobweb as experiment
    from memlab import execute

    config = experiment.Config(curve_points=11).quick()
    paths = execute(experiment.EXPERIMENT, config, tmp_path)
    assert paths["png"].stat().st_size > 0
    result = experiment.run(config, tmp_path)
    # Row 2 of Fig. 2 grows monotonically, row 3 shrinks at every step (§3.3.2).
    large, small = (np.asarray(row["iterates"]) for row in result["figure2"][1:])
    assert np.all(np.diff(large) > 0) and np.all(np.diff(small) < 0)
    with pytest.raises(ValueError, match="large_forget"):
        experiment.Config(large_forget=(0.9, 1.5, 0.9))


def _numpy_cell_iterates(x0, forget, input_gate):
    x, out = float(x0), [float(x0)]
    for f, i in zip(forget, input_gate, strict=True):
        x = f * x + i * np.tanh(x)
        out.append(x)
    return np.asarray(out)


def test_fig2_row3_default_shrinks_at_every_step():
    """§3.3.2: "consistent shrinkage" in row 3; |s_t| is non-increasing over every plotted step."""
    import scipy.optimize

    from decaynet.experiments import cobweb as experiment

    config = experiment.Config(curve_points=11)
    row3 = experiment.run(config, None)["figure2"][2]
    expected = _numpy_cell_iterates(config.small_x0, config.small_forget, config.small_input)
    np.testing.assert_allclose(row3["iterates"], expected, rtol=1e-6)
    np.testing.assert_allclose(row3["panels"][-1]["iterates"], expected, rtol=1e-6)
    assert np.all(np.diff(np.abs(expected)) <= 0)
    # Why: T_1(x) = 0.25 x + tanh(x) has a positive fixed point x* (tanh x* = 0.75 x*); below it
    # the first step grows, so the old start x_0 = 0.5 does not show the shrinkage.
    fixed = scipy.optimize.brentq(lambda x: np.tanh(x) - 0.75 * x, 0.5, 2.0)
    assert config.small_x0 > fixed
    old = _numpy_cell_iterates(0.5, config.small_forget, config.small_input)
    assert old[1] > old[0]
    # Row 2 (large constant forget gate) still grows at every step from cell_x0.
    large = _numpy_cell_iterates(config.cell_x0, config.large_forget, config.large_input)
    assert np.all(np.diff(large) > 0)
