"""`curse approx`: how many exponentials a memory needs (Li et al., §4, Theorem 4.2, App. B).

For each kernel and width m = 1..m_max the best exponential-sum fit (`curse._fitting`) gives the
relative L² error ε(m) = √J/‖ρ‖, and m(ε) = the smallest m with ε(m) ≤ ε. Two families:

- exponentially decaying kernels ρ(t) = e^{−βt}(1 + t)^{−2} (`DampedPolynomial`, Theorem 4.2's
  regime, decay β), over `betas`;
- polynomial kernels ρ(t) = (1 + t)^{−(1+ω)} over `omegas`: no exponential decay; the curse of
  memory in approximation predicts m(ε) growing fast as ω → 0.

Per kernel two fits of the error curve: log ε = c − α log m (Theorem 4.2's m^{−α} form,
`alpha`) and log ε = c − κ m (geometric decay, `kappa`), each with r². Errors below 1e-7 (the
float64 floor of √J, see `curse._fitting`) are left out of the fits.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np

from curse._fitting import DampedPolynomial
from curse._targets import PolynomialDecay
from curse._widths import fit_widths, minimal_width
from curse.plots import plot_approx
from memdyn import linear_fit
from memdyn.internal import AtLeast, MinLength, Positive, check_fields
from memlab import Experiment

ERROR_FLOOR = 1e-7


@dataclasses.dataclass(frozen=True)
class ApproxConfig:
    """Minimal widths m(ε) of exponential-sum fits (§4, Theorem 4.2, App. B; sizes ours).

    Attributes:
        omegas: exponents ω > 0 of the polynomial kernels ρ(t) = (1 + t)^{−(1+ω)}, one each;
            small ω is long memory.
        betas: decay rates β > 0 (per unit time) of the exponentially decaying kernels
            ρ(t) = e^{−βt}(1 + t)^{−2}, one each.
        max_width: widths m = 1..max_width are fitted for every kernel.
        epsilons: relative L² errors ε = √J/‖ρ‖ at which m(ε), the smallest width
            reaching ε, is tabulated (NaN when no width up to `max_width` does).
        starts: multi-starts per fit (one geometric grid of rates on [1e-3, 1e2], the others
            log-uniform draws); fits after m = 1 also get m warm starts from the width m − 1
            fit.
        adam_steps: Adam steps that refine every start (before the Newton phase).
        newton_steps: damped saddle-free Newton steps per start after Adam.
        seed: PRNG seed of the random starts.
    """

    omegas: Annotated[tuple[float, ...], Positive, MinLength(1)] = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
    betas: Annotated[tuple[float, ...], Positive, MinLength(1)] = (0.1, 0.3, 1.0, 3.0)
    max_width: Annotated[int, AtLeast(1)] = 10
    epsilons: Annotated[tuple[float, ...], Positive, MinLength(1)] = (
        1e-1,
        3e-2,
        1e-2,
        3e-3,
        1e-3,
        3e-4,
        1e-4,
    )
    starts: Annotated[int, AtLeast(1)] = 12
    adam_steps: Annotated[int, AtLeast(1)] = 300
    newton_steps: Annotated[int, AtLeast(1)] = 200
    seed: int = 0

    def __post_init__(self):
        check_fields(self)

    def quick(self) -> ApproxConfig:
        return dataclasses.replace(
            self,
            omegas=(0.1, 0.5, 2.0),
            betas=(0.3, 1.0),
            max_width=5,
            epsilons=(1e-1, 1e-2, 1e-3),
            starts=3,
            adam_steps=100,
            newton_steps=60,
        )


def _rate_fits(errors):
    widths = np.arange(1, errors.shape[1] + 1, dtype=float)
    out = []
    for row in errors:
        ok = row > ERROR_FLOOR
        log_error = np.where(ok, np.log(np.maximum(row, ERROR_FLOOR)), np.nan)
        power = linear_fit(np.log(widths), log_error)
        geometric = linear_fit(widths, log_error)
        out.append(
            {
                "alpha": -power["slope"],
                "alpha_r2": power["r2"],
                "kappa": -geometric["slope"],
                "kappa_r2": geometric["r2"],
            }
        )
    return out


def run(config: ApproxConfig, out_dir=None) -> dict:
    """Best fits for every kernel and width; m(ε) tables; m^{−α} and e^{−κm} rate fits."""
    with jax.enable_x64(True):
        key = jax.random.key(config.seed)
        polynomial = [PolynomialDecay(jnp.asarray(omega)) for omega in config.omegas]
        damped = [DampedPolynomial(jnp.asarray(beta), 1.0) for beta in config.betas]
        settings = {
            "starts": config.starts,
            "adam_steps": config.adam_steps,
            "newton_steps": config.newton_steps,
        }
        poly_errors, poly_fits = fit_widths(
            polynomial, config.max_width, key=key, desc="polynomial kernels", **settings
        )
        exp_errors, exp_fits = fit_widths(
            damped,
            config.max_width,
            key=jax.random.fold_in(key, 7),
            desc="exponential kernels",
            **settings,
        )
    widths_poly = [[minimal_width(row, eps) for eps in config.epsilons] for row in poly_errors]
    widths_exp = [[minimal_width(row, eps) for eps in config.epsilons] for row in exp_errors]
    return {
        "widths": np.arange(1, config.max_width + 1),
        "omegas": np.asarray(config.omegas),
        "betas": np.asarray(config.betas),
        "epsilons": np.asarray(config.epsilons),
        "polynomial_errors": poly_errors,
        "exponential_errors": exp_errors,
        "polynomial_min_width": np.asarray(widths_poly),
        "exponential_min_width": np.asarray(widths_exp),
        "polynomial_rate_fits": _rate_fits(poly_errors),
        "exponential_rate_fits": _rate_fits(exp_errors),
        "polynomial_fits": poly_fits,
        "exponential_fits": exp_fits,
    }


EXPERIMENT = Experiment(
    name="approx",
    help="§4/Thm 4.2/App. B: minimal width m(ε) for exponential vs polynomial (ω) memory",
    config=ApproxConfig,
    run=run,
    plot=plot_approx,
)
