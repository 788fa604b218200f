"""Exact zero-order-hold stepping of a linear continuous-time RNN: JAX `lax.scan` against SciPy.

`curse.ContinuousRNN` with a full W, stepped by `curse.ZeroOrderHold()`, steps
`h_{k+1} = A h_k + B x_k` with `(A, B)` read off one matrix exponential of `[[W, U], [0, 0]]Δ`,
then `ŷ_k = cᵀ h_{k+1}`. The reference does the same in NumPy: `scipy.linalg.expm` once, then a
Python loop over the steps.

With a diagonal W the recurrence is elementwise, `h_{k+1} = e^{−wΔ} ⊙ h_k + b_k`, and for each of
`scan_steps` two cases compare its sequential scan (`"jax"`, the reference) with the associative
scan of S5 (`"assoc"`, `scan=AssociativeScan()`): the forward pass, with `scipy.signal.lfilter` (one
first-order filter per unit) as the SciPy peer, and the forward and backward pass
(`eqx.filter_grad` of the mean squared output). All run in float64, as the curse analyses do; the
largest output (and gradient) difference is recorded. Run with `python -m benchmarks --only zoh`
(or `python -m benchmarks.zoh`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.signal
from jaxtyping import Float

from benchmarks.timing import Timing, compare, measure
from curse import AssociativeScan, ContinuousRNN, SequentialScan, ZeroOrderHold
from memdyn.internal import check_fields, check_positive

# Float64 relative to max(1, largest output): both sides round only in expm and the products.
TOLERANCE = 1e-10


@dataclasses.dataclass(frozen=True)
class Config:
    """Scalar input, steps of `dt`; the paper's scale.

    Attributes:
        hidden_size: width m of the full W case and of the diagonal cases.
        steps: sequence length of the full W case (JAX against SciPy).
        scan_steps: sequence lengths T of the diagonal cases, sequential against associative
            scan (the long sequences, T ≥ 10⁴, where an O(log T)-depth scan could pay).
        dt: step Δ of the piecewise-constant input, in time units.
        repeats: timed calls of each implementation after its first (compiling) call.
        seed: PRNG seed of the model and the input.
    """

    hidden_size: int = 64
    steps: int = 10_000
    scan_steps: tuple[int, ...] = (10_000, 100_000)
    dt: float = 0.1
    repeats: int = 20
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        for field in ("hidden_size", "steps", "dt", "repeats"):
            check_positive(field, getattr(self, field))
        for steps in self.scan_steps:
            check_positive("scan_steps", steps)

    def quick(self) -> Config:
        return dataclasses.replace(self, steps=2_000, scan_steps=(2_000,), repeats=5)


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


def scipy_diagonal_zoh(
    rates: Float[np.ndarray, " m"],
    input_weights: Float[np.ndarray, "m d"],
    readout: Float[np.ndarray, " m"],
    xs: Float[np.ndarray, "time d"],
    dt: float,
) -> Float[np.ndarray, " time"]:
    """`ŷ_k = cᵀ h_{k+1}` with `h_{k+1} = e^{−wΔ} ⊙ h_k + (1 − e^{−wΔ})/w ⊙ U x_k`, `h_0 = 0`.

    Each unit is the first-order filter `1 / (1 − e^{−w_iΔ} z⁻¹)`, run by `scipy.signal.lfilter`.
    """
    decay = np.exp(-rates * dt)
    drives = xs @ ((-np.expm1(-rates * dt) / rates)[:, None] * input_weights).T
    states = [
        scipy.signal.lfilter([1.0], [1.0, -a], b) for a, b in zip(decay, drives.T, strict=True)
    ]
    return np.stack(states, axis=1) @ readout


def _agreement(difference: float, scale: float, quantity: str) -> dict[str, Any]:
    """The largest difference of `quantity` ("output", "gradient") against TOLERANCE · scale."""
    within = difference <= TOLERANCE * scale
    return {
        f"max_abs_diff_{quantity}s": difference,
        f"{quantity}_scale": scale,
        "tolerance": TOLERANCE,
        "within_tolerance": within,
    }


def _verdict(*agreements: dict[str, Any]) -> str:
    agree = all(agreement["within_tolerance"] for agreement in agreements)
    return "(agree)" if agree else "(MISMATCH, times not comparable)"


def _largest(tree) -> float:
    return max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(tree))


def full_case(config: Config, model_key, data_key) -> dict[str, Any]:
    """JAX and SciPy timings of the full-W model, their ratio, and the largest output difference."""
    with jax.enable_x64(True):
        model = ContinuousRNN(config.hidden_size, 1, structure="full", key=model_key)
        xs = jax.random.normal(data_key, (config.steps, 1))
        outputs = eqx.filter_jit(lambda model, xs: model(xs, config.dt, method=ZeroOrderHold()))
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
    agreement = _agreement(difference, scale, "output")
    return {
        "case": f"zoh-full-{config.hidden_size}x{config.steps}",
        "shape": {"hidden_size": config.hidden_size, "input_size": 1, "steps": config.steps},
        "dtype": dtype,
        **compare(timings),
        "agreement": agreement,
        "summary": f"scipy vs jax max|Δ| outputs {difference:.1e} {_verdict(agreement)}",
    }


def scan_cases(config: Config, steps: int, model_key, data_key) -> list[dict[str, Any]]:
    """Diagonal W at `steps` steps: the forward pass by the sequential scan (`"jax"`), the
    associative scan (`"assoc"`) and `scipy.signal.lfilter`, then forward and backward by both."""
    shape = {"hidden_size": config.hidden_size, "input_size": 1, "steps": steps}
    name = f"zoh-diag-{config.hidden_size}x{steps}"
    with jax.enable_x64(True):
        model = ContinuousRNN(config.hidden_size, 1, key=model_key)
        xs = jax.random.normal(data_key, (steps, 1))
        outputs = eqx.filter_jit(
            lambda model, xs, scan: model(xs, config.dt, method=ZeroOrderHold(), scan=scan)
        )
        loss = lambda model, xs, scan: jnp.mean(
            model(xs, config.dt, method=ZeroOrderHold(), scan=scan) ** 2
        )
        gradient = eqx.filter_jit(eqx.filter_grad(loss))
        scans = {"jax": SequentialScan(), "assoc": AssociativeScan()}
        forward: dict[str, Timing | str] = {
            label: measure(lambda scan=scan: outputs(model, xs, scan), repeats=config.repeats)
            for label, scan in scans.items()
        }
        backward: dict[str, Timing | str] = {
            label: measure(lambda scan=scan: gradient(model, xs, scan), repeats=config.repeats)
            for label, scan in scans.items()
        }
        sequential, associative = (np.asarray(outputs(model, xs, scan)) for scan in scans.values())
        gradients = [gradient(model, xs, scan) for scan in scans.values()]
        gradient_difference = _largest(jax.tree.map(jnp.subtract, *gradients))
        gradient_scale = max(1.0, _largest(gradients[0]))
        dtype = str(sequential.dtype)
        # rates() = e^v is computed, so it needs float64 too.
        arrays = [np.asarray(a) for a in (model.rates(), model.input_weights, model.readout, xs)]
    reference = lambda: scipy_diagonal_zoh(*arrays, config.dt)
    forward["scipy"] = measure(reference, repeats=config.repeats, wait=lambda result: None)
    scale = max(1.0, float(np.max(np.abs(sequential))))
    differences = {
        "assoc": float(np.max(np.abs(associative - sequential))),
        "scipy": float(np.max(np.abs(reference() - sequential))),
    }
    agreement = {
        peer: _agreement(difference, scale, "output") for peer, difference in differences.items()
    }
    gradient_agreement = {"assoc": _agreement(gradient_difference, gradient_scale, "gradient")}
    return [
        {
            "case": name,
            "shape": shape,
            "dtype": dtype,
            **compare(forward),
            "agreement": agreement,
            "summary": "vs sequential scan max|Δ| outputs: "
            + ", ".join(f"{peer} {d:.1e}" for peer, d in differences.items())
            + f" {_verdict(*agreement.values())}",
        },
        {
            "case": f"{name}-grad",
            "shape": shape,
            "dtype": dtype,
            **compare(backward),
            "agreement": gradient_agreement,
            "summary": f"forward + backward; assoc vs sequential max|Δ| gradients "
            f"{gradient_difference:.1e} {_verdict(*gradient_agreement.values())}",
        },
    ]


def run(config: Config) -> dict[str, Any]:
    """The full-W case (JAX against SciPy), then the diagonal cases of every `scan_steps`."""
    model_key, data_key = jax.random.split(jax.random.key(config.seed))
    cases = [full_case(config, model_key, data_key)]
    for steps in config.scan_steps:
        cases += scan_cases(config, steps, model_key, data_key)
    return {"cases": cases}


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("zoh",)))
