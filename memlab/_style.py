"""One look for every figure of `curse` and `decaynet`: rc settings, a colour per model kind,
legends for marker and line styles, statistics boxes, paper titles, and the footer that names a
figure's source and marks quick runs.

Plot functions are decorated with `figure_style` (the rc settings hold while the figure is built)
and title themselves with `paper_title`; `stamp_figure` adds the footer naming the source and
marking quick runs to a finished figure.
matplotlib is imported inside the functions, so `import memdyn` stays free of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

# Okabe–Ito colours (distinguishable with the common colour-vision deficiencies).
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000")

# The DecayNet paper draws LSTM yellow and DecayNet purple; the yellow is darkened so that lines
# stay visible on white. Optimiser baselines of the learned-optimiser figure follow.
MODEL_COLOURS = {
    "LSTM": "#E0A100",
    "DecayNet": "#6A3D9A",
    "SGD": "#7F7F7F",
    "Adam": "#0072B2",
    "RMSProp": "#009E73",
}
_OTHER_MODEL = "#D55E00"

_STYLE = {
    "font.size": 9.0,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9.0,
    "figure.titlesize": 11.0,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "lines.linewidth": 1.5,
    "lines.markersize": 5.0,
    "axes.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.which": "both",
    "grid.alpha": 0.25,
    "grid.linewidth": 0.5,
    "legend.framealpha": 0.85,
    "legend.edgecolor": "0.8",
    "mathtext.fontset": "dejavusans",
    "image.cmap": "viridis",
    "figure.constrained_layout.use": True,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}

QUICK_MARK = "QUICK RUN: reduced sizes, not the paper's setting"
_SOURCE_GID = "memdyn-source"
_QUICK_GID = "memdyn-quick"


def style_settings() -> dict[str, Any]:
    """The matplotlib rc settings of every memdyn figure (fonts, sizes, line widths, grid, the
    Okabe–Ito colour cycle, constrained layout)."""
    from cycler import cycler

    return {**_STYLE, "axes.prop_cycle": cycler(color=list(_PALETTE))}


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """Build figures under the memdyn rc settings (`style_settings`): a context manager, or a
    decorator of a plot function (`@figure_style()`)."""
    import matplotlib

    with matplotlib.rc_context(style_settings()):
        yield


def model_colour(label: str) -> str:
    """The colour of a model kind, the same in every figure: LSTM dark yellow, DecayNet purple
    (the DecayNet paper's), the optimiser baselines SGD / Adam / RMSProp; others vermilion."""
    return MODEL_COLOURS.get(label, _OTHER_MODEL)


def sequence_colours(count: int, cmap: str = "viridis") -> list:
    """`count` ordered colours of `cmap` (for a sweep, e.g. one per ω), its light end left out."""
    import matplotlib
    import numpy as np

    return list(matplotlib.colormaps[cmap](np.linspace(0.0, 0.85, count)))


def key_legend(target, entries: Sequence[tuple[str, dict[str, Any]]], **kwargs):
    """A legend on `target` (an Axes or a Figure) with one entry per `(label, style)`, the style
    being `Line2D` keywords (`color`, `ls`, `marker`, ...): explains markers and line styles
    that are drawn many times or not labelled where they are drawn."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], label=label, **{"color": "k", **style}) for label, style in entries]
    return target.legend(handles=handles, **kwargs)


def stats_box(ax, text: str, *, loc: str = "lower right"):
    """`text` (e.g. n and p-values) in a boxed note at the `loc` corner inside `ax`."""
    vertical, horizontal = loc.split()
    x = {"left": 0.02, "center": 0.5, "right": 0.98}[horizontal]
    y = {"lower": 0.03, "upper": 0.97}[vertical]
    return ax.text(
        x, y, text, transform=ax.transAxes, ha=horizontal, fontsize=7.5,
        va="bottom" if vertical == "lower" else "top",
        bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "0.7", "alpha": 0.9},
    )  # fmt: skip


def paper_title(fig, source: str, text: str = "") -> None:
    """The figure's title: the paper's figure or table it reproduces (`source`, e.g.
    "Li et al. 2021, Fig. 3"), then what it shows."""
    fig.suptitle(f"{source}: {text}" if text else source)


def stamp_figure(fig, *, source: str, quick: bool) -> None:
    """Add a footer to `fig` naming its `source` (the paper's figure) and, when `quick`, a red
    "quick run: reduced sizes, not the paper's setting" mark. A second call replaces the first.

    The footer is drawn just below the canvas (the quick mark on a line of its own, under the
    source, so a long source is never covered), so it never covers axes, labels or an outside
    legend; `bbox_inches="tight"` (as in `memlab.save_figure` and Jupyter's inline display) keeps
    it in the saved image.
    """
    from matplotlib.transforms import offset_copy

    for text in [t for t in fig.texts if t.get_gid() in (_SOURCE_GID, _QUICK_GID)]:
        text.remove()
    below = offset_copy(fig.transFigure, fig=fig, y=-4, units="points")
    fig.text(0.005, 0.0, f"Source: {source}", transform=below, ha="left", va="top", fontsize=7.5,
             color="0.3", gid=_SOURCE_GID)  # fmt: skip
    if quick:
        lower = offset_copy(fig.transFigure, fig=fig, y=-20, units="points")
        fig.text(
            0.995, 0.0, QUICK_MARK, transform=lower, ha="right", va="top", fontsize=8.5,
            weight="bold", color="white", gid=_QUICK_GID,
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "#C0392B", "edgecolor": "none"},
        )  # fmt: skip
