"""`make demo`'s configurations: built from the experiments' own configs, and its Table 2 at a
reduced size (2 seeds, 1,000 test images, still the full training set) reaches the paper's
neighbourhood: above 90 % on MNIST (default run) and above 78 % on Fashion-MNIST (`slow`: its
LSTM-64 / DecayNet-48 pair costs about twice the MNIST pair)."""

import dataclasses
import os
import subprocess
import sys
from functools import reduce
from pathlib import Path

import numpy as np
import pytest

import decaynet
import demo
from curse.experiments import fig3
from decaynet.experiments import table2
from memdyn.internal import flat_fields

DATASETS_HERE = all(decaynet.find_local(name) is not None for name in ("mnist", "fashion_mnist"))


def test_demo_configs_replace_a_few_fields_of_the_experiments_configs():
    config = demo.table2_config()
    assert isinstance(config, table2.Config)
    default = {f.name: f.default for f in flat_fields(table2.Config)}
    changed = {
        name for name, value in default.items() if reduce(getattr, name.split("."), config) != value
    }
    assert changed == {"models", "seeds", "train.batch_size", "train.checkpoint_every"}
    assert config.train_subset == 0 and config.test_subset == 0  # the full data sets
    assert 60_000 // config.train.batch_size == 300  # a few hundred Adam steps
    assert isinstance(demo.fig3_config(), fig3.Fig3Config)
    assert len(demo.fig3_config().omegas) > len(fig3.Fig3Config().quick().omegas)


def test_summary_table_prints_ours_against_the_papers():
    rows = [{"dataset": "mnist", "model": "LSTM", "hidden": 32, "accuracies": [94.0, 95.0],
             "mean": 94.5, "std": 0.7071, "paper": (95.1, 0.2, 96.1)}]  # fmt: skip
    tests = [{"dataset": "mnist", "pair": ["LSTM-32", "DecayNet-32"], "p_value": 0.0123}]
    text = demo.summary_table({"fig3": {"slope": 0.55, "r2": 0.97},
                               "table2": {"rows": rows, "tests": tests}})  # fmt: skip
    assert "Table 2: MNIST LSTM-32 (%)" in text
    assert "94.5 ± 0.7 (n = 2)" in text and "95.1 ± 0.2" in text
    assert "c1 = 0.55, r² = 0.970" in text and "0.012" in text


def _demo_table2_means(pair: slice, tmp_path) -> dict:
    """The demo's Table 2 at a reduced size (2 seeds, the first 1,000 test images, still the full
    training set) for one of its dataset pairs: mean test accuracy per (dataset, model)."""
    config = demo.table2_config(seeds=2, test_subset=1000)
    config = dataclasses.replace(config, models=config.models[pair])
    result = table2.run(config, tmp_path)
    assert all(r["steps"] == 300 for r in result["rows"])
    return {(r["dataset"], r["model"]): np.mean(r["accuracies"]) for r in result["rows"]}


@pytest.mark.skipif(not DATASETS_HERE, reason="MNIST / Fashion-MNIST are not available locally")
def test_demo_table2_mnist_above_90(tmp_path):
    means = _demo_table2_means(slice(0, 2), tmp_path)
    assert means[("mnist", "LSTM")] > 90 and means[("mnist", "DecayNet")] > 90


@pytest.mark.slow
@pytest.mark.skipif(not DATASETS_HERE, reason="MNIST / Fashion-MNIST are not available locally")
def test_demo_table2_fashion_above_78(tmp_path):
    means = _demo_table2_means(slice(2, 4), tmp_path)
    assert means[("fashion_mnist", "LSTM")] > 78 and means[("fashion_mnist", "DecayNet")] > 78


def test_help_explains_and_runs_nothing(tmp_path):
    """`python -m demo --help` prints its usage and exits; it once ran the demo into a folder
    named `--help`."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--help"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: python -m demo" in done.stdout
    assert list(tmp_path.iterdir()) == []
