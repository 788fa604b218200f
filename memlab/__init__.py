"""memlab: the lab around memdyn's numerics, where experiments are run, recorded and browsed.

memlab builds on memdyn and never the other way round; it finds experiments through a registry
(the `memlab.experiments` entry points), never by importing the papers.

- Experiments: `Experiment` (a name, a frozen config dataclass, `run`, `plot` and, for a job
  array, its `sweep`: an `AbstractSweep` such as `SeedSweep`), `execute`
  (runs one into a folder: its JSON record, figures and the environment), `run_command_line`
  (a package's command line, one subcommand per experiment, flags from the config's fields).
- Records: `environment` (git commit, versions, devices, the stack's verdict), `save_figure`.
  The `memdyn` command browses records already on disk (list, show, compare, replot, csv, rerun)
  and checks the stack (doctor).
- Figures: one house style (`figure_style`, `model_colour`, `sequence_colours`, `stamp_figure`,
  `key_legend`, `stats_box`, `paper_title`, `style_settings`, `MODEL_COLOURS`).
- The process: `keep_freed_memory` (a CPU allocator setting for long runs).
"""

from memlab._cli import main as run_command_line
from memlab._experiment import Experiment, execute
from memlab._records import environment, save_figure
from memlab._runtime import keep_freed_memory
from memlab._style import (
    MODEL_COLOURS,
    figure_style,
    key_legend,
    model_colour,
    paper_title,
    sequence_colours,
    stamp_figure,
    stats_box,
    style_settings,
)
from memlab._sweep import AbstractSweep, SeedSweep

__all__ = [
    "MODEL_COLOURS",
    "AbstractSweep",
    "Experiment",
    "environment",
    "execute",
    "figure_style",
    "keep_freed_memory",
    "key_legend",
    "model_colour",
    "paper_title",
    "SeedSweep",
    "run_command_line",
    "save_figure",
    "sequence_colours",
    "stamp_figure",
    "stats_box",
    "style_settings",
]
