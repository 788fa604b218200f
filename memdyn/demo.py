"""`make demo`: the quick headline reproduction of each paper, written to `results/`."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from memdyn._experiment import execute

# (package, experiment) pairs run with their quick configuration, in this order.
HEADLINES = [
    ("curse", "fig3"),
    ("decaynet", "table2"),
    ("decaynet", "cobweb"),
]


def main(out_root: str = "results") -> int:
    written = []
    for package, name in HEADLINES:
        experiments = importlib.import_module(f"{package}.experiments").EXPERIMENTS
        matches = [e for e in experiments if e.name == name]
        if not matches:
            print(f"demo: {package} {name} is not available yet, skipped", file=sys.stderr)
            continue
        experiment = matches[0]
        print(f"demo: {package} {name} --quick ...", flush=True)
        paths = execute(experiment, experiment.config().quick(), Path(out_root) / name)
        written.extend(paths.values())
    print("\ndemo: figures and numbers written to")
    for path in written:
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
