"""How an experiment's sweep splits into chunks that run apart, and how their results merge.

An experiment whose members never talk to each other (seeds, targets, hyperparameters) can run as
a job array: each chunk is the same experiment with a smaller config (`AbstractSweep.split`), run
on its own machine, and the chunks' results merge into the result one run would have given
(`AbstractSweep.merge`). `memdyn array` (`memlab._job_array`) drives it; an experiment opts in
with `Experiment(..., sweep=...)`.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any

from memdyn import ConfigError


class AbstractSweep(abc.ABC):
    """The strategy by which an experiment's sweep splits and merges.

    `fields` names the config's top-level fields that `split` changes; every chunk's config
    equals the whole config elsewhere, which `memdyn array merge` checks.
    """

    fields: tuple[str, ...]

    @abc.abstractmethod
    def split(self, config: Any, chunks: int) -> list[Any]:
        """`chunks` configs, in order, whose runs together cover the sweep of `config`."""

    @abc.abstractmethod
    def merge(self, config: Any, results: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The result `run(config)` returns, from the results of `split(config, ...)`'s chunks
        (in their order; numeric lists as NumPy arrays, as `memlab._results.result_arrays`)."""


class SeedSweep(AbstractSweep):
    """A sweep over consecutive PRNG seeds, `first_seed, ..., first_seed + seeds − 1`: chunk `i`
    runs the `i`-th of `chunks` nearly equal, consecutive blocks of them (the first blocks one
    seed larger where `chunks` does not divide `seeds`). Each seed's member must be the same
    whichever chunk runs it, as it is where a seed sets a member's initial weights and data order.
    `merge` is the experiment's own."""

    fields = ("seeds", "first_seed")

    def split(self, config: Any, chunks: int) -> list[Any]:
        if not isinstance(chunks, int) or chunks < 1:
            raise ConfigError(f"chunks must be a positive integer; got {chunks!r}")
        if chunks > config.seeds:
            raise ConfigError(f"cannot split {config.seeds} seeds into {chunks} chunks")
        size, extra = divmod(config.seeds, chunks)
        configs, first = [], config.first_seed
        for index in range(chunks):
            seeds = size + (index < extra)
            configs.append(dataclasses.replace(config, seeds=seeds, first_seed=first))
            first += seeds
        return configs
