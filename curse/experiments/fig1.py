"""Figure 1 of Li et al. (§5, App. C.3.1): plateaus on sampled-path training.

Three panels, each an Euler-discretised continuous-time RNN (a residual RNN, eq. 6) of width
`hidden_size` trained full-batch on a fixed set of sampled input paths (`curse._sampled`):

(a) linear RNN, plain GD, on the exponential-sum target ρ(t) = c*ᵀ e^{W* t} u* with c*, u* ~ N(0, I)
    of dimension `target_size` and W* = −`target_decay`·I + G/√m*, G i.i.d. N(0, 1) (stable for
    `target_decay` > ~1): the loss falls steadily;
(b) the same, on scaled Airy targets ρ(t) = Ai(s0(t − t0)) for each t0 in `airy.t0s` (one `vmap`
    over t0 sharing the input paths): oscillatory memory up to t0, so the plateau lengthens with t0;
(c) tanh RNN with full W, Adam, learning the resolved variable x_1 of the two-scale Lorenz-96
    system (eq. 124, `curse._lorenz96`) from its stochastic forcing (outputs standardised), one
    `vmap`-ed run per seed (own initialisation and own set of forcing paths). The system is chosen
    by `lorenz96.setting`: "standard" (K = 8, J = 32, F = 10, h = 1, c = b = 10; chaotic) or
    "weak" (K = J = 8, F = 2: the earlier choice, below the chaotic regime).

Inputs in (a)/(b) are white noise x_k ~ N(0, 1/Δ) and targets the exact discrete convolution with
ρ (x = 0 before t = 0, matching h(0) = 0). Per curve the result records the detected plateau
intervals (`memdyn.plateau_intervals`, linear step axis) and the escape step: the first step
at which the loss is `plateau.drop_fraction` below its initial value.
The paper's hidden size, path length and Δ were lost in extraction; the defaults here are ours.

Panel (c), what the plateau is (measured, 16 paths of 10 time units per seed, u_k ~ N(0, 5²),
width 16, Adam 3e-3): the loss holds at its initial level (≈ 1, the standardised variance) for
a few hundred steps and then falls to ≈ 0.3 on most seeds. The RNN has no bias and starts at
h = 0, so its output is odd in the forcing (ŷ(−u) = −ŷ(u)), while ≈ 74 % of the target's variance
is the across-path mean trajectory m(t) (all paths start from one spun-up state), which is even:
on fresh paths such a model cannot go below ≈ 0.74 (a symmetry argument; no held-out loss is
measured), so the escape is a fit to the training batch and the plateau the stall before it.
Removing m(t) (centring per time) gave no plateau; 3 of 5 seeds plateau at the defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from curse import _lorenz96 as lorenz96
from curse._models import AbstractDiscretisation, ContinuousRNN, Euler
from curse._sampled import SampledLoss, cell_integrals, convolve_paths, white_noise_paths
from curse._targets import ScaledAiry
from curse.plots import plot_fig1
from memdyn import ConfigError, hitting_time, make_optimizer, plateau_intervals, train
from memdyn.internal import (
    AtLeast,
    InRange,
    MinLength,
    NonNegative,
    OneOf,
    Positive,
    check_fields,
    replace_fields,
)
from memlab import Experiment

LORENZ_SETTINGS = {
    "standard": lorenz96.Lorenz96(slow=8, fast=32, forcing=10.0),
    "weak": lorenz96.Lorenz96(slow=8, fast=8, forcing=2.0),
}


@dataclasses.dataclass(frozen=True)
class ExponentialSumPanel:
    """Panel (a): a linear RNN trained by plain GD on the exponential-sum target.

    Attributes:
        target_size: dimension m* of the target ρ(t) = c*ᵀ e^{W* t} u*.
        target_decay: shift d in W* = −d·I + G/√m*; stable for d ≳ 1.
        learning_rate: plain-GD step size.
        train_steps: GD steps; a multiple of `num_saves`.
    """

    target_size: Annotated[int, AtLeast(1)] = 4
    target_decay: Annotated[float, Positive] = 1.5
    learning_rate: Annotated[float, Positive] = 0.05
    train_steps: int = 2000

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class AiryPanel:
    """Panel (b): the same linear RNN and GD on scaled Airy targets Ai(s0(t − t0)).

    Attributes:
        s0: scale s0 of the Airy targets.
        t0s: shifts t0 of the Airy targets (time units), one loss curve each; a larger t0 is a
            longer memory and a longer plateau.
        learning_rate: plain-GD step size.
        train_steps: GD steps; a multiple of `num_saves`.
    """

    s0: Annotated[float, Positive] = 1.0
    t0s: Annotated[tuple[float, ...], NonNegative, MinLength(1)] = (0.0, 4.0, 8.0, 12.0)
    learning_rate: Annotated[float, Positive] = 0.05
    train_steps: int = 6000

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class Lorenz96Panel:
    """Panel (c): a tanh RNN trained by Adam on the resolved variable of Lorenz-96.

    Attributes:
        dt: step Δ of the Lorenz-96 data grid and of the tanh RNN, in time units.
        num_steps: Lorenz-96 path length, in steps of `dt`.
        num_paths: number of Lorenz-96 paths per seed, the full batch.
        setting: the Lorenz-96 system: "standard" (K = 8 slow, J = 32 fast variables per slow
            one, F = 10, h = 1, c = b = 10: the chaotic two-scale system) or "weak" (K = J = 8,
            F = 2, same h, c, b: the earlier default, below the chaotic regime). The earlier
            panel (c) is `LEGACY_LORENZ`: "weak" with 32 paths, 6000 Adam steps and one seed
            (the other fields as now: 200 steps of Δ = 0.05, a 10-time-unit horizon;
            u_k ~ N(0, 5²); Adam 3e-3; width 16).
        num_seeds: independent runs, one loss curve each, trained in one `vmap` (seed s: its
            own RNN initialisation and its own `num_paths` forcing paths).
        forcing_scale: standard deviation of the i.i.d. Gaussian input forcing u_k that the RNN
            reads.
        learning_rate: Adam step size.
        train_steps: Adam steps; a multiple of `num_saves`.
    """

    dt: Annotated[float, Positive] = 0.05
    num_steps: Annotated[int, AtLeast(2)] = 200
    num_paths: Annotated[int, AtLeast(1)] = 16
    setting: Annotated[str, OneOf(LORENZ_SETTINGS)] = "standard"
    num_seeds: Annotated[int, AtLeast(1)] = 5
    forcing_scale: Annotated[float, Positive] = 5.0
    learning_rate: Annotated[float, Positive] = 3e-3
    train_steps: int = 2000

    def __post_init__(self):
        check_fields(self)


# Panel (c) as it was before the chaotic setting (up to its random draws): `Fig1Config(lorenz96=
# LEGACY_LORENZ)`.
LEGACY_LORENZ = Lorenz96Panel(setting="weak", num_paths=32, train_steps=6000, num_seeds=1)


@dataclasses.dataclass(frozen=True)
class PlateauDetection:
    """How a loss curve's plateaus and its escape are read off (every panel).

    Attributes:
        tolerance: relative band of a plateau: the smoothed loss stays within
            max/min ≤ 1 + tolerance over it (`memdyn.plateau_intervals`).
        min_fraction: shortest plateau, as a fraction of the run's steps.
        level_ratio: a flat stretch counts as a plateau only if its level is at least this
            multiple of the lowest loss reached later (a stall followed by a reduction, not the
            slow tail of a converged run).
        drop_fraction: relative loss drop below the initial loss that marks the escape step
            (0.5: the loss has halved).
    """

    tolerance: Annotated[float, Positive] = 0.05
    min_fraction: Annotated[float, InRange(0, 1, closed="neither")] = 0.05
    level_ratio: Annotated[float, AtLeast(1)] = 2.0
    drop_fraction: Annotated[float, InRange(0, 1, closed="neither")] = 0.5

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class Fig1Config:
    """Figure 1 (defaults ours where the paper's were lost), one part per panel.

    Attributes:
        hidden_size: RNN width m (hidden units) in all three panels.
        dt: Euler step Δ of the RNN and of the white-noise input grid of panels (a), (b), in
            time units (inputs x_k ~ N(0, 1/Δ)).
        num_steps: path length of panels (a), (b), in steps of `dt`.
        num_paths: number of sampled input paths, the full batch of panels (a), (b).
        exponential_sum: panel (a), the exponential-sum target.
        airy: panel (b), the Airy targets.
        lorenz96: panel (c), the Lorenz-96 system.
        num_saves: saved points per loss curve (one every train_steps / num_saves steps).
        plateau: how plateaus and escape steps are detected, in every panel.
        seed: PRNG seed of the targets, the input paths and the initialisations.
    """

    hidden_size: Annotated[int, AtLeast(1)] = 16
    dt: Annotated[float, Positive] = 0.1
    num_steps: Annotated[int, AtLeast(2)] = 400
    num_paths: Annotated[int, AtLeast(1)] = 32
    exponential_sum: ExponentialSumPanel = ExponentialSumPanel()
    airy: AiryPanel = AiryPanel()
    lorenz96: Lorenz96Panel = Lorenz96Panel()
    num_saves: Annotated[int, AtLeast(2)] = 200
    plateau: PlateauDetection = PlateauDetection()
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        for name in ("exponential_sum", "airy", "lorenz96"):
            steps = getattr(self, name).train_steps
            if steps < self.num_saves or steps % self.num_saves:
                raise ConfigError(
                    f"{name}.train_steps must be a multiple of num_saves ({self.num_saves}); "
                    f"got {steps}"
                )

    def quick(self) -> Fig1Config:
        return replace_fields(
            self,
            {
                "dt": 0.2,
                "num_steps": 150,
                "num_paths": 8,
                "exponential_sum.train_steps": 400,
                "airy.t0s": (0.0, 4.0, 8.0),
                "airy.learning_rate": 0.1,
                "airy.train_steps": 1200,
                "lorenz96.num_steps": 100,
                "lorenz96.num_paths": 8,
                "lorenz96.train_steps": 800,
                "num_saves": 80,
            },
        )


def exponential_sum_kernel(W: Float[Array, "k k"], u: Float[Array, " k"], c: Float[Array, " k"]):
    """ρ(t) = cᵀ e^{Wt} u, elementwise in t (matrix exponentials by `expm`)."""

    def kernel(t):
        t = jnp.asarray(t)
        flows = jax.vmap(lambda s: jax.scipy.linalg.expm(s * W))(t.reshape(-1))
        return jnp.einsum("i,nij,j->n", c, flows, u).reshape(t.shape)

    return kernel


def random_exponential_target(key, size: int, decay: float):
    """(W*, u*, c*): W* = −decay·I + G/√size, u*, c* ~ N(0, I) (panel (a))."""
    w_key, u_key, c_key = jax.random.split(key, 3)
    dtype = jnp.result_type(float)
    W = -decay * jnp.eye(size, dtype=dtype)
    W = W + jax.random.normal(w_key, (size, size), dtype) / np.sqrt(size)
    return W, jax.random.normal(u_key, (size,), dtype), jax.random.normal(c_key, (size,), dtype)


def train_on_outputs(
    model: ContinuousRNN,
    xs: Float[Array, "*paths time d"],
    ys: Float[Array, "batch paths time"],
    dt: float,
    optimizer,
    num_steps: int,
    num_saves: int,
    method: AbstractDiscretisation = Euler(),  # noqa: B008 (immutable, as Diffrax does)
    *,
    per_member: bool = False,
):
    """Full-batch training on (xs, ys[b]) for every batch member b, as one compiled `vmap`.

    With `per_member`, `model` and `xs` are stacked too (leading axis b: e.g. one seed's
    initialisation and its own paths each); otherwise every member shares them."""
    axis = 0 if per_member else None

    @jax.jit
    def sweep(model, xs, ys):
        one = lambda m, x, y: train(
            SampledLoss(x, y, dt, method, 0),
            m,
            optimizer,
            num_steps,
            save_every=num_steps // num_saves,
        )
        return jax.vmap(one, in_axes=(axis, axis, 0))(model, xs, ys)

    return sweep(model, xs, ys)


def plateau_summary(
    steps: np.ndarray, losses: np.ndarray, detection: PlateauDetection, scale: str = "linear"
) -> tuple[list, float]:
    """Detected plateau intervals [start, end, level] and the escape step of one loss curve."""
    found = plateau_intervals(
        steps,
        losses,
        tolerance=detection.tolerance,
        min_fraction=detection.min_fraction,
        scale=scale,
        smooth=5,
    )
    intervals = [
        p for p in found if p.level >= detection.level_ratio * np.min(losses[steps >= p.end])
    ]
    escape = hitting_time(
        steps,
        None,
        losses,
        delta=detection.drop_fraction * float(losses[0]),
        criterion="loss",
        log_time=scale == "log",
    )
    return [[p.start, p.end, p.level] for p in intervals], float(escape.time)


def _panel(trajectory, config) -> dict:
    steps = np.asarray(trajectory.times)
    losses = np.atleast_2d(np.asarray(trajectory.losses))
    steps = steps[0] if steps.ndim == 2 else steps
    summaries = [plateau_summary(steps, curve, config.plateau) for curve in losses]
    return {
        "steps": steps,
        "losses": losses,
        "plateaus": [s[0] for s in summaries],
        "escape_steps": np.asarray([s[1] for s in summaries]),
    }


def lorenz_panel(config: Fig1Config, data_key, init_key) -> dict:
    """Panel (c): per seed, a tanh RNN trained by Adam on u ↦ x_1 of the chosen Lorenz-96 system
    (standardised by the mean and standard deviation over all seeds' paths); `_panel`'s curves,
    plateaus and escape steps, one per seed. Call under `jax.enable_x64`."""
    panel = config.lorenz96
    seeds, paths = panel.num_seeds, panel.num_paths
    forcing, resolved = lorenz96.training_pairs(
        data_key,
        LORENZ_SETTINGS[panel.setting],
        seeds * paths,
        panel.num_steps,
        panel.dt,
        forcing_scale=panel.forcing_scale,
    )
    mean, std = jnp.mean(resolved), jnp.std(resolved)
    tanh_rnns = [
        ContinuousRNN(config.hidden_size, structure="full", activation="tanh", key=key)
        for key in jax.random.split(init_key, seeds)
    ]
    lorenz_run = train_on_outputs(
        jax.tree.map(lambda *leaves: jnp.stack(leaves), *tanh_rnns),
        forcing.reshape(seeds, paths, panel.num_steps, 1),
        ((resolved - mean) / std).reshape(seeds, paths, panel.num_steps),
        panel.dt,
        make_optimizer("adam", panel.learning_rate),
        panel.train_steps,
        config.num_saves,
        per_member=True,
    )
    return {
        "setting": panel.setting,
        "system": dataclasses.asdict(LORENZ_SETTINGS[panel.setting]),
        "seeds": np.arange(seeds),
        "resolved_mean": float(mean),
        "resolved_std": float(std),
        **_panel(lorenz_run, config),
    }


def run(config: Fig1Config, out_dir=None) -> dict:
    """Loss curves, plateau intervals and escape steps for panels (a), (b), (c)."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.PRNGKey(config.seed), 6)
        xs = white_noise_paths(keys[0], config.num_paths, config.num_steps, config.dt)
        linear = ContinuousRNN(config.hidden_size, structure="full", key=keys[1])

        panel = config.exponential_sum
        W, u, c = random_exponential_target(keys[2], panel.target_size, panel.target_decay)
        weights = cell_integrals(exponential_sum_kernel(W, u, c), config.num_steps, config.dt)
        gd = make_optimizer("gd", panel.learning_rate)
        exp_sum = train_on_outputs(
            linear,
            xs,
            convolve_paths(weights, xs)[None],
            config.dt,
            gd,
            panel.train_steps,
            config.num_saves,
        )

        airy = [ScaledAiry(config.airy.s0, t0) for t0 in config.airy.t0s]
        airy_weights = jnp.stack(
            [cell_integrals(a.kernel, config.num_steps, config.dt) for a in airy]
        )
        airy_ys = jax.vmap(convolve_paths, in_axes=(0, None))(airy_weights, xs)
        gd = make_optimizer("gd", config.airy.learning_rate)
        airy_runs = train_on_outputs(
            linear, xs, airy_ys, config.dt, gd, config.airy.train_steps, config.num_saves
        )

        lorenz = lorenz_panel(config, keys[3], keys[4])
        return {
            "exponential_sum": _panel(exp_sum, config),
            "airy": {"t0s": np.asarray(config.airy.t0s), **_panel(airy_runs, config)},
            "lorenz96": lorenz,
        }


EXPERIMENT = Experiment(
    name="fig1",
    help="Figure 1: sampled-path training plateaus (exp-sum, Airy targets, Lorenz-96 tanh RNN)",
    config=Fig1Config,
    run=run,
    plot=plot_fig1,
)
