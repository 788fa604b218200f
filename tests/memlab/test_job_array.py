"""`memdyn array`: a sweep split into chunks, launched as subprocesses, merged into one record.

The chunks of a tiny `decaynet table2` (4 seeds in 2 chunks of 2) merge into the record of the
single 4-seed run: per-seed accuracies equal exactly (counts of 200 test images; each seed's
network trained in a vmap of 2 instead of 4), the means, sds and p-values computed from them to
1e-12 (float64 arithmetic on equal inputs), the final losses to 1e-5 relative (float32; a vmap of
another width may round its sums differently). Measured on this CPU: every difference 0, the
merged numbers bit-identical.
A chunk that fails (its output folder is a file) is reported, the merge refused, and launching
again reruns that chunk alone, after which the merge equals the single run as before.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import jax
import numpy as np
import pytest

import decaynet
from decaynet.experiments.permuted import EXPERIMENT as PERMUTED
from decaynet.experiments.permuted import PermutedConfig, curve_summary
from decaynet.experiments.table2 import EXPERIMENT, Config
from memdyn import ConfigError, MemdynError
from memdyn.internal import replace_fields
from memlab import SeedSweep
from memlab._experiment import execute
from memlab._job_array import (
    LocalExecutor,
    SlurmExecutor,
    describe,
    launch,
    load_array,
    merge_array,
    split_array,
)
from memlab._results import read_record
from memlab.cli import main

FLAGS = {
    "models": ("mnist/lstm/4", "mnist/decay/4"),
    "seeds": 4,
    "train.batch_size": 32,
    "train_subset": 256,
    "test_subset": 200,
    "train.chunk_steps": 4,
    "train.checkpoint_every": 4,
}
TINY = replace_fields(Config(), FLAGS)


def _cli_flags() -> list[str]:
    flags = []
    for name, value in FLAGS.items():
        flags.append("--" + name.replace("_", "-"))
        flags.extend(map(str, value) if isinstance(value, tuple) else [str(value)])
    return flags


def test_seed_sweep_splits_into_consecutive_blocks():
    assert isinstance(EXPERIMENT.sweep, SeedSweep)
    whole = replace_fields(TINY, {"seeds": 7, "first_seed": 10})
    chunks = EXPERIMENT.sweep.split(whole, 3)
    assert [(c.first_seed, c.seeds) for c in chunks] == [(10, 3), (13, 2), (15, 2)]
    assert all(dataclasses.replace(c, seeds=7, first_seed=10) == whole for c in chunks)
    with pytest.raises(ConfigError, match="cannot split 4 seeds into 5 chunks"):
        EXPERIMENT.sweep.split(TINY, 5)
    with pytest.raises(ConfigError, match="seeds"):  # a chunk of one seed cannot be t-tested
        EXPERIMENT.sweep.split(TINY, 3)


def test_slurm_script(tmp_path):
    plan = split_array(EXPERIMENT, replace_fields(TINY, {"seeds": 6}), 3, tmp_path / "array")
    executor = SlurmExecutor(
        options=("--gres=gpu:1", "--time=01:00:00"), setup=("source .venv/bin/activate",)
    )
    script = executor.script(plan, [0, 1, 2])
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --array=0-2" in lines
    assert f"#SBATCH --output={plan.directory}/logs/chunk_%a.log" in lines
    assert lines.index("#SBATCH --gres=gpu:1") < lines.index("source .venv/bin/activate")
    assert lines[-1] == f'memdyn array run {plan.directory} --chunk "$SLURM_ARRAY_TASK_ID"'
    assert "#SBATCH --array=0,2" in executor.script(plan, [0, 2])  # a rerun of two chunks
    assert launch(plan.directory, executor) == {0: None, 1: None, 2: None}  # written, not run
    assert (plan.directory / "array.sbatch").read_text() == script
    assert [c.first_seed for c in load_array(plan.directory).chunk_configs] == [0, 2, 4]
    with pytest.raises(MemdynError, match="another job array"):
        split_array(EXPERIMENT, TINY, 2, plan.directory)


@pytest.fixture(scope="module")
def array(tmp_path_factory):
    """The single 4-seed run in this process; the same as a job array of 2 chunks whose chunk 1
    fails at first; its states, exit statuses and merges along the way."""
    if decaynet.find_local("mnist") is None:
        pytest.skip("MNIST unavailable: no local copy (set MEMDYN_DATA or place ../shared/data)")
    root = tmp_path_factory.mktemp("array")
    single = read_record(execute(EXPERIMENT, TINY, root / "single")["json"])
    directory = root / "array"
    split = ["array", "split", "--chunks", "2", str(directory), "decaynet", "table2"]
    assert main([*split, *_cli_flags()]) == 0
    (directory / "chunk_1").write_text("not a folder")  # chunk 1's output cannot be created
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir)
    executor = LocalExecutor(parallel=2, env=env)
    found = {"first_launch": launch(directory, executor), "status": describe(directory)}
    with pytest.raises(MemdynError, match="chunk 1: failed") as refused:
        merge_array(directory)
    found["refused"] = str(refused.value)
    found["failed_log"] = (directory / "logs" / "chunk_1.log").read_text()
    kept = (directory / "chunk_0" / "table2.json").read_bytes()
    (directory / "chunk_1").unlink()
    found["second_launch"] = launch(directory, executor)
    found["chunk_0_untouched"] = (directory / "chunk_0" / "table2.json").read_bytes() == kept
    found["third_launch"] = launch(directory, executor)
    merged = read_record(merge_array(directory)["json"])
    return single, merged, directory, found


def test_a_failed_chunk_is_reported_and_rerun_alone(array):
    _, _, directory, found = array
    assert found["first_launch"] == {0: 0, 1: 2}
    assert "chunk 0 (seeds 2, first_seed 0): done" in found["status"]
    assert "chunk 1 (seeds 2, first_seed 2): failed (exit status 2" in found["status"]
    assert "1 chunks incomplete" in found["refused"]
    assert "is a file" in found["failed_log"]
    assert found["second_launch"] == {1: 0}  # only the failed chunk
    assert found["chunk_0_untouched"]
    assert found["third_launch"] == {}  # every chunk complete: nothing runs
    assert describe(directory).endswith("2 of 2 done; next: `memdyn array merge`")


def test_merged_record_equals_the_single_run(array):
    single, merged, directory, _ = array
    assert merged["experiment"] == "table2" and merged["package"] == "decaynet"
    assert merged["config"] == single["config"]
    assert merged["job_array"]["chunks"] == 2
    assert merged["float_dtypes"] == single["float_dtypes"]
    for a, b in zip(single["result"]["rows"], merged["result"]["rows"], strict=True):
        assert b["seeds"] == a["seeds"] == [0, 1, 2, 3]
        assert b["accuracies"] == a["accuracies"]  # counts out of 200: exactly equal
        np.testing.assert_allclose(b["final_loss"], a["final_loss"], rtol=1e-5)
        for key in ("mean", "std", "best"):
            assert b[key] == pytest.approx(a[key], rel=1e-12, abs=1e-12), key
        for key in ("model", "hidden", "params", "steps", "paper"):
            assert b[key] == a[key]
    for a, b in zip(single["result"]["tests"], merged["result"]["tests"], strict=True):
        for key in ("p_value", "welch_t", "student_t", "student_p"):
            assert b[key] == pytest.approx(a[key], rel=1e-12, abs=1e-12), key
        assert b["pair"] == a["pair"]
    assert (directory / "table2.png").is_file()


def test_a_chunk_record_of_another_config_is_refused(array, tmp_path):
    _, _, directory, _ = array
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    path = copy / "chunk_0" / "table2.json"
    record = json.loads(path.read_text())
    record["config"]["test_subset"] = 100
    path.write_text(json.dumps(record))
    assert "holds another config" in describe(copy)
    with pytest.raises(MemdynError, match="chunk 0: its record"):
        merge_array(copy)


def test_permuted_merge_joins_each_cells_seeds():
    """pMNIST's merge on a synthetic result (training it at 784 steps is minutes): the chunks'
    slices of a 5-seed result, split as `split` splits the seeds, merge back into it."""
    config = PermutedConfig(seeds=5)
    rng = np.random.default_rng(0)
    models = []
    for cell in config.cells:
        curves = rng.uniform(10, 90, (3, 5)).astype(np.float32)
        models.append(
            {
                "cell": cell,
                "model": cell.upper(),
                "params": 41810,
                "seeds": np.arange(5),
                "test_accuracy": curves,
                "train_loss": rng.uniform(0, 2, (3, 5)),
                **curve_summary(curves),
                "steps": 1800,
            }
        )
    whole = {
        "epochs": np.arange(1, 4),
        "permutation": rng.permutation(784),
        "train_examples": 60000,
        "test_examples": 10000,
        "models": models,
    }
    chunks = PERMUTED.sweep.split(config, 2)
    assert [(c.first_seed, c.seeds) for c in chunks] == [(0, 3), (3, 2)]
    parts = []
    for block in (slice(0, 3), slice(3, 5)):
        sliced = [
            {
                **m,
                "seeds": m["seeds"][block],
                "test_accuracy": m["test_accuracy"][:, block],
                "train_loss": m["train_loss"][:, block],
            }
            for m in models
        ]
        parts.append({**whole, "models": sliced})
    merged = PERMUTED.sweep.merge(config, parts)
    assert merged.keys() == whole.keys()
    for a, b in zip(whole["models"], merged["models"], strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    parts[1] = {**parts[1], "train_examples": 100}
    with pytest.raises(ConfigError, match="train_examples"):
        PERMUTED.sweep.merge(config, parts)
