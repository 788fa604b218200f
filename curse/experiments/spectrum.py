"""Hessian spectrum along training (Li et al., §5, Prop. C.3; issue 5 item 4).

Part 1 (exact, float64): plain GD with step η on J(a, w) (eq. 18/77) for the eq. 125 memory target
at each ω in `omegas` (one `vmap`), from the start of Fig. 2 (ρ̂ = ρ̄ plus spare units). Every
`save_every` steps the full Hessian ∇²J is formed by `jax.hessian` and diagonalised: on the plateau
the smallest |eigenvalues| are exponentially small in 1/ω, and they grow at the escape.

Part 2 (Lanczos): a linear RNN with full W of width `lanczos_hidden` (m² + 2m > 2,000 parameters)
trained by GD on sampled white-noise paths (exact ZOH) against the same target at the largest ω:
extreme Hessian eigenvalues at each save by `lanczos_iterations` Lanczos steps on
Hessian-vector products (`memdyn._lanczos.hessian_extremes`). The Lanczos extremes are checked
against `eigvalsh` of the exact Hessian on a smaller model (`check_hidden`), where both fit.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

from curse._memory_flow import MemoryFlowConfig, diagonal_objective
from curse._models import ContinuousRNN
from curse._sampled import make_sampled_loss
from curse.plots import plot_spectrum
from memdyn import (
    Experiment,
    check_fields,
    hessian_eigenvalues,
    hessian_extremes,
    make_optimizer,
    train,
)


@dataclasses.dataclass(frozen=True)
class SpectrumConfig:
    """Hessian spectra along GD.

    Attributes:
        omegas: memory parameters of eq. 125 (part 1, one trajectory each).
        extra_units, extra_rate: spare units of the start (as in Fig. 2).
        learning_rate, train_steps, save_every: GD in part 1 (Hessian every `save_every` steps,
            τ = 0.1 apart: the plateaus end at τ ≈ 0.7, 2, 5, 13 for 1/ω = 6, 8, 10, 12);
            η < 2/λ_max with λ_max ≈ 82 after the escape (GD at η = 0.05 oscillates).
        lanczos_hidden: width of the full-W model of part 2 (m² + 2m parameters).
        check_hidden: width of the model on which Lanczos is checked against `eigvalsh`.
        lanczos_iterations: Lanczos steps (Hessian-vector products) per spectrum.
        lanczos_learning_rate, lanczos_train_steps, lanczos_saves: GD in part 2.
        dt, num_paths, num_steps: sampled paths of part 2.
        seed: PRNG seed.
    """

    omegas: tuple[float, ...] = (1 / 6, 1 / 8, 1 / 10, 1 / 12)
    extra_units: int = 1
    extra_rate: float = 0.5
    learning_rate: float = 0.01
    train_steps: int = 20_000
    save_every: int = 10
    lanczos_hidden: int = 45
    check_hidden: int = 12
    lanczos_iterations: int = 60
    lanczos_learning_rate: float = 0.01
    lanczos_train_steps: int = 400
    lanczos_saves: int = 4
    dt: float = 0.1
    num_paths: int = 8
    num_steps: int = 200
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        if not self.omegas or any(not np.isfinite(o) or o <= 0 for o in self.omegas):
            raise ValueError(f"omegas must be non-empty and > 0; got {self.omegas}")
        for name in ("extra_rate", "learning_rate", "lanczos_learning_rate", "dt"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be > 0; got {value}")
        if self.save_every < 1 or self.train_steps % self.save_every:
            raise ValueError(
                f"train_steps must be a multiple of save_every; got {self.train_steps}"
            )
        if self.lanczos_saves < 1 or self.lanczos_train_steps % self.lanczos_saves:
            raise ValueError("lanczos_train_steps must be a multiple of lanczos_saves")
        for name in ("lanczos_hidden", "check_hidden", "num_paths", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        smallest = self.check_hidden * (self.check_hidden + 2)
        if not 2 <= self.lanczos_iterations <= smallest:
            raise ValueError(f"lanczos_iterations must be in [2, {smallest}] (check model size)")

    def quick(self) -> SpectrumConfig:
        return dataclasses.replace(
            self,
            omegas=(1 / 6, 1 / 8, 1 / 10),
            train_steps=4000,
            save_every=20,
            lanczos_hidden=20,
            check_hidden=8,
            lanczos_iterations=40,
            lanczos_train_steps=40,
            lanczos_saves=2,
            num_steps=100,
        )


def exact_spectra(config: SpectrumConfig):
    """GD on J for each ω and the exact Hessian spectrum at every save (part 1)."""
    flow_config = MemoryFlowConfig(
        omegas=config.omegas, extra_units=config.extra_units, extra_rate=config.extra_rate
    )
    theta0 = flow_config.start()
    targets = flow_config.targets()
    gd = make_optimizer("gd", config.learning_rate)

    @jax.jit
    def one(target):
        loss = Partial(diagonal_objective, target=target)
        trajectory = train(loss, theta0, gd, config.train_steps, save_every=config.save_every)
        spectra = jax.vmap(lambda theta: hessian_eigenvalues(loss, theta))(trajectory.thetas)
        return trajectory.times, trajectory.losses, spectra

    steps, losses, spectra = jax.vmap(one)(targets)
    return np.asarray(steps[0]), np.asarray(losses), np.asarray(spectra)


def sampled_rnn_loss(config: SpectrumConfig, hidden: int, key):
    """A full-W linear RNN of width `hidden` and its sampled-path loss (ZOH) at the largest ω."""
    flow_config = MemoryFlowConfig(omegas=(max(config.omegas),))
    target = jax.tree.map(lambda x: x[0], flow_config.targets())
    model_key, path_key = jax.random.split(key)
    model = ContinuousRNN(hidden, structure="full", key=model_key)
    loss = make_sampled_loss(
        target.kernel,
        key=path_key,
        num_paths=config.num_paths,
        num_steps=config.num_steps,
        dt=config.dt,
        method="zoh",
    )
    return model, loss


def lanczos_check(config: SpectrumConfig, key) -> dict:
    """Lanczos extremes against `eigvalsh` of the exact Hessian on the small model."""
    model, loss = sampled_rnn_loss(config, config.check_hidden, key)
    exact = np.asarray(hessian_eigenvalues(loss, model))
    ritz = np.asarray(hessian_extremes(loss, model, config.lanczos_iterations, key=key))
    return {
        "parameters": int(ravel_pytree(model)[0].size),
        "exact_min": exact[0],
        "exact_max": exact[-1],
        "lanczos_min": ritz[0],
        "lanczos_max": ritz[-1],
        "max_relative_error": float(
            max(abs(ritz[-1] - exact[-1]), abs(ritz[0] - exact[0])) / abs(exact[-1])
        ),
    }


def lanczos_along(config: SpectrumConfig, key) -> dict:
    """GD on the large model; Lanczos extremes at each save (part 2)."""
    model, loss = sampled_rnn_loss(config, config.lanczos_hidden, key)
    gd = make_optimizer("gd", config.lanczos_learning_rate)
    save_every = config.lanczos_train_steps // config.lanczos_saves
    trajectory = train(loss, model, gd, config.lanczos_train_steps, save_every=save_every)
    keys = jax.random.split(key, len(trajectory.times))
    ritz = np.asarray(
        [
            hessian_extremes(
                loss,
                jax.tree.map(lambda x, i=index: x[i], trajectory.thetas),
                config.lanczos_iterations,
                key=step_key,
            )
            for index, step_key in enumerate(keys)
        ]
    )
    return {
        "parameters": int(ravel_pytree(model)[0].size),
        "steps": np.asarray(trajectory.times),
        "losses": np.asarray(trajectory.losses),
        "ritz_values": ritz,
        "lambda_min": ritz[:, 0],
        "lambda_max": ritz[:, -1],
    }


def run(config: SpectrumConfig, out_dir=None) -> dict:
    """Exact spectra along GD per ω (part 1); Lanczos check and Lanczos extremes (part 2)."""
    with jax.enable_x64(True):
        steps, losses, spectra = exact_spectra(config)
        key = jax.random.PRNGKey(config.seed)
        check = lanczos_check(config, key)
        large = lanczos_along(config, jax.random.fold_in(key, 1))
    smallest = np.min(np.abs(spectra), axis=-1)
    return {
        "omegas": np.asarray(config.omegas),
        "steps": steps,
        "taus": config.learning_rate * steps,
        "losses": losses,
        "eigenvalues": spectra,
        "min_abs_eigenvalue": smallest,
        "min_abs_eigenvalue_start": smallest[:, 0],
        "min_abs_eigenvalue_end": smallest[:, -1],
        "lanczos_check": check,
        "lanczos": large,
    }


EXPERIMENT = Experiment(
    name="spectrum",
    help="Hessian spectrum along GD on eq. 125 (exact, float64) and Lanczos extremes (>2k params)",
    config=SpectrumConfig,
    run=run,
    plot=plot_spectrum,
)
