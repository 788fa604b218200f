"""Figure 2 of Li et al. (App. C.3.2): gradient flow on the memory target of eq. 125 for several
ω (the problem, model and start are documented in `curse.MemoryFlowConfig`'s module,
`curse._memory_flow`).
"""

from __future__ import annotations

import jax
import numpy as np

from curse._memory_flow import MemoryFlowConfig, parameter_distance, solve_config
from curse.plots import plot_fig2
from memdyn import hitting_time
from memlab import Experiment


def run(config: MemoryFlowConfig, out_dir=None) -> dict:
    """Loss curves J(θ(τ)) and parameter distances for every ω (Figure 2)."""
    with jax.enable_x64(True):
        trajectory = solve_config(config)
        times = trajectory.times[0]  # identical rows: one per ω
        separation = jax.vmap(
            lambda thetas: hitting_time(times, thetas, None, delta=config.separation_delta)
        )(trajectory.thetas)
        return {
            "omegas": np.asarray(config.omegas),
            "taus": np.asarray(times),
            "losses": np.asarray(trajectory.losses),
            "parameter_distance": np.asarray(parameter_distance(trajectory.thetas)),
            "separation_times": np.asarray(separation.time),
            "final_a": np.asarray(trajectory.thetas[0][:, -1]),
            "final_w": np.asarray(trajectory.thetas[1][:, -1]),
            "solve_finished": np.asarray(trajectory.finished),
        }


EXPERIMENT = Experiment(
    name="fig2",
    help="Figure 2: gradient-flow loss curves on the memory target (eq. 125) for several ω",
    config=MemoryFlowConfig,
    run=run,
    plot=plot_fig2,
)
