"""What a training run or a gradient flow returns: saved times, models and losses."""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
from jaxtyping import Array, Float, PyTree


class Trajectory(eqx.Module):
    """Saved states of a run.

    Attributes:
        times: the save times (flow time τ, or optimiser steps).
        thetas: the model at each save, in the model's own structure: every inexact array leaf
            gains a leading `save` axis; other leaves are the model's.
        losses: the loss at each saved state.
        result: Diffrax's result code for a gradient flow (`diffrax.RESULTS.successful`, or why
            the solve stopped: `max_steps_reached`, ...); `None` for discrete training.
    """

    times: Float[Array, " save"]
    thetas: PyTree
    losses: Float[Array, " save"]
    result: diffrax.RESULTS | None = None

    def model_at(self, index: int) -> PyTree:
        """The model saved at position `index` (its floating-point arrays indexed on their leading
        axis; other leaves, integer arrays included, are the model's own)."""
        return jax.tree.map(
            lambda leaf: leaf[index] if eqx.is_inexact_array(leaf) else leaf, self.thetas
        )

    @property
    def finished(self):
        """True where the run reached its last save time (always, for discrete training)."""
        if self.result is None:
            return True
        return self.result == diffrax.RESULTS.successful
