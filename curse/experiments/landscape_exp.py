"""`curse landscape`: coincided critical affine spaces of the white-noise loss (Li et al., App. D).

Target: an exponential sum of width m* (`target_a`, `target_w`); model width m. For every
k = 1..min(m*, m) the width-k global minimiser (b, v) is found by `curse._fitting` (for k = m* it
is the target itself), and every k-coincided affine space of Def. D.1 / Thm D.1 is built, one per
labelled partition of the m units into k groups (enumerated; their number is checked against
k!·S(m, k)). At `points_per_space` random points of each space (a moved along the space by
standard normal coordinates) we record ‖∇J‖, |J − J_k(b, v)| (J is constant on the space), the
Hessian spectrum (exact `jax.hessian`, float64) and its number of numerically zero eigenvalues
(|λ| ≤ `zero_tolerance`·max|λ|) against Thm D.3's lower bound m − k.

Prop. D.1 (m = 2, two-term target `line_a`, `line_w`): the width-1 minimiser (b*, v*) gives the
critical line a = (s b*, (1 − s) b*), w = (v*, v*). Along s the Hessian has one zero eigenvalue
(the line), one positive one, and one that changes sign: `line_crossings` are the s where the
number of negative eigenvalues changes; saddle segments have a negative eigenvalue, the others
are degenerate stable points that are not global minima.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from curse._fitting import fit_exponential_sum
from curse._landscape import (
    coincided_space,
    count_coincided_spaces,
    labelled_partitions,
    stirling2,
    zero_eigenvalue_count,
)
from curse._memory_flow import diagonal_objective
from curse._targets import ExponentialSum
from curse.plots import plot_landscape
from memdyn import ConfigError, hessian_eigenvalues
from memdyn.internal import AtLeast, InRange, MinLength, Positive, check_fields
from memlab import Experiment


@dataclasses.dataclass(frozen=True)
class LandscapeConfig:
    """Coincided critical affine spaces (App. D, Def. D.1, Thms D.1, D.3) and Prop. D.1's line.

    Attributes:
        target_a: weights a*_j of the width-m* exponential-sum target Σ_j a*_j e^{−w*_j t};
            as many as `target_w`.
        target_w: its rates w*_j (per unit time), distinct.
        width: model width m, 1..7 (the k!·S(m, k) spaces are enumerated).
        points_per_space: random points at which each coincided space is inspected.
        zero_tolerance: an eigenvalue with |λ| ≤ tolerance·max|λ| counts as zero (and one
            below −tolerance·max|λ| as negative on the line); in (0, 1).
        line_a: weights of Prop. D.1's two-term target (2 entries).
        line_w: its two rates.
        line_s: positions s on the critical line a = (s b*, (1 − s) b*), w = (v*, v*), where
            the Hessian is evaluated (at least 3; default 501 points on [−2, 3]).
        starts: random multi-starts of the width-k minimiser fits (`curse._fitting`).
        seed: PRNG seed of the fits' starts and of the random points on the spaces.
    """

    target_a: Annotated[tuple[float, ...], MinLength(1)] = (1.0, 0.5, 0.8)
    target_w: Annotated[tuple[float, ...], Positive, MinLength(1)] = (0.5, 1.0, 2.0)
    width: Annotated[int, InRange(1, 7)] = 5
    points_per_space: Annotated[int, AtLeast(1)] = 3
    zero_tolerance: Annotated[float, InRange(0, 1, closed="neither")] = 1e-8
    line_a: tuple[float, ...] = (1.0, 0.5)
    line_w: Annotated[tuple[float, ...], Positive] = (1.0, 2.0)
    line_s: Annotated[tuple[float, ...], MinLength(3)] = tuple(np.linspace(-2.0, 3.0, 501).tolist())
    starts: Annotated[int, AtLeast(1)] = 12
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        if len(self.target_a) != len(self.target_w):
            raise ConfigError("target_a and target_w must be of equal length")
        if len(set(self.target_w)) != len(self.target_w):
            raise ConfigError(f"target_w must be distinct; got {self.target_w}")
        if len(self.line_a) != 2 or len(self.line_w) != 2:
            raise ConfigError("line_a and line_w must have 2 entries")

    def quick(self) -> LandscapeConfig:
        return dataclasses.replace(
            self, width=4, points_per_space=2, line_s=tuple(np.linspace(-2, 3, 101).tolist())
        )


@jax.jit
def _inspect(a, w, target):
    loss = Partial(diagonal_objective, target=target)
    grad = jax.grad(loss)((a, w))
    return (
        loss((a, w)),
        jnp.linalg.norm(jnp.concatenate(grad)),
        hessian_eigenvalues(loss, (a, w)),
    )


def _width_k_minimiser(target, k, config, key):
    if k == len(config.target_a):
        return target.a, target.w
    fit = fit_exponential_sum(target, k, key=key, starts=config.starts)
    return fit.a, fit.w


def _spaces(config, target, key):
    m, m_star = config.width, len(config.target_a)
    rows = []
    for k in range(1, min(m, m_star) + 1):
        b, v = _width_k_minimiser(target, k, config, jax.random.fold_in(key, k))
        minimum, min_grad, min_spectrum = _inspect(b, v, target)
        partitions = labelled_partitions(m, k)
        grads, gaps, zeros, spectra = [], [], [], []
        for index, groups in enumerate(partitions):
            space = coincided_space(b, v, groups)
            coords = jax.random.normal(
                jax.random.fold_in(key, 100_000 * k + index),
                (config.points_per_space, space.basis.shape[0]),
            )
            for xi in coords:
                move = xi @ space.basis
                loss, grad_norm, spectrum = _inspect(space.a + move[:m], space.w, target)
                grads.append(float(grad_norm))
                gaps.append(float(abs(loss - minimum)))
                zeros.append(
                    zero_eigenvalue_count(spectrum, relative_tolerance=config.zero_tolerance)
                )
                spectra.append(np.asarray(spectrum))
        rows.append(
            {
                "k": k,
                "b": np.asarray(b),
                "v": np.asarray(v),
                "width_k_loss": float(minimum),
                "width_k_grad_norm": float(min_grad),
                "width_k_min_hessian_eig": float(min_spectrum[0]),
                "stirling": stirling2(m, k),
                "predicted_spaces": count_coincided_spaces(m, k),
                "enumerated_spaces": len(partitions),
                "null_dimension_bound": m - k,
                "max_grad_norm": max(grads),
                "max_loss_change": max(gaps),
                "min_zero_eigs": min(zeros),
                "max_zero_eigs": max(zeros),
                "zero_eig_counts": zeros,
                "spectra": np.asarray(spectra),
            }
        )
    return rows


def _line(config, key):
    target = ExponentialSum(jnp.asarray(config.line_a), jnp.asarray(config.line_w))
    fit = fit_exponential_sum(target, 1, key=key, starts=config.starts)
    b, v = fit.a[0], fit.w[0]
    s = jnp.asarray(config.line_s)
    a = jnp.stack([s * b, (1.0 - s) * b], axis=1)
    w = jnp.full((s.shape[0], 2), v)
    losses, grads, spectra = jax.vmap(lambda a, w: _inspect(a, w, target))(a, w)
    spectra = np.asarray(spectra)
    scale = np.max(np.abs(spectra))
    negative = np.sum(spectra < -config.zero_tolerance * scale, axis=1)
    change = np.flatnonzero(np.diff(negative) != 0)
    s_np = np.asarray(s)
    crossings = [0.5 * (s_np[i] + s_np[i + 1]) for i in change]
    return {
        "line_b": float(b),
        "line_v": float(v),
        "line_s": s_np,
        "line_spectra": spectra,
        "line_negative_count": negative,
        "line_crossings": np.asarray(crossings),
        "line_saddle_fraction": float(np.mean(negative > 0)),
        "line_max_grad_norm": float(jnp.max(grads)),
        "line_loss": float(losses[0]),
    }


def run(config: LandscapeConfig, out_dir=None) -> dict:
    """Coincided spaces for every k: counts, gradients, loss constancy, Hessian null spaces;
    Prop. D.1's line."""
    with jax.enable_x64(True):
        key = jax.random.key(config.seed)
        target = ExponentialSum(jnp.asarray(config.target_a), jnp.asarray(config.target_w))
        spaces = _spaces(config, target, key)
        line = _line(config, jax.random.fold_in(key, 999))
    total = sum(row["predicted_spaces"] for row in spaces)
    return {
        "width": config.width,
        "target_width": len(config.target_a),
        "spaces": spaces,
        "total_predicted_spaces": total,
        **line,
    }


EXPERIMENT = Experiment(
    name="landscape",
    help="App. D: k-coincided critical affine spaces, k!S(m,k) counts, Hessian null spaces, "
    "Prop. D.1 line",
    config=LandscapeConfig,
    run=run,
    plot=plot_landscape,
)
