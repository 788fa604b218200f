"""Least-squares lines through measurements, e.g. log τ against 1/ω for a plateau-time law."""

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike, Float

from memdyn._validate import as_float_array


def linear_fit(x: Float[ArrayLike, " n"], y: Float[ArrayLike, " n"]) -> dict:
    """Least squares `y = intercept + slope·x` over the pairs where both are finite.

    Returns `slope`, `intercept`, `r2` (coefficient of determination) and `points` (pairs
    used); NaNs when fewer than 2 pairs are finite or all their x are equal (a documented
    outcome, e.g. a sweep where no run escaped its plateau: check `points`), and `r2` NaN when
    all used `y` are equal.
    Boolean, complex and half-precision input raise `TypeError` (`memdyn.as_float_array`).
    """
    x, y = as_float_array("x", x, host=True), as_float_array("y", y, host=True)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d of equal length; got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0:  # no line through fewer than two distinct x
        return {"slope": np.nan, "intercept": np.nan, "r2": np.nan, "points": int(x.size)}
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1.0 - np.sum(residual**2) / total if total > 0 else np.nan
    return {"slope": slope, "intercept": intercept, "r2": r2, "points": int(x.size)}
