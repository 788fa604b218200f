"""What the `lstm` and `decaycell` benchmarks share: shapes, the loss, and the timed pair.

Each benchmark times one training step's worth of work, the loss and its gradients with respect to
every cell parameter, on a batch of sequences: in JAX the package's own `decaynet.scan_cell` on the
batch (input projection hoisted, one array per gate), compiled with `jax.jit` of
`jax.value_and_grad`, with its fused backward pass (`"jax"`, the reference) and with the plain
scan's (`"jax-autodiff"`); a JAX peer where one exists (`eqx.nn.LSTMCell` under `lax.scan`, what a
JAX user has without memdyn); in PyTorch a peer with the same weights, timed with
`torch.autograd.grad`.
After timing, it checks that the two computed the same thing: the hidden states of every step, the
loss and the gradients are compared, and the largest differences and the verdict are recorded.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from benchmarks.peers import (
    flushed_denormals,
    import_torch,
    strict_float32,
    torch_device,
    torch_wait,
)
from benchmarks.timing import Timing, compare, measure, throughput
from decaynet._cells import DecayCell, LSTMCell, scan_cell
from decaynet._normalisation import NoNormalisation
from decaynet._recurrence import AbstractBackward, AutodiffBackward, FusedBackward
from memdyn.internal import check_fields, check_positive

Cell = LSTMCell | DecayCell
# `(forward, parameters)`: `forward(x)` maps a `(batch, time, input)` tensor to the hidden states
# `(batch, time, hidden)`; `parameters` maps each JAX cell field to the tensors whose gradients
# must equal that field's gradient (`torch.nn.LSTM` splits the bias in two). A pair may offer
# several, by name (eager, TorchScript, `torch.compile`); the fastest is the case's best peer.
TorchPeer = tuple[Callable[[Any], Any], dict[str, list[Any]]]
TorchPeers = dict[str, TorchPeer]
CELL_FIELDS = ("weight_input", "weight_recurrent", "bias")
# Float32 over hundreds of steps: the pixel-MNIST states differ by about 2e-5 on a CPU.
# Gradients are compared relative to max(1, largest gradient entry).
AGREEMENT_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class SequenceShape:
    """A batch of `batch` sequences of `time` steps of `input_size` features; `hidden_size` N."""

    name: str
    batch: int
    time: int
    input_size: int
    hidden_size: int

    def __post_init__(self):
        check_fields(self)
        for field in ("batch", "time", "input_size", "hidden_size"):
            check_positive(field, getattr(self, field))

    def recurrent_flops(self) -> int:
        """Flops of the recurrent core for a forward and backward pass: `3 · D · 2B·4N(M + N)`.

        The fused gate product costs `2B·4N(M + N)` per step forward (input and recurrent weights);
        the backward pass about twice that (gradients of the inputs and of the weights).
        """
        gates = 4 * self.hidden_size
        return 3 * self.time * 2 * self.batch * gates * (self.input_size + self.hidden_size)


ROW_MNIST = SequenceShape("row-mnist", batch=64, time=28, input_size=28, hidden_size=64)
PIXEL_MNIST = SequenceShape("pixel-mnist", batch=64, time=784, input_size=1, hidden_size=64)
PIXEL_MNIST_QUICK = dataclasses.replace(PIXEL_MNIST, name="pixel-mnist-196", time=196)
# §6.1's permuted pixel MNIST as `decaynet permuted` trains it: batch 100, hidden 100.
PERMUTED_MNIST = SequenceShape("permuted-mnist", batch=100, time=784, input_size=1, hidden_size=100)


@dataclasses.dataclass(frozen=True)
class RecurrentConfig:
    """Shapes to time, steady-state repeats per implementation, the scan's `unroll`, the seed,
    whether to time the `torch.compile`d peers too (`torch_compile`; compiling a 784-step
    Python loop takes minutes), and whether to time the plain backward pass and the JAX peers
    (`variants`; the shape sweep times memdyn and PyTorch only).

    The defaults are the paper's row-by-row and pixel MNIST (batch 64, hidden 64); `quick()`
    shortens pixel MNIST to 196 steps, takes 5 repeats and leaves `torch.compile` out.
    """

    shapes: tuple[SequenceShape, ...] = (ROW_MNIST, PIXEL_MNIST)
    repeats: int = 20
    unroll: int = 1
    seed: int = 0
    torch_compile: bool = True
    variants: bool = True

    def __post_init__(self):
        check_fields(self)
        if not self.shapes:
            raise ValueError("shapes must name at least one SequenceShape")
        check_positive("repeats", self.repeats)
        check_positive("unroll", self.unroll)

    def quick(self) -> RecurrentConfig:
        return dataclasses.replace(
            self, shapes=(ROW_MNIST, PIXEL_MNIST_QUICK), repeats=5, torch_compile=False
        )


@dataclasses.dataclass(frozen=True)
class RecurrentPair:
    """A JAX cell for a shape, the PyTorch peers built from that cell's weights
    (`make_torch_peers(torch, cell, device, compile=...)`), and JAX peers: `(name, make)` where
    `make(cell)` returns the same loss of `(cell, xs)` computed another way."""

    make_cell: Callable[[SequenceShape, PRNGKeyArray], Cell]
    make_torch_peers: Callable[..., TorchPeers]
    jax_peers: tuple[tuple[str, Callable[[Cell], Callable[..., Array]]], ...] = ()


def final_state_loss(
    cell: Cell,
    xs: Float[Array, "batch time input"],
    *,
    backward: AbstractBackward = FusedBackward(),  # noqa: B008 (immutable, as Diffrax does)
    unroll: int = 1,
) -> Float[Array, ""]:
    """`½ · mean_b ‖q_D‖²`: a scalar that depends on every parameter through every step."""
    final, _, _ = scan_cell(cell, NoNormalisation(), xs, backward=backward, unroll=unroll)
    return 0.5 * jnp.mean(jnp.sum(final.q**2, axis=-1))


def hidden_states(
    cell: Cell, xs: Float[Array, "batch time input"], *, unroll: int = 1
) -> Float[Array, "batch time hidden"]:
    """The hidden states `q_1..q_D` of each sequence, for the agreement check."""
    return scan_cell(cell, NoNormalisation(), xs, unroll=unroll)[1].q


def _torch_loss(torch_hidden):
    return 0.5 * torch_hidden[:, -1].pow(2).sum(-1).mean()


def _time_torch(torch, peer, cell, xs, config, jax_step) -> tuple[Timing, dict[str, Any]]:
    """Time one PyTorch peer, and measure how far it is from JAX (states, loss, gradients)."""
    device = torch_device(torch)
    forward, parameters = peer
    flat = [tensor for tensors in parameters.values() for tensor in tensors]
    x = torch_tensor(torch, xs, device)

    def loss_and_grad():
        loss = _torch_loss(forward(x))
        return loss, torch.autograd.grad(loss, flat)

    with flushed_denormals(torch):  # as XLA:CPU runs JAX: PyTorch's best
        timing = measure(loss_and_grad, repeats=config.repeats, wait=torch_wait(torch, device))
    with torch.no_grad():
        torch_states = forward(x).cpu().numpy()
    torch_loss, torch_grads = loss_and_grad()
    jax_loss, jax_grads = jax_step(cell, xs)
    jax_states = jax.jit(functools.partial(hidden_states, unroll=config.unroll))(cell, xs)
    expected = [np.asarray(getattr(jax_grads, f)) for f, ts in parameters.items() for _ in ts]
    gradient_scale = max(1.0, max(float(np.max(np.abs(g))) for g in expected))
    differences = {
        "max_abs_diff_hidden_states": float(np.max(np.abs(torch_states - jax_states))),
        "max_abs_diff_loss": abs(torch_loss.item() - float(jax_loss)),
        "max_abs_diff_gradients": max(
            float(np.max(np.abs(g.cpu().numpy() - e)))
            for g, e in zip(torch_grads, expected, strict=True)
        ),
    }
    within = (
        differences["max_abs_diff_hidden_states"] <= AGREEMENT_TOLERANCE
        and differences["max_abs_diff_loss"] <= AGREEMENT_TOLERANCE
        and differences["max_abs_diff_gradients"] <= AGREEMENT_TOLERANCE * gradient_scale
    )
    agreement = {
        **differences,
        "gradient_scale": gradient_scale,
        "tolerance": AGREEMENT_TOLERANCE,
        "within_tolerance": within,
    }
    return timing, agreement


def _summary(case: dict[str, Any]) -> str:
    rates = ", ".join(f"{name} {value:.2f}" for name, value in case["gflops"].items())
    text = f"recurrent core GFLOP/s: {rates}"
    for name, agreement in case.get("agreement", {}).items():
        verdict = "agree" if agreement["within_tolerance"] else "MISMATCH, times not comparable"
        text += (
            f"; {name} vs jax max|Δ| states {agreement['max_abs_diff_hidden_states']:.1e}, "
            f"gradients {agreement['max_abs_diff_gradients']:.1e} ({verdict})"
        )
    if "best_torch_peer" in case:
        best = case["best_torch_peer"]
        text += f"; best PyTorch peer {best['name']} at {best['median_ratio']:.2f}x jax's time"
    return text


def measure_shape(
    pair: RecurrentPair, shape: SequenceShape, config: RecurrentConfig, *, key: PRNGKeyArray
) -> dict[str, Any]:
    """Time JAX and (if importable) PyTorch on one shape; one `case` of a benchmark record."""
    cell_key, data_key = jax.random.split(key)
    with strict_float32():
        cell = pair.make_cell(shape, cell_key)
        xs = jax.random.normal(data_key, (shape.batch, shape.time, shape.input_size), jnp.float32)
        loss = functools.partial(final_state_loss, unroll=config.unroll)
        jax_step = jax.jit(jax.value_and_grad(loss))
        plain = functools.partial(loss, backward=AutodiffBackward())
        plain_step = jax.jit(jax.value_and_grad(plain))
        timings: dict[str, Timing | str] = {
            "jax": measure(lambda: jax_step(cell, xs), repeats=config.repeats)
        }
        gaps = {}
        if config.variants:
            timings["jax-autodiff"] = measure(lambda: plain_step(cell, xs), repeats=config.repeats)
            gaps["jax-autodiff"] = _largest_gap(jax_step(cell, xs), plain_step(cell, xs))
        for name, make_peer in pair.jax_peers if config.variants else ():
            peer_step = jax.jit(jax.value_and_grad(make_peer(cell)))
            timings[name] = measure(lambda s=peer_step: s(cell, xs), repeats=config.repeats)
            gaps[name] = _largest_gap(jax_step(cell, xs), peer_step(cell, xs))
        case: dict[str, Any] = {
            "case": shape.name,
            "shape": shape,
            "dtype": str(cell.bias.dtype),
            "max_abs_diff_loss_and_gradients_vs_jax": gaps,
        }
        torch, reason = import_torch()
        if torch is None:
            timings["torch"] = reason
        else:
            peers = pair.make_torch_peers(
                torch, cell, torch_device(torch), compile=config.torch_compile
            )
            case["agreement"] = {}
            for name, peer in peers.items():
                timings[name], case["agreement"][name] = _time_torch(
                    torch, peer, cell, xs, config, jax_step
                )
    flops = shape.recurrent_flops()
    case.update(compare(timings), recurrent_gflop=flops / 1e9, gflops=throughput(flops, timings))
    torch_ratios = {n: r for n, r in case["median_ratio"].items() if n.startswith("torch")}
    if torch_ratios:  # the fastest PyTorch implementation is the peer a user would pick
        best = min(torch_ratios, key=torch_ratios.get)
        case["best_torch_peer"] = {"name": best, "median_ratio": torch_ratios[best]}
    case["summary"] = _summary(case)
    return case


def _largest_gap(a, b) -> float:
    """The largest absolute difference between two `(loss, gradients)` results."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in pairs)


def run_pair(pair: RecurrentPair, config: RecurrentConfig) -> dict[str, Any]:
    """Every shape of `config`, each with its own key folded from the seed."""
    key = jax.random.key(config.seed)
    cases = [
        measure_shape(pair, shape, config, key=jax.random.fold_in(key, index))
        for index, shape in enumerate(config.shapes)
    ]
    return {"cases": cases}


def torch_tensor(torch: ModuleType, array: Float[Array, "..."], device: str, **kwargs) -> Any:
    """A float32 PyTorch tensor on `device` holding a copy of a JAX array."""
    return torch.tensor(np.asarray(array), dtype=torch.float32, device=device, **kwargs)
