"""Shared infrastructure for the `curse` and `decaynet` packages.

Nothing numerical lives here: run records, atomic file writing, checkpoints, input validation,
progress bars and the CLI plumbing that both packages' experiment commands share.
"""

from memdyn._checkpoint import load_checkpoint, save_checkpoint
from memdyn._experiment import Experiment, execute
from memdyn._records import atomic_write_bytes, environment, save_figure, to_jsonable, write_json
from memdyn._validate import (
    check_finite,
    check_in,
    check_positive,
    check_shape,
)

__all__ = [
    "Experiment",
    "atomic_write_bytes",
    "check_finite",
    "check_in",
    "check_positive",
    "check_shape",
    "environment",
    "execute",
    "load_checkpoint",
    "save_checkpoint",
    "save_figure",
    "to_jsonable",
    "write_json",
]
