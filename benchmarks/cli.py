"""The command line: `python -m benchmarks [--quick] [--out DIR] [--only NAME ...]`.

It only parses, runs each chosen benchmark with `benchmarks.report.execute` and prints its table
(and, for a benchmark module with a `plot(record, out_dir)`, draws its figure next to the JSON).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path

from benchmarks import NAMES
from benchmarks.peers import set_torch_threads
from benchmarks.report import default_config, execute, format_table
from memlab import keep_freed_memory

DEFAULT_OUT = Path("results/benchmarks")


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(
        f"  {name:<10} {importlib.import_module(f'benchmarks.{name}').__doc__.splitlines()[0]}"
        for name in NAMES
    )
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time the package's kernels against PyTorch and SciPy peers.",
        epilog="benchmarks:\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short sequences and few repeats")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT}/)"
    )
    parser.add_argument(
        "--only", nargs="+", choices=NAMES, metavar="NAME", help=f"run only these: {NAMES}"
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        metavar="N",
        help="torch.set_num_threads(N) first (default: PyTorch's own choice, recorded either way)",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, only: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks (`only` fixes the choice for `python -m benchmarks.NAME`)."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()  # for JAX and PyTorch alike, before either allocates (memlab._runtime)
    names = only or args.only or NAMES
    if args.torch_threads is not None:
        set_torch_threads(args.torch_threads)
    for name in names:
        path, record = execute(name, default_config(name, quick=args.quick), args.out)
        print(format_table(record))
        plot = getattr(importlib.import_module(f"benchmarks.{name}"), "plot", None)
        if plot is not None:
            print(f"wrote {plot(record, args.out)}")
        print(f"wrote {path}\n", flush=True)
    return 0
