"""`decaynet` command line: one subcommand per table or figure of the paper."""

from __future__ import annotations

import memlab
from decaynet._registry import CELLS
from decaynet.experiments import EXPERIMENTS

CELL_NAMES = ", ".join(f"{name} ({cell.label})" for name, cell in CELLS.items())
DESCRIPTION = (
    f"DecayNet: A Study on the Cell States of LSTMs (ICLR 2019 submission). Cells: {CELL_NAMES}."
)


def main(argv=None) -> int:
    return memlab.run_command_line("decaynet", DESCRIPTION, EXPERIMENTS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
