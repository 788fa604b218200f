"""`decaynet cobweb`: Figs. 1, 2 and 5 of the paper, cobwebs of scalar difference equations.

Fig. 1: the catch (sink, `T(x) = 0.5 x`) and release (source, `T(x) = tanh(3x)`) regimes.
Fig. 5 (App. A): `T(x) = 0.5 x` and `T(x) = 1.5 x`. Fig. 2: three rows of the cell-state map
`T_t(x) = f_t x + i_t tanh(x)` for t = 1..3 with the paper's gates (unregulated LSTM; constant
`f = 0.9`; constant `f = 0.25`). The paper does not state the initial values; ours keep the
trajectories inside its axes (-0.2 to 1.8) and show what §3.3.2 describes: x_0 = 0.5 for rows 1
and 2 (row 2 grows at every step), x_0 = 1.4 for row 3, whose text claims "consistent
shrinkage". Row 3's first map T_1(x) = 0.25 x + tanh(x) has a positive fixed point x* ≈ 1.034
(tanh x* = 0.75 x*) and T_1(x) > x on (0, x*): from x_0 = 0.5 the state first grows (0.5 →
0.587) and only then shrinks. T_2 (slope 0.25 + 0.75 sech² x < 1 for x > 0) and T_3 (f + i =
0.4) shrink every positive state, so any x_0 > x* shrinks at every step; 1.4 (1.4 → 1.235 →
0.942 → 0.346) keeps the first step visible inside the axes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import jax.numpy as jnp
import numpy as np

from decaynet._cobweb import cell_state_map, cobweb
from memdyn import ConfigError
from memdyn.internal import AtLeast, InRange, MinLength, check_fields
from memlab import Experiment


@dataclasses.dataclass(frozen=True)
class Config:
    """Cobwebs of Figs. 1, 2 and 5 (maps and gates the paper's; initial values ours).

    Attributes:
        sink_slope: slope of the sink T(x) = slope·x of Fig. 1(a) and Fig. 5(a) (paper: 0.5).
        source_gain: gain g of the source T(x) = tanh(g x) of Fig. 1(b) (paper: 3).
        steepening_slope: slope of T(x) = slope·x of Fig. 5(b) (paper: 1.5).
        sink_x0: initial value x_0 of Fig. 1(a).
        source_x0: initial value x_0 of Fig. 1(b).
        fig1_steps: iterations x_t = T(x_{t−1}) drawn in each Fig. 1 panel.
        fig5_sink_x0: initial value x_0 of Fig. 5(a).
        fig5_source_x0: initial value x_0 of Fig. 5(b).
        fig5_steps: iterations drawn in each Fig. 5 panel.
        cell_x0: initial cell state x_0 of Fig. 2's rows 1 and 2 (chosen so the trajectories
            fill the paper's axes, −0.2 to 1.8).
        small_x0: initial cell state x_0 of Fig. 2's row 3; above row 3's T_1 fixed point
            x* ≈ 1.034 (tanh x* = 0.75 x*) every step shrinks |x_t|, as §3.3.2 describes.
        unregulated_forget: forget gates f_t, t = 1, 2, ..., of Fig. 2's row 1 (unregulated
            LSTM), one per step (paper: 1, 0.25, 1).
        unregulated_input: input gates i_t of row 1, as many as its forget
            gates (paper: 1, 0, 0.75).
        large_forget: forget gates of row 2, a large constant gate (paper: 0.9 at every step).
        large_input: input gates of row 2 (paper: 1, 0.75, 0.5).
        small_forget: forget gates of row 3, a small constant gate (paper: 0.25 at every
            step).
        small_input: input gates of row 3 (paper: 1, 0.75, 0.15).
        curve_points: points at which each map y = T(x) is drawn (Figs. 1 and 5 on
            [−1.2, 1.2], Fig. 2 on [−0.2, 1.8]).
    """

    sink_slope: float = 0.5
    source_gain: float = 3.0
    steepening_slope: float = 1.5
    sink_x0: float = 1.0
    source_x0: float = 0.05
    fig1_steps: Annotated[int, AtLeast(1)] = 6
    fig5_sink_x0: float = 1.0
    fig5_source_x0: float = 0.1
    fig5_steps: Annotated[int, AtLeast(1)] = 5
    cell_x0: float = 0.5
    small_x0: float = 1.4
    unregulated_forget: Annotated[tuple[float, ...], InRange(0, 1), MinLength(1)] = (1.0, 0.25, 1.0)
    unregulated_input: Annotated[tuple[float, ...], InRange(0, 1), MinLength(1)] = (1.0, 0.0, 0.75)
    large_forget: Annotated[tuple[float, ...], InRange(0, 1), MinLength(1)] = (0.9, 0.9, 0.9)
    large_input: Annotated[tuple[float, ...], InRange(0, 1), MinLength(1)] = (1.0, 0.75, 0.5)
    small_forget: Annotated[tuple[float, ...], InRange(0, 1), MinLength(1)] = (0.25, 0.25, 0.25)
    small_input: Annotated[tuple[float, ...], InRange(0, 1), MinLength(1)] = (1.0, 0.75, 0.15)
    curve_points: Annotated[int, AtLeast(1)] = 201

    def __post_init__(self):
        check_fields(self)
        for row in ("unregulated", "large", "small"):
            if len(getattr(self, f"{row}_forget")) != len(getattr(self, f"{row}_input")):
                raise ConfigError(f"{row}_forget and {row}_input must have the same length")

    def quick(self) -> Config:
        """Already seconds-sized: the quick version is the full figure."""
        return self


def _panel(title, T, x0, steps, grid):
    web = cobweb(T, x0, steps)
    return {
        "title": title,
        "x": grid,
        "curve": np.asarray(T(jnp.asarray(grid))),
        "previous_curve": None,
        "iterates": web.iterates,
        "path": web.path,
    }


def run(config: Config, out_dir: Path) -> dict:
    del out_dir
    fig1_grid = np.linspace(-1.2, 1.2, config.curve_points)
    sink, gain, steep = config.sink_slope, config.source_gain, config.steepening_slope
    figure1 = [
        _panel(f"(a) sink: T(x) = {sink:g}x", lambda x: sink * x, config.sink_x0,
               config.fig1_steps, fig1_grid),
        _panel(f"(b) source: T(x) = tanh({gain:g}x)", lambda x: jnp.tanh(gain * x),
               config.source_x0, config.fig1_steps, fig1_grid),
    ]  # fmt: skip
    figure5 = [
        _panel(f"(a) T(x) = {sink:g}x", lambda x: sink * x, config.fig5_sink_x0,
               config.fig5_steps, fig1_grid),
        _panel(f"(b) T(x) = {steep:g}x", lambda x: steep * x, config.fig5_source_x0,
               config.fig5_steps, fig1_grid),
    ]  # fmt: skip
    grid = np.linspace(-0.2, 1.8, config.curve_points)
    figure2 = []
    for row, label, x0 in (
        ("unregulated", "Row 1: unregulated LSTM", config.cell_x0),
        ("large", "Row 2: large constant forget gate", config.cell_x0),
        ("small", "Row 3: small constant forget gate", config.small_x0),
    ):
        forget = jnp.asarray(getattr(config, f"{row}_forget"), dtype=float)
        input_gate = jnp.asarray(getattr(config, f"{row}_input"), dtype=float)
        web = cobweb(cell_state_map, x0, params=(forget, input_gate))
        gates = zip(forget, input_gate, strict=True)
        curves = [np.asarray(cell_state_map(jnp.asarray(grid), g)) for g in gates]
        panels = []
        for t in range(1, len(forget) + 1):
            panels.append(
                {
                    "title": f"t = {t}: (f, i) = ({float(forget[t - 1]):g}, "
                    f"{float(input_gate[t - 1]):g})",
                    "x": grid,
                    "curve": curves[t - 1],
                    "previous_curve": curves[t - 2] if t > 1 else None,
                    "iterates": web.iterates[: t + 1],
                    "path": web.path[: 2 * t + 1],
                }
            )
        figure2.append({"label": label, "iterates": web.iterates, "panels": panels})
    return {"figure1": figure1, "figure5": figure5, "figure2": figure2}


def plot(result: dict):
    from decaynet.plots import cobweb_figure

    return cobweb_figure(result)


EXPERIMENT = Experiment(
    name="cobweb",
    help="Figs. 1, 2 and 5: cobwebs of the sink/source maps and of the cell-state map",
    config=Config,
    run=run,
    plot=plot,
)
