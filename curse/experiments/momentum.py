"""`curse momentum`: momentum shortens escapes from flat regions (Li et al., App. E, §5 Fig. 4).

1. Quadratic saddle f = (y² − λx²)/2 (`curse._momentum`), escape |x|: x0 → `x_escape`:
   gradient flow and heavy-ball flow (γ = `friction`, App. E's γ = 0 by default) by Diffrax with
   an event, over `flow_curvatures`; discrete GD and heavy ball (Optax `sgd`, momentum
   `discrete_momentum`, step `discrete_learning_rate`) over `discrete_curvatures`. Fitted
   exponents of T ∝ λ^p: expected p = −1 (GD) and −1/2 (momentum).
2. The eq. 125 plateau: the Figure 2 start (`curse.MemoryFlowConfig`), GD and heavy ball
   (Optax, same step η) on J for every ω in one `vmap`; plateau time = first step at which J has
   dropped by `loss_delta` (`memdyn.hitting_time`), reported in τ = η·steps, with fits of
   log τ = c0 + c1/ω per method.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from curse._memory_flow import MemoryFlowConfig, diagonal_objective
from curse._momentum import discrete_escape_steps, escape_exponent, flow_escape_time
from curse.plots import plot_momentum
from memdyn import ConfigError, hitting_time, linear_fit, make_optimizer, train
from memdyn.internal import AtLeast, InRange, MinLength, NonNegative, Positive, check_fields
from memlab import Experiment


@dataclasses.dataclass(frozen=True)
class MomentumConfig:
    """Escape times of GD and heavy ball from flat directions (App. E) and on eq. 125.

    Attributes:
        flow_curvatures: curvatures λ > 0 of the quadratic saddle f = (y² − λx²)/2 for the
            gradient and heavy-ball flows (at least 2, for the fit T ∝ λ^p).
        discrete_curvatures: curvatures λ > 0 for discrete GD and heavy ball (at least 2).
        friction: γ ≥ 0 of the heavy-ball flow θ'' + γθ' = −∇f; 0 (App. E's) is undamped.
        x0: start |x| of the flat coordinate.
        x_escape: |x| at which the escape is counted (> `x0`).
        discrete_learning_rate: Optax step η of discrete GD and heavy ball on the saddle.
        discrete_momentum: heavy-ball β of the discrete runs; near 1 so that
            (1 − β)² ≪ ηλ: the undamped regime of App. E.
        omegas: memory parameters ω > 0 of the eq. 125 comparison (Figure 2's start), at
            least 2 (for the fit log τ = c0 + c1/ω).
        plateau_learning_rate: step η of GD and heavy ball on eq. 125; times are τ = η·step.
            ηλ_max ≈ 0.4 with λ_max ≈ 82 after the escape: well inside both methods' stable
            range; at η = 0.02 both oscillate after the escape and the loss-drop times are not
            comparable.
        plateau_momentum: heavy-ball β on eq. 125.
        plateau_steps: optimiser steps of each method on eq. 125 (losses saved every 10
            steps); a multiple of 10.
        loss_delta: absolute drop of J below J(θ(0)) whose first crossing is the plateau time
            (eq. 22's loss version).
    """

    flow_curvatures: Annotated[tuple[float, ...], Positive, MinLength(2)] = tuple(
        np.geomspace(1e-5, 1e-1, 9).tolist()
    )
    discrete_curvatures: Annotated[tuple[float, ...], Positive, MinLength(2)] = tuple(
        np.geomspace(1e-4, 1e-2, 7).tolist()
    )
    friction: Annotated[float, NonNegative] = 0.0
    x0: Annotated[float, Positive] = 1e-3
    x_escape: Annotated[float, Positive] = 1.0
    discrete_learning_rate: Annotated[float, Positive] = 1.0
    discrete_momentum: Annotated[float, InRange(0, 1, closed="neither")] = 0.999
    omegas: Annotated[tuple[float, ...], Positive, MinLength(2)] = (
        1 / 4,
        1 / 6,
        1 / 8,
        1 / 10,
        1 / 12,
    )
    plateau_learning_rate: Annotated[float, Positive] = 0.005
    plateau_momentum: Annotated[float, InRange(0, 1, closed="neither")] = 0.9
    plateau_steps: Annotated[int, AtLeast(10)] = 40_000
    loss_delta: Annotated[float, Positive] = 0.05

    def __post_init__(self):
        check_fields(self)
        if self.x_escape <= self.x0:
            raise ConfigError(f"x_escape must exceed x0; got {self.x_escape} <= {self.x0}")
        if self.plateau_steps % 10:
            raise ConfigError(f"plateau_steps must be a multiple of 10; got {self.plateau_steps}")

    def quick(self) -> MomentumConfig:
        return dataclasses.replace(
            self,
            flow_curvatures=tuple(np.geomspace(1e-4, 1e-1, 4).tolist()),
            discrete_curvatures=tuple(np.geomspace(1e-4, 1e-2, 4).tolist()),
            omegas=(1 / 4, 1 / 6, 1 / 8),
            plateau_steps=8_000,
        )


def _plateau(config):
    flow_config = MemoryFlowConfig(omegas=config.omegas)
    theta0 = flow_config.start()
    batch = flow_config.targets()
    save_every = 10
    out = {}
    for name, momentum in (("gd", None), ("momentum", config.plateau_momentum)):
        kwargs = {} if momentum is None else {"momentum": momentum}
        optimizer = make_optimizer(
            "gd" if momentum is None else "momentum", config.plateau_learning_rate, **kwargs
        )
        runs = jax.vmap(
            lambda target, optimizer=optimizer: train(
                Partial(diagonal_objective, target=target),
                theta0,
                optimizer,
                config.plateau_steps,
                save_every=save_every,
            )
        )(batch)
        taus = runs.times[0] * config.plateau_learning_rate
        hits = jax.vmap(
            lambda losses, taus=taus: hitting_time(
                taus, None, losses, delta=config.loss_delta, criterion="loss", log_time=False
            )
        )(runs.losses)
        times = np.asarray(hits.time)
        fit = linear_fit(1.0 / np.asarray(config.omegas), np.log(times))
        out[name] = {
            "plateau_times": times,
            "hit": np.asarray(hits.hit),
            "slope": fit["slope"],
            "intercept": fit["intercept"],
            "r2": fit["r2"],
            "losses": np.asarray(runs.losses),
        }
        out["taus"] = np.asarray(taus)
    return out


def run(config: MomentumConfig, out_dir=None) -> dict:
    """Escape times and exponents on the quadratic; GD vs momentum plateaus on eq. 125."""
    with jax.enable_x64(True):
        flows = jnp.asarray(config.flow_curvatures)
        discrete = jnp.asarray(config.discrete_curvatures)
        common = {"x0": config.x0, "x_escape": config.x_escape}
        gf = jax.vmap(lambda lam: flow_escape_time(lam, heavy_ball=False, **common))(flows)
        hb = jax.vmap(
            lambda lam: flow_escape_time(lam, heavy_ball=True, friction=config.friction, **common)
        )(flows)
        gd = jax.vmap(
            lambda lam: discrete_escape_steps(
                lam, learning_rate=config.discrete_learning_rate, momentum=None, **common
            )
        )(discrete)
        heavy = jax.vmap(
            lambda lam: discrete_escape_steps(
                lam,
                learning_rate=config.discrete_learning_rate,
                momentum=config.discrete_momentum,
                **common,
            )
        )(discrete)
        plateau = _plateau(config)
        exponents = {
            "gradient_flow": escape_exponent(flows, gf)[0],
            "heavy_ball_flow": escape_exponent(flows, hb)[0],
            "gd": escape_exponent(discrete, gd)[0],
            "heavy_ball": escape_exponent(discrete, heavy)[0],
        }
    gd_p, hb_p = plateau["gd"]["plateau_times"], plateau["momentum"]["plateau_times"]
    return {
        "flow_curvatures": np.asarray(flows),
        "discrete_curvatures": np.asarray(discrete),
        "gradient_flow_times": np.asarray(gf),
        "heavy_ball_flow_times": np.asarray(hb),
        "gradient_flow_exact": np.log(config.x_escape / config.x0) / np.asarray(flows),
        "heavy_ball_flow_exact_no_friction": np.arccosh(config.x_escape / config.x0)
        / np.sqrt(np.asarray(flows)),
        "gd_steps": np.asarray(gd),
        "heavy_ball_steps": np.asarray(heavy),
        "exponents": exponents,
        "omegas": np.asarray(config.omegas),
        "plateau_taus": plateau["taus"],
        "plateau_gd": plateau["gd"],
        "plateau_momentum": plateau["momentum"],
        "plateau_speedup": gd_p / hb_p,
    }


EXPERIMENT = Experiment(
    name="momentum",
    help="App. E: escape time vs curvature for GD / heavy ball (flows and Optax); eq. 125 plateau",
    config=MomentumConfig,
    run=run,
    plot=plot_momentum,
)
