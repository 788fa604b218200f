"""The physical limit: how much of the device's float32 matmul throughput the LSTM step achieves.

First the peak: the GFLOP/s of a square float32 matrix product (`2n³` flops) in JAX and, as its
peer, in PyTorch; the better of the two stands for the device's peak. Then the `lstm` benchmark's
forward and backward pass, counted as `3 · D · 2B·4N(M + N)` flops (see
`SequenceShape.recurrent_flops`), as GFLOP/s and as a fraction of that peak. A recurrent step of a
64-wide LSTM is a small matrix product followed by a serial dependency, so a small fraction is
expected; it says how much room a faster kernel could have. Run with
`python -m benchmarks --only limit` (or `python -m benchmarks.limit`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import lstm
from benchmarks.peers import import_torch, strict_float32, torch_device, torch_wait
from benchmarks.recurrent import RecurrentConfig, measure_shape, torch_tensor
from benchmarks.timing import Timing, compare, measure, throughput
from memdyn.internal import check_fields, check_positive


@dataclasses.dataclass(frozen=True)
class Config:
    """The peak's `matrix_size` and repeats, and the LSTM shapes whose fraction of it is taken
    (memdyn's fused core and `torch.nn.LSTM` only: the other variants are `lstm`'s)."""

    matrix_size: int = 1024
    repeats: int = 20
    lstm: RecurrentConfig = RecurrentConfig(variants=False, torch_compile=False)
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        check_positive("matrix_size", self.matrix_size)
        check_positive("repeats", self.repeats)

    def quick(self) -> Config:
        return dataclasses.replace(self, repeats=5, lstm=self.lstm.quick())


def matmul_case(config: Config) -> dict[str, Any]:
    """Time an `n × n` float32 matrix product in JAX and PyTorch; GFLOP/s of each."""
    n = config.matrix_size
    left_key, right_key = jax.random.split(jax.random.key(config.seed))
    with strict_float32():
        left = jax.random.normal(left_key, (n, n), jnp.float32)
        right = jax.random.normal(right_key, (n, n), jnp.float32)
        product = jax.jit(jnp.matmul)
        timings: dict[str, Timing | str] = {
            "jax": measure(lambda: product(left, right), repeats=config.repeats)
        }
        torch, reason = import_torch()
        if torch is None:
            timings["torch"] = reason
        else:
            device = torch_device(torch)
            left_torch, right_torch = (torch_tensor(torch, a, device) for a in (left, right))
            timings["torch"] = measure(
                lambda: left_torch @ right_torch,
                repeats=config.repeats,
                wait=torch_wait(torch, device),
            )
    gflops = throughput(2 * n**3, timings)
    rates = ", ".join(f"{name} {value:.1f}" for name, value in gflops.items())
    return {
        "case": f"matmul-{n}",
        "shape": {"matrix_size": n},
        "dtype": "float32",
        **compare(timings),
        "gflops": gflops,
        "summary": f"matmul GFLOP/s: {rates}",
    }


def run(config: Config) -> dict[str, Any]:
    """The peak, then each LSTM shape's achieved GFLOP/s and its fraction of the peak."""
    peak_case = matmul_case(config)
    peak_implementation = max(peak_case["gflops"], key=peak_case["gflops"].get)
    peak = peak_case["gflops"][peak_implementation]
    cases = [peak_case]
    key = jax.random.key(config.lstm.seed)
    for index, shape in enumerate(config.lstm.shapes):
        case = measure_shape(lstm.PAIR, shape, config.lstm, key=jax.random.fold_in(key, index))
        case["fraction_of_peak"] = {name: rate / peak for name, rate in case["gflops"].items()}
        fractions = ", ".join(f"{n} {f:.3f}" for n, f in case["fraction_of_peak"].items())
        case["summary"] = f"{case['summary']}; fraction of peak: {fractions}"
        cases.append(case)
    return {"peak_gflops": peak, "peak_implementation": peak_implementation, "cases": cases}


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("limit",)))
