"""Errors a user can act on.

Each is also a built-in exception type (`ValueError`, `OSError`, `FloatingPointError`), so code
that catches those keeps working. The command line prints a `MemdynError` as one line after the
subcommand's usage and exits non-zero; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class MemdynError(Exception):
    """Base class: the message says what is wrong, with which file or argument, and what to do."""


class ConfigError(MemdynError, ValueError):
    """A configuration value or argument is out of range, of the wrong type or inconsistent."""


class DataError(MemdynError, ValueError):
    """A dataset is missing, truncated, corrupted (SHA-256 mismatch) or malformed."""


class CheckpointError(MemdynError, ValueError):
    """A checkpoint or run history is corrupted, truncated, missing or from another run."""


class OutputError(MemdynError, OSError):
    """An output directory cannot be created or written, or another run holds its lock."""


class TrainingStopped(MemdynError, FloatingPointError):
    """Training met a non-finite loss or gradient and stopped; the last good checkpoint is kept.

    `step` is the failed step, counted from 0 (as `memdyn.NonFiniteStep` and
    `Trajectory.stopped_at` count), `member` the failing member's index (`None` for a run of one
    member, or where not known)."""

    def __init__(self, message: str, *, step: int | None = None, member: int | None = None):
        super().__init__(message)
        self.step = step
        self.member = member
