"""Where the lab finds experiments: an explicit registry, never an import of the papers.

A package offers its experiments under the entry-point group `memlab.experiments`, one entry per
package naming its list of `Experiment`s (pyproject.toml):

    [project.entry-points."memlab.experiments"]
    curse = "curse.experiments:EXPERIMENTS"

`memdyn rerun` and `memdyn replot` resolve a record's package here. A user's own package joins
the same way, with no change to the lab.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from memdyn import MemdynError
from memlab._experiment import Experiment

GROUP = "memlab.experiments"


def registered_packages() -> dict[str, str]:
    """Package name → entry-point value (`module:attribute`) of every registered package."""
    return {entry.name: entry.value for entry in entry_points(group=GROUP)}


def experiments_of(package: str) -> list[Experiment]:
    """The experiments `package` registered; otherwise a `MemdynError` naming those that are."""
    found = [entry for entry in entry_points(group=GROUP) if entry.name == package]
    if not found:
        known = ", ".join(sorted(registered_packages())) or "none"
        raise MemdynError(
            f"no experiments registered for package {package!r} (entry-point group {GROUP!r}; "
            f"registered: {known}). Is the package installed?"
        )
    return list(found[0].load())


def find_experiment(package: str, name: str) -> Experiment:
    """The experiment `name` of `package`."""
    for experiment in experiments_of(package):
        if experiment.name == name:
            return experiment
    raise MemdynError(f"{package} has no experiment {name!r}")
