"""`decaynet` command line: one subcommand per table or figure of the paper."""

from __future__ import annotations

import memdyn._cli
from decaynet.experiments import EXPERIMENTS

DESCRIPTION = "DecayNet: A Study on the Cell States of LSTMs (ICLR 2019 submission)."


def main(argv=None) -> int:
    return memdyn._cli.main("decaynet", DESCRIPTION, EXPERIMENTS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
