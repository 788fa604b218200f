"""What a training run or a gradient flow returns: saved times, models and losses, and whether
each run (each member of a `vmap`ped sweep) finished."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree


class Trajectory(eqx.Module):
    """Saved states of a run.

    Attributes:
        times: the save times (flow time τ, or optimiser steps).
        thetas: the model at each save, in the model's own structure: every inexact array leaf
            gains a leading `save` axis; other leaves are the model's.
        losses: the loss at each saved state.
        result: Diffrax's result code for a gradient flow (`diffrax.RESULTS.successful`, or why
            the solve stopped: `max_steps_reached`, ...); `None` for discrete training.
        stopped_at: for discrete training (`memdyn.train`), the first step t whose loss or
            gradient at the model of step t was NaN or inf, where the run stopped, or -1 if
            none was; `None` for a gradient flow (see `result`).

    Under `vmap` (the sweeps) every field gains the leading sweep axes, `result` and
    `stopped_at` included, so `finished` and `failures` speak of each member.
    """

    times: Float[Array, " save"]
    thetas: PyTree
    losses: Float[Array, " save"]
    result: diffrax.RESULTS | None = None
    stopped_at: Int[Array, ""] | None = None

    def model_at(self, index: int) -> PyTree:
        """The model saved at position `index` (its floating-point arrays indexed on their leading
        axis; other leaves, integer arrays included, are the model's own)."""
        return jax.tree.map(
            lambda leaf: leaf[index] if eqx.is_inexact_array(leaf) else leaf, self.thetas
        )

    @property
    def finished(self) -> bool | Bool[Array, "*sweep"]:
        """True where the run reached its last save time: a gradient flow whose solve succeeded,
        a training run whose losses and gradients stayed finite (`stopped_at == -1`)."""
        if self.result is not None:
            return self.result == diffrax.RESULTS.successful
        if self.stopped_at is None:
            return True
        return self.stopped_at < 0

    def failures(self) -> list[tuple[tuple[int, ...], int | None]]:
        """`(member, step)` for every member that did not finish, for logs and records ("member
        (3,) stopped at step 41"): `member` indexes the sweep axes of a `vmap`ped trajectory
        (`()` for a single run), `step` is `stopped_at` for training and `None` for a gradient
        flow (whose `result` says why it stopped). Concrete trajectories only (not under `jit`)."""
        unfinished = np.argwhere(~np.asarray(self.finished))
        steps = None if self.stopped_at is None else np.asarray(self.stopped_at)
        return [
            (
                tuple(int(i) for i in member),
                None if steps is None else int(steps[tuple(member)]),
            )
            for member in unfinished
        ]
