"""memdyn: a JAX toolkit for studying memory in recurrent networks.

The numerics. Every analysis takes a loss of any `eqx.Module` or pytree and acts on its
floating-point arrays only (`partition_parameters`); other leaves ride along. The lab that runs
the papers' experiments (records, command lines, results browser, figure style) is the separate
package `memlab`, which builds on this one and never the other way round.

- Curvature operators over a chosen `block` of a model's arrays: `HessianOperator`,
  `GaussNewtonOperator` (also the true Fisher of a canonical-link likelihood), `FisherOperator`
  (the true Fisher, exact or Monte Carlo, of a likelihood: `AbstractLikelihood`, `Categorical`,
  `Gaussian`, `Bernoulli`), `EmpiricalFisherOperator`, all `AbstractCurvature`s, streamed over
  batches of data; for any of them `ritz_pairs` (Lanczos values, vectors, residuals;
  `ritz_pairs_along` a trajectory, `ritz_pairs_by_block` every block in one call),
  `trace_hutchinson`, `trace_hutchpp` (`trace_along`), `spectral_density` (SLQ;
  `spectral_density_along`, `spectral_density_by_block`).
- Hessian shortcuts: `hessian`, `hessian_eigenvalues`, `hessian_eigenvalues_along`, `hvp`; Lanczos
  (`lanczos_tridiagonal`, `lanczos_eigenvalues`, `hessian_extremes`); stochastic Lanczos
  quadrature and Hutchinson traces (`hessian_spectral_density`, `SpectralDensity`,
  `hutchinson_trace`), all `vmap`-able over a sweep of models.
- Dynamics: `gradient_flow` (Diffrax, result codes surfaced; `choose_solver` picks an explicit or
  implicit solver from a stiffness estimate), `train` (Optax, one `lax.scan`),
  sweeps over learning rates, seeds and targets compiled once (`sweep_learning_rates`,
  `sweep_seeds`, `sweep_targets`), minibatch training of many seeds with checkpoints
  (`init_run`, `train_epochs`; `train_chunk`, its compiled step), one optimiser registry
  (`OPTIMIZERS`, `make_optimizer`). One engine under all of them: `scan_steps` (a compiled chunk
  of steps), `run_chunks` (the host driver) and one non-finite policy, `Stop` or `Freeze`
  (`AbstractNonFinitePolicy`, `NonFiniteStep`).
- Recurrent cells: `AbstractCell` (one step `(carry, x) -> (carry, output)`), `unroll`, a true
  `GRUCell` and the linear recurrent unit `LRUCell`.
- Memory: `heaviside_memory`, `impulse_response`, `jacobian_memory` (`JacobianMemory`) of any
  model `apply(params, xs) -> ys`; `estimate_memory_kernel` (`MemoryKernelEstimate`) of data;
  `memory_horizon`, `fit_decay` (`DecayFit`, `DECAY_TYPES`) of either.
- Plateaus: `hitting_time` (eq. 22 of Li et al.), `plateau_intervals`, `linear_fit`.
- Devices: `sweep_mesh`, `shard_leading_axis`, `gather` (sweeps, across processes:
  docs/cluster.md); seeds over every core, `train_epochs(..., mesh=sweep_mesh_for(seeds))`;
  `batch_mesh` (`BATCH_AXIS`) for data-parallel minibatches, `train_epochs(...,
  mesh=batch_mesh())`. On the CPU memdyn asks for one host device per core (`memdyn._xla`).
- Checkpoints: `save_checkpoint`, `load_checkpoint` (atomic, hash-checked, no pickle).
- The stack: `doctor` (versions, devices, XLA flags, processor, then canaries that check mapped
  gradients against per-member ones), `Diagnosis`. Importing memdyn first applies an XLA:CPU
  workaround for AVX-512 processors (`memdyn._xla`, README "Tested stack").
- Errors a user can act on (`MemdynError` and its kinds); `check_finite`, a value check for a
  user's own loss that holds under `jit` and `vmap`.
- `memdyn.internal`: validation, file and progress helpers the papers' packages and the lab share.
"""

# First, before anything can start JAX's CPU backend: XLA reads XLA_FLAGS once, at that start, and
# on AVX-512 processors jaxlib >= 0.8 needs `--xla_cpu_max_isa=AVX2` for correct vmap(grad)
# (issue 22). `memdyn._xla` says when it adds the flag and when it leaves XLA_FLAGS alone.
import memdyn._xla  # noqa: F401

# isort: split
from memdyn import internal as internal
from memdyn._along import (
    ritz_pairs_along,
    ritz_pairs_by_block,
    spectral_density_along,
    spectral_density_by_block,
    trace_along,
)
from memdyn._checkpoint import load_checkpoint, save_checkpoint
from memdyn._curvature import (
    AbstractCurvature,
    EmpiricalFisherOperator,
    FisherOperator,
    GaussNewtonOperator,
    HessianOperator,
    block,
)
from memdyn._data_parallel import BATCH_AXIS, batch_mesh
from memdyn._doctor import Diagnosis, doctor
from memdyn._engine import (
    AbstractNonFinitePolicy,
    Freeze,
    NonFiniteStep,
    Stop,
    run_chunks,
    scan_steps,
)
from memdyn._epochs import (
    RunState,
    TrainConfig,
    epoch_order,
    init_run,
    stacked_models,
    steps_per_epoch,
    total_steps,
    train_chunk,
    train_epochs,
)
from memdyn._errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MemdynError,
    OutputError,
    TrainingStopped,
)
from memdyn._fit import linear_fit
from memdyn._flow import choose_solver, gradient_flow
from memdyn._hessian import hessian, hessian_eigenvalues, hessian_eigenvalues_along, hvp
from memdyn._lanczos import (
    RitzPairs,
    hessian_extremes,
    hessian_matvec,
    lanczos_eigenvalues,
    lanczos_tridiagonal,
    ritz_pairs,
    ritz_values,
    ritz_values_and_first_components,
)
from memdyn._likelihood import AbstractLikelihood, Bernoulli, Categorical, Gaussian
from memdyn._parameters import check_scalar_loss, parameter_vector, partition_parameters
from memdyn._plateau import HittingTime, Plateau, hitting_time, plateau_intervals, running_median
from memdyn._recurrent import AbstractCell, GRUCell, LRUCell, unroll
from memdyn._sharding import SWEEP_AXIS, gather, shard_leading_axis, sweep_mesh, sweep_mesh_for
from memdyn._spectral import (
    SpectralDensity,
    hessian_spectral_density,
    hutchinson_trace,
    spectral_density,
)
from memdyn._trace import trace_hutchinson, trace_hutchpp
from memdyn._training import (
    OPTIMIZERS,
    clip_by_safe_global_norm,
    make_optimizer,
    optimizer_step,
    safe_global_norm,
    sweep_learning_rates,
    sweep_seeds,
    sweep_targets,
    train,
    with_learning_rate,
)
from memdyn._trajectory import Trajectory
from memdyn._validate import check_finite

# isort: split
# Memory functions of a model and the memory kernel of data (issue 23).
from memdyn._decay import DECAY_TYPES, DecayFit, fit_decay, memory_horizon
from memdyn._kernel import MemoryKernelEstimate, estimate_memory_kernel
from memdyn._memory import JacobianMemory, heaviside_memory, impulse_response, jacobian_memory

__version__ = "0.2.0"

__all__ = [
    "AbstractCell",
    "AbstractCurvature",
    "AbstractLikelihood",
    "AbstractNonFinitePolicy",
    "BATCH_AXIS",
    "Bernoulli",
    "Categorical",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Diagnosis",
    "EmpiricalFisherOperator",
    "FisherOperator",
    "Freeze",
    "GRUCell",
    "GaussNewtonOperator",
    "Gaussian",
    "HessianOperator",
    "HittingTime",
    "LRUCell",
    "MemdynError",
    "NonFiniteStep",
    "OPTIMIZERS",
    "OutputError",
    "Plateau",
    "RitzPairs",
    "RunState",
    "SWEEP_AXIS",
    "SpectralDensity",
    "Stop",
    "TrainConfig",
    "TrainingStopped",
    "Trajectory",
    "batch_mesh",
    "block",
    "check_finite",
    "check_scalar_loss",
    "choose_solver",
    "clip_by_safe_global_norm",
    "doctor",
    "epoch_order",
    "gather",
    "gradient_flow",
    "hessian",
    "hessian_eigenvalues",
    "hessian_eigenvalues_along",
    "hessian_extremes",
    "hessian_matvec",
    "hessian_spectral_density",
    "hitting_time",
    "hutchinson_trace",
    "hvp",
    "init_run",
    "lanczos_eigenvalues",
    "lanczos_tridiagonal",
    "linear_fit",
    "load_checkpoint",
    "make_optimizer",
    "optimizer_step",
    "parameter_vector",
    "partition_parameters",
    "plateau_intervals",
    "ritz_pairs",
    "ritz_pairs_along",
    "ritz_pairs_by_block",
    "ritz_values",
    "ritz_values_and_first_components",
    "run_chunks",
    "running_median",
    "safe_global_norm",
    "save_checkpoint",
    "scan_steps",
    "shard_leading_axis",
    "spectral_density",
    "spectral_density_along",
    "spectral_density_by_block",
    "stacked_models",
    "steps_per_epoch",
    "sweep_learning_rates",
    "sweep_mesh",
    "sweep_mesh_for",
    "sweep_seeds",
    "sweep_targets",
    "total_steps",
    "trace_along",
    "trace_hutchinson",
    "trace_hutchpp",
    "train",
    "train_chunk",
    "train_epochs",
    "unroll",
    "with_learning_rate",
    # Memory functions of a model and the memory kernel of data (issue 23).
    "DECAY_TYPES",
    "DecayFit",
    "JacobianMemory",
    "MemoryKernelEstimate",
    "estimate_memory_kernel",
    "fit_decay",
    "heaviside_memory",
    "impulse_response",
    "jacobian_memory",
    "memory_horizon",
]
