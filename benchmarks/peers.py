"""The optional PyTorch peer: import it if present, choose its device, wait for it, pin float32.

PyTorch is an optional dependency (the `bench` extra). Benchmarks ask `import_torch()` and, when it
is missing, record the returned reason in place of the peer's timing instead of failing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import jax

from memdyn.internal import check_positive


def import_torch() -> tuple[ModuleType | None, str | None]:
    """`(torch, None)`, or `(None, reason)` when PyTorch cannot be imported."""
    try:
        import torch
    except ImportError as error:
        return None, f"torch not importable ({error}); PyTorch peers skipped"
    return torch, None


@contextlib.contextmanager
def flushed_denormals(torch: ModuleType) -> Iterator[None]:
    """PyTorch flushing denormal numbers to zero on the CPU (`torch.set_flush_denormal`), as
    XLA:CPU does for JAX: the peer's best setting, for its timed calls only (the flag is global
    to the process), restored afterwards. Without it a training step of an LSTM over 784 steps,
    whose gradients decay into the denormal range, ran 4.8× slower here (696 against 144 ms,
    median of 18 Adam steps at 2 threads), and its timings were bimodal."""
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # a float32 denormal
    before = float(tiny * 1.0) == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def torch_device(torch: ModuleType) -> str:
    """The device a PyTorch peer runs on: the GPU when there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_wait(torch: ModuleType, device: str) -> Callable[[Any], None]:
    """What ends a timed PyTorch call: a device synchronisation on a GPU, nothing on the CPU."""
    if device == "cuda":
        return lambda result: torch.cuda.synchronize()
    return lambda result: None


def set_torch_threads(threads: int) -> None:
    """`torch.set_num_threads(threads)` when PyTorch is present (on a shared CPU, fewer threads
    than cores avoid OpenMP barriers waiting on a descheduled thread)."""
    check_positive("torch_threads", threads)
    torch, _ = import_torch()
    if torch is not None:
        torch.set_num_threads(threads)


def torch_environment() -> dict[str, Any]:
    """PyTorch's version, device and thread counts (left at their defaults), or why it is absent."""
    torch, reason = import_torch()
    if torch is None:
        return {"skipped": reason}
    device = torch_device(torch)
    return {
        "version": torch.__version__,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else None,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """Float32 arithmetic with full-precision matrix products in JAX and in PyTorch.

    On GPUs both frameworks may round float32 matrix products to TF32 by default (JAX's default
    precision, cuDNN's RNNs), which would make the two computations differ by about 1e-3. Inside
    this block x64 is off, JAX multiplies at `"highest"` precision, and PyTorch's matmul precision
    is `"highest"` and cuDNN's TF32 is off; everything is restored on exit. On a CPU nothing
    changes but x64.
    """
    torch, _ = import_torch()
    with contextlib.ExitStack() as stack:
        stack.enter_context(jax.enable_x64(False))
        stack.enter_context(jax.default_matmul_precision("highest"))
        if torch is not None:
            precision = torch.get_float32_matmul_precision()
            stack.callback(torch.set_float32_matmul_precision, precision)
            torch.set_float32_matmul_precision("highest")
            cudnn = torch.backends.cudnn
            stack.enter_context(
                cudnn.flags(
                    enabled=cudnn.enabled,
                    benchmark=cudnn.benchmark,
                    deterministic=cudnn.deterministic,
                    allow_tf32=False,
                )
            )
        yield
