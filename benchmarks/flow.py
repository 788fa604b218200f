"""Gradient-flow sweep over ω (Fig. 2, eq. 125): one vmapped Diffrax solve against SciPy per ω.

The problem of `curse._memory_flow`: the diagonal linear RNN `ρ̂(t) = Σ_i a_i e^{−w_i t}` learning
`ρ_ω = e^{−t} + 0.5 e^{−2t} + exp(−(t − 1/ω)²/2)` by the gradient flow `dθ/dτ = −∇J(θ)` (eq. 21)
from the short-memory start θ(0). JAX integrates every ω of the sweep in one `vmap`ped, compiled
`memdyn.gradient_flow`; the peer is what a SciPy user writes: `scipy.integrate.solve_ivp` called
once per ω, with J's gradient (eq. 19) in NumPy. Both use the Dormand–Prince 5(4) pair with the
same adaptive controller tolerances (Diffrax `Dopri5`, SciPy `RK45`), float64, the same horizon τ;
the largest difference of the final parameters and losses is recorded. Explicit solvers, because
SciPy has no ESDIRK like the package's default `Kvaerno3`: the flow turns stiff after its escape,
which caps the horizon at which an explicit sweep is affordable (one measurement, 64 ω: the
vmapped Dopri5 solve took 1.6 s to τ = 1e2 and 28 s to τ = 1e3; the SciPy loop costs over a
hundred times more), so the default horizon is τ = 10, past the escapes of the short memories.
Run with `python -m benchmarks --only flow` (or `python -m benchmarks.flow`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate
import scipy.special
from jaxtyping import Float

from benchmarks.timing import Timing, compare, measure
from curse._memory_flow import MemoryFlowConfig, solve_memory_flows
from memdyn.internal import check_fields, check_positive

# The same Dormand–Prince pair at the same tolerances, but different step sequences: the final
# states differ by ~1e-9 (measured to τ = 10); far below the flow's own change, which is O(1).
TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class Config:
    """A sweep of `num_omegas` memory targets of eq. 125, each integrated to flow time `tau`.

    Attributes:
        num_omegas: number of memory parameters ω, with 1/ω evenly spaced from
            `min_memory` to `max_memory` (one vmapped solve in JAX, one `solve_ivp` each in SciPy).
        min_memory: smallest memory 1/ω (time units; the Gaussian bump's centre), > 0.
        max_memory: largest memory 1/ω (≥ `min_memory`); plateaus last ~e^{c/ω}, so at the
            default horizon the short memories have escaped and the long ones not yet.
        tau: end of every flow, in gradient-flow time τ of eq. 21 (> 0).
        rtol: relative tolerance of both step-size controllers (> 0; Fig. 2's 1e-8).
        atol: absolute tolerance of both step-size controllers (> 0; Fig. 2's 1e-10).
        max_steps: Diffrax's step budget per ω (SciPy's `solve_ivp` has none).
        repeats: steady-state repeats per implementation.
    """

    num_omegas: int = 64
    min_memory: float = 4.0
    max_memory: float = 12.0
    tau: float = 10.0
    rtol: float = 1e-8
    atol: float = 1e-10
    max_steps: int = 100_000
    repeats: int = 3

    def __post_init__(self):
        check_fields(self)
        for field in ("num_omegas", "min_memory", "tau", "rtol", "atol", "max_steps", "repeats"):
            check_positive(field, getattr(self, field))
        if self.max_memory < self.min_memory:
            raise ValueError(f"max_memory must be >= min_memory; got {self.max_memory}")

    def quick(self) -> Config:
        return dataclasses.replace(self, num_omegas=16, tau=1.0)

    def omegas(self) -> Float[np.ndarray, " omega"]:
        """The sweep's ω: reciprocals of evenly spaced memories."""
        return 1.0 / np.linspace(self.min_memory, self.max_memory, self.num_omegas)


def _laplace(
    s: Float[np.ndarray, " m"], omega: float, problem: MemoryFlowConfig
) -> tuple[Float[np.ndarray, " m"], Float[np.ndarray, " m"]]:
    """`L[ρ_ω](s)` and its derivative in s, for the exponential sum plus the Gaussian bump.

    Bump: `L = Aσ√(2π) exp(s²σ²/2 − s t0) Φ(z)`, `z = (t0 − sσ²)/σ`, so
    `L' = L · (sσ² − t0 − σ φ(z)/Φ(z))`, with Φ in log space (`log_ndtr`) as in `curse`.
    """
    short_a, short_w = np.asarray(problem.short_a), np.asarray(problem.short_w)
    amplitude, sigma, centre = problem.peak_amplitude(), problem.width, 1.0 / omega
    pair = s[:, None] + short_w
    z = (centre - s * sigma**2) / sigma
    log_phi = scipy.special.log_ndtr(z)
    bump = amplitude * np.exp(
        math.log(sigma * math.sqrt(2 * math.pi)) + 0.5 * (s * sigma) ** 2 - s * centre + log_phi
    )
    hazard = np.exp(-0.5 * z**2 - 0.5 * math.log(2 * math.pi) - log_phi)  # φ(z)/Φ(z)
    value = (short_a / pair).sum(axis=1) + bump
    derivative = -(short_a / pair**2).sum(axis=1) + bump * (s * sigma**2 - centre - sigma * hazard)
    return value, derivative


def numpy_loss_and_grad(
    theta: Float[np.ndarray, " 2m"], omega: float, problem: MemoryFlowConfig
) -> tuple[float, Float[np.ndarray, " 2m"]]:
    """J(a, w) of eq. 18/77 without ‖ρ‖² (a constant) and its gradient (eq. 19), θ = (a, w):

    ∂J/∂a_i = 2 [Σ_j a_j/(w_i + w_j) − L[ρ](w_i)],
    ∂J/∂w_i = −2 a_i [Σ_j a_j/(w_i + w_j)² + L[ρ]'(w_i)].
    """
    a, w = np.split(theta, 2)
    pair = w[:, None] + w[None, :]
    laplace, laplace_prime = _laplace(w, omega, problem)
    loss = a @ (1.0 / pair) @ a - 2.0 * a @ laplace
    da = 2.0 * ((1.0 / pair) @ a - laplace)
    dw = -2.0 * a * ((1.0 / pair**2) @ a + laplace_prime)
    return float(loss), np.concatenate([da, dw])


def scipy_flows(
    theta0: Float[np.ndarray, " 2m"],
    omegas: Float[np.ndarray, " omega"],
    problem: MemoryFlowConfig,
    config: Config,
) -> tuple[Float[np.ndarray, "omega 2m"], int]:
    """θ(τ) of every ω, one `solve_ivp(method="RK45")` each; also the total gradient evaluations."""
    finals, evaluations = [], 0
    for omega in omegas:
        field = lambda tau, theta, omega=omega: -numpy_loss_and_grad(theta, omega, problem)[1]
        solution = scipy.integrate.solve_ivp(
            field, (0.0, config.tau), theta0, method="RK45", rtol=config.rtol, atol=config.atol
        )
        if solution.status != 0:
            raise RuntimeError(f"solve_ivp failed at omega={omega}: {solution.message}")
        finals.append(solution.y[:, -1])
        evaluations += solution.nfev
    return np.stack(finals), evaluations


def run(config: Config) -> dict[str, Any]:
    """One case: the vmapped Diffrax sweep and the SciPy loop, their ratio and their agreement."""
    problem = MemoryFlowConfig()
    omegas = config.omegas()
    with jax.enable_x64(True):
        targets = problem.targets(omegas)
        theta0 = problem.start()
        taus = jnp.asarray([0.0, config.tau])

        sweep = jax.jit(
            functools.partial(
                solve_memory_flows,
                theta0=theta0,
                taus=taus,
                rtol=config.rtol,
                atol=config.atol,
                max_steps=config.max_steps,
                solver=diffrax.Dopri5(),
            )
        )
        timings: dict[str, Timing | str] = {
            "jax": measure(lambda: sweep(targets), repeats=config.repeats)
        }
        trajectory = sweep(targets)
        jax_final = np.concatenate([np.asarray(t[:, -1]) for t in trajectory.thetas], axis=1)
        norm_squared = np.asarray(jax.vmap(lambda target: target.norm_squared())(targets))
        jax_losses = np.asarray(trajectory.losses[:, -1])
        start_losses = np.asarray(trajectory.losses[:, 0])
        finished = bool(np.all(np.asarray(trajectory.finished)))
        dtype = str(jax_final.dtype)
    start = np.concatenate([np.asarray(t) for t in theta0])
    reference = lambda: scipy_flows(start, omegas, problem, config)
    timings["scipy"] = measure(reference, repeats=config.repeats, wait=lambda result: None)
    scipy_final, evaluations = reference()
    # ‖ρ‖² is a constant of the flow: the comparison checks the parameter-dependent part of J.
    scipy_losses = norm_squared + np.array(
        [
            numpy_loss_and_grad(theta, omega, problem)[0]
            for theta, omega in zip(scipy_final, omegas, strict=True)
        ]
    )
    differences = {
        "max_abs_diff_final_parameters": float(np.max(np.abs(scipy_final - jax_final))),
        "max_abs_diff_final_losses": float(np.max(np.abs(scipy_losses - jax_losses))),
    }
    within = finished and max(differences.values()) <= TOLERANCE
    case = {
        "case": f"flow-{config.num_omegas}-omegas-tau-{config.tau:g}",
        "shape": {
            "omegas": config.num_omegas,
            "memory_range": [config.min_memory, config.max_memory],
            "parameters": int(start.size),
            "tau": config.tau,
        },
        "dtype": dtype,
        "solvers": {"jax": "diffrax.Dopri5 + PIDController", "scipy": "solve_ivp RK45"},
        "tolerances": {"rtol": config.rtol, "atol": config.atol},
        **compare(timings),
        "scipy_gradient_evaluations": evaluations,
        "loss_range": {
            "start_max": float(np.max(start_losses)),
            "final_min": float(np.min(jax_losses)),
            "final_max": float(np.max(jax_losses)),
        },
        "agreement": {
            **differences,
            "jax_solves_finished": finished,
            "tolerance": TOLERANCE,
            "within_tolerance": within,
        },
    }
    case["summary"] = (
        f"scipy vs jax max|Δ| final θ {differences['max_abs_diff_final_parameters']:.1e}, "
        f"J {differences['max_abs_diff_final_losses']:.1e} "
        + ("(agree)" if within else "(MISMATCH, times not comparable)")
    )
    return {"cases": [case]}


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("flow",)))
