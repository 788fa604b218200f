"""Data-parallel `memdyn.train_epochs` across processes: a job of 2 localhost processes with 2 CPU
devices each (`jax.distributed`, the 4 devices of `memdyn.batch_mesh()`) trains as one process on
one device does, and a job whose processes are killed mid-run resumes, when launched again,
bitwise equal to the job left alone.

The run: two seeds of a small MLP regression (3 → 8 → 8 → 1), batches of 8 out of 64 examples, so
every device gets 2 examples of each batch; 6 epochs of 8 Adam steps in chunks of 4, a checkpoint
every chunk and an evaluation (the full-data loss of each seed) at every epoch end. This file is
also the workers' script: `python test_distributed_training.py MODE DIR COORDINATOR PROCESS`.

Bounds: the job against one device, `tests.mapped.RTOL` in float32 (1e-5 normwise per leaf, as
test_data_parallel.py): the job all-reduces each gradient over 4 devices, in another order than
the one-device sum. Measured on this 2-core Xeon, largest relative gaps: 2.9e-7 (parameters),
8.0e-7 (Adam's moments), 8.1e-8 (chunk losses), 6.1e-8 (evaluations). The resumed job against
the job left alone, and the processes of a job against each other: bitwise equal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memdyn
from tests.mapped import RTOL, assert_trees_close, relative_gap

ROOT = Path(__file__).resolve().parents[2]
PROCESSES, DEVICES = 2, 2
SEEDS = [0, 1]
# NumPy, not JAX: a worker runs no JAX computation before jax.distributed.initialize.
_rng = np.random.default_rng(0)
XS = _rng.normal(size=(64, 3)).astype(np.float32)
YS = (np.sin(XS[:, 0]) + XS[:, 1] * XS[:, 2]).astype(np.float32)
CONFIG = memdyn.TrainConfig(batch_size=8, epochs=6, chunk_steps=4, checkpoint_every=4)
STEPS = CONFIG.epochs * len(XS) // CONFIG.batch_size
KILL_AFTER = 16  # steps in a checkpoint before the job is killed: 2 of 6 epochs
SLOW_EPOCH_S = 0.4  # the killed job's epochs are this much slower, so that the kill lands mid-run


def make(key):
    return eqx.nn.MLP(3, "scalar", 8, 2, key=key), None


def loss(model, state, xs, ys):
    return jnp.mean((jax.vmap(model)(xs) - ys) ** 2), state


@eqx.filter_jit
def _full_losses(params, static):
    return jax.vmap(lambda p: loss(eqx.combine(p, static), None, XS, YS)[0])(params)


def evaluation(static, *, pause: float = 0.0):
    """Each seed's loss on all the data, the same host values on every process (`gather`)."""

    def evaluate(run):
        time.sleep(pause)
        return memdyn.gather(_full_losses(run.params, static))

    return evaluate


def start(optimizer):
    """`memdyn.init_run`, compiled: eager, its vmapped initialisation dispatches an operation at
    a time, which took longer than the training in each worker."""
    return eqx.filter_jit(memdyn.init_run)(make, SEEDS, optimizer)


def train(mesh=None, **options):
    optimizer = CONFIG.make_optimizer()
    run, static = start(optimizer)
    options.setdefault("evaluate", evaluation(static))
    return memdyn.train_epochs(run, static, loss, XS, YS, CONFIG, optimizer, mesh=mesh, **options)


RATES = (0.02, 0.05, 0.1, 0.2)  # a learning-rate sweep, one rate per device of the job


def sweep(rates):
    """`memdyn.sweep_learning_rates` of the first seed's MLP by gradient descent on all the data."""
    model = make(jax.random.key(0))[0]
    full = lambda model: loss(model, None, XS, YS)[0]
    optimizer = memdyn.make_optimizer("gd", 0.1)
    return memdyn.sweep_learning_rates(full, model, optimizer, rates, 5, save_every=1)


def _leaves(run):
    return [np.asarray(x) for x in jax.tree.leaves(memdyn.gather((run.params, run.opt_state)))]


def worker(mode: str, out: Path, coordinator: str, index: int) -> None:
    """One process of a job. `killed`: the run, slowly, to be killed mid-run. `resume`: the
    errors every process must raise, the killed run resumed from its checkpoint, the run left
    alone (from the start, with another checkpoint) and its checkpoint refused to another run."""
    jax.distributed.initialize(
        coordinator,
        PROCESSES,
        index,
        initialization_timeout=60,
        heartbeat_timeout_seconds=60,
        shutdown_timeout_seconds=30,
    )
    mesh = memdyn.batch_mesh()  # every process's devices
    assert mesh.devices.size == PROCESSES * DEVICES, mesh
    optimizer = CONFIG.make_optimizer()
    run, static = start(optimizer)
    args = (run, static, loss, XS, YS)

    def train(checkpoint, pause=0.0, config=CONFIG):
        evaluate = evaluation(static, pause=pause)
        return memdyn.train_epochs(
            *args, config, optimizer, checkpoint=out / checkpoint, evaluate=evaluate, mesh=mesh
        )

    if mode == "killed":
        train("run.eqx", pause=SLOW_EPOCH_S)
        raise AssertionError("the run was not killed")
    odd = dataclasses.replace(CONFIG, batch_size=6)
    with pytest.raises(memdyn.ConfigError, match="batch_size is 6, not a multiple of the 4 "):
        memdyn.train_epochs(*args, odd, optimizer, mesh=mesh)
    # Process 0 alone reads checkpoints: their errors reach the others by broadcast.
    if index == 0:
        (out / "garbage.eqx").write_bytes(b"not a checkpoint")
        (out / "lost.eqx.json").write_text("{}")
    for name, error in [("garbage", "is not a memdyn checkpoint"), ("lost", "is missing but")]:
        with pytest.raises(memdyn.CheckpointError, match=error):
            train(f"{name}.eqx")
    print(f"process {index}: errors raised")
    for name in ("run", "alone"):
        run, losses, evaluations = train(f"{name}.eqx")
        evaluations = np.asarray(evaluations, np.float32)
        np.savez(out / f"{name}_{index}.npz", *_leaves(run), losses=losses, evaluations=evaluations)
    # A learning-rate sweep with its rates sharded over the 4 devices of both processes.
    sweep_mesh = memdyn.sweep_mesh()
    bad = memdyn.shard_leading_axis(-np.asarray(RATES, np.float32), sweep_mesh)
    with pytest.raises(ValueError, match="learning_rates must be > 0"):
        jax.block_until_ready(sweep(bad))
    swept = memdyn.gather(
        sweep(memdyn.shard_leading_axis(np.asarray(RATES, np.float32), sweep_mesh))
    )
    np.savez(out / f"sweep_{index}.npz", thetas=swept.thetas.layers[0].weight, losses=swept.losses)
    longer = dataclasses.replace(CONFIG, epochs=CONFIG.epochs + 1)
    with pytest.raises(memdyn.CheckpointError, match="written by a different run"):
        train("alone.eqx", config=longer)
    devices = len(jax.tree.leaves(run.params)[0].sharding.device_set)
    print(f"process {index}: {jax.process_count()} processes, {devices} devices")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _launch(mode: str, out: Path) -> list[subprocess.Popen]:
    out.mkdir(exist_ok=True)
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}",
        # The suite's persistent compilation cache (tests/conftest.py): a rerun compiles less.
        JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    coordinator = f"localhost:{_free_port()}"
    workers = []
    for index in range(PROCESSES):
        command = [sys.executable, __file__, mode, str(out), coordinator, str(index)]
        with open(out / f"{mode}_{index}.log", "w") as log:
            workers.append(
                subprocess.Popen(command, cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
    return workers


def _report(mode: str, out: Path, workers) -> str:
    return "\n".join(
        f"--- {mode} process {index}: exit {worker.returncode}\n"
        + (out / f"{mode}_{index}.log").read_text()[-3000:]
        for index, worker in enumerate(workers)
    )


def _stop(workers) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
        worker.wait()


def _finish(mode: str, out: Path, workers, timeout: float = 150) -> str:
    """Wait for a job; past the timeout, or once a process has failed, kill the others. The
    processes' output."""
    deadline = time.monotonic() + timeout
    try:
        while any(worker.poll() is None for worker in workers):
            if time.monotonic() > deadline or any(worker.returncode for worker in workers):
                break
            time.sleep(0.05)
    finally:
        _stop(workers)
    report = _report(mode, out, workers)
    assert all(worker.returncode == 0 for worker in workers), report
    return report


def _checkpointed_step(checkpoint: Path) -> int:
    try:  # the copy is replaced atomically, but may not exist yet
        return json.loads(Path(f"{checkpoint}.json").read_text())["step"]
    except (OSError, ValueError):
        return 0


def _kill_mid_run(out: Path, workers, timeout: float = 120) -> int:
    """SIGKILL process 1 once process 0 has checkpointed `KILL_AFTER` steps, then process 0 (the
    job is lost, as under a scheduler). The step of the checkpoint left."""
    deadline = time.monotonic() + timeout
    try:
        while _checkpointed_step(out / "run.eqx") < KILL_AFTER:
            stopped = [worker.poll() is not None for worker in workers]
            assert not any(stopped) and time.monotonic() < deadline, _report("killed", out, workers)
            time.sleep(0.02)
        workers[1].send_signal(signal.SIGKILL)
        workers[0].send_signal(signal.SIGKILL)
    finally:
        _stop(workers)
    codes = [worker.returncode for worker in workers]
    assert codes == [-signal.SIGKILL] * PROCESSES, (codes, _report("killed", out, workers))
    return _checkpointed_step(out / "run.eqx")


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as saved:
        return dict(saved)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    """A job killed mid-run, then launched again; meanwhile, the same training in this process
    on one device."""
    out = tmp_path_factory.mktemp("job")
    began = time.monotonic()
    left = _kill_mid_run(out, _launch("killed", out))
    resumed = _launch("resume", out)
    try:
        run, losses, evaluations = train()
    finally:
        log = _finish("resume", out, resumed)
    print(f"jobs: {time.monotonic() - began:.1f} s")
    reference = {f"arr_{i}": leaf for i, leaf in enumerate(_leaves(run))}
    reference |= {"losses": losses, "evaluations": np.asarray(evaluations, np.float32)}
    return {
        "reference": reference,
        "alone": [_load(out / f"alone_{i}.npz") for i in range(PROCESSES)],
        "resumed": [_load(out / f"run_{i}.npz") for i in range(PROCESSES)],
        "log": log,
        "left": left,
        "checkpoint": out / "run.eqx",
        "sweep": [_load(out / f"sweep_{i}.npz") for i in range(PROCESSES)],
    }


def test_two_processes_train_as_one_device(jobs):
    alone, reference, log = jobs["alone"], jobs["reference"], jobs["log"]
    assert "process 0: 2 processes, 4 devices" in log, log
    for index in range(PROCESSES):  # every process refused the bad settings and checkpoints
        assert f"process {index}: errors raised" in log, log
    assert alone[0].keys() == reference.keys()
    for name in alone[0]:  # every process returns the same
        np.testing.assert_array_equal(alone[1][name], alone[0][name], err_msg=name)
    assert_trees_close(alone[0], reference, rtol=RTOL["float32"], what="2 processes")
    gaps = {name: relative_gap(alone[0][name], reference[name]) for name in reference}
    print("largest relative gaps:", {name: f"{gap:.2g}" for name, gap in gaps.items()})
    losses = alone[0]["losses"]
    assert losses.shape == (STEPS // CONFIG.chunk_steps, len(SEEDS))
    assert np.all(losses[-1] < 0.5 * losses[0])  # it trained
    assert alone[0]["evaluations"].shape == (CONFIG.epochs, len(SEEDS))


def test_killed_job_resumes_exactly(jobs):
    log = jobs["log"]
    resumed_at = re.findall(
        rf"train: resuming from {re.escape(str(jobs['checkpoint']))} at step (\d+) of {STEPS}\n",
        log,
    )
    assert len(resumed_at) == 1, log  # said by process 0 alone
    assert KILL_AFTER <= jobs["left"] <= int(resumed_at[0]) < STEPS, (jobs["left"], log)
    print(f"killed with step {jobs['left']} checkpointed, resumed at step {resumed_at[0]}")
    for resumed in jobs["resumed"]:
        assert resumed.keys() == jobs["alone"][0].keys()
        for name, value in jobs["alone"][0].items():
            np.testing.assert_array_equal(resumed[name], value, err_msg=name)


def test_learning_rate_sweep_sharded_over_processes_equals_one_device(jobs):
    # Each process refused negative rates (checked where they live) and swept the 4 rates, one
    # per device of the job; the members equal the sweep in this process on one device.
    reference = sweep(jnp.asarray(RATES, jnp.float32))
    expected = {"thetas": reference.thetas.layers[0].weight, "losses": reference.losses}
    for swept in jobs["sweep"]:
        assert swept.keys() == expected.keys()
        assert_trees_close(swept, expected, rtol=RTOL["float32"], what="sharded sweep")
    assert np.all(np.diff(expected["losses"][:, -1]) < 0)  # larger rates went further


if __name__ == "__main__":
    mode, out, coordinator, index = sys.argv[1:]
    worker(mode, Path(out), coordinator, int(index))
