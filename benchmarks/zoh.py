"""Exact zero-order-hold stepping of a linear continuous-time RNN: JAX `lax.scan` against SciPy.

`curse.ContinuousRNN.zoh` with a full W steps `h_{k+1} = A h_k + B x_k` with
`(A, B)` read off one matrix exponential of `[[W, U], [0, 0]]Δ`, then `ŷ_k = cᵀ h_{k+1}`. The
reference does the same in NumPy: `scipy.linalg.expm` once, then a Python loop over the steps.
Both run in float64, as the curse analyses do; the largest output difference is recorded. Run with
`python -m benchmarks --only zoh` (or `python -m benchmarks.zoh`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import numpy as np
import scipy.linalg
from jaxtyping import Float

from benchmarks.timing import Timing, compare, measure
from curse._models import ContinuousRNN
from memdyn import check_fields, check_positive

# Float64 relative to max(1, largest output): both sides round only in expm and the products.
TOLERANCE = 1e-10


@dataclasses.dataclass(frozen=True)
class Config:
    """A full W of width `hidden_size`, scalar input, `steps` steps of `dt`; the paper's scale."""

    hidden_size: int = 64
    steps: int = 10_000
    dt: float = 0.1
    repeats: int = 20
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        for field in ("hidden_size", "steps", "dt", "repeats"):
            check_positive(field, getattr(self, field))

    def quick(self) -> Config:
        return dataclasses.replace(self, steps=2_000, repeats=5)


def scipy_zoh(
    recurrent: Float[np.ndarray, "m m"],
    input_weights: Float[np.ndarray, "m d"],
    readout: Float[np.ndarray, " m"],
    xs: Float[np.ndarray, "time d"],
    dt: float,
) -> Float[np.ndarray, " time"]:
    """`ŷ_k = cᵀ h_{k+1}` with `h_{k+1} = e^{WΔ} h_k + ∫_0^Δ e^{Ws} ds U x_k`, `h_0 = 0`.

    One `scipy.linalg.expm` of the block matrix `[[W, U], [0, 0]]Δ`, then a Python loop.
    """
    m, d = input_weights.shape
    block = np.zeros((m + d, m + d))
    block[:m, :m] = recurrent
    block[:m, m:] = input_weights
    exponential = scipy.linalg.expm(dt * block)
    transition, drive = exponential[:m, :m], exponential[:m, m:]
    h = np.zeros(m)
    outputs = np.empty(len(xs))
    for k, x in enumerate(xs):
        h = transition @ h + drive @ x
        outputs[k] = readout @ h
    return outputs


def run(config: Config) -> dict[str, Any]:
    """One case: JAX and SciPy timings, their ratio, and the largest output difference."""
    model_key, data_key = jax.random.split(jax.random.key(config.seed))
    with jax.enable_x64(True):
        model = ContinuousRNN(config.hidden_size, 1, structure="full", key=model_key)
        xs = jax.random.normal(data_key, (config.steps, 1))
        outputs = eqx.filter_jit(lambda model, xs: model(xs, config.dt, method="zoh"))
        timings: dict[str, Timing | str] = {
            "jax": measure(lambda: outputs(model, xs), repeats=config.repeats)
        }
        jax_outputs = np.asarray(outputs(model, xs))
        dtype = str(jax_outputs.dtype)
    arrays = [np.asarray(a) for a in (model.recurrent, model.input_weights, model.readout, xs)]
    reference = lambda: scipy_zoh(*arrays, config.dt)
    timings["scipy"] = measure(reference, repeats=config.repeats, wait=lambda result: None)
    difference = float(np.max(np.abs(reference() - jax_outputs)))
    scale = max(1.0, float(np.max(np.abs(jax_outputs))))
    within = difference <= TOLERANCE * scale
    case = {
        "case": f"zoh-full-{config.hidden_size}x{config.steps}",
        "shape": {"hidden_size": config.hidden_size, "input_size": 1, "steps": config.steps},
        "dtype": dtype,
        **compare(timings),
        "agreement": {
            "max_abs_diff_outputs": difference,
            "output_scale": scale,
            "tolerance": TOLERANCE,
            "within_tolerance": within,
        },
        "summary": f"scipy vs jax max|Δ| outputs {difference:.1e} "
        + ("(agree)" if within else "(MISMATCH, times not comparable)"),
    }
    return {"cases": [case]}


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("zoh",)))
