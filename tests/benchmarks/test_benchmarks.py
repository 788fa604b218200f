"""Smoke tests of `benchmarks`: each one at tiny sizes writes a complete, finite JSON record, and
the PyTorch and SciPy peers compute what the JAX code computes."""

import dataclasses
import importlib.util
import json
import math
import sys

import jax
import numpy as np
import pytest

from benchmarks import (
    NAMES,
    data_parallel,
    decaycell,
    flow,
    limit,
    lstm,
    pmnist,
    processes,
    seeds,
    spectra,
    sweep,
    zoh,
)
from benchmarks.cli import main
from benchmarks.recurrent import RecurrentConfig, SequenceShape
from benchmarks.report import execute
from benchmarks.timing import measure
from curse._memory_flow import MemoryFlowConfig
from memdyn.internal import replace_fields

TINY_SHAPE = SequenceShape("tiny", batch=3, time=5, input_size=2, hidden_size=4)
# No torch.compile here: compiling takes about a minute even at this size.
TINY = RecurrentConfig(shapes=(TINY_SHAPE,), repeats=2, torch_compile=False)
CONFIGS = {
    "lstm": TINY,
    "decaycell": TINY,
    "zoh": zoh.Config(hidden_size=6, steps=40, scan_steps=(41,), repeats=2),
    "limit": limit.Config(
        matrix_size=32, repeats=2, lstm=dataclasses.replace(TINY, variants=False)
    ),
    # n = 140, short Lanczos runs: compiling the five JAX programs is most of its ~30 s.
    "spectra": spectra.Config(
        hidden_sizes=(1,), repeats=(2,), batch=4, slq_steps=12, lanczos_steps=8
    ),
    # Compiling the vmapped Dopri5 solve is most of its run.
    "flow": flow.Config(num_omegas=2, tau=1.0, repeats=2),
    # The LSTM only: the DecayNet case compiles another step (`test_seeds_decaynet_peer_agrees`).
    "seeds": replace_fields(
        seeds.Config(),
        {"cells": ("lstm",), "hidden_size": 4, "seeds": 2, "train.batch_size": 3, "repeats": 2},
    ),
    # TINY_SHAPE and one shorter: the first's programs are the `lstm` record's, compiled once.
    "pmnist": pmnist.Config(
        cells=("decay",), seeds=2, hidden_size=3, batch_size=2, sequence_length=6, repeats=2
    ),
    "sweep": sweep.Config(lengths=(3, 5), hidden_sizes=(4,), batches=(3,), input_size=2, repeats=2),
    # Two processes (1 and 2 host devices), each starting JAX: most of its ~30 s.
    "data_parallel": data_parallel.Config(
        shapes=(dataclasses.replace(TINY_SHAPE, batch=4),), repeats=2
    ),
    # Three processes (one alone, a job of two), each starting JAX.
    "processes": processes.Config(shapes=(dataclasses.replace(TINY_SHAPE, batch=4),), repeats=2),
}
TIMING_KEYS = {"first_call_s", "median_s", "min_s", "iqr_s", "times_s"}
TOLERANCE = 1e-5


class _Records(dict):
    """Each benchmark's record, run at its tiny size the first time a test asks for it: an
    xdist worker runs only the benchmarks its own tests read (all nine cost ~100 s)."""

    def __init__(self, out):
        super().__init__()
        self.out = out

    def __missing__(self, name):
        path, record = execute(name, CONFIGS[name], self.out)
        assert path == self.out / f"{name}.json"
        assert json.loads(path.read_text()) == record
        self[name] = json.loads(path.read_text())
        return self[name]


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return _Records(tmp_path_factory.mktemp("bench"))


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
        assert case["agreement"], "no PyTorch peer was timed"
        for peer, agreement in case["agreement"].items():
            assert agreement["max_abs_diff_hidden_states"] < TOLERANCE
            assert agreement["max_abs_diff_loss"] < TOLERANCE
            scale = agreement["gradient_scale"]
            assert agreement["max_abs_diff_gradients"] < TOLERANCE * scale
            assert agreement["within_tolerance"]
            assert _positive(case["median_ratio"][peer])
        best = case["best_torch_peer"]
        assert best["median_ratio"] == min(
            ratio for name, ratio in case["median_ratio"].items() if name.startswith("torch")
        )
        # The plain backward pass and the JAX peers compute the same loss and gradients.
        for gap in case["max_abs_diff_loss_and_gradients_vs_jax"].values():
            assert gap < TOLERANCE


def test_recurrent_benchmarks_time_every_variant(records):
    (lstm_case,) = records["lstm"]["cases"]
    assert {"jax", "jax-autodiff", "equinox", "torch"} <= lstm_case["implementations"].keys()
    (decay_case,) = records["decaycell"]["cases"]
    assert {"jax", "jax-autodiff"} <= decay_case["implementations"].keys()
    if not NO_TORCH:
        assert {"torch-eager", "torch-script"} <= decay_case["implementations"].keys()
    assert "torch-compile" not in decay_case["implementations"]  # torch_compile=False


def test_pmnist_projects_the_protocol_from_the_measured_step(records):
    record = records["pmnist"]
    assert [c["case"] for c in record["cases"]] == ["decay-2-seeds", "rbn-decay-2-seeds"]
    config = CONFIGS["pmnist"]
    for case in record["cases"]:
        step = case["implementations"]["jax"]["median_s"] / config.steps
        assert case["seconds_per_step_all_seeds"] == pytest.approx(step)
        epoch = step * config.train_size / config.batch_size
        assert case["projected_protocol_h"] == pytest.approx(epoch * config.epochs / 3600)
    total = sum(c["projected_protocol_h"] for c in record["cases"])
    assert record["projected_protocol_h"] == pytest.approx(total)
    assert record["target"]["met"] == (total <= pmnist.TARGET_HOURS)


def test_sweep_covers_the_grid_and_plots(records, tmp_path):
    record = records["sweep"]
    shapes = {(c["shape"]["batch"], c["shape"]["time"]) for c in record["cases"]}
    assert shapes == {(3, 3), (3, 5)}
    for case in record["cases"]:
        assert set(case["implementations"]) == {"jax", "torch"}
    if not NO_TORCH:
        path = sweep.plot(record, tmp_path)
        assert path.exists() and path.stat().st_size > 0


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
    full, forward, backward = records["zoh"]["cases"]
    names = ["zoh-full-6x40", "zoh-diag-6x41", "zoh-diag-6x41-grad"]
    assert [c["case"] for c in records["zoh"]["cases"]] == names
    assert all(c["dtype"] == "float64" for c in records["zoh"]["cases"])
    assert full["agreement"]["max_abs_diff_outputs"] < 1e-12
    assert full["agreement"]["within_tolerance"]
    assert _positive(full["median_ratio"]["scipy"])
    # The diagonal model: the associative scan and SciPy's lfilter against the sequential scan.
    assert set(forward["median_ratio"]) == {"assoc", "scipy"}
    for peer in ("assoc", "scipy"):
        assert forward["agreement"][peer]["max_abs_diff_outputs"] < 1e-12
        assert forward["agreement"][peer]["within_tolerance"]
    assert set(backward["median_ratio"]) == {"assoc"}
    assert backward["agreement"]["assoc"]["max_abs_diff_gradients"] < 1e-12
    assert backward["agreement"]["assoc"]["within_tolerance"]


def test_flow_agrees_with_scipy(records):
    (case,) = records["flow"]["cases"]
    assert case["dtype"] == "float64"
    agreement = case["agreement"]
    assert agreement["jax_solves_finished"]
    assert agreement["max_abs_diff_final_parameters"] < flow.TOLERANCE
    assert agreement["max_abs_diff_final_losses"] < flow.TOLERANCE
    assert agreement["within_tolerance"]
    assert case["scipy_gradient_evaluations"] > 0
    # The flow has moved: the shortest memory's loss is well below its start.
    assert case["loss_range"]["final_min"] < case["loss_range"]["start_max"] - 0.1
    assert _positive(case["median_ratio"]["scipy"])


@pytest.mark.parametrize("omega", [0.25, 1 / 12])
def test_flow_numpy_gradient_matches_finite_differences(omega):
    problem = MemoryFlowConfig()
    theta = np.array([0.9, 0.6, 0.3, 1.1, 1.7, 0.4])  # (a, w) off the start: every term active
    _, gradient = flow.numpy_loss_and_grad(theta, omega, problem)
    step = 1e-6
    central = np.array(
        [
            (
                flow.numpy_loss_and_grad(theta + step * e, omega, problem)[0]
                - flow.numpy_loss_and_grad(theta - step * e, omega, problem)[0]
            )
            / (2 * step)
            for e in np.eye(theta.size)
        ]
    )
    assert np.max(np.abs(gradient - central)) < 1e-7 * max(1.0, np.max(np.abs(gradient)))
    assert np.max(np.abs(gradient)) > 1e-2  # not a vacuous comparison


def _check_seeds_case(case):
    agreement = case["agreement"]
    assert agreement["max_abs_diff_loss"] <= seeds.LOSS_TOLERANCE
    assert agreement["max_abs_diff_updated_weights"] <= seeds.WEIGHT_TOLERANCE
    assert agreement["within_tolerance"]
    assert _positive(case["median_ratio"]["torch"])
    rates = case["seed_steps_per_s"]
    assert rates["torch"] / rates["jax"] == pytest.approx(1 / case["median_ratio"]["torch"])
    assert case["target"]["met"] == (case["median_ratio"]["torch"] >= seeds.TARGET_RATIO)


def test_seeds_torch_peer_agrees_with_jax(records):
    pytest.importorskip("torch")
    (case,) = records["seeds"]["cases"]
    assert case["shape"]["seeds"] == 2
    _check_seeds_case(case)


@pytest.mark.slow
def test_seeds_decaynet_peer_agrees_with_jax(tmp_path):
    pytest.importorskip("torch")
    config = dataclasses.replace(CONFIGS["seeds"], cells=("decay",))
    _, record = execute("seeds", config, tmp_path)
    (case,) = record["cases"]
    _check_seeds_case(case)


def test_seeds_without_torch_times_jax_alone(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    config = dataclasses.replace(CONFIGS["seeds"], repeats=1)  # the compiled step is reused
    _, record = execute("seeds", config, tmp_path)
    (case,) = record["cases"]
    assert "torch not importable" in case["implementations"]["torch"]["skipped"]
    assert set(case["median_ratio"]) == {"jax-one-device"} and "agreement" not in case
    assert case["target"]["met"] is False
    # The seeds split over the two host devices of the test process, and on one, and one seed.
    assert case["jax_devices"] == 2
    assert set(case["in_one_seed_steps"]) == {"jax", "jax-one-device"}
    assert case["one_seed"]["median_s"] > 0


@pytest.mark.skipif(NO_TORCH, reason="PyTorch (the bench extra) is not installed")
def test_torch_peer_flushes_denormals_as_xla_does_and_only_while_timed():
    from benchmarks.peers import flushed_denormals, import_torch

    torch, _ = import_torch()
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # denormal in float32
    assert float(tiny * 1.0) != 0.0  # PyTorch's default, which the rest of the process keeps
    with flushed_denormals(torch):
        assert float(tiny * 1.0) == 0.0
    assert float(tiny * 1.0) != 0.0
    assert float(jax.numpy.float32(1e-39) * jax.numpy.float32(1.0)) == 0.0  # XLA:CPU's own


def test_data_parallel_steps_agree_with_one_device_and_torch(records):
    (case,) = records["data_parallel"]["cases"]
    assert case["jax_devices"] == {"jax-1-device": ["cpu:0"], "jax": ["cpu:0", "cpu:1"]}
    assert case["max_abs_diff_vs_1_device"]["jax"] < TOLERANCE
    assert set(case["scaling"]) == {"jax-1-device"}
    if not NO_TORCH:
        assert case["agreement_tolerance"]["within_tolerance"]
        assert case["best_torch_peer"]["name"] in ("torch-1-thread", "torch-2-threads")


def test_a_two_process_job_steps_as_one_process(records):
    (case,) = records["processes"]["cases"]
    assert case["processes"] == {"jax": 1, "jax-2-processes": 2}
    assert case["devices"]["jax"] == ["cpu:0", "cpu:1"]
    assert len(case["devices"]["jax-2-processes"]) == 2
    assert case["agreement"]["within_tolerance"], case["agreement"]


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
    _, record = execute("decaycell", dataclasses.replace(TINY, variants=False), tmp_path)
    (case,) = record["cases"]
    assert "torch not importable" in case["implementations"]["torch"]["skipped"]
    assert case["median_ratio"] == {} and "best_torch_peer" not in case
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
    with pytest.raises(ValueError, match="tau must be > 0"):
        flow.Config(tau=0.0)
    with pytest.raises(ValueError, match="max_memory must be >= min_memory"):
        flow.Config(min_memory=5.0, max_memory=4.0)
    with pytest.raises(ValueError, match="unknown cells 'gru'"):
        seeds.Config(cells=("gru",))
    with pytest.raises(ValueError, match="seeds must be > 0"):
        seeds.Config(seeds=0)


def test_quick_configs_are_smaller():
    modules = (lstm, decaycell, zoh, limit, spectra, flow, seeds, sweep, pmnist, data_parallel)
    for module in (*modules, processes):
        assert module.Config().quick() != module.Config()
    quick = spectra.Config().quick()
    assert max(map(quick.parameters, quick.hidden_sizes)) <= 10**4
