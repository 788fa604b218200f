"""Smoke tests of `benchmarks`: each one at tiny sizes writes a complete, finite JSON record, and
the PyTorch and SciPy peers compute what the JAX code computes."""

import dataclasses
import importlib.util
import json
import math
import sys

import jax
import pytest

from benchmarks import NAMES, decaycell, limit, lstm, spectra, zoh
from benchmarks.cli import main
from benchmarks.recurrent import RecurrentConfig, SequenceShape
from benchmarks.report import execute
from benchmarks.timing import measure

TINY_SHAPE = SequenceShape("tiny", batch=3, time=5, input_size=2, hidden_size=4)
TINY = RecurrentConfig(shapes=(TINY_SHAPE,), repeats=2)
CONFIGS = {
    "lstm": TINY,
    "decaycell": TINY,
    "zoh": zoh.Config(hidden_size=6, steps=40, repeats=2),
    "limit": limit.Config(matrix_size=32, repeats=2, lstm=TINY),
    # n = 140, short Lanczos runs: compiling the five JAX programs is most of its ~30 s.
    "spectra": spectra.Config(
        hidden_sizes=(1,), repeats=(2,), batch=4, slq_steps=12, lanczos_steps=8
    ),
}
TIMING_KEYS = {"first_call_s", "median_s", "min_s", "iqr_s", "times_s"}
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    for name in NAMES:
        path, record = execute(name, CONFIGS[name], out)
        assert path == out / f"{name}.json"
        assert json.loads(path.read_text()) == record
    return {name: json.loads((out / f"{name}.json").read_text()) for name in NAMES}


def _positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.parametrize("name", NAMES)
def test_record_is_complete_and_finite(records, name):
    record = records[name]
    assert record["benchmark"] == name
    assert {"config", "environment", "ratio_definition", "cases"} <= record.keys()
    assert record["environment"]["devices"] == [str(d) for d in jax.devices()]
    assert {"jax", "jaxlib", "numpy", "scipy"} <= record["environment"]["versions"].keys()
    assert "torch" in record["environment"]
    for case in record["cases"]:
        assert {"case", "shape", "reference", "implementations", "median_ratio"} <= case.keys()
        timed = [n for n, t in case["implementations"].items() if "skipped" not in t]
        assert "jax" in timed
        for implementation in timed:
            timing = case["implementations"][implementation]
            assert TIMING_KEYS <= timing.keys()
            assert all(map(_positive, [*timing["times_s"], timing["first_call_s"]]))
            assert len(timing["times_s"]) == 2
            assert timing["min_s"] <= timing["median_s"]
        assert set(case["median_ratio"]) == set(timed) - {"jax"}
        assert all(map(_positive, case["median_ratio"].values()))


@pytest.mark.parametrize("name", ["lstm", "decaycell", "limit"])
def test_torch_peer_agrees_with_jax(records, name):
    pytest.importorskip("torch")
    for case in records[name]["cases"]:
        if "agreement" not in case:
            continue  # the matmul case of `limit`
        agreement = case["agreement"]
        assert agreement["max_abs_diff_hidden_states"] < TOLERANCE
        assert agreement["max_abs_diff_loss"] < TOLERANCE
        scale = agreement["gradient_scale"]
        assert agreement["max_abs_diff_gradients"] < TOLERANCE * scale
        assert agreement["within_tolerance"]
        assert _positive(case["median_ratio"]["torch"])


SPECTRA_METHODS = ("hvp", "dense", "lanczos", "slq")
NO_TORCH = importlib.util.find_spec("torch") is None


def test_spectra_record_structure(records, tmp_path):
    record = records["spectra"]
    sizes = [spectra.Config().parameters(h) for h in CONFIGS["spectra"].hidden_sizes]
    assert sizes == [140]
    assert [(c["method"], c["shape"]["parameters"]) for c in record["cases"]] == [
        (method, n) for n in sizes for method in SPECTRA_METHODS
    ]
    assert record["dense_cap_parameters"] == 2000
    assert "memory_analysis" in record["peak_memory_note"]
    for case in record["cases"]:
        jax_memory = case["peak_memory"]["jax"]
        assert jax_memory["xla_bytes"] > 0
        rss = jax_memory["rss_peak_delta_bytes"]
        assert rss is None or rss >= 0  # None off Linux
        if case["method"] in ("lanczos", "slq"):
            assert _positive(case["per_hvp_s"]["jax"])
        if case["method"] == "slq":
            # Ritz values lie inside the spectrum: never above the dense λ_max.
            estimates = case["largest_eigenvalue_estimates"]
            for name in ("lanczos", "slq"):
                assert estimates[name] <= estimates["dense"] + 1e-4 * abs(estimates["dense"])
    targets = record["targets"]
    assert targets["slq_seconds"]["parameters"] == 140
    assert targets["slq_seconds"]["met"] is False  # far from 10⁶ parameters
    assert spectra.plot(record, tmp_path) == tmp_path / "spectra.png"
    assert (tmp_path / "spectra.png").stat().st_size > 0


@pytest.mark.skipif(NO_TORCH, reason="torch not importable; the spectra peer is skipped")
def test_spectra_torch_hvp_and_slq_agree_with_jax(records):
    for case in records["spectra"]["cases"]:
        if case["method"] not in ("hvp", "slq"):
            continue
        agreement = case["agreement"]
        assert agreement["within_tolerance"]
        assert _positive(case["median_ratio"]["torch"])
        if case["method"] == "hvp":
            assert agreement["max_abs_diff_loss"] <= spectra.LOSS_TOLERANCE
            scale = agreement["hvp_scale"]
            assert agreement["max_abs_diff_hvp"] <= spectra.HVP_TOLERANCE * scale
            assert agreement["max_abs_diff_hvp_jax_rr"] <= spectra.HVP_TOLERANCE * scale
            assert {"torch", "torch_r", "jax_rr"} <= case["median_ratio"].keys()
        else:
            assert agreement["relative_diff_largest_ritz_value"] <= spectra.RITZ_TOLERANCE
            assert _positive(case["per_hvp_s"]["torch"])


def test_spectra_without_torch_times_jax_alone(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    config = dataclasses.replace(CONFIGS["spectra"], repeats=(1,))  # the same compilations
    _, record = execute("spectra", config, tmp_path)
    hvp, _, _, slq = record["cases"]
    assert "torch not importable" in hvp["implementations"]["torch"]["skipped"]
    assert set(hvp["median_ratio"]) == {"jax_rr"}
    assert slq["median_ratio"] == {} and "agreement" not in slq
    assert record["targets"]["torch_ratio"]["met_at_largest"] is False


def test_zoh_agrees_with_scipy(records):
    (case,) = records["zoh"]["cases"]
    assert case["dtype"] == "float64"
    assert case["agreement"]["max_abs_diff_outputs"] < 1e-12
    assert case["agreement"]["within_tolerance"]
    assert _positive(case["median_ratio"]["scipy"])


def test_limit_reports_fraction_of_peak(records):
    record = records["limit"]
    matmul, *lstm_cases = record["cases"]
    assert record["peak_gflops"] == max(matmul["gflops"].values())
    for case in lstm_cases:
        assert case["fraction_of_peak"]["jax"] == pytest.approx(
            case["gflops"]["jax"] / record["peak_gflops"]
        )


def test_without_torch_the_peer_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    _, record = execute("decaycell", TINY, tmp_path)
    (case,) = record["cases"]
    assert "torch not importable" in case["implementations"]["torch"]["skipped"]
    assert case["median_ratio"] == {}
    assert "skipped" in record["environment"]["torch"]


def test_cli_help_and_bad_input(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    assert all(name in usage for name in NAMES)
    with pytest.raises(SystemExit):
        main(["--only", "nonexistent"])
    with pytest.raises(ValueError, match="repeats must be > 0"):
        RecurrentConfig(repeats=0)
    with pytest.raises(ValueError, match="hidden_size must be > 0"):
        SequenceShape("bad", batch=1, time=1, input_size=1, hidden_size=0)
    with pytest.raises(ValueError, match="steps must be > 0"):
        zoh.Config(steps=0)
    with pytest.raises(ValueError, match="repeats must be > 0"):
        measure(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="repeats must match"):
        spectra.Config(repeats=(1,))
    with pytest.raises(ValueError, match="Lanczos steps must be <="):
        spectra.Config(hidden_sizes=(1,), repeats=(1,), slq_steps=141)


def test_quick_configs_are_smaller():
    for module in (lstm, decaycell, zoh, limit, spectra):
        assert module.Config().quick() != module.Config()
    quick = spectra.Config().quick()
    assert max(map(quick.parameters, quick.hidden_sizes)) <= 10**4
