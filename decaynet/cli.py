"""`decaynet` command line: one subcommand per table or figure of the paper."""

from __future__ import annotations

import memlab
from decaynet._model import cell_label
from decaynet._registry import CELLS, CLASSIFIER_CELLS
from decaynet.experiments import EXPERIMENTS


def _names(names) -> str:
    return ", ".join(f"{name} ({cell_label(CLASSIFIER_CELLS[name])})" for name in names)


DESCRIPTION = (
    "DecayNet: A Study on the Cell States of LSTMs (ICLR 2019 submission). "
    f"Cells: {_names(CELLS)}; table2 also takes "
    f"{_names(name for name in CLASSIFIER_CELLS if name not in CELLS)}."
)


def main(argv=None) -> int:
    return memlab.run_command_line("decaynet", DESCRIPTION, EXPERIMENTS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
