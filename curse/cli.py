"""`curse` command line: one subcommand per figure or analysis of the paper."""

from __future__ import annotations

import memlab
from curse.experiments import EXPERIMENTS

DESCRIPTION = "On the Curse of Memory in RNNs (Li, Han, E, Li, ICLR 2021): figures and analyses."


def main(argv=None) -> int:
    return memlab.run_command_line("curse", DESCRIPTION, EXPERIMENTS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
