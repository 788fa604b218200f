"""Wall-clock timing of one call: the first call (compilation) apart, then the steady state.

`measure` calls a zero-argument function once and records that time separately (for a jitted JAX
function it is tracing, compilation and one run; for PyTorch or NumPy a warm-up run), then calls it
`repeats` more times, each timed until its result is ready (`jax.block_until_ready` by default; a
PyTorch peer on a GPU passes a `wait` that synchronises the device). `compare` puts the timings of
implementations measured in the same run side by side with each peer's median over the reference's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from memdyn.internal import check_positive

RATIO_DEFINITION = (
    "median_ratio[peer] = peer median / reference median, both measured in the same run "
    "(> 1: the reference, JAX, is faster)"
)


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds: the first call, then the median, minimum and interquartile range of the repeats."""

    first_call_s: float
    median_s: float
    min_s: float
    iqr_s: float
    times_s: tuple[float, ...]


def measure(
    call: Callable[[], Any],
    *,
    repeats: int,
    wait: Callable[[Any], Any] = jax.block_until_ready,
) -> Timing:
    """Time `call()`: once for the first call (compilation), then `repeats` steady-state calls.

    Each timed interval ends when `wait(result)` returns, so asynchronous dispatch is not mistaken
    for speed.
    """
    check_positive("repeats", repeats)
    start = time.perf_counter()
    wait(call())
    first_call = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        wait(call())
        times.append(time.perf_counter() - start)
    lower, median, upper = np.percentile(times, [25, 50, 75])
    return Timing(first_call, float(median), min(times), float(upper - lower), tuple(times))


def compare(timings: Mapping[str, Timing | str], *, reference: str = "jax") -> dict[str, Any]:
    """Side by side: each implementation's timing (or the reason it was skipped) and the ratios.

    Returns `{"reference", "implementations", "median_ratio"}` (see `RATIO_DEFINITION`); a skipped
    peer has `{"skipped": reason}` and no ratio.
    """
    base = timings[reference]
    if not isinstance(base, Timing):
        raise ValueError(f"the reference {reference!r} must be timed; got {base!r}")
    implementations = {
        name: dataclasses.asdict(timing) if isinstance(timing, Timing) else {"skipped": timing}
        for name, timing in timings.items()
    }
    ratios = {
        name: timing.median_s / base.median_s
        for name, timing in timings.items()
        if name != reference and isinstance(timing, Timing)
    }
    return {"reference": reference, "implementations": implementations, "median_ratio": ratios}


def throughput(flops: float, timings: Mapping[str, Timing | str]) -> dict[str, float]:
    """GFLOP/s of each timed implementation: `flops` over its median time."""
    return {
        name: flops / timing.median_s / 1e9
        for name, timing in timings.items()
        if isinstance(timing, Timing)
    }
