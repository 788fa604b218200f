"""Fault injection on a small training run (no dataset): SIGKILL at seeded-random moments, each
time resumed, ends bitwise equal to an uninterrupted run; changed bytes, truncations and deleted
files of its checkpoint are each detected with an error naming the file.

The run is `memdyn.train_epochs` with a checkpoint every chunk and an epoch-end evaluation, in a
subprocess. The moments are drawn (seeded) from the run's own sequence of events: inside a
compiled chunk, before a temporary checkpoint file is synced, before it replaces the old one,
before the metadata copy is written, inside an evaluation. The process kills itself there with
SIGKILL, which no handler can intercept, exactly as `kill -9` from outside would.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import memdyn

TOY = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import equinox as eqx
    import memdyn

    def make(key):
        return {"w": jax.random.normal(key, (4,)), "b": jnp.zeros(())}, None

    def loss(model, state, x, y):
        return jnp.mean((jnp.tanh(x @ model["w"] + model["b"]) - y) ** 2), state

    _rng = np.random.default_rng(0)
    XS = jnp.asarray(_rng.normal(size=(32, 4)), jnp.float32)
    YS = jnp.asarray(np.sin(_rng.normal(size=32)), jnp.float32)
    CONFIG = memdyn.TrainConfig(
        optimizer="adam", learning_rate=0.05, batch_size=8, epochs=12, chunk_steps=2,
        checkpoint_every=2,
    )
    SEEDS = [0, 1]

    @eqx.filter_jit
    def full_loss(run):
        return jax.vmap(lambda p: loss(p, None, XS, YS)[0])(run.params)
    """
)

SCRIPT = TOY + textwrap.dedent(
    """
    import os, signal, sys, threading, types
    import memdyn._checkpoint, memdyn._epochs, memdyn._files

    checkpoint, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    events = []

    def event(name):
        events.append(name)
        if len(events) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def hooked(name, real, during=False):
        def wrapper(*args, **kwargs):
            if during and len(events) + 1 == kill_at:  # kill while the computation runs
                threading.Timer(0.002, os.kill, (os.getpid(), signal.SIGKILL)).start()
            else:
                event(name)
            return real(*args, **kwargs)
        return wrapper

    class HookedOs(types.ModuleType):  # memdyn's own file writes only (not JAX's cache)
        fsync = staticmethod(hooked("fsync", os.fsync))  # a temporary file written, not synced
        replace = staticmethod(hooked("replace", os.replace))  # synced, not yet in place

        def __getattr__(self, name):
            return getattr(os, name)

    memdyn._files.os = HookedOs("os")
    memdyn._checkpoint.write_json = hooked("copy", memdyn._checkpoint.write_json)
    memdyn._epochs.train_chunk = hooked("chunk", memdyn._epochs.train_chunk, during=True)

    def evaluate(run):
        value = full_loss(run)
        event("evaluate")
        return value

    optimizer = CONFIG.make_optimizer()
    run, static = memdyn.init_run(make, SEEDS, optimizer)
    run, losses, evaluations = memdyn.train_epochs(
        run, static, loss, XS, YS, CONFIG, optimizer, checkpoint=checkpoint, evaluate=evaluate
    )
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves((run.params, run.opt_state))]
    np.savez(out, *leaves, losses=losses, evaluations=np.asarray(evaluations, np.float32))
    """
)


def _train(tmp_path, checkpoint, out, kill_at=0) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        MEMDYN_NO_PROGRESS="1",
        # Later processes load the compiled chunks instead of compiling them again.
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        JAX_PLATFORMS="cpu",
    )
    command = [sys.executable, "-c", SCRIPT, str(checkpoint), str(out), str(kill_at)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def _arrays(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def toy():
    namespace: dict = {}
    exec(TOY, namespace)  # the same toy as the subprocesses train
    return namespace


def _resume(toy, checkpoint):
    optimizer = toy["CONFIG"].make_optimizer()
    run, static = memdyn.init_run(toy["make"], toy["SEEDS"], optimizer)
    return memdyn.train_epochs(
        run, static, toy["loss"], toy["XS"], toy["YS"], toy["CONFIG"], optimizer,
        checkpoint=checkpoint, evaluate=toy["full_loss"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference(toy, tmp_path_factory):
    """An uninterrupted run, here on the CPU as the subprocesses: its checkpoint and the arrays
    the script saves."""
    checkpoint = tmp_path_factory.mktemp("reference") / "run.eqx"
    with jax.default_device(jax.devices("cpu")[0]):
        run, losses, evaluations = _resume(toy, checkpoint)
    leaves = jax.tree_util.tree_leaves((run.params, run.opt_state))
    arrays = {f"arr_{i}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays |= {"losses": losses, "evaluations": np.asarray(evaluations, np.float32)}
    return checkpoint, arrays


def test_sigkill_at_random_moments_resumes_to_the_uninterrupted_result(reference, tmp_path):
    _, expected = reference
    # The run has about 150 events (24 chunks, 36 checkpoint writes, 12 evaluations); a killed
    # process gets through at most 30 of them, so each one dies before the run is over.
    kill_points = np.random.default_rng(20240613).integers(1, 30, size=3)
    checkpoint, steps = tmp_path / "run.eqx", []
    for kill_at in kill_points:
        killed = _train(tmp_path, checkpoint, tmp_path / "unused.npz", kill_at=int(kill_at))
        assert killed.returncode == -signal.SIGKILL, (kill_at, killed.stderr)
        resumed = [line for line in killed.stderr.splitlines() if "resuming from" in line]
        steps.append(int(resumed[0].split(" at step ")[1].split()[0]) if resumed else 0)
    assert not (tmp_path / "unused.npz").exists()
    finished = _train(tmp_path, checkpoint, tmp_path / "final.npz")
    assert finished.returncode == 0, finished.stderr
    assert f"train: resuming from {checkpoint} at step " in finished.stderr
    assert steps == sorted(steps) and finished.stderr.count("resuming") == 1
    got = _arrays(tmp_path / "final.npz")
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)  # bitwise
    assert expected["evaluations"].shape == (12, 2)  # every epoch evaluated exactly once


def test_changed_bytes_truncations_and_deletions_are_each_detected(reference, toy, tmp_path):
    source, expected = reference
    original = source.read_bytes()
    checkpoint = tmp_path / "run.eqx"
    rng = np.random.default_rng(7)
    damages = [("byte", int(p)) for p in rng.integers(0, len(original), size=6)]
    damages += [("truncate", n) for n in (0, 1, 30, len(original) // 2, len(original) - 1)]
    for kind, where in damages:
        shutil.copyfile(source, checkpoint)
        data = bytearray(original)
        if kind == "byte":
            data[where] ^= 1 << int(rng.integers(8))
        else:
            del data[where:]
        checkpoint.write_bytes(bytes(data))
        where_ = re.escape(str(checkpoint))
        with pytest.raises(memdyn.CheckpointError, match=rf"checkpoint {where_} .*--fresh"):
            _resume(toy, checkpoint)
    # A deleted checkpoint whose metadata copy remains: progress was lost, never silently redone.
    shutil.copyfile(source, checkpoint)
    shutil.copyfile(memdyn_copy(source), memdyn_copy(checkpoint))
    checkpoint.unlink()
    missing = rf"checkpoint {re.escape(str(checkpoint))} is missing"
    with pytest.raises(memdyn.CheckpointError, match=missing):
        _resume(toy, checkpoint)
    # The metadata copy alone may go: it is never read back.
    shutil.copyfile(source, checkpoint)
    memdyn_copy(checkpoint).unlink()
    run, losses, evaluations = _resume(toy, checkpoint)
    np.testing.assert_array_equal(np.asarray(evaluations, np.float32), expected["evaluations"])
    np.testing.assert_array_equal(losses, expected["losses"])


def memdyn_copy(path):
    return path.with_suffix(path.suffix + ".json")


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(toy, tmp_path):
    xs = np.asarray(toy["XS"]).copy()
    ys = np.asarray(toy["YS"]).copy()
    ys[20] = np.inf  # batch 3 of some epoch meets it: the loss turns non-finite
    checkpoint = tmp_path / "run.eqx"
    run, static = memdyn.init_run(toy["make"], toy["SEEDS"], toy["CONFIG"].make_optimizer())
    with pytest.raises(memdyn.TrainingStopped, match=r"non-finite loss or gradient at step \d+"):
        memdyn.train_epochs(
            run,
            static,
            toy["loss"],
            xs,
            ys,
            toy["CONFIG"],
            toy["CONFIG"].make_optimizer(),
            checkpoint=checkpoint,
        )
    if checkpoint.exists():
        saved, meta = memdyn.load_checkpoint(checkpoint, run)
        assert np.all(np.isfinite(meta["losses"]))
