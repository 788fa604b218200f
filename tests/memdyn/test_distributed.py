"""A sweep across processes: docs/cluster.md's script runs as a 2-process job on localhost (2
simulated CPU devices each, launched as SLURM would launch it) and writes what the same sweep
gives in this single process, on one device."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from memdyn import gather, shard_leading_axis, sweep_mesh

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 2


def _script() -> str:
    page = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    (script,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", page, re.DOTALL)
        if block.startswith('"""sweep.py')
    ]
    return script


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _slurm_task(index: int, port: int) -> dict[str, str]:
    """The environment `srun --ntasks=2` on one node gives task `index`; only the coordinator's
    port is set apart (SLURM's is derived from the job id and may be taken)."""
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
        SLURM_JOB_ID="1",
        SLURM_STEP_NODELIST="localhost",
        SLURM_NTASKS=str(PROCESSES),
        SLURM_PROCID=str(index),
        SLURM_LOCALID=str(index),
    )


def test_docs_sweep_on_two_processes_equals_one_process(tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(_script(), encoding="utf-8")
    port = _free_port()
    workers = [
        subprocess.Popen(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=_slurm_task(index, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(PROCESSES)
    ]
    # The reference, computed while the workers start: the module's definitions, run here.
    namespace = {"__name__": "sweep_example"}
    exec(compile(script.read_text(encoding="utf-8"), str(script), "exec"), namespace)
    reference = namespace["sweep"](jnp.asarray(namespace["targets"]))
    outputs = []
    for worker in workers:
        try:
            outputs.append(worker.communicate(timeout=120))
        except subprocess.TimeoutExpired:
            for other in workers:
                other.kill()
            outputs.append(worker.communicate())
    report = "\n".join(
        f"--- process {index}: exit {worker.returncode}\n{out}\n{err[-3000:]}"
        for index, (worker, (out, err)) in enumerate(zip(workers, outputs, strict=True))
    )
    assert all(worker.returncode == 0 for worker in workers), report
    assert "2 processes, 4 devices" in outputs[0][0], report
    written = np.load(tmp_path / "sweep.npz")
    np.testing.assert_array_equal(written["times"], np.asarray(reference.times))
    # Each member runs the same float32 operations on one device or four: the partition splits
    # only the vmapped axis, which no reduction crosses. But XLA compiles a batch of 2 members
    # per device apart from a batch of 8 and may order the mean over 64 examples differently;
    # after 200 Adam steps that rounding reached 1.2e-6 relative (measured), so allow 1e-5.
    np.testing.assert_allclose(written["losses"], np.asarray(reference.losses), rtol=1e-5)
    assert written["losses"].shape == (8, 5)
    assert np.all(written["losses"][:, -1] < written["losses"][:, 0])  # it trained


def test_gather_returns_numpy_and_keeps_other_leaves():
    mesh = sweep_mesh(jax.devices()[:1])
    tree = {"a": jnp.arange(6.0).reshape(3, 2), "n": np.arange(3), "f": jnp.tanh, "s": "x"}
    gathered = gather(shard_leading_axis(tree, mesh))
    assert type(gathered["a"]) is np.ndarray and type(gathered["n"]) is np.ndarray
    np.testing.assert_array_equal(gathered["a"], np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(gathered["n"], np.arange(3))
    assert gathered["f"] is jnp.tanh and gathered["s"] == "x"
