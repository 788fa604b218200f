"""`decaynet permuted`: real permuted-pixel MNIST, per-epoch curves, resume after a crash."""

import json

import numpy as np
import pytest

from decaynet import _train as train
from decaynet.experiments.permuted import PermutedConfig, run
from memdyn import CheckpointError
from memdyn.internal import replace_fields

TINY = replace_fields(
    PermutedConfig(),
    {
        "cells": ("lstm",),
        "hidden_size": 4,
        "seeds": 2,
        "train.epochs": 2,
        "train.batch_size": 50,
        "train_subset": 150,  # 3 steps per epoch: chunks of 2 and 1
        "test_subset": 100,
        "train.chunk_steps": 2,
        "train.checkpoint_every": 2,
    },
)


def test_both_cells_one_epoch(tmp_path, mnist_files):
    config = replace_fields(TINY, {"cells": ("lstm", "decay"), "train.epochs": 1})
    result = run(config, tmp_path)
    assert sorted(result["permutation"].tolist()) == list(range(784))
    assert [m["cell"] for m in result["models"]] == ["lstm", "decay"]
    for model in result["models"]:
        assert model["test_accuracy"].shape == (1, 2)  # (epochs, seeds)
        # 100 test images: every accuracy is a whole number of per cent.
        accuracy = model["test_accuracy"]
        np.testing.assert_allclose(accuracy, np.round(accuracy), atol=1e-4)
        assert np.all((accuracy >= 0) & (accuracy <= 100))
        assert np.all(np.isfinite(model["train_loss"]))
        assert model["steps"] == 3
    assert result["models"][0]["params"] == result["models"][1]["params"]  # no extra parameters


def test_interrupted_run_resumes_to_the_same_curves(tmp_path, monkeypatch, mnist_files):
    reference = run(TINY, tmp_path / "uninterrupted")["models"][0]
    calls = {"n": 0}
    real_evaluate = train.evaluate

    def crash_on_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed after epoch 2's checkpoint, before its evaluation")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train, "evaluate", crash_on_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(TINY, tmp_path / "interrupted")
    # One file: the accuracies ride in the checkpoint (step 5: epoch 1 evaluated, epoch 2 not).
    files = sorted(p.name for p in (tmp_path / "interrupted" / "checkpoints").iterdir())
    assert len(files) == 2 and files[1] == files[0] + ".json"
    meta = json.loads((tmp_path / "interrupted" / "checkpoints" / files[1]).read_text())
    assert meta["step"] == 5 and len(meta["evaluations"]) == 1
    monkeypatch.setattr(train, "evaluate", real_evaluate)
    resumed = run(TINY, tmp_path / "interrupted")["models"][0]
    np.testing.assert_array_equal(resumed["test_accuracy"], reference["test_accuracy"])
    np.testing.assert_array_equal(resumed["train_loss"], reference["train_loss"])
    assert resumed["steps"] == reference["steps"] == 6


def test_a_damaged_or_deleted_checkpoint_is_an_error_not_a_silent_rerun(tmp_path, mnist_files):
    config = replace_fields(TINY, {"train.epochs": 1})
    run(config, tmp_path)
    (checkpoint,) = (tmp_path / "checkpoints").glob("*.eqx")
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the weights
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"checkpoint {checkpoint} is corrupted.*--fresh"):
        run(config, tmp_path)
    checkpoint.unlink()
    with pytest.raises(CheckpointError, match=rf"checkpoint {checkpoint} is missing"):
        run(config, tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cells": ("lstm", "gru")}, "cells"),
        ({"cells": ("lstm", "lstm")}, "repeat"),
        ({"train.epochs": 0}, r"PermutedConfig\.train\.epochs must be >= 1"),
        ({"init": "xavier"}, "init"),
        ({"train.chunk_steps": 3, "train.checkpoint_every": 4}, "checkpoint_every"),
        ({"train.checkpoint_every": 0}, r"PermutedConfig\.train\.checkpoint_every must be >= 1"),
        ({"train.learning_rate": float("nan")}, r"PermutedConfig\.train\.learning_rate"),
        ({"train_subset": 10}, "batch_size 100 exceeds the 10 training images kept by train_sub"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        replace_fields(PermutedConfig(), kwargs)
