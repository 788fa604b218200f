"""Execute each notebook of `notebooks/` in its small mode and check the numbers it prints."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.stats

jupytext = pytest.importorskip("jupytext", reason="the dev extra (jupytext) is not installed")
nbclient = pytest.importorskip("nbclient", reason="the dev extra (nbclient) is not installed")
pytest.importorskip("ipykernel", reason="the dev extra (ipykernel) provides the python3 kernel")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan)"


def _execute(name: str, monkeypatch) -> tuple[str, int]:
    """Run `notebooks/<name>.py` in a fresh kernel; return its text output and the number of
    PNG images it displayed. A last cell reports the kernel's `sys.prefix`, which must be this
    interpreter's, so that the notebook runs with the environment under test."""
    for variable in ("MEMDYN_NOTEBOOK_FULL", "MEMDYN_DATA"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("MEMDYN_NO_PROGRESS", "1")
    notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint('PREFIX', sys.prefix)"))
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute()
    texts, images = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", f"{name}: {output.get('ename')}"
            if output["output_type"] == "stream" and output["name"] == "stdout":
                texts.append(output["text"])
            images += "image/png" in output.get("data", {})
    text = "".join(texts)
    prefix = re.search(r"^PREFIX (.+)$", text, re.MULTILINE)
    assert prefix is not None, f"{name}: the kernel did not report its sys.prefix"
    assert Path(prefix.group(1)).resolve() == Path(sys.prefix).resolve(), (
        f"{name}: the kernel ran in {prefix.group(1)}, not in this environment ({sys.prefix})"
    )
    return text, images


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern.format(number=NUMBER), text)
    assert match is not None, f"no output matching {pattern!r} in:\n{text}"
    return float(match.group(1))


class TestCurseOfMemory:
    # one class per notebook: `pytest -n 2` may run them on different workers
    def test_curse_of_memory(self, monkeypatch):
        text, images = _execute("curse_of_memory", monkeypatch)
        assert "small mode" in text
        assert images >= 4
        closed_form = _number(r"J closed form = {number}", text)
        quadrature = _number(r"J quadrature  = {number}", text)
        assert closed_form == pytest.approx(quadrature, rel=1e-8)
        # The escape force on the spare unit at rate 0.5 decays like e^{-0.5/ω}.
        assert _number(r"decay rate of the escape force per unit of 1/ω: {number}", text) == (
            pytest.approx(0.5, abs=0.1)
        )
        assert _number(r"plateau-time slope c1 = {number}", text) > 0
        assert _number(r"r² = {number}", text) > 0.9
        assert _number(r"separation-time slope = {number}", text) > 0
        assert "solve finished: False" not in text
        assert _number(r"slope of log\|λ_min\| per unit of 1/ω: {number}", text) < 0
        assert re.search(r"minimal width for ω = 0\.1 ", text)


class TestDecayNet:
    # one class per notebook: `pytest -n 2` may run them on different workers
    def test_decaynet(self, monkeypatch):
        text, images = _execute("decaynet_cell_states", monkeypatch)
        assert "small mode" in text
        assert images >= 4
        sink = _number(r"f = 0\.25, i = 0\.15: .*x_60 = {number}", text)
        source = _number(r"f = 0\.90, i = 1\.00: .*x_60 = {number}", text)
        assert abs(sink) < 1e-6 < abs(source)
        assert _number(r"DecayNet \(clipped decrement\): forget-gate increases {number}", text) == 0
        assert _number(r"LSTM: forget-gate increases {number}", text) > 0
        per_seed = {}
        for model in ("LSTM-32", "DecayNet-32"):
            row = rf"{model} \(8,138 params, 100 steps\): test accuracy {{number}} .*\[([^]]*)\]"
            accuracy = _number(row, text)
            assert 20 < accuracy <= 100
            seeds = re.search(row.format(number=NUMBER), text).group(2)
            per_seed[model] = [float(a) for a in seeds.split(", ")]
            assert len(per_seed[model]) == 3
            assert accuracy == pytest.approx(np.mean(per_seed[model]), abs=0.006)
        # The printed p-value is Welch's on the printed per-seed accuracies (exact: 1,000 test
        # images make every accuracy a multiple of 0.1 %).
        welch = scipy.stats.ttest_ind(*per_seed.values(), equal_var=False).pvalue
        assert _number(r"Welch's t-test p = {number}", text) == pytest.approx(welch, rel=1e-4)


class TestBringYourOwnModel:
    # one class per notebook: `pytest -n 2` may run them on different workers
    def test_bring_your_own_model(self, monkeypatch):
        text, images = _execute("bring_your_own_model", monkeypatch)
        assert "small mode" in text
        assert images >= 3
        assert _number(r"trainable parameters: {number}", text) == 209
        # 8 learning rates × 4 seeds at two delays: one trace, equal to single runs in float64.
        assert _number(r"traces of the sweep: {number}", text) == 1
        assert _number(r"sweep vs loop: max abs difference {number}", text) <= 1e-10
        # Plateaus: the smallest learning rate sits on the first plateau from step 0 for most of the
        # run; the longer delay escapes in fewer runs.
        start = _number(r"lr = 0\.0200: first plateau \(seed 0\) steps {number}–", text)
        end = _number(r"lr = 0\.0200: first plateau \(seed 0\) steps \d+–{number}", text)
        assert start == 0 and end >= 250
        assert _number(
            r"lr = 0\.0200: first plateau \(seed 0\) steps \S+ at loss {number}", text
        ) == (pytest.approx(1.0, abs=0.05))
        escaped = {
            delay: _number(rf"delay {delay}: {{number}} of 32 runs escape", text)
            for delay in (2, 4)
        }
        assert 0 < escaped[4] < escaped[2]
        assert 0 < _number(r"delay 2: .* median escape step {number}", text) <= 500
        # Memory along training: vmapped = alone, = central differences; nothing remembered at
        # the start; the memory passes 0.5 only in runs that escape, and after their escape.
        assert _number(r"vmapped vs one model: max abs difference {number}", text) <= 1e-12
        assert _number(r"at lag 2 vs central differences: {number}", text) <= 1e-7
        assert _number(r"before training: max \|ρ̂\| {number}", text) < 0.02
        finals = [float(v) for v in re.search(r"per learning rate: (.*)", text).group(1).split()]
        assert len(finals) == 8 and max(finals) > 0.8 and finals[0] < finals[-1]
        assert _number(r"memory passes 0\.500 in \d+ runs \({number} of", text) == 0
        assert _number(r"memory passes 0\.500 .* min {number},", text) > 0
        assert _number(r"memory passes 0\.293 .* max {number}", text) < 0
        # The Hessian along training: a saddle at the start, the extremes confirmed by Lanczos.
        assert _number(r"step    0: loss \S+  λ_min = {number}", text) < 0
        assert _number(r"step    0: .* λ_max = {number}", text) > 0
        exact = _number(r"exact   λ_min = \S+, λ_max = {number}", text)
        assert _number(r"Lanczos λ_min = \S+, λ_max = {number}", text) == pytest.approx(
            exact, rel=1e-6
        )
        assert _number(r"Lanczos λ_min = {number}", text) == pytest.approx(
            _number(r"exact   λ_min = {number}", text), rel=1e-6
        )
        # The gradient flow: far below the stiffness line, so explicit Tsit5 integrates it.
        assert _number(r"λ_max·T = {number}", text) < _number(r"against 250·n = {number}", text)
        assert "gradient flow: finished True" in text
        final = _number(r"at τ = 0, {number} at τ = 20", text)
        assert final < _number(r"gradient flow: .* loss {number} at τ = 0", text)


def _interpolant_first_width_error(kernel: np.ndarray) -> float:
    """ε(1) of `curse.SampledKernel(kernel, 1.0)` from its definition, by SciPy: the piecewise
    linear interpolant f of the cell means at the midpoints k + ½ (extrapolated linearly to 0
    and to K), and min over w of the relative L² error of the best a e^{−wt}, whose square is
    1 − 2w L[f](w)² / ‖f‖² (the optimal a is 2w L[f](w))."""
    lags = kernel.size
    knots = np.concatenate([[0.0], np.arange(lags) + 0.5, [float(lags)]])
    values = np.concatenate(
        [
            [kernel[0] - 0.5 * (kernel[1] - kernel[0])],
            kernel,
            [kernel[-1] + 0.5 * (kernel[-1] - kernel[-2])],
        ]
    )
    interpolant = lambda t: np.interp(t, knots, values)
    integrate = lambda f: scipy.integrate.quad(f, 0, lags, points=knots[1:-1], limit=200)[0]
    norm_squared = integrate(lambda t: interpolant(t) ** 2)

    def relative_error_squared(log_rate):
        rate = np.exp(log_rate)
        laplace = integrate(lambda t: np.exp(-rate * t) * interpolant(t))
        return 1 - 2 * rate * laplace**2 / norm_squared

    best = scipy.optimize.minimize_scalar(
        relative_error_squared,
        bounds=(np.log(1e-3), np.log(1e2)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(np.sqrt(best.fun))


class TestWhatDoesMyModelRemember:
    # one class per notebook: `pytest -n 2` may run them on different workers
    def test_what_does_my_model_remember(self, monkeypatch):
        text, images = _execute("what_does_my_model_remember", monkeypatch)
        assert "small mode" in text
        assert images >= 3
        # The target, ρ_k = 0.8 (1 + k)^{−1.5} on 32 lags, recomputed here.
        lags, noise, length = 32, 0.1, 64
        kernel = 0.8 * (1.0 + np.arange(lags)) ** -1.5
        for view in ("Heaviside", "impulse", "Jacobian"):
            assert _number(rf"max \|memory function − ρ\|:.*{view} {{number}}", text) <= 1e-12
        cumulative = np.cumsum(kernel)
        horizon = int(np.argmax(cumulative >= 0.95 * cumulative[-1]))
        assert _number(r"target: horizon \(95% of \|ρ\| mass\) {number} lags", text) == horizon
        assert "lags; decay power law, power exponent" in text
        assert _number(r"power exponent {number} \(R²", text) == pytest.approx(1.5, abs=1e-6)
        assert _number(r"power exponent \S+ \(R² {number}\)", text) == pytest.approx(1, abs=1e-6)
        # Target variance per step, started at rest: the mean over t of Σ_{k ≤ t} ρ_k².
        signal = np.array([np.sum(kernel[: min(t, lags - 1) + 1] ** 2) for t in range(length)])
        variance = _number(r"target variance per step {number}", text)
        assert variance == pytest.approx(signal.mean(), rel=0.1)
        training = re.search(r"training loss, step 0 → \d+: (.*)", text).group(1).split("; ")
        assert len(training) == 4
        for run in training:
            first, last = (float(value) for value in run.split(" → "))
            assert last < 0.01 * variance < first
        # The model's memory: one vmap equals a loop; impulse response equals the chain rule.
        assert _number(r"vmap vs loop over 4 seeds: max abs difference {number}", text) <= 1e-12
        assert _number(r"impulse response vs NumPy chain rule: .* {number}", text) <= 1e-12
        for seed in range(4):
            assert 0 < _number(rf"seed {seed}: horizon {{number}} lags", text) < lags
            for fit in ("exponential", "power law"):
                row = rf"seed {seed}: horizon .*{fit} R² {{number}}"
                assert _number(row, text) > 0.8
        # The kernel estimated from noisy target data, against the truth: within 4 bootstrap
        # standard errors at every printed lag, R² at the signal's share of the variance.
        for lag in (0, 1, 2, 4, 8, 16):
            row = rf"lag {lag:2d}: ρ̂ = {{number}} ± "
            estimate = _number(row, text)
            error = _number(rf"lag {lag:2d}: ρ̂ = \S+ ± {{number}}", text)
            assert _number(rf"lag {lag:2d}: .*\(ρ = {{number}}\)", text) == pytest.approx(
                kernel[lag], abs=5e-5
            )
            assert abs(estimate - kernel[lag]) <= 4 * error + 1e-3
        expected_r2 = 1 - noise**2 / (signal.mean() + noise**2)
        assert _number(r"target: held-out R² {number}", text) == pytest.approx(
            expected_r2, abs=0.003
        )
        assert _number(r"truth inside the 90% band at {number} of 32 lags", text) >= 22
        assert abs(_number(r"estimate: horizon {number} lags", text) - horizon) <= 3
        assert _number(r"estimate: .* power exponent {number}", text) == pytest.approx(1.5, abs=0.2)
        # The trained models are nearly linear where they are used.
        for seed in range(4):
            assert _number(rf"seed {seed}: a linear functional explains {{number}}", text) > 0.95
            assert _number(rf"seed {seed}: a linear .* = {{number}}", text) < 0.15
        # Widths: ε(1) of the true kernel's interpolant, by SciPy; the estimate predicts the
        # truth's widths.
        rows = {
            name: re.search(rf"{name}: ε\(m\) = ([^;]*); (.*)", text).groups()
            for name in ("true ρ", "estimated ρ̂", r"model ρ̂ \(seed 0\)")
        }
        errors = {name: [float(e) for e in row[0].split()] for name, row in rows.items()}
        reference = _interpolant_first_width_error(kernel)
        assert errors["true ρ"][0] == pytest.approx(reference, abs=1e-4)
        for row in errors.values():
            assert np.all(np.diff(row) < 0)
        assert np.max(np.abs(np.subtract(errors["estimated ρ̂"], errors["true ρ"]))) < 0.005
        assert rows["estimated ρ̂"][1] == rows["true ρ"][1]
        assert rows["true ρ"][1] == "m(0.2) = 1, m(0.1) = 2, m(0.05) = 3"
