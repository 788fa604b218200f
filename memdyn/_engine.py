"""One training engine: compiled chunks of steps, driven from the host, and one policy for what a
non-finite step does.

A training step is a function `step(state, x) -> (state, (loss, finite))`, where `finite` says
whether the step's loss and gradient were finite (`memdyn.optimizer_step` computes it; a step
of many members, `vmap`ped, returns one loss and one flag per member). `scan_steps` runs steps
over the leading axis of their inputs in one `lax.scan`: the compiled part of every chunk
(`memdyn.train_chunk`, `memdyn.train`'s chunks, the papers' adder and meta-training). The steps
themselves are never guarded, so a run that stays finite pays nothing for the check.

`run_chunks` drives such chunks from the host (a progress bar, checkpoints, evaluations between
them) and is the one place that reads the flags (through `memdyn.gather`, so also where they live
on devices of several processes). At the first non-finite step it asks the
policy, an `AbstractNonFinitePolicy`:

- `Stop()` raises `memdyn.TrainingStopped` naming the step and the member; the state the caller
  last saved (a checkpoint) is the last good one.
- `Freeze()` keeps the last good state (the one at which the step before the failed one was
  taken, whose loss and gradient were finite), ends the run and returns a `NonFiniteStep`
  naming step and member. `memdyn.train`, which runs inside `vmap`
  sweeps and so cannot return to the host, applies it in the graph, member by member: a failed
  member stays on its last good model while the others go on, and `Trajectory.stopped_at` names
  the step.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, TypeVar

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Bool, Float, PyTree

from memdyn._errors import TrainingStopped
from memdyn._sharding import gather

State = TypeVar("State")
Inputs = TypeVar("Inputs")
Step = Callable[
    [State, Any], tuple[State, tuple[Float[Array, "*members"], Bool[Array, "*members"]]]
]
Advance = Callable[
    [State, Inputs],
    tuple[State, Float[Array, "steps ..."], Bool[Array, "steps ..."]],
]


class NonFiniteStep(NamedTuple):
    """The first step whose loss or gradient was NaN or inf.

    `step` counts steps from the run's start (0 for its first step), as `Trajectory.stopped_at`
    does: the last good state is the one at which step `step - 1` was taken. `member` is the
    index of the first failing member at that step (a seed of `memdyn.train_epochs`), `None`
    for a run of one member.
    """

    step: int
    member: int | None


class AbstractNonFinitePolicy(eqx.Module):
    """What training does at its first step whose loss or gradient is NaN or inf. Training
    functions take one as `policy`; `run_chunks` is where it is applied."""

    @property
    @abc.abstractmethod
    def keeps_last_good(self) -> bool:
        """Whether the run ends on its last good state (`on_non_finite` returns) rather than
        raising. Only then does `run_chunks` hold the previous chunk's state and inputs (a
        second copy of the parameters and optimiser state), to go back one step across a chunk
        boundary."""

    @abc.abstractmethod
    def on_non_finite(self, failure: NonFiniteStep, message: str) -> None:
        """Called once, at the first non-finite step, with a message naming it: raise to stop
        training, or, where `keeps_last_good`, return to keep the last good state and end the
        run there."""


class Stop(AbstractNonFinitePolicy):
    """Raise `memdyn.TrainingStopped` (its `step` and `member` name the failure); training
    stops, and what was saved before (a checkpoint) is the last good state."""

    @property
    def keeps_last_good(self) -> bool:
        return False

    def on_non_finite(self, failure: NonFiniteStep, message: str) -> None:
        raise TrainingStopped(message, step=failure.step, member=failure.member)


class Freeze(AbstractNonFinitePolicy):
    """Keep the failed member on its last good state (the one at which the step before the
    failed one was taken) and name member and step in the result, without raising: `run_chunks`
    returns a `NonFiniteStep`, `memdyn.train` records `Trajectory.stopped_at` and lets the other
    members of a sweep go on."""

    @property
    def keeps_last_good(self) -> bool:
        return True

    def on_non_finite(self, failure: NonFiniteStep, message: str) -> None:
        del failure, message


def scan_steps(
    step: Step, state: State, xs: PyTree
) -> tuple[State, Float[Array, "steps ..."], Bool[Array, "steps ..."]]:
    """`step` over the leading axis of `xs`, one `lax.scan`: the final state, and every step's
    loss (before its update) and finite flag. Call it inside a compiled function."""
    state, (losses, finite) = jax.lax.scan(step, state, xs)
    return state, losses, finite


def first_non_finite(finite: Bool[np.ndarray, "steps ..."], start: int) -> NonFiniteStep:
    """The earliest non-finite step of a chunk that begins at step `start`, and its first
    failing member (`None` without a member axis)."""
    finite = np.asarray(finite)
    failed = ~finite.reshape(finite.shape[0], -1)
    index = int(np.argmax(failed.any(axis=1)))
    member = int(np.argmax(failed[index])) if finite.ndim > 1 else None
    return NonFiniteStep(start + index, member)


def _default_message(failure: NonFiniteStep) -> str:
    member = "" if failure.member is None else f" for member {failure.member}"
    return f"non-finite loss or gradient at step {failure.step}{member}; training stopped"


def _replay(advance: Advance, state: State, xs: Inputs, steps: int) -> State:
    """The state after the first `steps` steps of the chunk `xs` from `state`."""
    if steps == 0:
        return state
    return advance(state, jax.tree.map(lambda x: x[:steps], xs))[0]


def run_chunks(
    advance: Advance,
    state: State,
    chunks: Iterable[Inputs],
    *,
    policy: AbstractNonFinitePolicy,
    start: int = 0,
    message: Callable[[NonFiniteStep], str] = _default_message,
    after_chunk: Callable[[State, Float[Array, "steps ..."], int], bool] | None = None,
) -> tuple[State, NonFiniteStep | None]:
    """Drive training chunk by chunk; the one place where a non-finite step is handled.

    Args:
        advance: `advance(state, xs) -> (state, losses, finite)` runs one chunk, a step per entry
            of the leading axis of the pytree `xs` (typically a compiled `scan_steps`); `losses`
            and `finite` have that step axis first and, for many members, member axes next.
        state: the state at step `start`.
        chunks: each chunk's `xs`, in order (wrap it in a progress bar if wanted).
        policy: what a non-finite step does (`Stop()` or `Freeze()`).
        start: the step count of `state`.
        message: the text naming a failure, for `Stop`'s exception.
        after_chunk: `after_chunk(state, losses, steps)` after every finite chunk, with the step
            count reached; returning True ends training there (checkpoints, evaluations, early
            stopping live here).

    Returns:
        The final state and `None`, or, when step t was non-finite and the policy did not
        raise, the last good state and the `NonFiniteStep`. The last good state is the one at
        which step t − 1 was taken (the run's first state if t is its first step), as
        `memdyn.train` keeps: its own loss and gradient were finite, unlike those of the state
        at step t. It is replayed from the start of its chunk (the previous chunk's, when t
        opens a chunk), only on this path, so finite runs pay nothing for it but the previous
        chunk's state and inputs, which are held only for a policy that `keeps_last_good`.
    """
    if not isinstance(policy, AbstractNonFinitePolicy):
        raise TypeError(
            f"policy must be a memdyn.AbstractNonFinitePolicy (Stop() or Freeze()); got {policy!r}"
        )
    keep = policy.keeps_last_good
    previous = None  # (state, xs) of the chunk before, for a failure at a chunk's first step
    for xs in chunks:
        new_state, losses, finite = advance(state, xs)
        flags = np.asarray(gather(finite))  # also where the flags span several processes
        if not flags.all():
            failure = first_non_finite(flags, start)
            policy.on_non_finite(failure, message(failure))
            if not keep:
                name = type(policy).__name__
                raise TypeError(
                    f"{name}.on_non_finite returned, but {name}.keeps_last_good is False: a "
                    "policy that keeps no last good state must raise"
                )
            good = failure.step - start - 1  # steps of this chunk up to the last good state
            if good >= 0:
                return _replay(advance, state, xs, good), failure
            if previous is None:  # the run's first step (or a resumed run's) failed
                return state, failure
            before, before_xs = previous
            steps = jax.tree.leaves(before_xs)[0].shape[0]
            return _replay(advance, before, before_xs, steps - 1), failure
        previous = (state, xs) if keep else None
        state, start = new_state, start + flags.shape[0]
        if after_chunk is not None and after_chunk(state, losses, start):
            break
    return state, None
