"""`decaynet table2`: a tiny real run (result keys, parameter counts, t-tests, resume, plot)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.stats

from decaynet.cli import main
from decaynet.experiments import EXPERIMENTS
from decaynet.experiments.table2 import Config, parse_model, run
from decaynet.plots import table2_figure
from memdyn import ConfigError
from memdyn.internal import replace_fields
from tests.decaynet.accuracy_reference import percent_correct, record_evaluations

TINY = replace_fields(
    Config(),
    {
        "models": ("mnist/lstm/4", "mnist/decay/4"),
        "seeds": 3,
        "train.batch_size": 32,
        "train_subset": 256,
        "test_subset": 200,
        "train.chunk_steps": 4,
        "train.checkpoint_every": 4,
    },
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, mnist_files):
    """The tiny run, and the accuracies of every row counted independently from its models."""
    out = tmp_path_factory.mktemp("table2")
    with pytest.MonkeyPatch.context() as monkeypatch:
        calls = record_evaluations(monkeypatch)
        result = run(TINY, out)
    counted = [percent_correct(r, static, xs, ys) for r, static, xs, ys, _ in calls]
    return result, out, counted


def test_rows_and_parameter_counts(tiny):
    result, _, counted = tiny
    rows = result["rows"]
    assert [(r["dataset"], r["model"], r["hidden"]) for r in rows] == [
        ("mnist", "LSTM", 4),
        ("mnist", "DecayNet", 4),
    ]
    assert len(counted) == len(rows)
    for r, reference in zip(rows, counted, strict=True):
        n, m = r["hidden"], 28
        assert r["params"] == 4 * n * (m + n) + 4 * n + 10 * n + 10  # paper's count, 682
        acc = np.asarray(r["accuracies"])
        assert acc.shape == (3,)
        np.testing.assert_allclose(acc, reference, rtol=0, atol=1e-9)  # NumPy count of 200
        assert r["mean"] == pytest.approx(acc.mean())
        assert r["std"] == pytest.approx(np.sqrt(((acc - acc.mean()) ** 2).sum() / 2))
        assert r["best"] == acc.max()
        assert r["steps"] == 256 // 32
        np.testing.assert_allclose(acc * 2, np.round(acc * 2), atol=1e-9)  # counts out of 200


def test_welch_and_student_by_hand(tiny):
    result, _, _ = tiny
    (test,) = result["tests"]
    a, b = (np.asarray(r["accuracies"]) for r in result["rows"])
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    t = (a.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    assert test["dataset"] == "mnist"
    assert test["welch_t"] == pytest.approx(t)
    assert test["p_value"] == pytest.approx(2 * scipy.stats.t.sf(abs(t), df))
    pooled = np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2 * (2 / 3))
    assert test["student_p"] == pytest.approx(
        2 * scipy.stats.t.sf(abs((a.mean() - b.mean()) / pooled), 4)
    )


def test_rerun_resumes_from_checkpoints(tiny):
    result, out, _ = tiny
    assert len(list((out / "checkpoints").glob("*.eqx"))) == 2
    again = run(TINY, out)  # every row's checkpoint is complete: no training, same accuracies
    for r, s in zip(result["rows"], again["rows"], strict=True):
        np.testing.assert_array_equal(r["accuracies"], s["accuracies"])
    other = run(dataclasses.replace(TINY, seeds=2, models=TINY.models[:2]), out)
    assert len(other["rows"][0]["accuracies"]) == 2  # a different config: its own checkpoints


def test_plot_and_registration(tiny):
    result, _, _ = tiny
    fig = table2_figure(result)
    assert len(fig.axes) == 1
    assert any(e.name == "table2" for e in EXPERIMENTS)
    quick = Config().quick()
    assert quick.seeds >= 2 and quick.train_subset > 0
    assert Config().seeds >= 20 and Config().train.epochs == 1
    assert Config().train.optimizer == "adam" and Config().train.learning_rate == 0.01


def test_bad_config():
    with pytest.raises(ValueError, match="models"):
        Config(models=("mnist/lstm/32",))
    with pytest.raises(ValueError, match="cifar/lstm/32"):
        parse_model("cifar/lstm/32")
    with pytest.raises(ValueError, match="mnist/rnn/32"):
        Config(models=("mnist/rnn/32", "mnist/decay/32"))
    with pytest.raises(ValueError, match="seeds"):
        Config(seeds=1)
    with pytest.raises(ValueError, match=r"Config\.train\.batch_size must be >= 1"):
        replace_fields(Config(), {"train.batch_size": 0})
    with pytest.raises(ValueError, match="init"):
        Config(init="xavier")


def test_a_batch_larger_than_the_training_subset_is_one_config_error(capsys):
    """`--train-subset 10` with batches of 64 used to end in a traceback from `train_epochs`
    after loading MNIST; the config now refuses it through the same check
    (`memdyn.steps_per_epoch`), one line naming both fields, before any data is read."""
    with pytest.raises(ConfigError, match="train_subset"):
        Config(train_subset=10)
    Config(train_subset=64)  # one full batch is enough
    with pytest.raises(SystemExit) as exit_info:
        main(["table2", "--train-subset", "10"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: decaynet table2 ")
    assert lines[-1].startswith(
        "decaynet table2: error: batch_size 64 exceeds the 10 training images kept by "
        "train_subset: an epoch drops its last incomplete batch"
    )
    assert sum("error:" in line for line in lines) == 1


@pytest.mark.slow
def test_full_table2_reproduces_the_paper(tmp_path, mnist_files):
    """`decaynet table2` in full (20 seeds, 1 epoch, ~6 min on 2 cores): every mean within one
    point of the paper's Table 2, and DecayNet ahead of the LSTM on MNIST-32."""
    result = run(Config(), tmp_path)
    for row in result["rows"]:
        assert abs(row["mean"] - row["paper"][0]) < 1.0, row
    mnist32 = result["tests"][0]
    assert mnist32["pair"] == ["LSTM-32", "DecayNet-32"]
    assert result["rows"][1]["mean"] > result["rows"][0]["mean"]
