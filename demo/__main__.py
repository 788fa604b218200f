"""`python -m demo [OUT]` (what `make demo` runs): each paper's headline result into OUT."""

import argparse
import sys

from demo import __doc__ as DESCRIPTION
from demo import main


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=DESCRIPTION.split("\n\n")[0],
        epilog="Each result is an ordinary experiment run: `curse fig3`, `decaynet table2` and "
        "`decaynet cobweb` with the configurations in demo/__init__.py.",
    )
    parser.add_argument(
        "out", nargs="?", default="results", help="folder for the records (default: results)"
    )
    return parser.parse_args(argv)


sys.exit(main(parse(sys.argv[1:]).out))
