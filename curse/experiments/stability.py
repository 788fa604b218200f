"""`curse stability` (beyond Li et al.): rate parameterisations w = f(v) on the memory target.

For each f in `parameterisations` (`curse._parameterisation`):

1. plateau times: the gradient flow in (a, v) on J(a, f(v)) for the eq. 125 targets (Figure 2's
   start, mapped to v by f⁻¹), one `vmap` over ω; plateau time = first τ at which J dropped by
   `loss_delta`, and the fit log τ = c0 + c1/ω;
2. memory stability: the best fit (a, w) of an exponential-sum memory with rates over decades
   (`memory_w`; `curse._fitting`, the same for every f), mapped to v = f⁻¹(w); v is perturbed by
   β·N(0, I) and the loss growth and the fraction of unstable models (some w ≤ 0) per β.

One comparison table (`table`: one row per f) plus the raw curves.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from curse._fitting import fit_exponential_sum
from curse._memory_flow import FLOW_SOLVER, MemoryFlowConfig
from curse._parameterisation import NAMES, from_rates
from curse._stability import perturbation_growth, rate_loss_indexed
from curse._targets import ExponentialSum
from curse.plots import plot_stability
from memdyn import ConfigError, gradient_flow, hitting_time, linear_fit
from memdyn.internal import AtLeast, MinLength, OneOf, Positive, check_fields
from memlab import Experiment


@dataclasses.dataclass(frozen=True)
class StabilityConfig:
    """Rate parameterisations w = f(v) compared on eq. 125 plateaus and under perturbation.

    Attributes:
        parameterisations: rate maps f to compare, each one of `direct` (w = v), `exp`
            (w = e^v), `softplus` (w = log(1 + e^v)), `inverse_square` (w = 1/(v² + 0.01)).
        omegas: memory parameters ω > 0 of the eq. 125 flows (Figure 2's start), at least 2
            (for the fit log τ = c0 + c1/ω).
        tau_max: end of the flows, in gradient-flow time τ (saves log-spaced from τ = 1e-3).
        num_saves: log-spaced save times of each flow.
        loss_delta: absolute drop of J below J(θ(0)) whose first crossing is the plateau time
            (eq. 22's loss version).
        memory_a: weights of an exponential-sum memory whose best fit of the same width
            (`curse._fitting`, recovering it) is the learned state that is perturbed.
        memory_w: its rates (per unit time), spread over decades; as many as `memory_a`.
        betas: perturbation sizes β > 0: v is perturbed to v + βξ, ξ ~ N(0, I) (at least 2,
            for the growth exponent).
        samples: draws of ξ per β (the same draws for every β and parameterisation).
        seed: PRNG seed of the fit's starts and of the perturbations.
    """

    parameterisations: Annotated[tuple[str, ...], OneOf(NAMES), MinLength(1)] = NAMES
    omegas: Annotated[tuple[float, ...], Positive, MinLength(2)] = (
        1 / 4,
        1 / 6,
        1 / 8,
        1 / 10,
        1 / 12,
        1 / 14,
        1 / 16,
    )
    tau_max: Annotated[float, Positive] = 1e5
    num_saves: Annotated[int, AtLeast(1)] = 161
    loss_delta: Annotated[float, Positive] = 0.05
    memory_a: Annotated[tuple[float, ...], MinLength(1)] = (0.5, 0.3, 0.2)
    memory_w: Annotated[tuple[float, ...], Positive, MinLength(1)] = (0.01, 0.1, 1.0)
    betas: Annotated[tuple[float, ...], Positive, MinLength(2)] = tuple(
        np.geomspace(1e-3, 1.0, 10).tolist()
    )
    samples: Annotated[int, AtLeast(1)] = 512
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        if len(self.memory_a) != len(self.memory_w):
            raise ConfigError("memory_a and memory_w must be of equal length")

    def quick(self) -> StabilityConfig:
        return dataclasses.replace(
            self, omegas=(1 / 4, 1 / 6, 1 / 8), tau_max=1e3, num_saves=61, samples=128
        )


def _plateaus(config):
    """Flows for every (parameterisation, ω) pair in one flat `vmap` inside one `jit` (one
    compilation, and the adaptive solve's `while_loop` batched once rather than once per axis)."""
    flow = MemoryFlowConfig(
        omegas=config.omegas, tau_max=config.tau_max, num_saves=config.num_saves
    )
    a0, w0 = flow.start()
    taus = flow.save_times()
    batch = flow.targets()
    indices = jnp.asarray([NAMES.index(name) for name in config.parameterisations])
    v0 = jnp.stack([from_rates(name, w0) for name in config.parameterisations])
    shape = (len(config.parameterisations), len(config.omegas))
    times, losses = _plateau_sweep(
        indices, v0, batch, a0, taus, shape=shape, max_steps=flow.max_steps, delta=config.loss_delta
    )
    return np.asarray(taus), np.asarray(times), np.asarray(losses)


@functools.partial(jax.jit, static_argnames=("shape", "max_steps", "delta"))
def _plateau_sweep(indices, v0, batch, a0, taus, *, shape, max_steps, delta):
    """Plateau times and loss curves, (parameterisation, ω) pairs flattened into one `vmap`."""
    pairs, omegas = shape[0] * shape[1], shape[1]

    def one(index, v, target):
        loss = Partial(rate_loss_indexed, target=target, index=index)
        run = gradient_flow(
            loss, (a0, v), taus, max_steps=max_steps, solver=FLOW_SOLVER, throw=False
        )
        hit = hitting_time(taus, None, run.losses, delta=delta, criterion="loss")
        return hit.time, run.losses

    flat_indices = jnp.repeat(indices, omegas, total_repeat_length=pairs)
    flat_v0 = jnp.repeat(v0, omegas, axis=0, total_repeat_length=pairs)
    flat_targets = jax.tree.map(lambda x: jnp.tile(x, (shape[0],) + (1,) * (x.ndim - 1)), batch)
    times, losses = jax.vmap(one)(flat_indices, flat_v0, flat_targets)
    return times.reshape(shape), losses.reshape(shape + losses.shape[1:])


def run(config: StabilityConfig, out_dir=None) -> dict:
    """Plateau times per parameterisation and ω; perturbation growth per parameterisation and β."""
    with jax.enable_x64(True):
        key = jax.random.key(config.seed)
        target = ExponentialSum(jnp.asarray(config.memory_a), jnp.asarray(config.memory_w))
        fit = fit_exponential_sum(target, len(config.memory_w), key=key)
        taus, all_times, all_losses = _plateaus(config)
        table, curves = [], {}
        for name, times, losses in zip(
            config.parameterisations, all_times, all_losses, strict=True
        ):
            fit_line = linear_fit(1.0 / np.asarray(config.omegas), np.log(times))
            growth = perturbation_growth(
                fit.a,
                from_rates(name, fit.w),
                target,
                name,
                jnp.asarray(config.betas),
                key=jax.random.fold_in(key, 1),
                samples=config.samples,
            )
            mean = np.asarray(growth.mean_increase)
            table.append(
                {
                    "parameterisation": name,
                    "plateau_times": times,
                    "plateau_slope": fit_line["slope"],
                    "plateau_r2": fit_line["r2"],
                    "mean_increase": mean,
                    "unstable_fraction": np.asarray(growth.unstable_fraction),
                    "growth_exponent": linear_fit(
                        np.log(np.asarray(config.betas)), np.log(np.where(mean > 0, mean, np.nan))
                    )["slope"],
                }
            )
            curves[name] = {"losses": losses, "max_increase": np.asarray(growth.max_increase)}
    return {
        "omegas": np.asarray(config.omegas),
        "betas": np.asarray(config.betas),
        "taus": taus,
        "fit_a": np.asarray(fit.a),
        "fit_w": np.asarray(fit.w),
        "fit_relative_error": float(fit.relative_error),
        "table": table,
        "curves": curves,
    }


EXPERIMENT = Experiment(
    name="stability",
    help="Beyond the paper: rate parameterisations (direct/exp/softplus/1/(v²+c)) on eq. 125 "
    "plateaus and perturbation stability",
    config=StabilityConfig,
    run=run,
    plot=plot_stability,
)
