"""On the Curse of Memory in RNNs (Li, Han, E, Li, ICLR 2021), in JAX, on memdyn.

What is specific to the paper; the model-agnostic analyses (Hessians, gradient flows, training,
plateau detection) are in `memdyn`.

- Targets ρ of linear functionals (eq. 12): `Target` (abstract) and `ExponentialSum`,
  `GaussianBump`, `PolynomialDecay`, `ScaledAiry`, `TargetSum`, `memory_target` (eq. 20/125).
- Models: `ContinuousRNN` (eq. 6: diagonal or full W, linear or tanh; Diffrax's `solve`), stepped
  by a strategy object passed as `method` (`AbstractDiscretisation`: `Euler`, `ZeroOrderHold`) with
  its elementwise linear recurrence evaluated by one passed as `scan` (`AbstractScan`:
  `SequentialScan`, S5's `AssociativeScan`).
- Losses: `white_noise_loss` (eq. 18/77), `white_noise_grad` (eq. 19), `lyapunov_loss` (full W),
  sampled-path losses (`SampledLoss`, `make_sampled_loss`, `white_noise_paths`, ...).
- The memory-flow problem of Figs. 2–4 (eq. 125): `MemoryFlowConfig`, `diagonal_objective`,
  `short_memory_start`, `memory_targets`, `log_save_times`, `solve_memory_flows`.
- Approximation (§4, Thm. 4.2): `fit_exponential_sum`, `DampedPolynomial`; the width a linear
  RNN needs, of a known kernel or one estimated from data: `fit_widths`, `minimal_width`,
  `SampledKernel`, `bump_centre`.
- Landscape (App. D): `coincided_space`, `count_coincided_spaces`, `stirling2`, ...
- Momentum (App. E): `flow_escape_time`, `escape_exponent`, `discrete_escape_steps`.
- Stable parameterisations of the rates: `to_rates`, `from_rates`, `perturbation_growth`.
- Lorenz-96 (Fig. 1c): `Lorenz96`, `lorenz96_training_pairs`.

The analyses need float64: wrap calls in `with jax.enable_x64(True):` (the CLI does this).
"""

from curse._fitting import (
    DampedPolynomial,
    ExponentialFit,
    fit_exponential_sum,
    fit_loss,
    optimal_weights,
)
from curse._landscape import (
    CoincidedSpace,
    coincided_space,
    count_coincided_spaces,
    labelled_partitions,
    stirling2,
    zero_eigenvalue_count,
)
from curse._lorenz96 import Lorenz96
from curse._lorenz96 import integrate as integrate_lorenz96
from curse._lorenz96 import training_pairs as lorenz96_training_pairs
from curse._losses import lyapunov_gramian, lyapunov_loss, white_noise_grad, white_noise_loss
from curse._memory_flow import (
    MemoryFlowConfig,
    diagonal_objective,
    log_save_times,
    memory_targets,
    parameter_distance,
    short_memory_start,
    solve_memory_flows,
)
from curse._models import (
    AbstractDiscretisation,
    ContinuousRNN,
    Euler,
    ZeroOrderHold,
    jump_times,
    piecewise_constant,
)
from curse._momentum import discrete_escape_steps, escape_exponent, flow_escape_time, saddle_loss
from curse._parameterisation import from_rates, to_rates
from curse._sampled import (
    FreshSampledLoss,
    SampledLoss,
    causal_convolution,
    cell_integrals,
    convolve_paths,
    make_sampled_loss,
    path_mse,
    white_noise_paths,
)
from curse._scans import AbstractScan, AssociativeScan, SequentialScan
from curse._stability import PerturbationGrowth, perturbation_growth, rate_loss
from curse._targets import (
    BUMP_AMPLITUDE,
    BUMP_WIDTH,
    SHORT_MEMORY_A,
    SHORT_MEMORY_W,
    ExponentialSum,
    GaussianBump,
    PolynomialDecay,
    ScaledAiry,
    Target,
    TargetSum,
    airy_ai,
    inner_product,
    make_target,
    memory_target,
)
from curse._widths import SampledKernel, bump_centre, fit_widths, minimal_width

__all__ = [
    "BUMP_AMPLITUDE",
    "BUMP_WIDTH",
    "SHORT_MEMORY_A",
    "SHORT_MEMORY_W",
    "AbstractDiscretisation",
    "AbstractScan",
    "AssociativeScan",
    "CoincidedSpace",
    "ContinuousRNN",
    "DampedPolynomial",
    "Euler",
    "ExponentialFit",
    "ExponentialSum",
    "FreshSampledLoss",
    "GaussianBump",
    "Lorenz96",
    "MemoryFlowConfig",
    "PerturbationGrowth",
    "PolynomialDecay",
    "SampledKernel",
    "SampledLoss",
    "ScaledAiry",
    "SequentialScan",
    "Target",
    "TargetSum",
    "ZeroOrderHold",
    "airy_ai",
    "bump_centre",
    "causal_convolution",
    "cell_integrals",
    "coincided_space",
    "convolve_paths",
    "count_coincided_spaces",
    "diagonal_objective",
    "discrete_escape_steps",
    "escape_exponent",
    "fit_exponential_sum",
    "fit_loss",
    "fit_widths",
    "flow_escape_time",
    "from_rates",
    "inner_product",
    "integrate_lorenz96",
    "jump_times",
    "labelled_partitions",
    "log_save_times",
    "lorenz96_training_pairs",
    "lyapunov_gramian",
    "lyapunov_loss",
    "make_sampled_loss",
    "make_target",
    "memory_target",
    "memory_targets",
    "minimal_width",
    "optimal_weights",
    "parameter_distance",
    "path_mse",
    "perturbation_growth",
    "piecewise_constant",
    "rate_loss",
    "saddle_loss",
    "short_memory_start",
    "solve_memory_flows",
    "stirling2",
    "to_rates",
    "white_noise_grad",
    "white_noise_loss",
    "white_noise_paths",
    "zero_eigenvalue_count",
]
